"""Every relative link and anchor in the project's Markdown files leads somewhere.

The README points into docs/, the docs point at each other's sections and at
benchmarks/README.md; a heading renamed or a section moved breaks such a link without a word
on GitHub. A link counts as broken when its file does not exist, or when its ``#anchor`` is
neither a GitHub heading slug of the target nor an explicit ``<a id=…>`` / ``<a name=…>``.
External links (http, https, mailto, any scheme) are not followed, and links inside fenced
code blocks or inline code are not links.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

REPO = Path(__file__).resolve().parents[1]

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:\s+(.*?))?(?:\s+#+)?\s*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)\s*$")
_CODE_SPAN = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)", re.S)
_INLINE_LINK = re.compile(r"\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)")
_REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)", re.M)
_HREF = re.compile(r"<a\s[^>]*?\bhref\s*=\s*[\"']([^\"']+)[\"']", re.I)
_EXPLICIT_ANCHOR = re.compile(r"<a\s[^>]*?\b(?:id|name)\s*=\s*[\"']?([^\"'\s>]+)", re.I)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_LINE_ANCHOR = re.compile(r"^L\d+(?:-L\d+)?$")


@dataclass(frozen=True)
class Link:
    source: Path
    line: int
    target: str


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line outside fenced code blocks."""
    kept, fence = [], None
    for number, line in enumerate(text.splitlines(), 1):
        opening = _FENCE.match(line)
        if fence is None:
            if opening:
                fence = opening.group(1)
            else:
                kept.append((number, line))
        elif opening and opening.group(1)[0] == fence[0] and len(opening.group(1)) >= len(fence) and not line.strip(" `~"):
            fence = None
    return kept


def _without_code_spans(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """The same lines with inline code blanked out. A code span may run over a line break but
    never over a blank line, so spans are matched per paragraph; blanking keeps line numbers."""
    out: list[tuple[int, str]] = []
    paragraph: list[tuple[int, str]] = []

    def flush() -> None:
        if not paragraph:
            return
        joined = "\n".join(line for _, line in paragraph)
        blanked = _CODE_SPAN.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), joined)
        out.extend(zip((n for n, _ in paragraph), blanked.split("\n")))
        paragraph.clear()

    for number, line in lines:
        if line.strip():
            paragraph.append((number, line))
        else:
            flush()
            out.append((number, line))
    flush()
    return out


def links_in(path: Path) -> list[Link]:
    links = []
    for number, line in _without_code_spans(_prose_lines(path.read_text(encoding="utf-8"))):
        for pattern in (_INLINE_LINK, _REFERENCE_DEF, _HREF):
            for match in pattern.finditer(line):
                links.append(Link(path, number, match.group(1).strip("<>")))
    return links


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text, lower-cased, every character but
    letters, digits, ``_``, ``-`` and spaces dropped, spaces turned into ``-``."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text stays, its target goes
    text = re.sub(r"<[^>]+>", "", text)
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors_in(path: Path) -> set[str]:
    lines = _prose_lines(path.read_text(encoding="utf-8"))
    headings: list[str] = []
    previous: tuple[int, str] | None = None
    for number, line in lines:
        atx = _ATX.match(line)
        if atx:
            headings.append(atx.group(2) or "")
        elif (
            _SETEXT.match(line)
            and previous is not None
            and previous[0] == number - 1
            and previous[1].strip()
            and not re.match(r"^\s*([-*+>|#]|\d+[.)])", previous[1])
        ):
            headings.append(previous[1].strip())
        previous = (number, line)
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    for heading in headings:
        base = slug(heading)
        if base in seen:
            seen[base] += 1
            anchors.add(f"{base}-{seen[base]}")
        else:
            seen[base] = 0
            anchors.add(base)
    anchors |= {a for _, line in lines for a in _EXPLICIT_ANCHOR.findall(line)}
    return anchors


