"""Speed of the speech-units front-ends (and of ``logmel`` and a ``stack`` of all three, for scale); prints a table.

    python plugins/a2k-speech-units/benchmarks/bench_speech_units.py               # 60 s of real speech
    python plugins/a2k-speech-units/benchmarks/bench_speech_units.py --seconds 600 --repeat 1

The audio is real speech (the shared recording beside the repository, else the bundled sample), tiled to the length
asked for. Each row is the best of ``--repeat`` runs after one warm-up (model loading is not timed; it is printed
separately). RTF = compute time / audio duration; "x real time" is its inverse.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[1]
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
SPEECH = REPO.parent / "shared" / "data" / "speech" / "makeittalk_M6_04_16k.wav"
FALLBACK = REPO / "a2k_toolkit" / "samples" / "speech.wav"


def best_time(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args(argv)

    from a2k_speech_units import plugin
    from a2k_toolkit.audio import load_audio
    from a2k_toolkit.catalog import Catalog
    from a2k_toolkit.plugins import make_plugin_manager

    src = SPEECH if SPEECH.is_file() else FALLBACK
    speech = load_audio(src, 16000)
    wav = np.tile(speech, int(np.ceil(args.seconds * 16000 / len(speech))))[: int(args.seconds * 16000)]
    catalog = Catalog(make_plugin_manager(entry_points=False, plugins=[plugin]))
    rows = [
        ("logmel", "logmel", {}),
        ("vad", "vad", {}),
        ("vad, 8 s segments", "vad", {"segment_seconds": 8}),
        ("phonetic", "phonetic", {}),
        ("stack logmel+vad+phonetic", "stack", {"members": ["logmel", "vad", "phonetic"]}),
    ]
    print(f"{args.seconds:g} s of {src.name}, best of {args.repeat}")
    print(f"{'front-end':<28}{'load s':>8}{'compute s':>11}{'x real time':>13}{'D':>6}")
    for label, name, params in rows:
        t0 = time.perf_counter()
        fe = catalog.build("audio", name, params)
        fe(wav[:16000], 16000)  # loads the model
        load = time.perf_counter() - t0
        secs = best_time(lambda fe=fe: fe(wav, 16000), args.repeat)
        print(f"{label:<28}{load:>8.2f}{secs:>11.2f}{args.seconds / secs:>13.0f}{fe.feature_dim:>6}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
