"""``a2k bench``: speed and memory of each stage on this machine, as a table or one JSON object.

The runner lives in ``benchmarks/suite.py`` of the source checkout (``benchmarks/`` is not installed with the
package); see docs/benchmarks.md for the stages and the meaning of each key.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from ..errors import A2KError

SUITE_MODULE = "a2k_bench_suite"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="measure each stage's speed and peak memory on this machine",
        description="Measure the audio front-end, keypoint generation, training, landmark extraction, renderers and "
        "end-to-end generation on this machine, and its dense float32 throughput (medians over repeated runs after "
        "one warm-up), and real-time streaming through a real `a2k serve` (latency, late and dropped frames, CPU "
        "per session, memory over a soak), and print a table. "
        "Runs from a source checkout (the runner is benchmarks/suite.py).",
    )
    p.add_argument("--quick", action="store_true", help="fewer frames and steps, no 10 min audio, one run each")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--only", metavar="STAGE[,STAGE...]", help="run only these stages (default: all)")
    p.add_argument("--repeat", type=int, default=None, help="timed runs per figure (default: 3; --quick: 1)")
    p.add_argument("--device", default="auto", help="device for the models (auto, cpu, cuda, mps)")
    p.add_argument(
        "--naive",
        action="store_true",
        help="also time the straightforward keypoint path (one window at "
        "a time, no fusion) next to the fast one (keys *_naive_*)",
    )
    p.add_argument(
        "--sessions",
        type=int,
        default=None,
        help="streaming stage: concurrent real-time sessions of the soak (default 8; --quick: 2)",
    )
    p.add_argument(
        "--soak-s",
        type=float,
        default=None,
        help="streaming stage: seconds of audio each session plays at that count (default 60; --quick: 15)",
    )
    p.add_argument(
        "--late-margin-ms",
        type=float,
        default=None,
        help="streaming stage: a frame arriving later than its audio's end + the session's announced latency + "
        "this is late (default 100)",
    )
    p.set_defaults(func=run)


def load_suite():
    """The ``benchmarks/suite.py`` module of the checkout this package was imported from."""
    import a2k_toolkit

    path = Path(a2k_toolkit.__file__).resolve().parents[1] / "benchmarks" / "suite.py"
    if not path.is_file():
        raise A2KError(
            "`a2k bench` runs from a source checkout of a2k-toolkit (it needs benchmarks/suite.py, "
            "which is not installed with the package); clone the repository and run it there"
        )
    if SUITE_MODULE in sys.modules:
        return sys.modules[SUITE_MODULE]
    spec = importlib.util.spec_from_file_location(SUITE_MODULE, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[SUITE_MODULE] = module
    spec.loader.exec_module(module)
    return module


def parse_stages(only: str | None, available: list[str]) -> list[str]:
    if only is None:
        return list(available)
    stages = [s.strip() for s in only.split(",") if s.strip()]
    unknown = [s for s in stages if s not in available]
    if unknown or not stages:
        what = f"unknown stage {', '.join(map(repr, unknown))}" if unknown else "no stage given"
        raise A2KError(f"--only: {what}; available stages: {', '.join(available)}")
    return list(dict.fromkeys(stages))  # in the order given, once each


def run(args) -> int:
    if args.repeat is not None and args.repeat < 1:
        raise A2KError(f"--repeat must be at least 1, got {args.repeat}")
    for flag, value, low in (
        ("--sessions", args.sessions, 1),
        ("--soak-s", args.soak_s, 1),
        ("--late-margin-ms", args.late_margin_ms, 0),
    ):
        if value is not None and not value >= low:
            raise A2KError(f"{flag} must be at least {low}, got {value:g}")
    suite = load_suite()
    stages = parse_stages(args.only, list(suite.STAGES))

    def progress(name: str) -> None:
        print(f"bench: {name} ...", file=sys.stderr, flush=True)

    streaming = {"sessions": args.sessions, "soak_s": args.soak_s, "late_margin_ms": args.late_margin_ms}
    result = suite.run(
        stages,
        quick=args.quick,
        repeat=args.repeat,
        device=args.device,
        naive=args.naive,
        progress=progress,
        **streaming,
    )
    print(json.dumps(result, indent=2) if args.json else suite.format_table(result))
    return 0