def broken_links(files: list[Path], root: Path) -> tuple[list[str], int]:
    """(a description of every broken link, how many relative links were checked)."""
    problems, checked, anchor_cache = [], 0, {}
    for source in files:
        for link in links_in(source):
            if _SCHEME.match(link.target):
                continue
            checked += 1
            where = f"{source.relative_to(root)}:{link.line}: ({link.target})"
            path_part, _, fragment = link.target.partition("#")
            path_part, fragment = unquote(path_part), unquote(fragment)
            if not path_part:
                target = source
            elif path_part.startswith("/"):  # GitHub resolves these from the repository root
                target = root / path_part.lstrip("/")
            else:
                target = source.parent / path_part
            target = target.resolve()
            if not target.exists():
                problems.append(f"{where} no such file {target}")
                continue
            if not fragment:
                continue
            if target.suffix.lower() != ".md":
                if not _LINE_ANCHOR.match(fragment):
                    problems.append(f"{where} an anchor into a file that is not Markdown")
                continue
            if target not in anchor_cache:
                anchor_cache[target] = anchors_in(target)
            if fragment not in anchor_cache[target]:
                problems.append(f"{where} no heading or <a id> '{fragment}' in {target.name}")
    return problems, checked


def project_markdown_files() -> list[Path]:
    """Tracked *.md, plus new ones not ignored yet (a docs file before its first commit)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--", "*.md"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split("\0")
    files = {REPO / name for name in listed if name}
    return sorted(p for p in files if p.is_file() and ".venv" not in p.relative_to(REPO).parts)


# --- the checker itself ------------------------------------------------------------------------


def test_slugs_follow_githubs_rules():
    assert slug("Point it at the real TestIO API") == "point-it-at-the-real-testio-api"
    assert slug("`bug_overview` (view)") == "bug_overview-view"
    assert slug("What analysts ask, answered in SQL") == "what-analysts-ask-answered-in-sql"
    assert slug("Bug search index build (`--scale large`)") == "bug-search-index-build---scale-large"
    assert slug("Keeping the cap busy (6.97 s → 4.8 s)") == "keeping-the-cap-busy-697-s--48-s"
    assert slug("See [the docs](docs/x.md) here") == "see-the-docs-here"


def test_the_checker_finds_broken_files_and_anchors_and_ignores_code(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "b.md").write_text(
        "# Title\n\n## Same\n\ntext\n\n## Same\n\nSetext heading\n--------------\n\n"
        '<a id="explicit"></a>\n\n```md\n## Not a heading\n```\n',
        encoding="utf-8",
    )
    (tmp_path / "a.md").write_text(
        "# A\n\n"
        "[ok](docs/b.md#title) [dup](docs/b.md#same-1) [setext](docs/b.md#setext-heading)\n"
        "[explicit](docs/b.md#explicit) [self](#a) [root](/docs/b.md) [web](https://example.com/#x)\n"
        "[mail](mailto:someone@example.com)\n\n"
        "[bad anchor](docs/b.md#missing) and [in a fence only](docs/b.md#not-a-heading)\n\n"
        "[no file](docs/nope.md)\n\n"
        "Inline `[not a link](docs/nope.md)` and a span over\ntwo lines `[x](gone.md)\nstill code` here.\n\n"
        "```\n[fenced](docs/nope.md#x)\n```\n\n"
        "[ref]: docs/b.md#same-2\n",
        encoding="utf-8",
    )
    problems, checked = broken_links([tmp_path / "a.md", tmp_path / "docs" / "b.md"], tmp_path)
    assert checked == 10
    assert [p.split(": ", 1)[0] for p in problems] == ["a.md:7", "a.md:7", "a.md:9", "a.md:19"], problems
    assert "'missing'" in problems[0] and "'not-a-heading'" in problems[1]
    assert "no such file" in problems[2] and "'same-2'" in problems[3]


# --- the project's documents -------------------------------------------------------------------


def test_every_relative_link_and_anchor_in_the_docs_resolves():
    files = project_markdown_files()
    names = {p.relative_to(REPO).as_posix() for p in files}
    assert {"README.md", "benchmarks/README.md", "docs/analytics.md", "docs/operations.md", "docs/data-dictionary.md"} <= names
    problems, checked = broken_links(files, REPO)
    assert not problems, "broken links:\n" + "\n".join(problems)
    assert checked > 10, f"only {checked} relative links found: is the checker reading the files?"
