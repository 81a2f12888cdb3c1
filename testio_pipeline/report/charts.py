"""The report's charts: matplotlib figures rendered to inline SVG.

SVG keeps the HTML one self-contained file that any browser draws without a network or a
script. Text is drawn as paths (matplotlib's default ``svg.fonttype``), so the charts look
the same wherever they are opened, and the figures are built with ``Figure`` directly (no
pyplot state), so building reports in threads is safe.
"""

from __future__ import annotations

import io

import matplotlib
import pandas as pd
from matplotlib.figure import Figure

STATUS_COLOURS = {"accepted": "#2e7d32", "auto-accepted": "#81c784", "rejected": "#c62828", "open": "#9e9e9e"}
BAR = "#1565c0"

matplotlib.rcParams.update({"svg.hashsalt": "testio-report", "font.size": 9})


def _svg(fig: Figure) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and doctype: the SVG is inlined in HTML


def _figure(rows: int = 1) -> Figure:
    return Figure(figsize=(6.4, 0.6 + 0.32 * max(rows, 4)), layout="constrained")


def barh(frame: pd.DataFrame, label: str, value: str, title: str) -> str:
    """Horizontal bars, largest at the top."""
    fig = _figure(len(frame))
    ax = fig.subplots()
    labels = [str(v) for v in frame[label]][::-1]
    values = list(frame[value])[::-1]
    ax.barh(labels, values, color=BAR)
    ax.bar_label(ax.containers[0], padding=2)
    ax.set_title(title, loc="left")
    ax.set_xlabel(value.replace("_", " "))
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig)


def stacked_status(frame: pd.DataFrame, label: str, title: str) -> str:
    """Bars per ``label``, stacked by bug status."""
    fig = _figure(len(frame))
    ax = fig.subplots()
    labels = [str(v) for v in frame[label]][::-1]
    left = [0] * len(frame)
    for status, colour in STATUS_COLOURS.items():
        values = list(frame[status])[::-1]
        ax.barh(labels, values, left=left, color=colour, label=status)
        left = [a + b for a, b in zip(left, values)]
    ax.set_title(title, loc="left")
    ax.set_xlabel("bugs")
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig)


def weekly_rates(frame: pd.DataFrame, title: str) -> str:
    """Acceptance and rejection rate per week (lines), bugs reported per week (bars)."""
    fig = Figure(figsize=(6.4, 2.8), layout="constrained")
    ax = fig.subplots()
    weeks = [pd.Timestamp(w).strftime("%d %b") for w in frame["week"]]
    counts = ax.twinx()
    counts.bar(weeks, frame["bugs"], color="#e3e8f0", zorder=0)
    counts.set_ylabel("bugs reported")
    ax.set_zorder(counts.get_zorder() + 1)
    ax.patch.set_visible(False)
    for column, colour in (("acceptance_rate", STATUS_COLOURS["accepted"]), ("rejection_rate", STATUS_COLOURS["rejected"])):
        ax.plot(weeks, frame[column].astype(float), marker="o", color=colour, label=column.replace("_", " "))
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of decided bugs")
    ax.set_xlabel("week starting")
    ax.set_title(title, loc="left")
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    return _svg(fig)
