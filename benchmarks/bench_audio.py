"""Real-time factor of each audio front-end (and of audio decoding) on this machine; prints a table.

    python benchmarks/bench_audio.py                        # 60 s of real speech, CPU
    python benchmarks/bench_audio.py --seconds 600 --device cuda
    python benchmarks/bench_audio.py --wav2vec-model facebook/hubert-base-ls960   # a real model, if cached/local

RTF = compute time / audio duration (below 1 is faster than real time). The audio is real speech (the shared MP3,
tiled to the requested length). Without ``--wav2vec-model``, the wav2vec rows use randomly initialised models with
the architecture of wav2vec2-base and of a 3-block tiny test model: the hub is not reachable everywhere, and the
compute cost does not depend on the weights' values. Each row is the best of ``--repeat`` runs after one warm-up.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "plugins" / "a2k-wav2vec"))

from a2k_toolkit.audio import load_audio, write_wav  # noqa: E402
from a2k_toolkit.builtin.librosa_mel import LibrosaMel  # noqa: E402
from a2k_toolkit.builtin.logmel import LogMel  # noqa: E402

SPEECH = REPO.parent / "shared" / "data" / "speech" / "vexpress_intro_tts.mp3"
FALLBACK = REPO / "a2k_toolkit" / "samples" / "speech.wav"


def best_time(fn, repeat: int) -> float:
    fn()  # warm-up: imports, FFT plans, allocator
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def random_wav2vec(size: str, device: str):
    """A wav2vec front-end holding a random model of the given size (no download, no 380 MB save)."""
    import torch
    import transformers

    from a2k_wav2vec import Wav2VecFrontend

    if size == "base":
        cfg = transformers.Wav2Vec2Config()  # the wav2vec2-base architecture: 12 blocks, 768 wide, 95 M parameters
    else:
        cfg = transformers.Wav2Vec2Config(
            hidden_size=32,
            num_hidden_layers=3,
            num_attention_heads=2,
            intermediate_size=37,
            conv_dim=(16,) * 7,
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=2,
        )
    torch.manual_seed(0)
    tmp = Path(tempfile.mkdtemp(prefix="a2k-bench-"))
    cfg.save_pretrained(tmp)  # config only: the front-end reads geometry from it
    fe = Wav2VecFrontend(model=str(tmp)).to(device)
    fe._model = transformers.Wav2Vec2Model(cfg).eval().to(device)  # stands in for loaded weights
    fe._normalize = True
    return fe


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="audio length per run")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--wav2vec-model", default=None, help="local dir or cached hub id of a real model to time too")
    ap.add_argument("--skip-wav2vec-base", action="store_true", help="skip the (slow on CPU) base-size model")
    args = ap.parse_args(argv)

    import torch

    src = SPEECH if SPEECH.is_file() else FALLBACK
    speech = load_audio(src, 16000)
    n = int(args.seconds * 16000)
    wav = np.resize(speech, n).astype(np.float32)
    rows = []

    def add(name, device, seconds, fn, note=""):
        t = best_time(fn, args.repeat)
        rows.append((name, device, seconds, t, t / seconds, note))
        print(f"  {name}: {t:.3f} s", file=sys.stderr)

    # decoding: the same audio as MP3 through ffmpeg, and as WAV through soundfile
    with tempfile.TemporaryDirectory() as d:
        wav_path = Path(d) / "a.wav"
        write_wav(wav_path, wav, 16000)
        mp3_path = Path(d) / "a.mp3"
        from a2k_toolkit.io import run_ffmpeg

        run_ffmpeg(["-y", "-i", str(wav_path), "-ar", "44100", "-ac", "2", "-b:a", "128k", str(mp3_path)])
        add("load_audio wav 16k", "cpu", args.seconds, lambda: load_audio(wav_path, 16000))
        add("load_audio mp3 44.1k stereo", "cpu", args.seconds, lambda: load_audio(mp3_path, 16000), "decode+resample")

    add("logmel", args.device, args.seconds, lambda: LogMel().to(args.device)(wav, 16000))
    batch = np.stack([wav] * 8)
    add("logmel batch of 8", args.device, args.seconds * 8, lambda: LogMel().to(args.device)(batch, 16000))
    add("librosa-mel", "cpu", args.seconds, lambda: LibrosaMel()(wav, 16000), "reference")
    try:
        import transformers  # noqa: F401
    except ImportError:
        print("transformers not installed: skipping wav2vec rows", file=sys.stderr)
    else:
        fe = random_wav2vec("tiny", args.device)
        add("wav2vec tiny (3x32, test model)", args.device, args.seconds, lambda: fe(wav, 16000), "random weights")
        if not args.skip_wav2vec_base:
            fe = random_wav2vec("base", args.device)
            add("wav2vec2-base architecture", args.device, args.seconds, lambda: fe(wav, 16000), "random weights")
        if args.wav2vec_model:
            from a2k_wav2vec import Wav2VecFrontend

            fe = Wav2VecFrontend(model=args.wav2vec_model).to(args.device).load()
            add(f"wav2vec {args.wav2vec_model}", args.device, args.seconds, lambda: fe(wav, 16000))

    threads = torch.get_num_threads()
    print(
        f"\naudio front-ends, {args.seconds:g} s of speech, best of {args.repeat}; torch {torch.__version__}, "
        f"{threads} threads, {os.cpu_count()} CPUs"
    )
    print(f"{'stage':34s} {'device':6s} {'audio s':>8s} {'time s':>8s} {'RTF':>9s} {'x realtime':>11s}  note")
    for name, dev, secs, t, rtf, note in rows:
        print(f"{name:34s} {dev:6s} {secs:8.1f} {t:8.3f} {rtf:9.5f} {1 / rtf:11.0f}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
