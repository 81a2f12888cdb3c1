"""Sync benchmark: the pipeline against the simulator's HTTP server, measured against its lower bound.

    python benchmarks/bench_sync.py [--scale default|large] [--latency-ms 50] [--concurrency 10]
                                    [--products N] [--tests-per-product N] [--bugs-per-test N]
                                    [--server subprocess|thread] [--json out.json]

(``make bench`` runs it with the defaults.) It starts the simulator's HTTP server on 127.0.0.1
with the chosen scale and per-request latency, and runs four phases through the code path the
Dagster assets use — ``testio_pipeline.sync.run_cycle`` with an ``ApiSource`` built from
``Settings(token, base_url, max_concurrent_requests, duckdb_path)`` — into a fresh DuckDB file:

  (a) a full sync from empty, (b) an incremental cycle with nothing changed,
  (c) an incremental cycle after the simulator's clock moved on (``--advance-hours``, 24),
  (d) the nightly full sync: a full sync of the now complete warehouse, every record compared again.

After each phase the DuckDB content is verified against the simulator's truth at that moment
(id sets of every entity, plus titles, test status and end, bug status and test); any
difference is printed and the script exits with status 1. Then it prints one table: requests
per endpoint, wall time per phase and per entity (fetch / write), rows inserted / updated /
unchanged per table, peak RSS of the sync process, the longest DuckDB write-lock hold, the
lower bound (see ``benchmarks/lower_bound.py`` for the derivation) and wall / lower bound;
then the bug search index's build time on the synced file (``benchmarks/search_index.py``),
the fixed cost of a Dagster run (``benchmarks/overhead.py``) and a verdict on each
done-when point of the speed issue.

Scales: ``default`` = 20 products (a quarter with sections), 200 tests per product, 8 bugs
per test; ``large`` = 200 products, 500 tests each, 12 bugs per test; both at 50 ms latency
and 10 requests in flight unless overridden. ``tiny`` (2 products) is for the smoke test.

The server runs as a subprocess by default, so its CPU work (building JSON for every answer)
runs on the other core and its memory is not in the sync's peak RSS. It answers from a wire
cache of serialised tests and bug lists (``--sim-cache-mb``, default 512; the large world needs
360 MiB), filled before it listens, so the sync rather than the simulator is the bottleneck. Measured on this 2-core
machine at the default scale (full sync, back-to-back runs, load average 3.5-5 from other
work): subprocess 14.1 s and 12.1 s wall (sync 7.3-7.7 s CPU + server 2.3-2.5 s CPU), thread
14.8 s and 16.1 s (10 s CPU in the one process, serialised by the GIL). ``--server thread``
to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import checking, cli_runs, lower_bound, memory, search_index  # noqa: E402
from benchmarks.servers import SERVER_KINDS, start_server  # noqa: E402
from testio_pipeline.settings import Settings  # noqa: E402
from testio_pipeline.simulator import SimulatorConfig  # noqa: E402
from testio_pipeline.source import ApiSource  # noqa: E402
from testio_pipeline.sync import SyncOptions, run_cycle  # noqa: E402
from testio_pipeline.warehouse import Warehouse  # noqa: E402
from testio_pipeline.warehouse.backends import is_lake  # noqa: E402

ANCHOR = datetime(2026, 11, 1, tzinfo=timezone.utc)
START = datetime(2026, 11, 2, 12, tzinfo=timezone.utc)
ENTITIES = ("products", "features", "user_stories", "tests", "bugs")
ENDPOINTS = (
    "products",
    "features",
    "section_features",
    "user_stories",
    "exploratory_tests",
    "exploratory_test",
    "bugs",
    "reject_reasons",
)


@dataclass(frozen=True)
class Scale:
    preset: str
    products: int
    tests_per_product: int
    bugs_per_test: int


SCALES = {
    "default": Scale("bench", 20, 200, 8),
    "large": Scale("large", 200, 500, 12),
    "tiny": Scale("tiny", 2, 8, 2),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench_sync.py",
        description="Benchmark the TestIO sync against the simulator's HTTP server (see the module docstring).",
    )
    parser.add_argument("--scale", choices=sorted(SCALES), default="default")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="delay of every API request (default 50)")
    parser.add_argument("--concurrency", type=int, default=10, help="requests in flight (default 10)")
    parser.add_argument("--products", type=int, help="override the scale's number of products")
    parser.add_argument("--tests-per-product", type=int, help="override the scale's tests per product")
    parser.add_argument("--bugs-per-test", type=int, help="override the scale's bugs per test")
    parser.add_argument("--advance-hours", type=float, default=24.0, help="clock step before phase (c)")
    parser.add_argument("--server", choices=SERVER_KINDS, default="subprocess")
    parser.add_argument(
        "--sim-cache-mb",
        type=float,
        default=512.0,
        help="the simulator's cache of serialised answers, warmed before the run (default 512; "
        "the large world needs ~360, the default one ~11; 0: build every answer afresh)",
    )
    parser.add_argument(
        "--db",
        help="DuckDB file to use (default: a temporary file, removed afterwards), or a DuckLake's "
        "ATTACH string (ducklake:…; its catalog must be empty) with --lake-data-path",
    )
    parser.add_argument("--lake-data-path", help="where a --db ducklake:… lake puts its data files")
    parser.add_argument("--json", dest="json_path", help="also write every number to this JSON file")
    parser.add_argument("--no-overhead", action="store_true", help="skip the Dagster run-overhead measurement")
    parser.add_argument("--phases", default="abcd", help="run only these phases, in order (e.g. 'a'; default abcd)")
    parser.add_argument(
        "--rss-abort-mb", type=float, default=6144.0, help="abort if the sync's RSS passes this (default 6144)"
    )
    return parser


def simulator_config(args: argparse.Namespace) -> tuple[str, SimulatorConfig]:
    scale = SCALES[args.scale]
    config = SimulatorConfig.preset(
        scale.preset,
        anchor=ANCHOR,
        latency_ms=args.latency_ms,
        products=args.products if args.products is not None else scale.products,
        tests_per_product=args.tests_per_product if args.tests_per_product is not None else scale.tests_per_product,
        bugs_per_test=args.bugs_per_test if args.bugs_per_test is not None else scale.bugs_per_test,
    )
    return scale.preset, config


# --- one phase ------------------------------------------------------------------------------


def _entity_row(result: Any) -> dict[str, Any]:
    write = result.write
    return {
        "fetch_s": round(result.fetch_s, 3),
        "write_s": round(write.duration_s, 3),
        "lock_held_s": round(write.lock_held_s, 3),  # all the write's units together
        "longest_unit_s": round(write.longest_hold_s, 3),  # what a reader may have to wait out
        "units": write.units,
        "requests": result.api_requests,
        "retries": result.retries,
        "requests_by_endpoint": dict(result.api.get("by_endpoint", {})),
        "inserted": write.inserted,
        "updated": write.updated,
        "unchanged": write.unchanged,
        "marked_deleted": write.marked_deleted,
        "total_rows": write.total_rows,
        "product_errors": {str(k): v for k, v in result.product_errors.items()},
        "rejected": len(result.rejected),
        "extra": dict(write.extra),  # e.g. the bugs write's search_index_documents
    }


def run_phase(
    key: str,
    label: str,
    mode: str,
    server: Any,
    settings: Settings,
    watch: memory.RssWatch,
) -> dict[str, Any]:
    """One ``run_cycle`` through the HTTP server, measured: wall, CPU, peak RSS, requests."""
    source = ApiSource.from_settings(settings)
    warehouse = Warehouse(settings.duckdb_path, lake_data_path=settings.lake_data_path)
    server.reset_stats()
    cache_before = server.stats().get("wire_cache") or {}
    rss_before = memory.current_rss_mib()
    hwm_ok = memory.reset_peak()
    watch.start(f"phase ({key})")
    server_cpu0 = server.cpu_s()
    cpu0, t0 = time.process_time(), time.perf_counter()
    results = run_cycle(source, warehouse, SyncOptions(mode=mode))  # type: ignore[arg-type]
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    server_cpu1 = server.cpu_s()
    server_cpu = None if server_cpu0 is None or server_cpu1 is None else round(server_cpu1 - server_cpu0, 2)
    sampled_peak = watch.stop()
    peak = max(memory.peak_rss_mib(), sampled_peak) if hwm_ok else sampled_peak
    server_stats = server.stats()
    cache_after = server_stats.get("wire_cache") or {}
    server_stats["wire_cache_phase"] = {
        k: cache_after[k] - cache_before.get(k, 0) for k in ("hits", "misses", "evictions") if k in cache_after
    }
    entities = {name: _entity_row(result) for name, result in results.items()}
    by_endpoint: dict[str, int] = {}
    for row in entities.values():
        for endpoint, count in row["requests_by_endpoint"].items():
            by_endpoint[endpoint] = by_endpoint.get(endpoint, 0) + count
    # The longest single unit, not a write's units summed: the file is released between them.
    lock_entity = max(entities, key=lambda n: entities[n]["longest_unit_s"])
    accounted = sum(row["fetch_s"] + row["write_s"] for row in entities.values())
    return {
        "phase": key,
        "label": label,
        "mode": mode,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "server_cpu_s": server_cpu,
        "other_s": round(wall - accounted, 3),
        "rss_before_mib": round(rss_before, 1),
        "peak_rss_mib": round(peak, 1),
        "requests_total": sum(by_endpoint.values()),
        "retries": sum(row["retries"] for row in entities.values()),
        "requests_by_endpoint": by_endpoint,
        "server": server_stats,
        "server_rss_mib": server.rss_mib(),
        "entities": entities,
        "max_lock_held": {"entity": lock_entity, "seconds": entities[lock_entity]["longest_unit_s"]},
    }


# --- the table ------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_table(info: dict[str, Any], phases: list[dict[str, Any]]) -> str:
    heads = [f"({p['phase']}) {p['label']}" for p in phases]
    width = max(22, *(len(h) + 2 for h in heads))
    lines: list[str] = []

    def row(name: str, values: Sequence[Any], digits: int = 2) -> None:
        lines.append(f"{name:<38}" + "".join(f"{_fmt(v, digits):>{width}}" for v in values))

    def rule() -> None:
        lines.append("-" * (38 + width * len(phases)))

    lines.append(f"{'':<38}" + "".join(f"{h:>{width}}" for h in heads))
    rule()
    row("mode", [p["mode"] for p in phases])
    row("simulator clock", [p["sim_now"][:16].replace("T", " ") for p in phases])
    rule()
    row("requests (client, all attempts)", [p["requests_total"] for p in phases])
    for endpoint in ENDPOINTS:
        row(f"  {endpoint}", [p["requests_by_endpoint"].get(endpoint, 0) for p in phases])
    row("  retries", [p["retries"] for p in phases])
    row("requests counted by the server", [p["server"]["total"] for p in phases])
    row("peak requests in flight (server)", [p["server"]["peak_in_flight"] for p in phases])
    row("minimum requests R (lower bound)", [p["plan"]["requests_min"] for p in phases])
    row("issue-3 request budget (incremental)", [p["plan"]["issue3_budget"] if p["mode"] == "incremental" else None for p in phases])
    rule()
    row("wall time (s)", [p["wall_s"] for p in phases])
    for name in ENTITIES:
        row(
            f"  {name}: fetch / write (s)",
            [f"{p['entities'][name]['fetch_s']:.2f} / {p['entities'][name]['write_s']:.2f}" for p in phases],
        )
    row("  other: reads, setup (s)", [p["other_s"] for p in phases])
    row("CPU time of the sync process (s)", [p["cpu_s"] for p in phases])
    row("CPU time of the server subprocess (s)", [p["server_cpu_s"] for p in phases])
    row(
        "server build time/answer mean/max (ms)",
        [f"{1000 * p['server']['work_s'] / max(1, p['server']['total']):.1f} / {1000 * p['server']['work_max_s']:.0f}" for p in phases],
    )
    row("  answers built slower than latency", [p["server"]["late"] for p in phases])
    row(
        "  server wire cache hits / misses",
        [f"{p['server']['wire_cache_phase'].get('hits', '-')} / {p['server']['wire_cache_phase'].get('misses', '-')}" for p in phases],
    )
    rule()
    lines.append("rows written: inserted / updated / unchanged")
    for name in ENTITIES:
        row(
            f"  {name}",
            [
                f"{p['entities'][name]['inserted']} / {p['entities'][name]['updated']} / {p['entities'][name]['unchanged']}"
                for p in phases
            ],
        )
    row("  rows marked deleted (all tables)", [sum(e["marked_deleted"] for e in p["entities"].values()) for p in phases])
    rule()
    row("peak RSS of the sync process (MiB)", [p["peak_rss_mib"] for p in phases], 0)
    row("  RSS before the phase (MiB)", [p["rss_before_mib"] for p in phases], 0)
    row("  growth during the phase (MiB)", [p["peak_rss_mib"] - p["rss_before_mib"] for p in phases], 0)
    row("server subprocess peak RSS (MiB)", [(p["server_rss_mib"] or {}).get("peak") for p in phases], 0)
    row(
        "longest DuckDB write-unit hold (s)",
        [f"{p['max_lock_held']['seconds']:.2f} ({p['max_lock_held']['entity']})" for p in phases],
    )
    rule()
    row("lower bound (s)", [p["bounds"]["lower_bound_s"] for p in phases], 3)
    row("  steps in sequence (s)", [p["bounds"]["sequential_steps_bound_s"] for p in phases])
    row("  request DAG, any architecture (s)", [p["bounds"]["request_dag_bound_s"] for p in phases])
    row("wall / lower bound", [p["ratio"] for p in phases], 1)
    rule()
    row("verification against the simulator", ["OK" if p["verification"]["ok"] else "FAILED" for p in phases])
    row("  rows compared", [sum(p["verification"]["checked"].values()) for p in phases])
    row("  seconds (not in wall time)", [p["verification"]["seconds"] for p in phases], 1)
    row("  peak RSS while verifying (MiB)", [p["verification"].get("peak_rss_mib") for p in phases], 0)
    return "\n".join(lines)


@contextmanager
def _peak_rss(watch: memory.RssWatch, label: str) -> Iterator[dict[str, float]]:
    """The sync process's peak RSS during the block (outside a phase: the benchmark's own work)."""
    measured: dict[str, float] = {}
    hwm_ok = memory.reset_peak()
    watch.start(label)
    try:
        yield measured
    finally:
        sampled = watch.stop()
        measured["peak_mib"] = round(max(memory.peak_rss_mib(), sampled) if hwm_ok else sampled, 1)


def _overhead() -> dict[str, Any]:
    """Run benchmarks/overhead.py in a fresh interpreter and read its JSON line."""
    script = Path(__file__).resolve().with_name("overhead.py")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESTIO_")}
    with tempfile.TemporaryDirectory() as home:
        env["DAGSTER_HOME"] = home
        done = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, env=env, cwd=home, timeout=600
        )
    for line in done.stdout.splitlines():
        if line.startswith("BENCH-OVERHEAD "):
            return json.loads(line[len("BENCH-OVERHEAD ") :])
    raise RuntimeError(f"overhead measurement failed (exit {done.returncode}):\n{done.stderr[-3000:]}")


# --- main -----------------------------------------------------------------------------------


def run_benchmark(args: argparse.Namespace, out=sys.stdout) -> tuple[dict[str, Any], bool]:
    """Run the four phases; returns (everything measured, all verifications passed)."""
    preset, config = simulator_config(args)
    latency_s = args.latency_ms / 1000.0
    cap = args.concurrency
    bench_started = time.perf_counter()

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    tmp = None
    if args.db and is_lake(args.db):
        db_path = args.db
    elif args.db:
        db_path = Path(args.db)
        if db_path.exists():
            db_path.unlink()
    else:
        tmp = tempfile.TemporaryDirectory(prefix="testio-bench-")
        db_path = Path(tmp.name) / "bench.duckdb"
    try:
        server = start_server(args.server, preset, config, START, args.sim_cache_mb)
    except BaseException:
        if tmp is not None:
            tmp.cleanup()
        raise

    def abort(elapsed_s: float) -> None:
        """Memory ran away: say how far the sync got (server-side counts), stop the server."""
        try:
            stats = server.stats()
            print(
                f"!!! {elapsed_s:.0f} s into the phase; requests answered so far by endpoint: "
                f"{stats['by_endpoint']}",
                file=sys.stderr,
                flush=True,
            )
        finally:
            server.close()

    phases: list[dict[str, Any]] = []
    ok = True
    watch = memory.RssWatch(abort_mib=args.rss_abort_mb, on_abort=abort)
    sectioned = config.sectioned_products
    info: dict[str, Any] = {
        "scale": args.scale,
        "products": config.products,
        "sectioned_products": sectioned,
        "tests_per_product": config.tests_per_product,
        "bugs_per_test": config.bugs_per_test,
        "latency_ms": args.latency_ms,
        "concurrency": cap,
        "server": server.description,
        "server_kind": server.kind,
        "duckdb": str(db_path),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }
    say(
        f"TestIO sync benchmark - scale {args.scale}: {config.products} products ({sectioned} with sections), "
        f"{config.tests_per_product} tests/product at the anchor, ~{config.bugs_per_test} bugs/test, "
        f"latency {args.latency_ms:g} ms, {cap} requests in flight"
    )
    say(f"server: {server.description}")
    cache = server.stats().get("wire_cache")
    if cache:
        info["server_wire_cache"] = cache
        say(
            f"server wire cache: {cache['entries']} pieces, {cache['used_mib']:.0f} of {cache['budget_mib']:.0f} MiB "
            f"after warming ({getattr(server, 'warm_note', '') or 'warmed in process'})"
        )
    say(f"machine: {os.cpu_count()} CPUs, load average before {info['load_average_before']}")
    try:
        settings = Settings(
            token=server.token,
            base_url=server.base_url,
            max_concurrent_requests=cap,
            duckdb_path=str(db_path),
            lake_data_path=args.lake_data_path,
        )
        now = START
        previous: bytes | None = None  # the pickled truth the last phase was checked against
        steps = [
            ("a", "full from empty", "full", 0.0),
            ("b", "incr. no change", "incremental", 0.0),
            ("c", f"incr. +{args.advance_hours:g} h", "incremental", args.advance_hours * 3600),
            # The nightly schedule's run: every record read and compared again, over a complete warehouse.
            ("d", "nightly full sync", "full", 0.0),
        ]
        for key, label, mode, advance in steps:
            if key not in args.phases:
                continue
            if advance:
                now = server.advance(advance)
            say(f"phase ({key}) {label}: running ...")
            result = run_phase(key, label, mode, server, settings, watch)
            result["sim_now"] = now.isoformat()
            errors = {n: e["product_errors"] for n, e in result["entities"].items() if e["product_errors"]}
            if errors:
                say(f"  !! products not refreshed: {errors}")
            # The truth, the plan and the check come after the measured run, from a fresh
            # simulator (same config, same moment) in a child process (benchmarks/checking.py),
            # so neither its work nor what it leaves behind is in the phases' numbers.
            v0 = time.perf_counter()
            checked = checking.check(
                config, now, db_path, mode=mode, previous=previous, latency_s=latency_s, cap=cap,
                lake_data_path=args.lake_data_path,
            )
            report = checked.report
            result["plan"] = checked.plan
            result["bounds"] = checked.bounds
            bound = result["bounds"]["lower_bound_s"]
            result["ratio"] = round(result["wall_s"] / bound, 2) if bound > 0 else None
            result["verification"] = {
                "ok": report.ok,
                "checked": report.checked,
                "problems": report.problems,
                "hints": report.hints,
                "seconds": round(time.perf_counter() - v0, 2),
                "peak_rss_mib": checked.peak_rss_mib,
            }
            say(
                f"phase ({key}) done: {result['wall_s']:.2f} s wall, {result['requests_total']} requests, "
                f"lower bound {result['bounds']['lower_bound_s']:.2f} s, verification "
                + ("OK" if report.ok else "FAILED")
            )
            phases.append(result)
            if not report.ok:
                ok = False
                say("")
                say("!" * 100)
                say(f"!!! VERIFICATION FAILED after phase ({key}) {label}: DuckDB differs from the simulator's truth")
                for problem in report.problems:
                    say(f"!!!   {problem}")
                for hint in report.hints:
                    say(f"!!! likely cause: {hint}")
                say("!" * 100)
                break
            previous = checked.truth
        if ok and phases:
            say("rebuilding the bug search index once more, alone ...")
            with _peak_rss(watch, "the search index rebuild") as rebuild_rss:
                info["search_index"] = search_index.measure(db_path)
            si = info["search_index"]
            si["peak_rss_mib"] = rebuild_rss["peak_mib"]
            say(
                f"search index: {si['documents']} bugs indexed in {si['chunks']} chunk(s) in {si['build_s']:.2f} s "
                f"({si['wall_s']:.2f} s with opening and closing the file), peak RSS {si['peak_rss_mib']:.0f} MiB; "
                f"a search then took {si['search_s']:.3f} s"
            )
        if ok and not args.no_overhead:
            info["cli"] = _cli_runs(server, settings, config, now, latency_s, tmp_dir=db_path.parent, say=say)
            ok = info["cli"]["verification"]["ok"]
    finally:
        server.close()
        if tmp is not None:
            tmp.cleanup()

    info["phases"] = phases
    say("")
    say(render_table(info, phases))
    say("")
    say("Lower bound (benchmarks/lower_bound.py has the derivation):")
    say(lower_bound.FORMULA)
    say(f"  here L = {latency_s:g} s, C = {cap}; per-phase inputs: " + "; ".join(
        f"({p['phase']}) R_f={p['plan']['features_calls']} R_s={p['plan']['user_story_calls']} "
        f"pages={p['plan']['test_pages']} rereads={p['plan']['test_rereads_min']} R_b={p['plan']['bug_queries_min']} "
        f"chain_t={p['plan']['chain_tests']}"
        for p in phases
    ))
    if not args.no_overhead:
        say("")
        say("measuring the fixed cost of a Dagster run (fresh interpreter, tiny world) ...")
        info["overhead"] = _overhead()
        o = info["overhead"]
        say(
            f"fixed per-run overhead: import testio_pipeline.definitions {o['import_s']:.2f} s + Dagster run "
            f"outside fetch/write {o['cold_run']['overhead_s']:.2f} s (first run in the process; "
            f"second run {o['warm_run']['overhead_s']:.2f} s) = {o['fixed_overhead_s']:.2f} s"
        )
    info["verdicts"] = verdicts(info)
    info["benchmark_seconds"] = round(time.perf_counter() - bench_started, 1)
    say("")
    say("Done-when of the speed issue:")
    for line in info["verdicts"]:
        say(f"  {line}")
    say(f"benchmark took {info['benchmark_seconds']:.0f} s in all")
    if not ok:
        say("")
        say("!!! THE BENCHMARK FAILED: the warehouse did not match the simulator (see above).")
    return info, ok


def _cli_runs(
    server: Any, settings: Settings, config: SimulatorConfig, now: datetime, latency_s: float, tmp_dir: Path, say
) -> dict[str, Any]:
    """A trivial Dagster CLI run, then the whole pipeline through the CLI from empty, verified."""
    say("dagster CLI: a trivial run (benchmarks/trivial_defs.py) ...")
    trivial = cli_runs.trivial_run()
    say(f"  {trivial['wall_s']:.2f} s wall, {trivial['cpu_s']:.2f} s CPU, {trivial['events']} events")
    say("dagster CLI: asset materialize --select '*' from an empty warehouse and instance ...")
    db = tmp_dir / "cli.duckdb"
    server.reset_stats()
    server_cpu0 = server.cpu_s()
    whole = cli_runs.whole_run(server.base_url, server.token, db, settings.max_concurrent_requests)
    server_cpu1 = server.cpu_s()
    whole["server_cpu_s"] = None if server_cpu0 is None or server_cpu1 is None else round(server_cpu1 - server_cpu0, 2)
    whole["requests_total"] = server.stats()["total"]
    checked = checking.check(
        config, now, db, mode="full", previous=None, latency_s=latency_s, cap=settings.max_concurrent_requests
    )
    report = checked.report
    whole["plan"] = checked.plan
    whole["bounds"] = checked.bounds
    whole["verification"] = {"ok": report.ok, "problems": report.problems, "checked": report.checked}
    say(
        f"  {whole['wall_s']:.2f} s wall, {whole['cpu_s']:.2f} s CPU (server {whole['server_cpu_s']} s), "
        f"{whole['steps']} steps, {whole['events']} events (~{whole['event_ms']} ms to store one), "
        f"{whole['requests_total']} requests, "
        f"lower bound {whole['bounds']['lower_bound_s']:.2f} s, verification " + ("OK" if report.ok else "FAILED")
    )
    for problem in report.problems:
        say(f"!!!   {problem}")
    return {"trivial": trivial, "whole": whole, "verification": whole["verification"]}


def _cpu_floor(whole: dict[str, Any], trivial: dict[str, Any], bound_s: float, cpus: int) -> str:
    """What the CPU alone allows: the whole run's CPU above the trivial run's (the server's
    included, it shares the machine), spread perfectly over every core, against the bound + 1 s
    the target leaves above the trivial run."""
    extra = whole["cpu_s"] + (whole.get("server_cpu_s") or 0.0) - trivial["cpu_s"]
    floor = extra / cpus
    verdict = "cannot be met on this machine by overlap alone" if floor > bound_s + 1.0 else "is within reach of the CPU"
    return (
        f"why: the whole run used {extra:.2f} s of CPU more than the trivial run (server included); on {cpus} cores "
        f"that is at least {floor:.2f} s of wall against the {bound_s + 1.0:.2f} s the target allows: the target "
        f"{verdict}"
    )


MAX_UNIT_HOLD_S = 15.0
MAX_PHASE_RSS_MIB = 800


def verdicts(info: dict[str, Any]) -> list[str]:
    phases = {p["phase"]: p for p in info.get("phases", [])}
    out = []
    overhead = info.get("overhead", {}).get("fixed_overhead_s")
    cli = info.get("cli")
    if cli is not None:
        whole, trivial = cli["whole"], cli["trivial"]
        lb = whole["bounds"]["lower_bound_s"]
        target = lb + trivial["wall_s"] + 1.0
        met = whole["wall_s"] <= target and whole["verification"]["ok"]
        out.append(
            f"[{'MET' if met else 'NOT MET'}] whole `dagster asset materialize --select '*'` from empty "
            f"{whole['wall_s']:.2f} s <= lower bound {lb:.2f} s + trivial CLI run {trivial['wall_s']:.2f} s + 1 s "
            f"= {target:.2f} s ({whole['requests_total']} requests, minimum {whole['plan']['requests_min']})"
        )
        if not met:
            out.append("  " + _cpu_floor(whole, trivial, lb, info["cpus"]))
    full = phases.get("a")
    if full is not None:
        lb = full["bounds"]["lower_bound_s"]
        target = 1.5 * lb + (overhead or 0.0)
        met = full["wall_s"] <= target
        out.append(
            f"[{'MET' if met else 'NOT MET'}] in-process full sync {full['wall_s']:.2f} s <= 1.5 x lower bound {lb:.2f} s"
            + (f" + fixed overhead {overhead:.2f} s" if overhead is not None else " (overhead not measured)")
            + f" = {target:.2f} s"
        )
    nochange = phases.get("b")
    if nochange is not None:
        minimum = nochange["plan"]["requests_min"]
        met = nochange["requests_total"] <= minimum
        out.append(
            f"[{'MET' if met else 'NOT MET'}] incremental no-change cycle made {nochange['requests_total']} requests, "
            f"its request bound is {minimum} (issue-3 budget {nochange['plan']['issue3_budget']})"
        )
        lb = nochange["bounds"]["lower_bound_s"]
        target = 1.5 * lb + (overhead or 0.0)
        out.append(
            f"[{'MET' if nochange['wall_s'] <= target else 'NOT MET'}] incremental no-change cycle "
            f"{nochange['wall_s']:.2f} s <= 1.5 x lower bound {lb:.2f} s"
            + (f" + fixed overhead {overhead:.2f} s" if overhead is not None else " (overhead not measured)")
            + f" = {target:.2f} s"
        )
    peaks = {f"phase ({k})": p["peak_rss_mib"] for k, p in phases.items()}
    if "search_index" in info:
        peaks["index rebuild"] = info["search_index"]["peak_rss_mib"]
    if cli is not None and cli["whole"]["peak_rss_mib"] is not None:
        peaks["CLI run"] = cli["whole"]["peak_rss_mib"]
    if peaks:
        peak = max(peaks.values())
        verifying = max((p["verification"].get("peak_rss_mib") or 0.0 for p in phases.values()), default=0.0)
        out.append(
            f"[{'MET' if peak < 1024 else 'NOT MET'}] peak RSS {peak:.0f} MiB < 1024 MiB at scale {info['scale']} "
            f"in every step it ran (" + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items()) + " MiB; "
            f"the benchmark's own verification {verifying:.0f} MiB)"
            + ("" if info["scale"] == "large" else "; the issue asks this of --scale large")
        )
    if phases:
        # The large-customer issue's bar, per phase: a reader waits out any one write unit.
        within = all(p["max_lock_held"]["seconds"] <= MAX_UNIT_HOLD_S and p["peak_rss_mib"] < MAX_PHASE_RSS_MIB for p in phases.values())
        out.append(
            f"[{'MET' if within else 'NOT MET'}] every phase's longest write-unit hold <= {MAX_UNIT_HOLD_S:g} s and peak RSS "
            f"< {MAX_PHASE_RSS_MIB} MiB: "
            + ", ".join(f"({k}) {p['max_lock_held']['seconds']:.2f} s / {p['peak_rss_mib']:.0f} MiB" for k, p in phases.items())
            + ("" if info["scale"] == "large" else "; the issue asks this of --scale large")
        )
    verified = all(p["verification"]["ok"] for p in phases.values()) and (cli is None or cli["verification"]["ok"])
    ran = "".join(sorted(phases))
    if verified and ran != "abcd":
        out.append(f"[PARTLY] DuckDB matched the simulator's truth after phases {ran} (run all four for the verdict)")
    else:
        out.append(
            f"[{'MET' if verified else 'NOT MET'}] DuckDB matched the simulator's truth after every phase"
            + (" and the CLI run" if cli is not None else "")
        )
    return out


def main(argv: Sequence[str] | None = None, out=sys.stdout) -> int:
    args = build_parser().parse_args(argv)
    info, ok = run_benchmark(args, out=out)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(info, indent=2, default=str) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
