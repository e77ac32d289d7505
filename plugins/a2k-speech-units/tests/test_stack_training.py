"""The front-ends combined through the core ``stack`` front-end, and a real training run of the generator on them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import SR, speak, with_silences

from a2k_toolkit.keypoints import Keypoints
from a2k_toolkit.testing import mean_face, tiny_train_config

MEMBERS = ["logmel", "vad", "phonetic"]


def test_stack_shape_is_the_sum_of_dims(host_catalog, dialogue):
    fe = host_catalog.build("audio", "stack", {"members": MEMBERS})
    dims = [m.feature_dim for m in fe.members]
    assert dims == [320, 2, 14] and fe.feature_shape == (336,)
    feats = fe(dialogue.wav, SR)
    assert feats.shape == (fe.num_frames(len(dialogue.wav), SR), 336) and feats.dtype == np.float32
    np.testing.assert_array_equal(feats[:, 320:322], fe.members[1](dialogue.wav, SR))
    np.testing.assert_array_equal(feats[:, 322:], fe.members[2](dialogue.wav, SR))
    rep = host_catalog.build("audio", "stack", {"members": MEMBERS, "layout": "repeat", "fps": 30})
    assert rep.feature_shape == (4, 96) and rep(dialogue.wav[: SR // 2], SR).shape == (15, 384)
    # any input rate: the stack resamples for its members
    assert fe(dialogue.wav[::2].copy(), SR // 2).shape[0] == feats.shape[0]


def synthetic_clip(texts: list[str], scale: float, clip_id: str, seed: int):
    """espeak speech between silences, and keypoints of a face whose jaw and lower lip open with the speech's
    envelope (a stand-in for a filmed speaker; the test is about training running on these features)."""
    from a2k_toolkit.data.clips import Clip

    wav, _ = with_silences([speak(t) for t in texts], [0.6] + [0.4] * (len(texts) - 1) + [0.6], seed=seed)
    T = int(np.ceil(len(wav) / SR * 25))
    env = np.array([np.sqrt(np.mean(wav[int(t * SR / 25) : int((t + 1) * SR / 25)] ** 2) + 1e-12) for t in range(T)])
    env = np.clip(env / env.max(), 0, 1)
    face = (mean_face(256, 256) - 128) * scale + 128
    pts = np.repeat(face[None], T, axis=0)
    pts[:, 5:12, 1] += 8 * env[:, None]  # jaw
    pts[:, [56, 57, 58, 65, 66, 67], 1] += 10 * env[:, None]  # lower lip
    pts += np.random.default_rng(seed).normal(0, 0.3, pts.shape)
    return Clip(
        keypoints=pts.astype(np.float32),
        audio=wav,
        sample_rate=SR,
        fps=25.0,
        frame_size=(256, 256),
        valid=np.ones(T, bool),
        clip_id=clip_id,
        identity=clip_id,
    )


@pytest.fixture(scope="module")
def clips_dir(tmp_path_factory):
    from a2k_toolkit.data.clips import save_clip

    root = tmp_path_factory.mktemp("speech-units-clips")
    texts = [
        ["My mother made a map.", "Five fine ships sailed."],
        ["Bob bought a blue boat.", "Yes, I see it now."],
        ["We were away all week.", "Thank you, that is fine."],
    ]
    for i, t in enumerate(texts):
        save_clip(root / f"speaker{i}.npz", synthetic_clip(t, 0.9 + 0.1 * i, f"speaker{i}", seed=i))
    return root


def test_training_steps_with_stacked_features(host_catalog, clips_dir, tmp_path):
    import torch

    from a2k_toolkit.training import Trainer

    run = tmp_path / "run"
    cfg = tiny_train_config(clips_dir, run, audio={"name": "stack", "params": {"members": MEMBERS}}, max_steps=3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = Trainer(cfg, catalog=host_catalog)
        assert trainer.feature_shape == (1, 336)
        assert trainer.generator.audio.feature_shape == (1, 336)
        before = [p.detach().clone() for p in trainer.generator.parameters()]
        trainer.fit()
    finally:
        torch.set_num_threads(threads)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss_reg" in r]
    assert [r["step"] for r in steps] == [1, 2, 3] and all(np.isfinite(r["loss_g"]) for r in steps)
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.generator.parameters()))
    meta = json.loads((run / "latest" / "config.json").read_text())
    assert meta["frontend"]["name"] == "stack" and list(meta["frontend"]["feature_shape"]) in ([1, 336], [336])

    # the checkpoint accepts the same stack and generates from its features
    fe = host_catalog.build("audio", "stack", {"members": MEMBERS})
    gen = host_catalog.build("generator", "audio2keypoint", {"checkpoint": str(run / "latest")})
    gen.check_frontend(fe)
    wav = speak("Maybe my mom knows.")
    ref = Keypoints(mean_face(256, 256)[None], image_size=(256, 256))
    kp = gen.generate(fe(wav, SR), ref)
    assert kp.points.shape == (fe.num_frames(len(wav), SR), 68, 2) and np.isfinite(kp.points).all()
