"""Does ``torch.compile`` pay for keypoint generation? The default path against the same windows through a compiled
model, for the paper width and ``lite``, on 60 s of speech; prints a table.

python benchmarks/bench_compile.py [--device cpu|cuda] [--repeat 5] [--modes default reduce-overhead]

For each model: the default path (``WindowedRunner``, fused blocks on the CPU) and, per compile mode, the same runner
whose model is ``torch.compile(net, mode=...)`` of the plain net: steady seconds for 60 s of audio (median of
``--repeat`` after warm-up) and the one-time compile cost (the first call's time minus a steady call's). Weights are
random (the speed does not depend on them); the features are the log-mel of the bundled speech, tiled.
``reduce-overhead`` uses CUDA graphs on a GPU (on a CPU it is the default mode). The outputs are compared with the
default path's: the largest difference in normalised keypoint units is printed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--modes", nargs="+", default=["default", "reduce-overhead"])
    args = ap.parse_args()

    import torch
    from suite import SAMPLE_RATE, Context, speech

    from a2k_toolkit.builtin.audio2keypoint import model_encoders
    from a2k_toolkit.builtin.logmel import LogMel
    from a2k_toolkit.models.checkpoint import load_generator, read_checkpoint
    from a2k_toolkit.models.inference import WindowedRunner

    feats = LogMel()(speech(60), SAMPLE_RATE)
    ref = np.random.default_rng(0).normal(0, 1, 136).astype(np.float32)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    rows = []
    with tempfile.TemporaryDirectory(prefix="a2k-bench-compile-") as tmp:
        ctx = Context(quick=True, repeat=args.repeat, work=Path(tmp), device="cpu")
        for preset in ("a2k", "lite"):
            info = read_checkpoint(ctx.checkpoint(preset))
            net = load_generator(info, encoders=model_encoders(info.model)).to(args.device).eval()

            def timed(runner):
                t0 = time.perf_counter()
                out = runner.run([(feats, ref)])[0]
                sync()
                first = time.perf_counter() - t0
                times = []
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    runner.run([(feats, ref)])
                    sync()
                    times.append(time.perf_counter() - t0)
                return statistics.median(times), first, out

            base = WindowedRunner(net, info.window, 16, 32)
            t, first, expected = timed(base)
            rows.append((preset, "default path (eager)", t, first - t, 0.0))
            for mode in args.modes:
                runner = WindowedRunner(net, info.window, 16, 32)
                # the plain net: inductor does its own fusion (the hand-fused blocks' in-place `out=` ops break
                # dynamo's graphs)
                runner._fused = torch.compile(net, mode=mode, dynamic=False)
                try:
                    t, first, out = timed(runner)
                except Exception as exc:  # noqa: BLE001 - a backend that fails here is a row, not a crash
                    rows.append(
                        (
                            preset,
                            f"torch.compile({mode}) failed: {type(exc).__name__}",
                            float("nan"),
                            float("nan"),
                            float("nan"),
                        )
                    )
                    continue
                rows.append(
                    (preset, f"torch.compile(mode={mode!r})", t, first - t, float(np.abs(out - expected).max()))
                )
    print(
        f"\nkeypoints for 60 s of audio on {args.device} (torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads), median of {args.repeat}\n"
    )
    print(f"{'model':6} | {'path':44} | {'60 s, s':>8} | {'x real time':>11} | {'one-time, s':>11} | max diff")
    for preset, path, t, once, diff in rows:
        print(f"{preset:6} | {path:44} | {t:8.4f} | {60 / t:11.0f} | {once:11.2f} | {diff:.1e}")


if __name__ == "__main__":
    main()
