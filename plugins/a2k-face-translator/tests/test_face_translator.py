"""The face translator: real meta-training and fine-tuning on real clips, checkpoints, the renderer, discovery."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import cv2
import numpy as np
import pytest
import torch

from a2k_face_translator import FaceTranslatorRenderer
from a2k_face_translator.checkpoint import load_checkpoint, save_checkpoint
from a2k_face_translator.data import face_box, to_tensor
from a2k_face_translator.models import FaceTranslator, ModelConfig
from a2k_face_translator.training import FinetuneConfig, TrainConfig, finetune, meta_train, reconstruction_error
from a2k_toolkit.errors import CheckpointError, InputError
from a2k_toolkit.keypoints import Keypoints

STEPS = 40


@pytest.fixture(scope="module")
def trained(face_clips, tmp_path_factory):
    """A real, short meta-training run on two people; its model, loss history, errors before/after, checkpoint."""
    clips = [face_clips["pcavs_aldridge"], face_clips["pcavs_ralph"]]
    cfg = ModelConfig(image_size=32, channels=16, max_channels=64, embed_dim=64, gen_down=2, num_videos=2)
    torch.manual_seed(0)
    model = FaceTranslator(cfg)
    before = reconstruction_error(model, clips, shots=3)
    model, history = meta_train(clips, TrainConfig(steps=STEPS, batch=4, shots=3, lr_g=5e-4, lr_d=2e-4), model=model)
    after = reconstruction_error(model, clips, shots=3)
    path = tmp_path_factory.mktemp("ckpt") / "meta.safetensors"
    save_checkpoint(path, model, info={"steps": STEPS})
    return model, history, before, after, path


def test_meta_training_on_real_clips_lowers_the_reconstruction_loss(trained):
    _, history, before, after, _ = trained
    assert len(history) == STEPS
    assert all(np.isfinite(list(r.values())).all() for r in history)
    l1 = np.array([r["l1"] for r in history])
    assert l1[-8:].mean() < 0.7 * l1[:8].mean()
    assert after < 0.75 * before  # fixed evaluation frames, embeddings from other frames of the same clip
    assert any(r["loss_d"] != history[0]["loss_d"] for r in history)  # the discriminator trains too


def test_few_shot_finetuning_on_an_unseen_person(trained, face_clips):
    model, *_ = trained
    person = face_clips["avsr_00022"]
    idx = np.linspace(0, len(person) - 1, 4).round().astype(int)
    frames, sketches = person.frames[idx], person.sketches[idx]
    params_before = [p.detach().clone() for p in model.G.parameters()]
    X, Y = to_tensor(frames), to_tensor(sketches)
    with torch.no_grad():
        psi0 = model.G.psi(model.E(X, Y).mean(0, keepdim=True))
        err0 = (model.G(Y, psi0.expand(4, -1)) - X).abs().mean().item()
    G, psi, hist = finetune(model, frames, sketches, FinetuneConfig(steps=15, lr=5e-4))
    with torch.no_grad():
        err1 = (G(Y, psi[None].expand(4, -1)) - X).abs().mean().item()
    assert len(hist) == 15 and err1 < 0.9 * err0
    assert all(torch.equal(a, b) for a, b in zip(params_before, model.G.parameters()))  # meta model untouched


def test_checkpoints_round_trip_as_safetensors(trained, tmp_path, face_clips):
    model, _, _, _, path = trained
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        assert f.metadata()["kind"] == "meta" and any(k.startswith("D.") for k in f.keys())
    loaded = load_checkpoint(path)
    clip = face_clips["pcavs_ralph"]
    y = to_tensor(clip.sketches[:3])
    psi = model.G.psi(model.E(to_tensor(clip.frames[:2]), to_tensor(clip.sketches[:2])).mean(0, keepdim=True))
    with torch.no_grad():
        assert torch.equal(model.G(y, psi.expand(3, -1)), loaded.model.G(y, psi.expand(3, -1)))
    personal = tmp_path / "person.safetensors"
    save_checkpoint(personal, model, kind="personal", psi=psi[0], info={"shots": 2})
    p = load_checkpoint(personal)
    assert p.kind == "personal" and torch.allclose(p.psi, psi[0]) and p.info == {"shots": 2}


def test_checkpoint_problems_are_clear_errors(trained, tmp_path):
    with pytest.raises(CheckpointError, match="not found.*train one"):
        load_checkpoint(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a safetensors checkpoint"):
        load_checkpoint(junk)
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(CheckpointError, match="not an a2k-face-translator checkpoint"):
        load_checkpoint(other)
    model, *_ = trained
    bigger = FaceTranslator(ModelConfig(**{**model.cfg.to_dict(), "embed_dim": 32}))
    mismatched = tmp_path / "mismatched.safetensors"
    save_checkpoint(mismatched, model)
    import json

    from safetensors import safe_open

    with safe_open(str(mismatched), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    meta["config"] = json.dumps(bigger.cfg.to_dict())
    save_file(tensors, str(mismatched), metadata=meta)
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(mismatched)


def test_renderer_generates_faces_that_follow_the_keypoints(trained, real_clip):
    from a2k_toolkit import io

    _, _, _, _, path = trained
    clip = real_clip("pcavs_ralph")
    image = next(iter(io.read_video_frames(clip.source, fps=25)))
    kp = Keypoints(clip.keypoints[:12], image_size=clip.frame_size)
    r = FaceTranslatorRenderer(checkpoint=str(path), size=128)
    frames = r.render(kp, image)
    assert frames.shape == (12, 128, 128, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames, r.render(kp, image))  # deterministic
    # pixels far from the face are the photo's; the face region is generated and changes with the keypoints
    small = cv2.resize(image, (128, 128), interpolation=cv2.INTER_AREA)
    assert np.array_equal(frames[:, :6, :6], np.broadcast_to(small[:6, :6], (12, 6, 6, 3)))
    pts = kp.points * (128 / 224)
    cx, cy, side = face_box(pts[0])
    x0, y0, x1, y1 = (int(v) for v in (cx - side / 4, cy - side / 6, cx + side / 4, cy + side / 3))
    assert np.abs(frames[0, y0:y1, x0:x1].astype(int) - small[y0:y1, x0:x1]).mean() > 3
    moved = np.linalg.norm(pts - pts[0], axis=2).mean(1)
    t = int(moved.argmax())
    assert moved[t] > 0.5
    assert np.abs(frames[t, y0:y1, x0:x1].astype(int) - frames[0, y0:y1, x0:x1]).mean() > 0.5
    crops = FaceTranslatorRenderer(checkpoint=str(path), size=96, paste=False).render(kp[:3], image)
    assert crops.shape == (3, 96, 96, 3)


def test_renderer_with_a_personal_checkpoint_and_finetuning(trained, tmp_path, shared_data):
    from a2k_face_translator.data import dlib_detector
    from a2k_toolkit import io

    model, _, _, _, path = trained
    image = io.load_image(shared_data / "faces" / "obama.jpg")
    ref = dlib_detector().detect(image).points[0]
    kp = Keypoints(np.stack([ref, ref + [3, 0], ref + [0, 3]]))
    tuned = FaceTranslatorRenderer(checkpoint=str(path), finetune_steps=3, size=64).render(kp, image)
    plain = FaceTranslatorRenderer(checkpoint=str(path), size=64).render(kp, image)
    assert tuned.shape == plain.shape == (3, 64, 64, 3) and not np.array_equal(tuned, plain)
    personal = tmp_path / "p.safetensors"
    save_checkpoint(personal, model, kind="personal", psi=torch.zeros(model.G.psi_dim))
    assert FaceTranslatorRenderer(checkpoint=str(personal), size=64).render(kp, image).shape == (3, 64, 64, 3)


def test_renderer_inputs_and_params_are_checked(trained, tmp_path):
    _, _, _, _, path = trained
    with pytest.raises(ValueError):
        FaceTranslatorRenderer()  # the checkpoint is required
    with pytest.raises(ValueError):
        FaceTranslatorRenderer(checkpoint=str(path), shots_dir="x")
    img = np.zeros((64, 64, 3), np.uint8)
    kp = Keypoints(np.zeros((0, 68, 2), np.float32))
    with pytest.raises(InputError, match="zero-length"):
        FaceTranslatorRenderer(checkpoint=str(path)).frames(kp, img)


def test_training_cli_meta_then_finetune_then_render(tmp_path, shared_data, request):
    from a2k_face_translator.train import main

    clips = shared_data / "clips"
    meta, person = tmp_path / "meta.safetensors", tmp_path / "person.safetensors"
    cache = request.config.cache.mkdir("a2k-face-translator-clips")
    rc = main(
        [
            "meta",
            "--clips",
            str(clips / "avsr_00006.mp4"),
            str(clips / "avsr_00002.mp4"),
            "--out",
            str(meta),
            "--image-size",
            "32",
            "--steps",
            "3",
            "--batch",
            "2",
            "--shots",
            "2",
            "--cache",
            str(cache),
            "--device",
            "cpu",
            "--log-every",
            "1",
        ]
    )
    assert rc == 0 and load_checkpoint(meta).info["steps"] == 3
    rc = main(
        [
            "finetune",
            "--checkpoint",
            str(meta),
            "--images",
            str(shared_data / "faces" / "obama.jpg"),
            "--steps",
            "2",
            "--out",
            str(person),
            "--device",
            "cpu",
        ]
    )
    assert rc == 0 and load_checkpoint(person).kind == "personal"
    assert main(["meta", "--clips", str(tmp_path / "nothing"), "--out", str(meta)]) == 2


def test_plugin_module_imports_no_torch():
    code = "import sys, a2k_face_translator.plugin; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_discovered_through_the_entry_point():
    try:
        metadata.distribution("a2k-face-translator")
    except metadata.PackageNotFoundError:
        pytest.skip("plugin not installed; `pip install -e plugins/a2k-face-translator` (make test does)")
    from a2k_toolkit.catalog import Catalog
    from a2k_toolkit.plugins import make_plugin_manager

    entry = Catalog(make_plugin_manager()).entry("renderer", "face-translator")
    assert entry.cls.__name__ == "FaceTranslatorRenderer" and entry.distribution == "a2k-face-translator"
