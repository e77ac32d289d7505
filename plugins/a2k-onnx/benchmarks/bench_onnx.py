"""Speed of the Audio2Keypoint generator on onnxruntime against PyTorch, on the CPU; prints a table.

    python plugins/a2k-onnx/benchmarks/bench_onnx.py                     # 60 s of speech, the shipped ensemble
    python plugins/a2k-onnx/benchmarks/bench_onnx.py --threads 2 --repeat 5
    python plugins/a2k-onnx/benchmarks/bench_onnx.py --checkpoint RUN_DIR

The model is exported once to a temporary directory, as one graph (the ensemble's mean inside it) and per member
(averaged by the runtime). The features are the logmel features of real speech (the shared recording beside the
repository, else the bundled sample) tiled to ``--seconds``; feature extraction and face detection are not timed,
only ``generate`` (windows, network, blend, post-processing), with the models loaded and one warm-up run each first.
The runtimes take turns, ``--repeat`` rounds (so a change in the machine's load falls on all of them alike); each row
gives the best and the median round, with ``--threads`` threads for both runtimes (torch: intra-op threads; its fast
path's worker threads follow the same count). The last column is the largest keypoint difference from torch as a
fraction of the face width.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[1]
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
SPEECH = REPO.parent / "shared" / "data" / "speech" / "makeittalk_M6_04_16k.wav"
SAMPLES = REPO / "a2k_toolkit" / "samples"


def interleaved_times(fns: list, repeat: int) -> tuple[list[list[float]], list]:
    """Each of ``fns`` once as a warm-up, then ``repeat`` rounds of each in turn: their times and last outputs."""
    outs = [fn() for fn in fns]
    times = [[] for _ in fns]
    for _ in range(repeat):
        for k, fn in enumerate(fns):
            t0 = time.perf_counter()
            outs[k] = fn()
            times[k].append(time.perf_counter() - t0)
    return times, outs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--checkpoint", default=None, help="checkpoint, run or ensemble directory (default: shipped)")
    args = ap.parse_args(argv)

    import torch

    from a2k_onnx import export_onnx, plugin
    from a2k_toolkit.catalog import Catalog
    from a2k_toolkit.keypoints import face_width
    from a2k_toolkit.pipeline import Pipeline
    from a2k_toolkit.plugins import make_plugin_manager

    torch.set_num_threads(args.threads)
    catalog = Catalog(make_plugin_manager(entry_points=False, plugins=[plugin]))
    torch_cfg = {"generator": {"name": "audio2keypoint", "params": {"checkpoint": args.checkpoint}}, "device": "cpu"}
    pipe = Pipeline.from_config(torch_cfg, plugins=catalog)
    src = SPEECH if SPEECH.is_file() else SAMPLES / "speech.wav"
    speech = pipe.load_audio(str(src))
    n = int(args.seconds * pipe.audio.sample_rate)
    features = pipe.features(np.tile(speech, int(np.ceil(n / len(speech))))[:n])
    reference = pipe.detect(str(SAMPLES / "astronaut.jpg"))
    size = float(face_width(reference.points[0]))

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, per_member in (("one graph", False), ("per member", True)):
            t0 = time.perf_counter()
            export_onnx(
                Path(tmp) / label.replace(" ", "-"),
                args.checkpoint,
                exporter="torchscript",
                per_member=per_member,
                plugins=catalog,
                log=lambda _line: None,
            )
            print(f"exported ({label}) in {time.perf_counter() - t0:.1f} s")
        labels = ["torch (audio2keypoint, fast path)", "onnxruntime (one graph)", "onnxruntime (per member)"]
        gens = [pipe.generator] + [
            catalog.build(
                "generator",
                "audio2keypoint-onnx",
                {"model": str(Path(tmp) / name), "threads": args.threads},
            )
            for name in ("one-graph", "per-member")
        ]
        fns = [lambda gen=gen: gen.generate(features, reference, seed=0) for gen in gens]
        times, outs = interleaved_times(fns, args.repeat)
        for label, t, out in zip(labels, times, outs):
            diff = float(np.abs(outs[0].points.astype(np.float64) - out.points).max()) / size
            rows.append((label, min(t), float(np.median(t)), diff))

    import onnxruntime

    print(
        f"{args.seconds:g} s of {src.name} ({len(features)} frames), {args.threads} thread(s), {args.repeat} "
        f"interleaved rounds; torch {torch.__version__}, onnxruntime {onnxruntime.__version__}"
    )
    print(f"{'runtime':<36}{'best s':>8}{'median s':>10}{'x real time':>13}{'max diff / face':>17}")
    for label, best, median, diff in rows:
        print(f"{label:<36}{best:>8.3f}{median:>10.3f}{args.seconds / best:>13.0f}{diff:>17.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
