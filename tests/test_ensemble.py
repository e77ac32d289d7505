"""Ensembles of checkpoints: one recipe's models (e.g. seeds) whose predictions the generator averages."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from a2k_toolkit.builtin.audio2keypoint import Audio2KeypointGenerator
from a2k_toolkit.builtin.logmel import LogMel
from a2k_toolkit.errors import CheckpointError
from a2k_toolkit.keypoints import Keypoints
from a2k_toolkit.models import checkpoint, ensemble

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _train(data_dir, run, tiny_train_config, **overrides):
    from a2k_toolkit.catalog import Catalog
    from a2k_toolkit.plugins import make_plugin_manager
    from a2k_toolkit.training import Trainer

    Trainer(
        tiny_train_config(data_dir, run, max_steps=3, **overrides),
        catalog=Catalog(make_plugin_manager(entry_points=False)),
    ).fit()
    return run / "latest"


@pytest.fixture(scope="module")
def second_seed(real_clips_dir, tiny_train_config, tmp_path_factory):
    """The tiny checkpoint's recipe and data with another seed: another model in the same normalised space."""
    return _train(real_clips_dir, tmp_path_factory.mktemp("seed1") / "run", tiny_train_config, seed=1)


@pytest.fixture(scope="module")
def inputs(real_clips, speech_path):
    from a2k_toolkit.io import load_audio

    clip = real_clips[0]
    feats = LogMel()(load_audio(speech_path, 16000)[: 16000 * 3], 16000)
    return feats, Keypoints(clip.keypoints[:1], image_size=clip.frame_size)


def test_a_list_of_checkpoints_averages_their_predictions(tiny_a2k_checkpoint, second_seed, inputs):
    feats, ref = inputs
    # lip_contact off: lips made to meet are not linear in the prediction, so the mean of outputs could differ
    a, b = (
        Audio2KeypointGenerator(checkpoint=str(c), lip_contact=False).generate(feats, ref).points
        for c in (tiny_a2k_checkpoint, second_seed)
    )
    assert np.abs(a - b).max() > 0.01  # the two seeds really differ
    ens = Audio2KeypointGenerator(checkpoint=[str(tiny_a2k_checkpoint), str(second_seed)], lip_contact=False)
    out = ens.generate(feats, ref)
    np.testing.assert_allclose(out.points, (a + b) / 2, atol=1e-3)
    np.testing.assert_array_equal(out.points[0], ref.points[0])
    naive = Audio2KeypointGenerator(
        checkpoint=[str(tiny_a2k_checkpoint), str(second_seed)], fast=False, lip_contact=False
    )
    np.testing.assert_allclose(naive.generate(feats, ref).points, out.points, atol=1e-3)
    assert str(second_seed) in out.meta["checkpoint"]


def test_an_ensemble_directory_is_a_checkpoint_and_moves_as_one(
    tiny_a2k_checkpoint, second_seed, inputs, tmp_path, capsys
):
    from a2k_toolkit.cli import main

    feats, ref = inputs
    assert (
        main(
            [
                "ensemble",
                str(tmp_path / "ens"),
                str(tiny_a2k_checkpoint),
                str(second_seed),
                "--description",
                "two seeds",
            ]
        )
        == 0
    )
    assert "2 members" in capsys.readouterr().out
    meta = json.loads((tmp_path / "ens" / "ensemble.json").read_text())
    assert meta["members"] == ["member-0", "member-1"] and meta["description"] == "two seeds"
    shutil.move(tmp_path / "ens", tmp_path / "moved")
    ens = Audio2KeypointGenerator(checkpoint=str(tmp_path / "moved"))
    listed = Audio2KeypointGenerator(checkpoint=[str(tiny_a2k_checkpoint), str(second_seed)])
    np.testing.assert_array_equal(ens.generate(feats, ref).points, listed.generate(feats, ref).points)
    assert ens.checkpoint_label == str(tmp_path / "moved")
    with pytest.raises(CheckpointError, match="ensemble of checkpoints"):
        checkpoint.read_checkpoint(tmp_path / "moved")
    # as the shipped default, an ensemble is picked up like a single checkpoint
    import a2k_toolkit.models.checkpoint as ck

    old = ck.DEFAULT_WEIGHTS_DIR
    ck.DEFAULT_WEIGHTS_DIR = tmp_path / "moved"
    try:
        np.testing.assert_array_equal(
            Audio2KeypointGenerator().generate(feats, ref).points, ens.generate(feats, ref).points
        )
    finally:
        ck.DEFAULT_WEIGHTS_DIR = old


