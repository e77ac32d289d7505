"""Pieces of the Vox-KP builder: sources, splits, status log, packs, lip-audio coupling, tracking modes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from a2k_toolkit.data.builder import BuildConfig, Rejected, load_build_config, process_video
from a2k_toolkit.data.clips import Clip
from a2k_toolkit.data.dataset import assign_splits
from a2k_toolkit.data.layout import StatusLog
from a2k_toolkit.data.packs import Pack, PackedClip, write_pack
from a2k_toolkit.data.qa import lip_audio_coupling
from a2k_toolkit.data.sources import VideoSource, discover, work_shard
from a2k_toolkit.errors import ConfigError, InputError

# identities of ../shared/data/clips (README): hdtf_aoc, vr_3 and vexp_aoc are one recording; rdj appears twice
README_IDENTITIES = {
    "pcavs_beckham": "beckham",
    "pcavs_filan": "filan",
    "pcavs_aldridge": "aldridge",
    "pcavs_rdj_a": "rdj",
    "pcavs_ralph": "ralph",
    "pcavs_christie": "christie",
    "pcavs_rdj_b": "rdj",
    "hdtf_radio34": "radio34",
    "hdtf_hill": "hill",
    "hdtf_aoc": "aoc",
    "vr_4": "vr4",
    "vr_5": "vr5",
    "vr_2": "swalwell",
    "vr_3": "aoc",
    "avsr_00016": "avsr16",
    "avsr_00019": "avsr19",
    "avsr_00022": "avsr22",
    "avsr_00006": "avsr06",
    "avsr_00002": "avsr02",
    "avsr_00008": "avsr08",
    "edtalk_lieu": "lieu",
    "edtalk_radio51": "radio51",
    "vexp_aoc": "aoc",
    "vexp_radio10": "radio10",
    "dinet_19": "dinet19",
}


# ------------------------------------------------------------------------------------------------ sources


def test_voxceleb_layout_and_plain_folders(tmp_path, shared_data):
    clip = shared_data / "clips" / "avsr_00006.mp4"
    for rel in (
        "id00017/01dfn2spqyE/00001.mp4",
        "id00017/5MkXgwdrmJw/00002.mp4",
        "id00812/xyz/00001.mp4",
        "loose.mp4",
        "notes.txt",
        ".hidden.mp4",
    ):
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.symlink_to(clip)
    found = {s.key: s for s in discover(tmp_path)}
    assert set(found) == {"id00017/01dfn2spqyE/00001", "id00017/5MkXgwdrmJw/00002", "id00812/xyz/00001", "loose"}
    assert found["id00017/5MkXgwdrmJw/00002"].identity == "id00017"
    assert found["loose"].identity == "loose"
    assert found["id00812/xyz/00001"].source == "id00812/xyz/00001.mp4"


def test_csv_manifest(tmp_path):
    (tmp_path / "m.csv").write_text("path,identity,split\na/x.mp4,aoc,test\nb.mp4,,\n/abs/y.mp4,rdj\n")
    got = {s.key: s for s in discover(tmp_path / "m.csv")}
    assert got["a/x"].identity == "aoc" and got["a/x"].split == "test" and got["a/x"].path == tmp_path / "a/x.mp4"
    assert got["b"].identity == "b" and got["b"].split is None
    assert got["abs/y"].path == Path("/abs/y.mp4")
    (tmp_path / "bad.csv").write_text("a.mp4,x,holdout\n")
    with pytest.raises(InputError, match="line 1.*holdout"):
        discover(tmp_path / "bad.csv")
    (tmp_path / "dup.csv").write_text("a.mp4,x\na.mkv,y\n")
    with pytest.raises(InputError, match="same key 'a'"):
        discover(tmp_path / "dup.csv")
    (tmp_path / "pin.csv").write_text("a.mp4,x,train\nb.mp4,x,test\n")
    with pytest.raises(InputError, match="pinned to both"):
        discover(tmp_path / "pin.csv")
    with pytest.raises(InputError, match="not found"):
        discover(tmp_path / "nowhere")


def test_work_shards_partition_the_videos():
    keys = [f"id{i:05d}/v{i % 7}/{i:05d}" for i in range(500)]
    parts = [[k for k in keys if work_shard(k, 4) == i] for i in range(4)]
    assert sorted(sum(parts, [])) == sorted(keys)
    assert all(90 < len(p) < 160 for p in parts)
    assert [work_shard(k, 4) for k in keys[:20]] == [work_shard(k, 4) for k in keys[:20]]


# ------------------------------------------------------------------------------------------------- splits


def test_splits_keep_each_identity_on_one_side():
    frames = {}
    for ident in README_IDENTITIES.values():
        frames[ident] = frames.get(ident, 0) + 100
    split = assign_splits(frames, (0.8, 0.1, 0.1))
    assert set(split) == set(frames) and set(split.values()) == {"train", "val", "test"}
    clip_split = {c: split[i] for c, i in README_IDENTITIES.items()}
    assert len({clip_split[c] for c in ("hdtf_aoc", "vr_3", "vexp_aoc")}) == 1
    assert clip_split["pcavs_rdj_a"] == clip_split["pcavs_rdj_b"]
    assert split == assign_splits(dict(reversed(list(frames.items()))), (0.8, 0.1, 0.1))  # order-independent
    pinned = assign_splits(frames, (0.8, 0.1, 0.1), {"aoc": "test"})
    assert pinned["aoc"] == "test"


def test_split_fractions_are_met_on_many_identities():
    rng = np.random.default_rng(0)
    frames = {f"id{i:05d}": int(rng.integers(100, 3000)) for i in range(2000)}
    split = assign_splits(frames, (0.8, 0.1, 0.1))
    total = sum(frames.values())
    share = {s: sum(f for i, f in frames.items() if split[i] == s) / total for s in ("train", "val", "test")}
    assert abs(share["train"] - 0.8) < 0.01 and abs(share["val"] - 0.1) < 0.01 and abs(share["test"] - 0.1) < 0.01


def test_build_config_validation(tmp_path):
    assert load_build_config(None, split=(8, 1, 1)).split == pytest.approx((0.8, 0.1, 0.1))
    with pytest.raises(ConfigError, match="detect_every"):
        load_build_config({"detect_every": 0})
    with pytest.raises(ConfigError, match="unknown key|extra"):
        load_build_config({"detect_evry": 2})
    cfg = tmp_path / "b.yaml"
    cfg.write_text("detector: {name: dlib, params: {upsample: 0}}\nmin_frames: 10\n")
    loaded = load_build_config(cfg, min_frames=12)
    assert loaded.detector.params == {"upsample": 0} and loaded.min_frames == 12
    assert "split" not in loaded.extraction() and "detector" in loaded.extraction()


# --------------------------------------------------------------------------------------------- status log


def test_status_log_survives_a_torn_line(tmp_path):
    log = StatusLog(tmp_path / "status.jsonl")
    log.append({"key": "a", "status": "failed", "reason": "x"})
    log.append({"key": "b", "status": "done"})
    with open(log.path, "ab") as f:
        f.write(b'{"key": "c", "status": "do')  # killed mid-write
    assert set(log.read()) == {"a", "b"}
    log.append({"key": "c", "status": "done"})
    log.append({"key": "a", "status": "done"})
    got = log.read()
    assert set(got) == {"a", "b", "c"} and got["a"]["status"] == "done"
    assert all(json.loads(line) for line in log.path.read_bytes().splitlines()[-2:])


# -------------------------------------------------------------------------------------------------- packs


def _clip(key: str, T: int, seed: int) -> Clip:
    rng = np.random.default_rng(seed)
    return Clip(
        keypoints=rng.normal(100, 10, (T, 68, 2)).astype(np.float32),
        audio=rng.uniform(-0.5, 0.5, T * 640).astype(np.float32),
        valid=rng.random(T) > 0.2,
        frame_size=(224, 224),
        clip_id=key,
        identity="x",
        source=f"{key}.mp4",
        meta={"frames": T, "corr": 0.3},
    )


def test_packs_are_byte_identical_and_round_trip(tmp_path):
    items = [PackedClip(_clip("a@0", 30, 0), b"\xff\xd8jpeg"), PackedClip(_clip("b@5", 12, 1), b"")]
    write_pack(tmp_path / "p1.npz", items)
    write_pack(tmp_path / "p2.npz", items)
    assert (tmp_path / "p1.npz").read_bytes() == (tmp_path / "p2.npz").read_bytes()
    pack = Pack(tmp_path / "p1.npz")
    assert len(pack) == 2 and pack.thumb(0) == b"\xff\xd8jpeg" and pack.thumb(1) == b""
    for it, got in zip(items, pack):
        np.testing.assert_array_equal(got.keypoints, it.clip.keypoints)
        np.testing.assert_array_equal(got.valid, it.clip.valid)
        np.testing.assert_allclose(got.audio, it.clip.audio, atol=1 / 32767)
        assert got.clip_id == it.clip.clip_id and got.meta == it.clip.meta and got.frame_size == (224, 224)
    (tmp_path / "bad.npz").write_bytes((tmp_path / "p1.npz").read_bytes()[:500])
    with pytest.raises(InputError, match="cannot read clip pack"):
        Pack(tmp_path / "bad.npz")


# --------------------------------------------------------------------------------------------- coupling


def test_lip_audio_coupling_finds_the_lag():
    rng = np.random.default_rng(0)
    T, lag = 200, 2
    # a speech-like envelope: smoothed noise, one value per frame
    env = np.convolve(rng.random(T + 10), np.ones(4) / 4, mode="same")[: T + lag]
    audio = np.concatenate([rng.normal(0, 1, 640) * e for e in env[:T]]).astype(np.float32) * 0.1
    pts = np.tile(np.asarray(rng.normal(100, 20, (68, 2))), (T, 1, 1))
    pts[:, 62, 1] = 100.0
    pts[:, 66, 1] = 100.0 + 30 * env[lag:]  # the mouth at t opens as the sound will at t + lag: it leads
    got = lip_audio_coupling(pts, audio, 16000, 25.0)
    assert got["lag"] == lag and got["lag_ms"] == 80.0 and got["corr"] > 0.9
    still = np.tile(pts[:1], (T, 1, 1))
    assert lip_audio_coupling(still, audio, 16000, 25.0) == {"corr": None, "lag": None, "lag_ms": None}


# ------------------------------------------------------------------------------------ tracking, per video


@pytest.fixture(scope="module")
def dlib():
    from a2k_toolkit.builtin.dlib_detector import DlibDetector

    return DlibDetector()


def _src(shared_data, name, path=None):
    path = path or shared_data / "clips" / f"{name}.mp4"
    return VideoSource(key=name, path=path, identity=name, source=f"{name}.mp4")


def test_tracking_between_key_frames_agrees_with_detection_on_every_frame(shared_data, dlib):
    from a2k_toolkit.keypoints import interocular

    every, facts_every = process_video(_src(shared_data, "avsr_00002"), BuildConfig(min_frames=16), dlib)
    tracked, facts_tracked = process_video(
        _src(shared_data, "avsr_00002"), BuildConfig(min_frames=16, detect_every=8), dlib
    )
    assert facts_every["detections"] == 35 and facts_tracked["detections"] == 5
    a, b = every[0].clip, tracked[0].clip
    assert a.num_frames == b.num_frames == 35
    err = np.linalg.norm(a.keypoints - b.keypoints, axis=-1).mean(-1) / interocular(a.keypoints)
    assert err.mean() < 0.04 and err.max() < 0.15  # a close-up on which dlib's boxes jump from frame to frame
    assert b.meta["detected"] == pytest.approx(5 / 35, abs=1e-3) and b.meta["measured"] == 1.0


def test_detectors_without_boxes_work_on_every_frame(shared_data, dlib):
    from a2k_toolkit.components import KeypointDetector
    from a2k_toolkit.data.tracking import FaceTracker

    class LandmarksOnly(KeypointDetector):  # a third-party detector offering only the base contract
        name = "landmarks-only"

        def detect_all(self, image):
            return dlib.detect_all(image)

    det = LandmarksOnly()
    with pytest.raises(ConfigError, match="cannot track"):
        FaceTracker(det, detect_every=2)
    samples, facts = process_video(_src(shared_data, "avsr_00006"), BuildConfig(min_frames=16), det)
    reference, _ = process_video(_src(shared_data, "avsr_00006"), BuildConfig(min_frames=16), dlib)
    np.testing.assert_allclose(samples[0].clip.keypoints, reference[0].clip.keypoints, atol=1e-4)


def test_policies_reject_with_reasons(shared_data, dlib, tmp_path):
    from a2k_toolkit.io import run_ffmpeg

    two = tmp_path / "two.mp4"
    run_ffmpeg(
        [
            "-y",
            "-i",
            str(shared_data / "clips" / "avsr_00006.mp4"),
            "-i",
            str(shared_data / "clips" / "avsr_00002.mp4"),
            "-filter_complex",
            "[1:v]scale=140:140,pad=160:160:10:10[r];[0:v][r]hstack=inputs=2:shortest=1[v]",
            "-map",
            "[v]",
            "-map",
            "0:a",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
            str(two),
        ]
    )
    with pytest.raises(Rejected) as info:
        process_video(_src(shared_data, "two", two), BuildConfig(min_frames=16, multi_face="reject"), dlib)
    assert info.value.code == "multiple_faces"
    with pytest.raises(Rejected) as info:
        process_video(_src(shared_data, "avsr_00006"), BuildConfig(), dlib)  # 21 frames < min_frames 25
    assert info.value.code == "too_short" and "21 frames" in str(info.value)
    with pytest.raises(Rejected) as info:
        process_video(_src(shared_data, "avsr_00006"), BuildConfig(min_frames=16, min_face=200), dlib)
    assert info.value.code == "face_too_small"


def test_a_worker_dying_fails_only_its_video(tmp_path, shared_data):
    from a2k_toolkit.data.builder import _run_pool
    from a2k_toolkit.data.layout import Layout

    sys.path.insert(0, str(Path(__file__).parent))
    from dataset_inputs import work_or_die

    (tmp_path / "notes.mp4").write_text("not a video")
    (tmp_path / "empty.mp4").write_bytes(b"")
    srcs = [
        VideoSource("notes", tmp_path / "notes.mp4", "a"),
        VideoSource("crash", tmp_path / "notes.mp4", "b"),
        VideoSource("empty", tmp_path / "empty.mp4", "c"),
        _src(shared_data, "avsr_00006"),
    ]
    records = []
    _run_pool(srcs, BuildConfig(min_frames=16), Layout(tmp_path / "out"), 2, records.append, work=work_or_die)
    got = {r["key"]: r for r in records}
    assert sorted(got) == sorted(s.key for s in srcs)  # every video recorded exactly once
    assert len(records) == len(srcs)
    assert got["crash"]["reason"] == "worker_crashed" and "died" in got["crash"]["message"]
    assert got["notes"]["reason"] == "not_a_video" and got["empty"]["reason"] == "empty_file"
    assert got["avsr_00006"]["status"] == "done"


def test_cli_user_errors_are_one_line_with_the_fix(tmp_path, capsys):
    from a2k_toolkit.cli import main

    (tmp_path / "v").mkdir()
    cases = [
        (["--split", "1,2"], "three numbers"),
        (["--detector", "dlb"], "did you mean 'dlib'"),
        (["--detector-param", "upsampl=2"], "detector.params.upsampl: unknown key"),
        (["--shard-index", "2", "--num-shards", "2"], "--shard-index must be in [0, 2)"),
    ]
    for extra, message in cases:
        assert main(["dataset", "build", str(tmp_path / "v"), str(tmp_path / "out"), *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()  # nothing written before the settings are valid
    assert main(["dataset", "report", str(tmp_path / "v")]) == 2
    assert "not a finished Vox-KP dataset" in capsys.readouterr().err
