"""The ``a2k bench`` runner: one table (or one JSON object) of this machine's speed and memory, stage by stage.

    a2k bench [--quick] [--json] [--only STAGE[,STAGE...]] [--repeat N] [--sessions N] [--soak-s S]

Each stage is a function in :data:`STAGES` taking the shared :class:`Context` and returning ``{key: value}``; keys
are stable snake_case names whose suffix gives the unit (``*_s`` seconds, ``*_per_s`` a rate, ``*_mib`` MiB,
``*_rtf`` a real-time factor: compute time / audio duration, ``*_ms`` milliseconds, ``*_cores`` CPU cores,
``*_frames`` and ``*_sessions`` counts). Timed figures are medians over ``--repeat`` runs after
one untimed warm-up (loading models, allocating) so they describe steady work "after load". Each stage also reports
the peak resident set size of this process while it ran (``<stage>_peak_rss_mib``): the process is shared by the
stages, so it includes what earlier stages left loaded. Weights are random where a model is needed (speed does not
depend on their values); audio is the bundled speech sample tiled to the needed length. See docs/benchmarks.md.

The stages are in ``suite_stages.py`` (the streaming stage, a real ``a2k serve`` with real-time clients, in
``suite_streaming.py``), what they share (the context, the timers, the samples) in
``suite_context.py``; this module is the table of stages and the runner.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # the stages and their shared context are sibling modules

from suite_context import SAMPLE_RATE, SAMPLES, Context, PeakRSS, median_time, speech  # noqa: E402, F401
from suite_stages import (  # noqa: E402, F401  (model_gflop: tested through this module)
    model_gflop,
    stage_frontend,
    stage_generate,
    stage_hardware,
    stage_keypoints,
    stage_landmarks,
    stage_loader,
    stage_render,
    stage_train,
)
from suite_streaming import stage_streaming  # noqa: E402

STAGES: dict[str, Callable[[Context], dict[str, float]]] = {
    "hardware": stage_hardware,
    "frontend": stage_frontend,
    "keypoints": stage_keypoints,
    "train": stage_train,
    "loader": stage_loader,
    "landmarks": stage_landmarks,
    "render": stage_render,
    "generate": stage_generate,
    "streaming": stage_streaming,
}


# -------------------------------------------------------------------------------------------------------- runner
def machine_info(device: str) -> dict[str, Any]:
    import torch

    from a2k_toolkit import __version__

    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "device": device,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "a2k_version": __version__,
    }


def run(
    stages: list[str],
    *,
    quick: bool = False,
    repeat: int | None = None,
    device: str = "auto",
    naive: bool = False,
    progress: Callable[[str], None] | None = None,
    sessions: int | None = None,
    soak_s: float | None = None,
    late_margin_ms: float | None = None,
) -> dict[str, Any]:
    """Run ``stages`` (names in :data:`STAGES`) and return one JSON-ready object: ``machine``, ``settings`` and, at
    the top level, every stage's figures plus ``<stage>_peak_rss_mib`` and ``<stage>_wall_s`` (the stage's own run
    time, warm-ups and setup included). ``naive`` adds the straightforward path's figures (``*_naive_*``);
    ``sessions``, ``soak_s`` and ``late_margin_ms`` set the streaming stage (None: its defaults)."""
    from a2k_toolkit.device import resolve_device

    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise KeyError(unknown)
    repeat = repeat if repeat is not None else (1 if quick else 3)
    dev = resolve_device(device)
    result: dict[str, Any] = {
        "machine": machine_info(dev),
        "settings": {"quick": quick, "repeat": repeat, "naive": naive, "stages": list(stages)},
    }
    with tempfile.TemporaryDirectory(prefix="a2k-bench-") as tmp:
        streaming = {"sessions": sessions, "soak_s": soak_s, "late_margin_ms": late_margin_ms}
        ctx = Context(quick=quick, repeat=repeat, work=Path(tmp), device=dev, naive=naive, **streaming)
        for name in stages:
            if progress:
                progress(name)
            t0 = time.perf_counter()
            with PeakRSS() as mem:
                figures = STAGES[name](ctx)
            result.update(figures)
            result[f"{name}_peak_rss_mib"] = mem.peak_mib
            result[f"{name}_wall_s"] = time.perf_counter() - t0
    return result


UNITS = (
    ("_mib_per_min", "MiB/min"),
    ("_gflop_per_s", "GFLOP/s"),
    ("_per_s", "/s"),
    ("_gflop", "GFLOP"),
    ("_params_m", "M params"),
    ("_mib", "MiB"),
    ("_rtf", "RTF"),
    ("_s", "s"),
    ("_ms", "ms"),
    ("_cores", "cores"),
    ("_frames", "frames"),
    ("_sessions", "sessions"),
)


def unit_of(key: str) -> str:
    return next(unit for suffix, unit in UNITS if key.endswith(suffix))


def format_table(result: dict[str, Any]) -> str:
    """The figures of ``result`` as a plain table: stage | figure | value | unit."""
    m, s = result["machine"], result["settings"]
    lines = [
        f"a2k bench on {m['device']}: {m['cpu_count']} CPUs, torch {m['torch_version']} "
        f"({m['torch_threads']} threads); median of {s['repeat']} run(s){', --quick' if s['quick'] else ''}"
        f"{', --naive' if s.get('naive') else ''}",
        "",
    ]
    rows = []
    for stage in s["stages"]:
        for key, value in result.items():
            if key.startswith(stage + "_") and isinstance(value, (int, float)):
                rows.append((stage, key, f"{value:.4g}" if value < 1000 else f"{value:.0f}", unit_of(key)))
    head = ("stage", "figure", "value", "unit")
    w = [max(len(r[i]) for r in rows + [head]) for i in range(4)]
    fmt = f"{{:<{w[0]}}}  {{:<{w[1]}}}  {{:>{w[2]}}}  {{}}"
    lines += [fmt.format(*head), "-" * (sum(w) + 6 + 10)]
    lines += [fmt.format(*r) for r in rows]
    return "\n".join(lines)
