"""Command line: ``python -m testio_pipeline.simulator serve --port N [options]``."""

from __future__ import annotations

import argparse
import dataclasses
import gc
import signal
import sys
import threading
import time
from typing import Any, Sequence

from .app import Simulator
from .clock import SimClock, midnight_utc, parse_iso
from .config import PRESETS, SimulatorConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m testio_pipeline.simulator", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the simulated API over HTTP until SIGINT/SIGTERM")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on start)")
    serve.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    serve.add_argument("--seed", type=int, help="world seed (default: the preset's, 42)")
    serve.add_argument("--products", type=int, help="number of products")
    serve.add_argument("--tests-per-product", type=int, help="tests per product at the anchor")
    serve.add_argument("--bugs-per-test", type=int, help="average bugs per test")
    serve.add_argument("--features-per-product", type=int)
    serve.add_argument("--new-tests-per-day", type=float, help="new tests per product and day after the anchor")
    serve.add_argument("--latency-ms", type=float, help="delay added to every API request")
    serve.add_argument(
        "--anchor", type=parse_iso, help="world anchor (ISO 8601); default: midnight UTC of --now or of today"
    )
    serve.add_argument("--now", type=parse_iso, help="freeze the world clock at this moment (ISO 8601)")
    serve.add_argument("--token", help="the API token to accept (default: sim-demo-token)")
    serve.add_argument("--ignore-paging", action="store_true", default=None, help="quirk 4: ignore page/per_page")
    serve.add_argument("--max-bug-test-ids", type=int, help="quirk 7: more test ids per bug query -> 524")
    serve.add_argument("--max-in-flight", type=int, help="quirk 8: more concurrent requests -> 429")
    serve.add_argument(
        "--shape-variants", type=float, help="share of records sent in another documented shape (0..1)"
    )
    serve.add_argument(
        "--warm", action="store_true", help="build the cached test and bug data before listening (benchmarks)"
    )
    serve.add_argument(
        "--wire-cache-mb",
        type=float,
        default=0.0,
        help="keep serialised tests and bug lists up to this many MiB (benchmarks; 0: off)",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    """The preset with every option that was given applied on top."""
    fields = {f.name for f in dataclasses.fields(SimulatorConfig)}
    overrides: dict[str, Any] = {
        name: value for name, value in vars(args).items() if name in fields and value is not None
    }
    if "anchor" not in overrides and args.now is not None:
        overrides["anchor"] = midnight_utc(args.now)
    return SimulatorConfig.preset(args.preset, **overrides)


def serve(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    simulator = Simulator(config, SimClock(args.now), wire_cache_mb=args.wire_cache_mb)
    if args.warm:
        started = time.monotonic()
        warmed = simulator.warm()
        print(f"warmed {warmed} tests in {time.monotonic() - started:.1f} s", flush=True)
        # The warmed world lives as long as the process: keep the collector from walking it
        # again and again (each full pass over it stalled every request for ~100 ms).
        gc.freeze()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with simulator.serve(args.host, args.port) as server:
        print(f"TestIO simulator (preset {args.preset}, seed {config.seed}) listening", flush=True)
        print(f"  base_url: {server.base_url}", flush=True)
        print(f"  token:    {config.token}", flush=True)
        print(f"  now:      {simulator.clock.now().isoformat()}  (anchor {simulator.anchor.isoformat()})", flush=True)
        while not stop.wait(0.2):  # a timed wait lets signal handlers run promptly
            pass
    print("TestIO simulator stopped", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
