"""``a2k eval`` end to end on real clips: saved clips and a real video, report files, config entries, errors."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from a2k_toolkit.cli import main
from a2k_toolkit.data.clips import save_clip


@pytest.fixture(scope="module")
def clip_dir(real_clips, tmp_path_factory):
    """Two real clips saved as .npz files, the way a user passes a directory of clips."""
    d = tmp_path_factory.mktemp("clips")
    for clip in real_clips[:2]:
        save_clip(d / f"{clip.clip_id}.npz", clip)
    return d


@pytest.fixture(scope="module")
def report(clip_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "report"
    rc = main(["eval", "--clips", str(clip_dir), "--generators", "static,procedural", "--out", str(out), "--quiet"])
    assert rc == 0
    return out


def test_report_files_are_written(report, real_clips):
    import cv2

    names = sorted(p.relative_to(report).as_posix() for p in report.rglob("*"))
    assert names == ["plots", "plots/metrics.png", "plots/mouth_opening.png", "report.md", "results.json"]
    for png in ("metrics", "mouth_opening"):
        img = cv2.imread(str(report / "plots" / f"{png}.png"))
        assert img is not None and img.shape[0] > 200 and img.shape[1] > 600
        assert img.std() > 10  # not a blank canvas

    data = json.loads((report / "results.json").read_text())
    seconds = sum(len(c.keypoints) / c.fps for c in real_clips[:2])
    assert data["labels"] == ["static", "procedural"]
    assert data["num_clips"] == 2 and data["seconds"] == pytest.approx(seconds, abs=1e-3)
    assert [c["clip_id"] for c in data["clips"]] == [c.clip_id for c in real_clips[:2]]
    assert data["aggregate"]["static"]["jerk"] == {"mean": 0.0, "n_clips": 2, "seconds": pytest.approx(seconds)}
    assert data["aggregate"]["procedural"]["audio_corr"]["mean"] > 0.3
    assert len(data["normalizer"]["std"]) == 136

    md = (report / "report.md").read_text()
    assert "2 clips" in md and "| `static` | 2 |" in md and "| `procedural` | 2 |" in md
    assert "real clips (ground truth)" in md and "![metrics](plots/metrics.png)" in md
    agg = data["aggregate"]["procedural"]
    assert f"{agg['l1']['mean']:.3g}" in md.split("## Per clip")[0]


def test_stats_from_a_previous_report_reproduce_its_l1(report, clip_dir, tmp_path, capsys):
    out = tmp_path / "again"
    rc = main(
        [
            "eval",
            "--clips",
            str(clip_dir),
            "--generators",
            "static",
            "--out",
            str(out),
            "--quiet",
            "--norm-stats",
            str(report / "results.json"),
            "--no-plots",
        ]
    )
    assert rc == 0
    first = json.loads((report / "results.json").read_text())
    again = json.loads((out / "results.json").read_text())
    assert again["settings"]["normalizer_source"] == "given (results.json)"
    assert again["aggregate"]["static"]["l1"]["mean"] == pytest.approx(first["aggregate"]["static"]["l1"]["mean"])
    assert not (out / "plots").exists()
    assert "| `static` |" in capsys.readouterr().out


def test_video_input_is_extracted_once_then_read_from_the_cache(shared_data, tmp_path, monkeypatch):
    video = shared_data / "clips" / "avsr_00022.mp4"
    cache = tmp_path / "cache"
    args = ["eval", "--clips", str(video), "--generators", "static", "--cache", str(cache), "--no-plots", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert len(list(cache.glob("avsr_00022-*.npz"))) == 1

    import a2k_toolkit.eval.sources as sources

    def no_extraction(*a, **k):
        raise AssertionError("the cached clip should have been used")

    monkeypatch.setattr(sources, "extract_clip", no_extraction)
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    a = json.loads((tmp_path / "a" / "results.json").read_text())
    b = json.loads((tmp_path / "b" / "results.json").read_text())
    assert a["clips"] == b["clips"] and a["clips"][0]["num_frames"] == 79


def test_config_entries_with_labels_and_params(clip_dir, tmp_path):
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(
        "entries:\n"
        "  - static\n"
        "  - label: wide-mouth\n"
        "    generator: {name: procedural, params: {mouth_open: 0.9}}\n"
        "  - label: narrow-mouth\n"
        "    generator: {name: procedural, params: {mouth_open: 0.1}}\n"
        "seed: 3\n"
    )
    out = tmp_path / "r"
    assert (
        main(
            [
                "eval",
                "--clips",
                str(clip_dir),
                "--config",
                str(cfg),
                "--out",
                str(out),
                "--quiet",
                "--no-plots",
                "--limit",
                "1",
            ]
        )
        == 0
    )
    data = json.loads((out / "results.json").read_text())
    assert data["labels"] == ["static", "wide-mouth", "narrow-mouth"]
    assert data["generators"]["wide-mouth"]["params"]["mouth_open"] == 0.9
    assert data["settings"]["seed"] == 3 and data["num_clips"] == 1
    agg = data["aggregate"]
    assert agg["wide-mouth"]["mouth_std"]["mean"] > 3 * agg["narrow-mouth"]["mouth_std"]["mean"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--generators", "statc"], "unknown generator 'statc' (did you mean 'static'?)"),
        (["--generators", "static:runs/x"], "has no `checkpoint` parameter"),
        (["--generators", "static,static"], "share the label 'static'"),
        (["--split", "test"], "is not a finished Vox-KP dataset (no manifest.json)"),
        (["--limit", "0"], "--limit must be at least 1"),
        (["--norm-stats", "missing.json"], "statistics file not found"),
    ],
)
def test_user_errors_exit_2_with_one_line(clip_dir, tmp_path, capsys, extra, message):
    rc = main(["eval", "--clips", str(clip_dir), "--out", str(tmp_path / "r"), "--quiet", *extra])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "r" / "report.md").exists()


def test_bad_clip_sources_and_params_are_named(tmp_path, capsys):
    np.savez(tmp_path / "points.npz", points=np.zeros((3, 68, 2)))
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("entries:\n  - {generator: {name: procedural, params: {mouth_opn: 1}}}\n")
    cases = [
        (["--clips", str(tmp_path / "nowhere")], "clip source not found"),
        (["--clips", str(tmp_path / "points.npz")], "not a saved clip"),
        (["--clips", str(tmp_path / "points.npz"), "--config", str(cfg)], "params.mouth_opn: unknown key"),
        (["--clips", str(cfg)], "neither a saved clip (.npz) nor a video"),
    ]
    for args, message in cases:
        assert main(["eval", *args, "--out", str(tmp_path / "r"), "--quiet"]) == 2
        assert message in capsys.readouterr().err, args


def test_one_catalog_per_run_and_nested_front_end_params_checked_first(clip_dir, tmp_path, monkeypatch, capsys):
    from a2k_toolkit import catalog as catalog_module

    made = []
    real_init = catalog_module.Catalog.__init__

    def counting_init(self, *args, **kwargs):
        made.append(self)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(catalog_module.Catalog, "__init__", counting_init)
    cfg = tmp_path / "stack.yaml"
    cfg.write_text("entries: [static, procedural]\naudio: {name: stack, params: {members: [logmel, vad]}}\n")
    out = tmp_path / "r"
    assert (
        main(["eval", "--clips", str(clip_dir), "--config", str(cfg), "--out", str(out), "--quiet", "--no-plots"]) == 0
    )
    assert len(made) == 1  # the front-end's members and the generators all built through the run's one catalog
    assert json.loads((out / "results.json").read_text())["settings"]["frontend"]["name"] == "stack"

    made.clear()
    cfg.write_text("entries: [static]\naudio: {name: stack, params: {members: [{name: logmel, params: {n_mel: 3}}]}}\n")
    assert main(["eval", "--clips", str(clip_dir), "--config", str(cfg), "--out", str(tmp_path / "r2"), "--quiet"]) == 2
    assert "audio.params.members[0].params.n_mel: unknown key" in capsys.readouterr().err
    assert len(made) == 1 and not (tmp_path / "r2").exists()


def test_photo_gap_scores_the_speech_after_the_photos_moment(real_clips, tmp_path):
    from a2k_toolkit.eval.sources import photo_gap

    clip = real_clips[0]
    shifted = next(photo_gap([clip], 10))
    np.testing.assert_array_equal(shifted.keypoints[0], clip.keypoints[0])  # the photo
    np.testing.assert_array_equal(shifted.keypoints[1:], clip.keypoints[11:])
    n = int(round(10 * clip.sample_rate / clip.fps))
    np.testing.assert_array_equal(shifted.audio, clip.audio[n:])
    assert shifted.meta["photo_gap"] == 10 and len(shifted.keypoints) == len(clip.keypoints) - 10
    short = next(photo_gap([dataclasses.replace(clip, keypoints=clip.keypoints[:20])], 10))
    assert len(short.keypoints) == 16  # a short clip shifts less and stays
    d = tmp_path / "one"
    d.mkdir()
    save_clip(d / "c.npz", clip)
    out = tmp_path / "report"
    rc = main(["eval", "--clips", str(d), "--generators", "static", "--photo-gap", "10", "--out", str(out), "--quiet"])
    data = json.loads((out / "results.json").read_text())
    assert rc == 0 and data["settings"]["photo_gap"] == 10
    assert data["clips"][0]["num_frames"] == len(clip.keypoints) - 10


def test_saved_predictions_are_the_scored_points(clip_dir, real_clips, tmp_path):
    from a2k_toolkit.eval import metrics as M
    from a2k_toolkit.eval.predictions import load_predictions

    out = tmp_path / "report"
    (out / "predictions").mkdir(parents=True)
    (out / "predictions" / "stale.npz").write_bytes(b"from an earlier report")
    args = ["eval", "--clips", str(clip_dir), "--generators", "static,procedural", "--out", str(out), "--quiet"]
    assert main([*args, "--save-predictions"]) == 0
    data = json.loads((out / "results.json").read_text())
    saved = list(load_predictions(out / "predictions"))
    assert sorted(c.clip_id for c in saved) == sorted(c.clip_id for c in real_clips[:2])
    by_id = {c["clip_id"]: c for c in data["clips"]}
    for clip in saved:
        real = next(c for c in real_clips if c.clip_id == clip.clip_id)
        np.testing.assert_allclose(clip.real, real.keypoints[: len(clip.real), :, :2], atol=1e-4)
        assert list(clip.predictions) == ["static", "procedural"] and clip.fold == -1
        np.testing.assert_allclose(
            clip.predictions["static"], np.broadcast_to(clip.real[0], clip.real.shape), atol=1e-4
        )
        iod = M.reference_iod(clip.real.astype(np.float64))
        lmd = M.lmd(clip.predictions["procedural"].astype(np.float64), clip.real.astype(np.float64), iod)
        assert lmd == pytest.approx(by_id[clip.clip_id]["generators"]["procedural"]["lmd"], rel=1e-4)
    assert not (out / "predictions" / "stale.npz").exists()
