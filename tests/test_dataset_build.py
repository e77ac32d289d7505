"""The Vox-KP builder end to end on real clips and real bad inputs: keypoints against the frames, rejection
reasons, identity-disjoint splits, statistics, reader, a training step, QA report, SIGKILL + resume, merge."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from a2k_toolkit.builtin.dlib_detector import DlibDetector
from a2k_toolkit.data.builder import build, load_build_config
from a2k_toolkit.data.dataset import merge, verify
from a2k_toolkit.data.layout import Layout, StatusLog
from a2k_toolkit.data.reader import VoxKPReader, load_split, load_statistics
from a2k_toolkit.errors import ConfigError, InputError
from a2k_toolkit.io import read_video_frames
from a2k_toolkit.keypoints import Normalizer, interocular, mouth_opening, reference_iod

sys.path.insert(0, str(Path(__file__).parent))
from dataset_inputs import REAL, make_inputs, write_manifest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIG = {"detect_every": 4, "min_frames": 16, "shard_size": 2}
EXPECTED_FAILURES = {
    "notes": "not_a_video",
    "zero": "zero_length",
    "empty": "empty_file",
    "mute": "no_audio",
    "flat": "no_face",
    "gone": "missing",
}


@pytest.fixture(scope="session")
def inputs(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    videos = make_inputs(shared_data, root)
    videos["gone"] = (root / "gone.mp4", "gone")  # listed in the manifest, not on disk
    cfg = root / "build.yaml"
    cfg.write_text("".join(f"{k}: {v}\n" for k, v in CONFIG.items()))
    return {"videos": videos, "manifest": write_manifest(root / "manifest.csv", videos), "config": cfg, "root": root}


@pytest.fixture(scope="session")
def built(inputs, tmp_path_factory):
    """One uninterrupted build of every input (real clips and bad inputs)."""
    out = tmp_path_factory.mktemp("ds") / "vox"
    summary = build(str(inputs["manifest"]), out, load_build_config(inputs["config"]), log=lambda m: None)
    return out, summary


def _index(out: Path) -> list[dict]:
    return json.loads((out / "index.json").read_text())["clips"]


def test_every_video_is_accounted_for(built, inputs):
    out, summary = built
    status = StatusLog(Layout(out).status).read()
    assert set(status) == set(inputs["videos"])
    for name, reason in EXPECTED_FAILURES.items():
        assert status[name]["status"] == "failed" and status[name]["reason"] == reason, status[name]
        assert status[name]["message"]
    done = {k for k, r in status.items() if r["status"] == "done"}
    assert done == set(REAL) | {"two_faces", "vfr"}
    assert summary["done"] == len(done) and summary["failed"] == len(EXPECTED_FAILURES)
    assert "variable frame rate" in " ".join(status["vfr"]["notes"])
    assert "2 faces" in " ".join(status["two_faces"]["notes"])


def test_keypoints_land_on_the_face_in_the_frames(built, inputs):
    """Stored keypoints against a fresh dlib detection on the same 25 fps frames: inside the face box and close to
    the re-detected landmarks (key frames and tracked frames alike)."""
    out, _ = built
    det = DlibDetector()
    clips = {c.clip_id: c for s in ("train", "val", "test") for c in load_split(out, s)}
    for name in REAL:
        clip = clips[f"{name}@0"]
        frames = list(read_video_frames(inputs["videos"][name][0], fps=25))
        assert clip.num_frames == int(np.ceil(round(len(clip.audio) / 16000 * 25, 6)))
        assert abs(len(frames) - clip.num_frames) <= 2
        assert clip.frame_size == frames[0].shape[:2]
        for t in sorted({0, 1, 2, clip.num_frames // 2, min(len(frames), clip.num_frames) - 1}):
            boxes = det.face_boxes(frames[t])
            assert boxes, (name, t)
            left, tp, r, b = boxes[0]
            pad = 0.25 * (r - left)
            pts = clip.keypoints[t]
            assert (pts[:, 0] > left - pad).all() and (pts[:, 0] < r + pad).all(), (name, t)
            assert (pts[:, 1] > tp - pad).all() and (pts[:, 1] < b + pad).all(), (name, t)
            fresh = det.landmarks(frames[t], boxes[0])
            err = np.linalg.norm(pts - fresh, axis=-1).mean() / interocular(fresh)
            assert err < 0.06, (name, t, err)


def test_two_faces_keeps_the_speakers_track_and_vfr_is_resampled_by_time(built):
    out, _ = built
    clips = {c.clip_id: c for s in ("train", "val", "test") for c in load_split(out, s)}
    two = clips["two_faces@0"]
    assert two.frame_size == (160, 320)
    assert (two.keypoints[..., 0] < 160).all()  # the talking face on the left, not the still portrait
    orig, vfr = clips["avsr_00002@0"], clips["vfr@0"]
    assert vfr.num_frames == orig.num_frames
    # frames whose timestamps survived line up with the original's: the mouth opening agrees best at lag 0
    mo, mv = (mouth_opening(c.keypoints, reference_iod(c.keypoints)) for c in (orig, vfr))
    n = orig.num_frames - 2  # the VFR file lost its last two frames (held from the last one)
    kept = np.array([t for t in range(n) if t % 10 not in (3, 4, 5)])
    corr = {}
    for lag in range(-2, 3):
        k = kept[(kept + lag >= 0) & (kept + lag < n)]
        corr[lag] = np.corrcoef(mv[k], mo[k + lag])[0, 1]
    assert max(corr, key=corr.get) == 0 and corr[0] > 0.9, corr
    # a dropped frame holds the one before it
    for t in (3, 4, 5, 13, 14, 15, 23, 24, 25):
        ref = vfr.keypoints[t - t % 10 + 2]
        assert np.linalg.norm(vfr.keypoints[t] - ref, axis=-1).mean() / interocular(ref) < 0.08


def test_splits_are_identity_disjoint_and_statistics_come_from_train(built):
    out, _ = built
    index = _index(out)
    assert len({c["key"] for c in index}) == len(index)
    split_of: dict[str, set] = {}
    for c in index:
        split_of.setdefault(c["identity"], set()).add(c["split"])
    assert all(len(s) == 1 for s in split_of.values()), split_of
    assert {"two_faces@0", "vfr@0", "avsr_00002@0"} <= {c["key"] for c in index if c["identity"] == "avsr02"}
    assert {c["split"] for c in index} == {"train", "val", "test"}
    splits = json.loads((out / "splits.json").read_text())
    assert all(splits["identities"][i] == next(iter(s)) for i, s in split_of.items())
    train = load_split(out, "train")
    windows = [c.keypoints[s : s + 64] for c in train for s in range(0, max(1, len(c.keypoints) - 63), 64)]
    expected = Normalizer.fit(windows)
    got = load_statistics(out)
    np.testing.assert_allclose(got.mean, expected.mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.std, expected.std, rtol=1e-5, atol=1e-6)


def test_manifest_checksums_catch_a_changed_shard(built, tmp_path):
    out, _ = built
    manifest = verify(out)
    assert all(len(f["sha256"]) == 64 for f in manifest["files"].values())
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    shard = next((copy / "shards").glob("*.npz"))
    data = bytearray(shard.read_bytes())
    data[-100] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(InputError, match="does not match the manifest"):
        verify(copy)


def test_reader_splits_work_between_ranks(built):
    out, _ = built
    for split in ("train", "val", "test"):
        everything = [c.clip_id for c in VoxKPReader(out, split, rank=0, world_size=1)]
        parts = [[c.clip_id for c in VoxKPReader(out, split, rank=r, world_size=2)] for r in range(2)]
        assert sorted(parts[0] + parts[1]) == sorted(everything)
        assert not set(parts[0]) & set(parts[1])
        assert [len(VoxKPReader(out, split, rank=r, world_size=2)) for r in range(2)] == [len(p) for p in parts]
    test_shards = json.loads((out / "manifest.json").read_text())["splits"]["test"]["shards"]
    assert len(test_shards) == 2  # three avsr02 clips, two per shard: shard-level assignment for 2 ranks
    assert not VoxKPReader(out, "test", rank=0, world_size=2).per_clip
    strong = [c.clip_id for c in VoxKPReader(out, "test", min_coupling=0.2)]
    weak = [c for c in _index(out) if c["split"] == "test" and (c["coupling"] or -1) < 0.2]
    assert len(strong) == sum(1 for c in _index(out) if c["split"] == "test") - len(weak)
    with pytest.raises(InputError, match="no manifest.json"):
        VoxKPReader(out.parent / "nothing", "train")


def test_clips_feed_a_training_step(built, catalog):
    """Clip objects -> log-mel features aligned with keypoints -> §4.5 normalisation -> an optimiser step."""
    import torch

    out, _ = built
    frontend = catalog.get("audio", "logmel")()
    norm = load_statistics(out)
    xs, ys = [], []
    for clip in load_split(out, "train"):
        feats = frontend(clip.audio, clip.sample_rate)
        assert feats.shape[0] == clip.num_frames  # features and keypoints align frame by frame
        xs.append(torch.from_numpy(feats))
        ys.append(torch.from_numpy(norm.normalize(clip.keypoints, clip.keypoints[0])))
    x, y = torch.cat(xs), torch.cat(ys)
    assert torch.isfinite(y).all() and y.shape[1] == 136
    torch.manual_seed(0)
    model = torch.nn.Linear(x.shape[1], 136)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        loss = torch.nn.functional.l1_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_quality_report(built):
    out, _ = built
    rep = json.loads((out / "qa" / "report.json").read_text())
    assert rep["counts"]["done"] == 6 and rep["counts"]["failed"] == len(EXPECTED_FAILURES)
    assert rep["rejections"] == {r: list(EXPECTED_FAILURES.values()).count(r) for r in set(EXPECTED_FAILURES.values())}
    assert sum(b["count"] for b in rep["histograms"]["duration_s"]) == rep["counts"]["clips"] == 6
    assert sum(b["count"] for b in rep["histograms"]["face_width_px"]) == 6
    per_clip = {p["key"]: p for p in rep["coupling"]["per_clip"]}
    for name in REAL:  # the README's measured range for these clips is about 0.1-0.5
        assert 0.05 < per_clip[f"{name}@0"]["corr"] <= 1.0 and abs(per_clip[f"{name}@0"]["lag_ms"]) <= 120
    import cv2

    sheet = cv2.imread(str(out / "qa" / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[0] >= 160 and sheet.std() > 10
    md = (out / "qa" / "report.md").read_text()
    assert "no_face" in md and "Lip-audio coupling" in md
    # a plain path,identity manifest records no family: one row, `unknown`, and a note saying so
    fam = rep["families"]
    assert fam["recorded"] == {"family": 0, "language": 0}
    assert list(fam["per_family"]) == ["unknown"] == list(fam["per_language"])
    assert fam["per_family"]["unknown"] == fam["all"] and fam["all"]["clips"] == 6
    assert "records no family" in md and "| unknown | 6 |" in md
    before = (out / "manifest.json").read_bytes()
    proc = _cli("dataset", "report", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "6 done" in proc.stdout and "rejected (no_face): 1" in proc.stdout
    verify(out)  # the rewritten report is byte-identical
    assert (out / "manifest.json").read_bytes() == before


def _cli(*args, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "a2k_toolkit.cli", *args], capture_output=True, text=True, env=env, **kwargs
    )


def test_sigkill_midway_then_resume_gives_the_same_dataset(built, inputs, tmp_path):
    out_ref, _ = built
    out = tmp_path / "vox"
    cmd = [
        sys.executable,
        "-m",
        "a2k_toolkit.cli",
        "dataset",
        "build",
        str(inputs["manifest"]),
        str(out),
        "--config",
        str(inputs["config"]),
        "--allow-failures",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    status = out / "work" / "status.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if status.is_file() and status.read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the build finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its ffmpeg children
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "manifest.json").exists()
    killed_at = len(StatusLog(status).read())
    assert 3 <= killed_at < len(inputs["videos"])

    resumed = _cli(*cmd[3:])
    assert resumed.returncode == 0, resumed.stderr
    assert f"{killed_at} already processed" in resumed.stderr
    assert (out / "manifest.json").read_bytes() == (out_ref / "manifest.json").read_bytes()
    verify(out)
    # running it again changes nothing
    again = _cli(*cmd[3:])
    assert again.returncode == 0 and "0 to do" in again.stderr
    assert (out / "manifest.json").read_bytes() == (out_ref / "manifest.json").read_bytes()
    # a resume with other extraction settings is refused, naming the setting
    other = _cli(*cmd[3:], "--detect-every", "1")
    assert other.returncode == 2 and "detect_every" in other.stderr


def test_parts_built_on_two_machines_merge_into_the_single_machine_dataset(inputs, tmp_path):
    names = ["avsr_00006", "avsr_00002", "notes", "flat", "empty"]
    manifest = write_manifest(inputs["root"] / "small.csv", inputs["videos"], names)
    cfg = load_build_config(inputs["config"], split=(0.5, 0.5, 0.0))
    whole = tmp_path / "whole"
    build(str(manifest), whole, cfg, log=lambda m: None)
    parts = [tmp_path / f"part{i}" for i in range(2)]
    s0 = build(str(manifest), parts[0], cfg, shard_index=0, num_shards=2, workers=2, log=lambda m: None)
    s1 = build(str(manifest), parts[1], cfg, shard_index=1, num_shards=2, log=lambda m: None)
    assert s0["videos"] + s1["videos"] == len(names) and s0["videos"] and s1["videos"]
    with pytest.raises(ConfigError, match="work shard"):
        build(str(manifest), parts[0], cfg, shard_index=1, num_shards=2, log=lambda m: None)
    res = merge(parts, tmp_path / "merged")
    assert res["videos_added"] == len(names)
    a = json.loads((whole / "manifest.json").read_text())["files"]
    b = json.loads((tmp_path / "merged" / "manifest.json").read_text())["files"]
    a.pop("config.json")
    b.pop("config.json")
    assert a == b  # shards, index, splits, statistics and report: byte-identical
    again = merge(parts, tmp_path / "merged")  # resumable / idempotent
    assert again["videos_added"] == 0
    assert (
        json.loads((tmp_path / "merged" / "manifest.json").read_text())["files"]["shards/train-00000.npz"]
        == a["shards/train-00000.npz"]
    )


# ------------------------------------------------------------ the built dataset feeds training and evaluation


def test_trainer_reads_a_built_dataset(built, tiny_train_config, catalog, tmp_path):
    """`data.format: voxkp` trains from the train split and validates on DIR@val."""
    from a2k_toolkit.training import Trainer

    out, _ = built
    cfg = tiny_train_config(
        out, tmp_path / "run", max_steps=2, data={"format": "voxkp", "val": [f"{out}@val"], "window": 16, "stride": 16}
    )
    trainer = Trainer(cfg, catalog=catalog)
    n_train = sum(c.num_frames // 16 for c in VoxKPReader(out, "train"))
    assert 0 < len(trainer.train_set) <= n_train + len(VoxKPReader(out, "train"))
    trainer.fit()
    assert (tmp_path / "run" / "latest").is_dir()


def test_eval_reads_a_split_of_a_built_dataset(built, tmp_path):
    out, _ = built
    proc = _cli("eval", "--clips", out, "--split", "test", "--generators", "static", "--out", tmp_path / "rep")
    assert proc.returncode == 0, proc.stderr
    results = json.loads((tmp_path / "rep" / "results.json").read_text())
    assert "static" in json.dumps(results)
    assert (tmp_path / "rep" / "report.md").is_file()


def test_build_exits_1_when_videos_failed_unless_allow_failures(inputs, tmp_path):
    """Some inputs fail by design (EXPECTED_FAILURES): the exit code says so, the count is in the last line."""
    base = ["dataset", "build", str(inputs["manifest"]), str(tmp_path / "vox"), "--config", str(inputs["config"])]
    proc = _cli(*base)
    last = proc.stdout.strip().splitlines()[-1]
    assert proc.returncode == 1, proc.stderr
    assert f"{len(EXPECTED_FAILURES)} video(s) failed" in last and "--allow-failures" in last
    again = _cli(*base, "--retry-failed", "--allow-failures")
    assert again.returncode == 0 and f"{len(EXPECTED_FAILURES)} failed in this run" in again.stdout.splitlines()[-1]
