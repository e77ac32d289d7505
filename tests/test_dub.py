"""Batch dubbing end to end on real inputs (dlib, ffmpeg, espeak-ng): bad rows, resume, SIGKILL midway, CLI."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from a2k_toolkit import Pipeline
from a2k_toolkit.builtin.dlib_detector import DlibDetector
from a2k_toolkit.dubbing import dub_batch
from a2k_toolkit.dubbing.runner import OutputLock
from a2k_toolkit.errors import A2KError
from a2k_toolkit.hashing import sha256_file
from a2k_toolkit.io import load_image, load_keypoints, probe_video, read_video_frames

SMALL = {"renderer": {"name": "sketch", "params": {"size": 64}}}


def write_manifest(path: Path, rows: list[dict]) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(
            f, fieldnames=["id", "image", "video", "frame", "audio", "text", "lang", "output", "keypoints", "config"]
        )
        w.writeheader()
        for r in rows:
            w.writerow({k: (json.dumps(v) if k == "config" else v) for k, v in r.items()})
    return path


def report(out: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, (out / "dub-report.jsonl").read_text().splitlines())}


def temp_files(out: Path) -> list[Path]:
    return [p for p in out.rglob(".*") if p.is_file() and ".a2k-dub" not in p.parts]


def check_done(out: Path, rec: dict, frames: int) -> None:
    kp = load_keypoints(out / rec["keypoints"])
    assert kp.points.shape == (frames, 68, 2) and rec["frames"] == frames
    assert sha256_file(out / rec["keypoints"]) == rec["keypoints_sha256"]
    if rec["output"].endswith(".mp4"):
        info = probe_video(out / rec["output"])
        assert info["frames"] == frames and info["video_codec"] == "h264" and info["audio_codec"] == "aac"
        assert sha256_file(out / rec["output"]) == rec["video_sha256"]


def fifty_rows(m, media, outside: Path) -> tuple[list[dict], dict[str, str]]:
    """40 good rows (image, video, text, keypoint-only) and 10 bad ones, each with a needle its reason must hold."""
    rel = os.path.relpath
    base = m.parent
    rows: list[dict] = []
    for i in range(34):  # one face, one 1 s speech file: the face is detected once per worker at most
        rows.append(
            {
                "id": f"img{i:02d}",
                "image": rel(media.face, base),
                "audio": rel(media.speech1, base),
                "output": f"img/{i:02d}.mp4",
            }
        )
    rows += [
        {
            "id": "face2",
            "image": str(media.face2),
            "audio": str(media.speech1),
            "output": "face2.mp4",
            "keypoints": "kp/face2.json",
        },
        {"id": "vid-auto", "video": str(media.video), "audio": str(media.speech1), "output": "vid/auto.mp4"},
        {
            "id": "vid-frame",
            "video": str(media.video),
            "frame": "5",
            "audio": str(media.speech1),
            "output": "vid/frame5.mp4",
        },
        {"id": "tts", "image": str(media.face), "text": "Hello there.", "lang": "en", "output": "tts.mp4"},
        {
            "id": "kp-only",
            "image": str(media.face),
            "audio": str(media.speech1),
            "output": "kp/only.npz",
            "config": {"renderer": None},
        },
        {
            "id": "big",
            "image": str(media.face),
            "audio": str(media.speech1),
            "output": "big.mp4",
            "config": {"renderer": {"params": {"size": 96}}},
        },
    ]
    bad = {
        "missing-image": ({"image": "nope/face.jpg", "audio": str(media.speech1)}, "image file not found"),
        "missing-audio": ({"image": str(media.face), "audio": "nope.wav"}, "audio file not found"),
        "no-face": ({"image": str(media.blank), "audio": str(media.speech1)}, "no face found"),
        "corrupt-audio": ({"image": str(media.face), "audio": str(media.corrupt)}, "cannot read audio"),
        "traversal": ({"image": str(media.face), "audio": str(media.speech1), "output": "../escaped.mp4"}, "'..'"),
        "absolute": (
            {"image": str(media.face), "audio": str(media.speech1), "output": str(outside / "abs.mp4")},
            "absolute path",
        ),
        "symlink": (
            {"image": str(media.face), "audio": str(media.speech1), "output": "link/x.mp4"},
            "resolves outside --out",
        ),
        "import-path": (
            {"image": str(media.face), "audio": str(media.speech1), "config": {"generator": "os.system"}},
            "unknown generator 'os.system'",
        ),
        "bad-lang": ({"image": str(media.face), "text": "hi", "lang": "xx-nolang"}, "no voice or language"),
        "frame-range": ({"video": str(media.video), "frame": "999", "audio": str(media.speech1)}, "out of range"),
    }
    for rid, (fields, _) in bad.items():
        rows.append({"id": rid, "output": f"bad/{rid}.mp4", **fields})
    assert len(rows) == 50
    return rows, {rid: needle for rid, (_, needle) in bad.items()}


def test_fifty_rows_with_bad_rows_finish_every_good_row_then_resume(tmp_path, dub_media):
    out, outside = tmp_path / "out", tmp_path / "outside"
    outside.mkdir()
    (out).mkdir()
    (out / "link").symlink_to(outside, target_is_directory=True)
    m = tmp_path / "jobs" / "manifest.csv"
    m.parent.mkdir()
    rows, bad = fifty_rows(m, dub_media, outside)
    write_manifest(m, rows)

    t0 = time.time()
    summary = dub_batch(m, out, config=SMALL, workers=2, progress=False)
    first_wall = time.time() - t0
    recs = report(out)
    assert len(recs) == 50 and summary.counts == {"done": 40, "failed": 10}, summary.format()
    for rid, needle in bad.items():
        assert recs[rid]["status"] == "failed" and needle in recs[rid]["reason"], (rid, recs[rid]["reason"])
    frames_tts = recs["tts"]["frames"]
    for rid, rec in recs.items():
        if rid not in bad:
            assert rec["status"] == "done", rec
            check_done(out, rec, frames_tts if rid == "tts" else 25)
            assert set(rec["timings"]) >= {"detect", "speech", "generate", "verify", "total"}
    assert not (out / "kp" / "only.mp4").exists() and recs["kp-only"]["video_sha256"] is None
    assert probe_video(out / "big.mp4")["width"] == 96 and probe_video(out / "img/00.mp4")["width"] == 64
    # nothing escaped --out, nothing half-written
    assert not (tmp_path / "escaped.mp4").exists() and not list(outside.iterdir())
    assert temp_files(out) == []
    # real detection: frame 0 is dlib's keypoints on the face (image rows) / on the chosen frame (video rows)
    kp = load_keypoints(out / "img/00.npz").points
    np.testing.assert_allclose(kp[0], DlibDetector().detect(load_image(dub_media.face)).points[0], atol=1e-3)
    frame5 = next(f for i, f in enumerate(read_video_frames(dub_media.video)) if i == 5)
    np.testing.assert_allclose(
        load_keypoints(out / "vid/frame5.npz").points[0], DlibDetector().detect(frame5).points[0], atol=1e-3
    )
    assert recs["vid-frame"]["reference_frame"] == 5 and recs["vid-auto"]["reference_frame"] == 0
    # identical rows give identical keypoints; the face cache was used
    assert recs["img00"]["keypoints_sha256"] == recs["img33"]["keypoints_sha256"]
    assert sum(r.get("face_cache") == "hit" for r in recs.values()) >= 30
    assert len(list((out / ".a2k-dub" / "faces").glob("*.npz"))) >= 5
    # CSV report and summary
    with open(out / "dub-report.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 50 and {r["status"] for r in table} == {"done", "failed"}
    saved = json.loads((out / "dub-summary.json").read_text())
    assert saved["done"] == 40 and saved["failed"] == 10 and len(saved["failed_rows"]) == 10

    # rerun: every finished row is skipped (checksums verified), nothing rewritten, failures carried over
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.mp4")}
    t0 = time.time()
    again = dub_batch(m, out, config=SMALL, workers=2, progress=False)
    assert again.counts == {"skipped": 40, "failed": 10} and time.time() - t0 < first_wall
    assert mtimes == {p: p.stat().st_mtime_ns for p in out.rglob("*.mp4")}
    assert all(r.get("carried_over") for r in again.failed if r["id"] in ("no-face", "corrupt-audio"))

    # damaged or missing outputs are redone; only those
    (out / "img/03.mp4").write_bytes((out / "img/03.mp4").read_bytes()[:500])
    (out / "img/04.npz").unlink()
    third = dub_batch(m, out, config=SMALL, workers=0, progress=False)
    assert third.counts == {"done": 2, "skipped": 38, "failed": 10}
    recs = report(out)
    assert recs["img03"]["status"] == recs["img04"]["status"] == "done"
    check_done(out, recs["img03"], 25)
    check_done(out, recs["img04"], 25)

    # --retry-failed runs the earlier failures again; a fixed input (content changed) is retried anyway
    (tmp_path / "fixed.wav").write_bytes(dub_media.speech1.read_bytes())
    rows = [dict(r, audio=str(tmp_path / "fixed.wav")) if r["id"] == "corrupt-audio" else r for r in rows]
    write_manifest(m, rows)
    fourth = dub_batch(m, out, config=SMALL, workers=0, retry_failed=True, progress=False)
    recs = report(out)
    assert recs["corrupt-audio"]["status"] == "done" and recs["no-face"]["attempt"] == 2
    assert not recs["no-face"].get("carried_over") and fourth.counts["failed"] == 9


def a2k(*args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "a2k_toolkit.cli", *map(str, args)], capture_output=True, text=True, **kw
    )


def group_pids(pgid: int) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                pids.append(int(d.name))
    return pids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and process groups")
def test_worker_crash_then_sigkill_midway_then_rerun_completes(tmp_path, dub_media):
    out = tmp_path / "out"
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"renderer": {"name": "sketch", "params": {"size": 96}}}))
    rows = [
        {
            "id": f"j{i:02d}",
            "image": str(dub_media.face if i % 2 else dub_media.face2),
            "audio": str(dub_media.speech2),
            "output": f"v/{i:02d}.mp4",
        }
        for i in range(12)
    ]
    m = write_manifest(tmp_path / "m.jsonl", rows)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "a2k_toolkit.cli",
            "dub",
            str(m),
            "--out",
            str(out),
            "--workers",
            "1",
            "--config",
            str(cfg),
            "--no-progress",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    journal = out / ".a2k-dub" / "journal.jsonl"

    def wait_journal(condition, timeout=180):
        deadline = time.time() + timeout
        while time.time() < deadline and proc.poll() is None:
            lines = journal.read_text().splitlines() if journal.is_file() else []
            recs = [json.loads(x) for x in lines if x.endswith("}")]
            if condition(recs):
                return recs
            time.sleep(0.02)
        raise AssertionError(f"journal condition not reached (rc={proc.poll()}): {proc.stderr.read().decode()[-2000:]}")

    try:
        # a worker process dies mid-batch (as in a native crash): its job is retried in a fresh pool
        first = wait_journal(lambda recs: len(recs) >= 1)
        os.kill(first[0]["worker"], signal.SIGKILL)
        wait_journal(lambda recs: any(r["attempt"] == 2 and r["status"] == "done" for r in recs))
        # then the whole run is killed
        assert proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        # the workers die with the parent (no orphan keeps writing outputs)
        deadline = time.time() + 15
        while group_pids(proc.pid) and time.time() < deadline:
            time.sleep(0.1)
        assert group_pids(proc.pid) == []
    finally:
        for pid in group_pids(proc.pid):  # only processes this test started
            os.kill(pid, signal.SIGKILL)
    recorded = len(journal.read_text().splitlines())
    assert 2 <= recorded < 12
    for mp4 in out.rglob("*.mp4"):  # whatever exists is complete: outputs are renamed into place when finished
        if not mp4.name.startswith("."):
            assert probe_video(mp4)["frames"] == 50

    proc2 = a2k("dub", m, "--out", out, "--workers", "0", "--config", cfg, "--no-progress")
    assert proc2.returncode == 0, proc2.stderr
    assert "12 rows:" in proc2.stdout and "0 failed" in proc2.stdout
    recs = report(out)
    assert {r["status"] for r in recs.values()} <= {"done", "skipped"}
    assert sum(r["status"] == "skipped" for r in recs.values()) >= recorded
    for rec in recs.values():
        check_done(out, rec, 50)
    assert temp_files(out) == []  # the killed run's temporary files were cleaned up


def test_pipeline_dub_batch_in_process_with_per_row_config(tmp_path, dub_media):
    pipe = Pipeline.from_config({"renderer": {"name": "sketch", "params": {"size": 64}}, "device": "cpu"})
    rows = [
        {"id": "a", "video": str(dub_media.video), "audio": str(dub_media.speech1), "output": "a.mp4"},
        {
            "id": "b",
            "image": str(dub_media.face),
            "audio": str(dub_media.speech1),
            "output": "b.mp4",
            "config": {"generator": "static", "renderer": {"params": {"background": "white"}}},
        },
    ]
    m = write_manifest(tmp_path / "m.jsonl", rows)
    summary = dub_batch(m, tmp_path / "out", pipeline=pipe, workers=0, progress=False)
    assert summary.ok and summary.workers == 0
    kp_b = load_keypoints(tmp_path / "out" / "b.npz").points
    assert np.ptp(kp_b, axis=0).max() == 0  # the static generator: every frame is the reference
    first = next(read_video_frames(tmp_path / "out" / "b.mp4"))
    assert first.mean() > 200  # white background from the row's override
    assert pipe.renderer.params.background == "black"  # the live pipeline is untouched


def test_the_mp4_gets_the_rows_own_audio_and_device_passes_through(tmp_path, dub_media, monkeypatch):
    """A row's audio file is muxed as it is, encoded once to AAC (as Result.save does), not the 16 kHz mono waveform
    the generator read; speech from text gets its waveform. ``device`` reaches the workers without the base config
    being dumped and loaded again."""
    import soundfile as sf

    from a2k_toolkit import config as config_module
    from a2k_toolkit.audio import probe_audio, resample
    from a2k_toolkit.dubbing import runner

    wav, sr = sf.read(str(dub_media.speech1), dtype="float32")
    sf.write(str(tmp_path / "stereo-44k.wav"), np.stack([resample(wav, sr, 44100)] * 2, axis=1) * 0.5, 44100)
    rows = [
        {"id": "file", "image": str(dub_media.face), "audio": str(tmp_path / "stereo-44k.wav"), "output": "file.mp4"},
        {"id": "text", "image": str(dub_media.face), "text": "Hello there.", "output": "text.mp4"},
    ]
    m = write_manifest(tmp_path / "m.jsonl", rows)
    loaded = []
    real_load = runner.load_config

    def spying_load(source=None):
        loaded.append(source)
        return real_load(source)

    monkeypatch.setattr(runner, "load_config", spying_load)
    config = config_module.load_config({**SMALL, "generator": "static"})
    summary = dub_batch(m, tmp_path / "out", config=config, workers=0, progress=False, device="cpu")
    assert summary.ok, summary.records
    # the device override: the validated slots as they are, not a dump of them
    assert loaded[-1]["device"] == "cpu" and loaded[-1]["generator"] is config.generator
    muxed = probe_audio(tmp_path / "out" / "file.mp4")
    assert (muxed.codec, muxed.sample_rate, muxed.layout) == ("aac", 44100, "stereo")  # not a 16 kHz mono copy
    spoken = probe_audio(tmp_path / "out" / "text.mp4")
    assert (spoken.codec, spoken.sample_rate) == ("aac", 16000)
    for rec in report(tmp_path / "out").values():
        check_done(tmp_path / "out", rec, rec["frames"])
    again = dub_batch(m, tmp_path / "out", config=config, workers=0, progress=False, device="cpu")
    assert again.counts == {"skipped": 2}  # same fingerprints: the device is part of the rows' config as before
    # encoding is deterministic (docs/dubbing.md): with the static generator's exact keypoints, the same bytes
    dub_batch(m, tmp_path / "out2", config=config, workers=0, progress=False, device="cpu")
    first, second = report(tmp_path / "out"), report(tmp_path / "out2")
    assert all(first[k]["video_sha256"] == second[k]["video_sha256"] for k in ("file", "text"))


def test_cli_errors_and_lock(tmp_path, dub_media):
    bad = a2k("dub", tmp_path / "missing.csv", "--out", tmp_path / "out")
    assert bad.returncode == 2 and bad.stderr.startswith("error: manifest not found") and "Traceback" not in bad.stderr
    m = write_manifest(
        tmp_path / "m.csv",
        [
            {"id": "a", "image": str(dub_media.face), "audio": str(dub_media.speech1), "output": "a.mp4"},
            {"id": "a", "image": str(dub_media.face), "audio": str(dub_media.speech1), "output": "b.mp4"},
        ],
    )
    dup = a2k("dub", m, "--out", tmp_path / "out")
    assert dup.returncode == 2 and "duplicate ids or outputs" in dup.stderr and "lines 2 and 3" in dup.stderr
    (tmp_path / "file").write_text("x")
    assert "not a folder" in a2k("dub", m, "--out", tmp_path / "file").stderr
    state = tmp_path / "locked" / ".a2k-dub"
    state.mkdir(parents=True)
    with OutputLock(state), pytest.raises(A2KError, match="another `a2k dub` run is writing"):
        dub_batch(m, tmp_path / "locked", workers=0, progress=False)


def test_report_csv_neutralises_formula_cells(tmp_path):
    """CSV injection (OWASP): an id or reason a spreadsheet would run as a formula is written with a leading quote."""
    from a2k_toolkit.dubbing.reports import csv_cell

    ids = ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", "plain"]  # ids are stripped: tab/CR cannot lead
    rows = [{"id": rid, "image": "nope.jpg", "audio": "nope.wav", "output": f"o{i}.mp4"} for i, rid in enumerate(ids)]
    m = write_manifest(tmp_path / "m.csv", rows)
    summary = dub_batch(m, tmp_path / "out", config=SMALL, workers=0, progress=False)
    assert summary.counts == {"failed": len(ids)}
    with open(tmp_path / "out" / "dub-report.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["id"] for r in table] == ["'" + rid for rid in ids[:-1]] + ["plain"]
    assert all(not r[k].startswith(("=", "+", "-", "@", "\t", "\r")) for r in table for k in r if r[k])
    assert set(report(tmp_path / "out")) == set(ids)  # the JSON report keeps the ids as they are
    assert [csv_cell(v) for v in ("\tx", "\rx", -1.5, 3, None, "a=b")] == ["'\tx", "'\rx", -1.5, 3, None, "a=b"]


def test_unwritable_out_folder_is_refused_before_any_work(tmp_path):
    m = write_manifest(tmp_path / "m.csv", [{"id": "a", "image": "nope.jpg", "audio": "nope.wav", "output": "a.mp4"}])
    for out in ("/proc/dubbed", "/sys/dubbed"):
        proc = a2k("dub", m, "--out", out, "--workers", "0")
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "does not accept new files" in proc.stderr
