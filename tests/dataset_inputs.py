"""Bad and awkward input videos for the dataset builder tests, made with the real ffmpeg from real clips/faces."""

from __future__ import annotations

from pathlib import Path

from a2k_toolkit.io import run_ffmpeg

# real short clips (see ../shared/data/README.md) and their identities
REAL = {"avsr_00006": "avsr06", "avsr_00002": "avsr02", "pcavs_aldridge": "aldridge", "vexp_radio10": "radio10"}


def make_inputs(shared_data: Path, out: Path) -> dict[str, tuple[Path, str]]:
    """name -> (path, identity) of every input video; the bad ones are written to ``out``."""
    clips, faces = shared_data / "clips", shared_data / "faces"
    out.mkdir(parents=True, exist_ok=True)
    videos = {}
    for name, ident in REAL.items():  # linked, so that keys and sources are relative to the manifest
        link = out / f"{name}.mp4"
        if not link.exists():
            link.symlink_to(clips / f"{name}.mp4")
        videos[name] = (link, ident)
    enc = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]

    # not a video: text with a video extension
    (out / "notes.mp4").write_text("these are meeting notes, not a video\n")
    videos["notes"] = (out / "notes.mp4", "notes")
    # zero-length video: a valid MP4 container with nothing in it, and an empty file
    run_ffmpeg(["-y", "-i", str(clips / "avsr_00006.mp4"), "-t", "0", *enc, "-c:a", "aac", str(out / "zero.mp4")])
    videos["zero"] = (out / "zero.mp4", "zero")
    (out / "empty.mp4").write_bytes(b"")
    videos["empty"] = (out / "empty.mp4", "empty")
    # a video without an audio track
    run_ffmpeg(["-y", "-i", str(clips / "avsr_00006.mp4"), "-an", "-c:v", "copy", str(out / "mute.mp4")])
    videos["mute"] = (out / "mute.mp4", "avsr06")
    # no face: a flat colour with a tone
    run_ffmpeg(
        [
            "-y",
            "-f",
            "lavfi",
            "-i",
            "color=c=0x6080a0:s=160x160:d=2:r=25",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=220:duration=2:sample_rate=16000",
            *enc,
            "-c:a",
            "aac",
            "-shortest",
            str(out / "flat.mp4"),
        ]
    )
    videos["flat"] = (out / "flat.mp4", "flat")
    # two faces: the talking avsr_00002 face (left) beside a smaller still portrait (right)
    run_ffmpeg(
        [
            "-y",
            "-i",
            str(clips / "avsr_00002.mp4"),
            "-loop",
            "1",
            "-i",
            str(faces / "obama.jpg"),
            "-filter_complex",
            "[1:v]scale=112:112,pad=160:160:24:24:white[r];[0:v][r]hstack=inputs=2:shortest=1[v]",
            "-map",
            "[v]",
            "-map",
            "0:a",
            *enc,
            "-c:a",
            "aac",
            str(out / "two_faces.mp4"),
        ]
    )
    videos["two_faces"] = (out / "two_faces.mp4", "avsr02")
    # variable frame rate: avsr_00002 with frames 3-5 of every 10 dropped, timestamps kept
    run_ffmpeg(
        [
            "-y",
            "-i",
            str(clips / "avsr_00002.mp4"),
            "-vf",
            "select='not(between(mod(n,10),3,5))'",
            "-fps_mode",
            "vfr",
            *enc,
            "-c:a",
            "copy",
            str(out / "vfr.mp4"),
        ]
    )
    videos["vfr"] = (out / "vfr.mp4", "avsr02")
    return videos


def write_manifest(path: Path, videos: dict[str, tuple[Path, str]], names=None) -> Path:
    rows = [(videos[n][0], videos[n][1]) for n in (names or sorted(videos))]
    lines = ["path,identity"]
    lines += [f"{p.relative_to(path.parent) if p.is_relative_to(path.parent) else p},{i}" for p, i in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def work_or_die(src):
    """Per-video function for the worker-crash test: the video keyed ``crash`` kills its worker process outright
    (as a segfault in native code or the OOM killer would); the others are processed normally."""
    import os

    from a2k_toolkit.data.builder import _work

    if src.key == "crash":
        os._exit(139)
    return _work(src)