def test_members_that_cannot_be_averaged_are_refused(
    real_clips, real_clips_dir, tiny_a2k_checkpoint, tiny_train_config, tmp_path, capsys
):
    from a2k_toolkit.cli import main
    from a2k_toolkit.data.clips import save_clip

    other = tmp_path / "two-clips"
    other.mkdir()
    for clip in real_clips[:2]:
        save_clip(other / f"{clip.clip_id}.npz", clip)
    elsewhere = _train(other, tmp_path / "other", tiny_train_config)  # other data: other keypoint statistics
    with pytest.raises(CheckpointError, match="trained on different data"):
        Audio2KeypointGenerator(checkpoint=[str(tiny_a2k_checkpoint), str(elsewhere)])
    assert main(["ensemble", str(tmp_path / "e"), str(tiny_a2k_checkpoint), str(elsewhere)]) == 2
    assert "cannot be averaged" in capsys.readouterr().err and not (tmp_path / "e").exists()
    assert main(["ensemble", str(tmp_path / "e"), str(tiny_a2k_checkpoint)]) == 2
    assert "at least 2" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="empty list"):
        Audio2KeypointGenerator(checkpoint=[])


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: {**m, "members": ["../outside"]}, "relative path without '..'"),
        (lambda m: {**m, "members": ["member-0", "missing"]}, "'missing' is not a checkpoint"),
        (lambda m: {**m, "members": []}, "non-empty list"),
        (lambda m: {**m, "format": "other"}, "not an a2k ensemble file"),
        (lambda m: {**m, "format_version": 99}, "upgrade a2k-toolkit"),
    ],
)
def test_a_broken_ensemble_file_is_named(tiny_a2k_checkpoint, second_seed, tmp_path, edit, message):
    root = ensemble.write_ensemble(tmp_path / "ens", [tiny_a2k_checkpoint, second_seed])
    meta = json.loads((root / "ensemble.json").read_text())
    (root / "ensemble.json").write_text(json.dumps(edit(meta)))
    with pytest.raises(CheckpointError, match=message):
        Audio2KeypointGenerator(checkpoint=str(root))


def test_an_existing_directory_that_is_not_an_ensemble_is_never_replaced(
    tiny_a2k_checkpoint, second_seed, tmp_path, capsys
):
    from a2k_toolkit.cli import main

    run = second_seed.parent  # a training run: a2k ensemble must not swap it for an ensemble
    before = sorted(p.name for p in run.iterdir())
    assert main(["ensemble", str(run), str(tiny_a2k_checkpoint), str(second_seed)]) == 2
    assert "not an ensemble directory" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == before
    ens = ensemble.write_ensemble(tmp_path / "ens", [tiny_a2k_checkpoint, second_seed])
    ensemble.write_ensemble(ens, [second_seed, tiny_a2k_checkpoint])  # an ensemble is replaced
    assert ensemble.read_members(ens)[0].meta["train_config"]["seed"] == 1


def test_an_interrupted_swap_and_a_member_behind_a_link_are_handled(tiny_a2k_checkpoint, second_seed, tmp_path):
    ens = ensemble.write_ensemble(tmp_path / "ens", [tiny_a2k_checkpoint, second_seed])
    ens.rename(tmp_path / ".ens.old")  # a crash between atomic_dir's two renames
    assert len(ensemble.read_members(tmp_path / "ens")) == 2
    (tmp_path / ".ens.old").rename(ens)
    shutil.rmtree(ens / "member-1")
    (ens / "member-1").symlink_to(second_seed)  # outside the directory: the ensemble would not move as one
    with pytest.raises(CheckpointError, match="outside the ensemble"):
        ensemble.read_members(ens)
    (ens / "member-1").unlink()
    shutil.copytree(second_seed, ens / "member-1")
    meta = json.loads((ens / "ensemble.json").read_text())
    (ens / "ensemble.json").write_text(json.dumps({**meta, "format_version": "x"}))
    with pytest.raises(CheckpointError, match="format_version must be an integer"):
        ensemble.read_members(ens)


def test_members_with_another_window_are_refused(tiny_a2k_checkpoint, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(tiny_a2k_checkpoint, other)
    meta = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**meta, "window": meta["window"] * 2}))
    with pytest.raises(CheckpointError, match="window"):
        ensemble.read_members([tiny_a2k_checkpoint, other])
