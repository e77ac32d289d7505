"""The training-recipe extensions behind the shipped model: residual output, mouth / sync losses, the adversarial
warm-up, window augmentation (deterministic, speech and lips kept in sync), coupling filter and validation metrics."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from a2k_toolkit.data.clips import Clip
from a2k_toolkit.data.windows import ClipWindowDataset
from a2k_toolkit.errors import ConfigError
from a2k_toolkit.eval.metrics import best_lag_correlation
from a2k_toolkit.keypoints import Normalizer
from a2k_toolkit.models.config import ModelConfig, build_generator
from a2k_toolkit.training import Trainer, load_train_config
from a2k_toolkit.training.config import AugmentConfig
from a2k_toolkit.training.losses import mouth_opening, nose_relative_mouth, sync_loss

pytestmark = pytest.mark.usefixtures("torch_one_thread")

SMALL = {
    "width": 16,
    "depth": 2,
    "channels_2d": [4, 8],
    "pv_encoder": {"name": "pv", "params": {"hidden": 16, "out_dim": 4}},
    "piv_encoder": {"name": "piv", "params": {"hidden": 16, "out_dim": 4}},
}


def test_residual_generator_starts_as_the_reference_and_needs_it(catalog):
    g = build_generator(ModelConfig(**SMALL, residual=True), (4, 80), catalog)
    feats, ref = torch.randn(2, 32, 320), torch.randn(2, 136)
    out = g(feats, ref)
    assert torch.equal(out, ref[:, None, :].expand(-1, 32, -1))  # zero-initialised head: the static baseline
    torch.nn.init.normal_(g.head.weight)
    moved = g(feats, ref)
    assert not torch.allclose(moved, out)
    levels, T = g.encode_audio(feats)
    with pytest.raises(ValueError, match="reference"):
        g.decode(levels, T, list(g.codes(ref)))
    with pytest.raises(ConfigError, match="residual needs the reference"):
        build_generator(
            ModelConfig(**{**SMALL, "pv_encoder": None, "piv_encoder": None}, residual=True), (4, 80), catalog
        )


def test_sync_loss_and_mouth_opening():
    t = torch.linspace(0, 6, 64)
    real = (0.2 + 0.1 * torch.sin(t))[None].repeat(3, 1)
    assert sync_loss(real, real).item() == pytest.approx(0.0, abs=1e-3)
    assert sync_loss(0.4 - real, real).item() == pytest.approx(2.0, abs=2e-3)  # anti-correlated
    assert sync_loss(0.2 + 2 * (real - 0.2), real).item() == pytest.approx(math.log(2), abs=2e-3)  # twice as wide
    # a still prediction: correlation 0, std ratio eps / std
    still = sync_loss(torch.full_like(real, 0.2), real).item()
    assert still > 1 + math.log(0.07 / 1e-3) - 0.1
    # mouth opening = distance of points 62 and 66 after undoing the standardisation
    pts = torch.zeros(1, 68, 2)
    pts[0, 62] = torch.tensor([0.0, 1.0])
    pts[0, 66] = torch.tensor([0.0, 4.0])
    mean, std = torch.full((136,), 0.5), torch.full((136,), 2.0)
    z = (pts.reshape(1, 136) - mean) / std
    assert mouth_opening(z, mean, std).item() == pytest.approx(3.0)


def test_nose_relative_mouth_ignores_head_motion_but_not_the_mouth():
    """loss.mouth_frame: nose measures the mouth points against the nose tip: a moved head costs nothing, an opened
    mouth does; in units of the normaliser's mean mouth std."""
    rng = np.random.default_rng(1)
    pts = torch.as_tensor(rng.standard_normal((2, 5, 68, 2)), dtype=torch.float32)
    mean, std = torch.as_tensor(rng.standard_normal(136), dtype=torch.float32), torch.full((136,), 2.0)
    z = lambda p: (p.reshape(*p.shape[:-2], 136) - mean) / std  # noqa: E731
    base = nose_relative_mouth(z(pts), mean, std)
    assert base.shape == (2, 5, 20, 2)
    torch.testing.assert_close(base, (pts[..., 48:68, :] - pts[..., 30:31, :]) / 2.0)
    shifted = pts + torch.tensor([3.0, -1.5])  # the whole face moves
    torch.testing.assert_close(nose_relative_mouth(z(shifted), mean, std), base, atol=1e-5, rtol=0)
    opened = pts.clone()
    opened[..., 66, 1] += 1.0  # the lower lip drops by 1: 0.5 in units of the mouth std
    diff = nose_relative_mouth(z(opened), mean, std) - base
    assert diff[..., 18, 1].abs().min().item() == pytest.approx(0.5, abs=1e-5)
    assert diff.abs().sum().item() == pytest.approx(0.5 * 10, abs=1e-4)


def test_best_lag_correlation_finds_a_shift():
    """The lip_sync validation metric uses the evaluation's best-lag correlation on each clip's mouth openings."""
    rng = np.random.default_rng(0)
    for x in rng.standard_normal((4, 64)):
        y = np.roll(x, 2)
        assert best_lag_correlation(x, y, max_lag=2)[0] > 0.95
        assert best_lag_correlation(x, y, max_lag=1)[0] < 0.6
    assert best_lag_correlation(np.zeros(64), rng.standard_normal(64), max_lag=2)[0] == 0.0


def test_adversarial_weight_warms_up(real_clips_dir, tiny_train_config, catalog, tmp_path):
    cfg = tiny_train_config(
        real_clips_dir,
        tmp_path / "run",
        max_steps=4,
        loss={"adv": 0.5, "adv_start": 2, "adv_ramp": 4, "mouth": 1.0, "sync": 0.5},
    )
    tr = Trainer(cfg, catalog=catalog)
    assert [tr.adv_weight(s) for s in (0, 1, 2, 3, 5, 9)] == [0.0, 0.0, 0.125, 0.25, 0.5, 0.5]
    assert tr.lr_factor(0) == 1.0 and tr.lr_factor(3) == 1.0  # constant (the paper)
    cos = Trainer(
        tiny_train_config(
            real_clips_dir, tmp_path / "cos", max_steps=11, optim={"schedule": "cosine", "final_lr_fraction": 0.2}
        ),
        catalog=catalog,
    )
    assert [round(cos.lr_factor(s), 6) for s in (0, 5, 10, 20)] == [1.0, 0.6, 0.2, 0.2]
    cos.step = 5
    cos._set_learning_rates()
    assert cos.optimizers["g"].param_groups[0]["lr"] == pytest.approx(0.6e-4)
    tr.fit()
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if "loss_reg" in x]
    assert [r["loss_adv"] for r in rows[:2]] == [0.0, 0.0] and rows[3]["loss_adv"] > 0
    assert all(r["loss_mouth"] > 0 and r["loss_sync"] > 0 for r in rows)


def test_mouth_loss_in_the_nose_frame_trains(real_clips_dir, tiny_train_config, catalog, tmp_path):
    """The same first step in both frames: the nose frame gives a different, finite mouth term that reaches the
    generator, and leaves every other term as it was."""
    rows = {}
    for frame in ("image", "nose"):
        cfg = tiny_train_config(
            real_clips_dir, tmp_path / frame, max_steps=1, loss={"mouth": 1.0, "mouth_frame": frame}
        )
        tr = Trainer(cfg, catalog=catalog)
        batch = next(iter(tr.make_loader(tr.epoch_batches(0)[:1])))
        rows[frame] = {k: float(v) for k, v in tr.train_step(batch).items()}
    image, nose = rows["image"], rows["nose"]
    assert math.isfinite(nose["loss_mouth"]) and nose["loss_mouth"] > 0
    assert abs(nose["loss_mouth"] - image["loss_mouth"]) > 1e-4
    assert nose["loss_reg"] == pytest.approx(image["loss_reg"], rel=1e-6)


def test_window_input_norm_ignores_the_recordings_level_and_channel(catalog):
    """model.input_norm: window centres each window's features on their own mean: a louder recording (+9 dB on every
    band) or another microphone's EQ (a fixed dB offset per band) gives exactly the same output; the global
    standardisation does not."""
    feats, ref = torch.randn(2, 32, 320), torch.randn(2, 136)
    eq = torch.linspace(-6.0, 6.0, 320)
    for norm, same in (("window", True), ("global", False)):
        g = build_generator(ModelConfig(**SMALL, residual=True, input_norm=norm), (4, 80), catalog)
        torch.nn.init.normal_(g.head.weight)
        g.eval()
        with torch.no_grad():
            out = g(feats, ref)
            for shifted in (feats + 9.0, feats + eq):
                assert torch.allclose(g(shifted, ref), out, atol=1e-4) == same, norm
    with pytest.raises(Exception, match="input_norm"):
        ModelConfig(**SMALL, input_norm="clip")


def test_window_input_norm_trains_and_reloads(real_clips_dir, tiny_train_config, catalog, tmp_path):
    """A real training step with model.input_norm: window; the checkpoint records it and reloads to the same net."""
    from a2k_toolkit.models.checkpoint import read_checkpoint

    cfg = tiny_train_config(real_clips_dir, tmp_path / "run", max_steps=2, model={"input_norm": "window"})
    Trainer(cfg, catalog=catalog).fit()
    info = read_checkpoint(tmp_path / "run" / "latest")
    assert info.model.input_norm == "window"
    from a2k_toolkit.builtin.audio2keypoint import Audio2KeypointGenerator

    net = Audio2KeypointGenerator({"checkpoint": str(tmp_path / "run" / "latest")}, catalog=catalog).net
    assert [m.input_norm for m in getattr(net, "members", [net])] == ["window"]


def _timed_clip(T=120, sample_rate=16000, fps=25.0) -> Clip:
    """A clip whose keypoints move with time (mouth opening = frame index) and whose audio is a rising chirp."""
    rng = np.random.default_rng(0)
    base = rng.uniform(80, 160, (68, 2))
    kp = np.repeat(base[None], T, 0).astype(np.float32)
    kp[:, 66] = kp[:, 62] + np.stack([np.zeros(T), 5.0 + np.arange(T)], 1)  # inner-lip gap: one pixel more a frame
    audio = (0.1 * rng.standard_normal(int(T / fps * sample_rate))).astype(np.float32)
    return Clip(keypoints=kp, audio=audio, sample_rate=sample_rate, fps=fps, clip_id="timed")


def test_augmentation_is_deterministic_per_epoch_and_keeps_speech_and_lips_in_sync():
    clip = _timed_clip()
    T = len(clip.keypoints)
    S, F = 4, 3
    # features encode time: every value of sub-frame k of frame j is j + (k + 0.5) / S
    feats = np.repeat((np.arange(T)[:, None] + (np.arange(S)[None] + 0.5) / S).reshape(T, S, 1), F, 2)
    feats = feats.reshape(T, S * F).astype(np.float32)
    aug = AugmentConfig(tempo=0.2, rotate=5, aspect=0.1, shape=0.02, gain_db=0.0)
    ds = ClipWindowDataset([clip], [feats], Normalizer(), 32, 8, augment=aug, seed=3, feature_shape=(S, F))
    a, b = ds[1], ds[1]
    assert all(np.array_equal(a[k], b[k]) for k in a)  # same (seed, epoch, window): same draw
    batch = ds.__getitems__([0, 1])  # the loader's batched fetch augments each window the same way
    assert all(np.array_equal(batch[k][1], a[k]) for k in a)
    ds.set_epoch(1)
    assert not np.array_equal(ds[1]["keypoints"], a["keypoints"])
    rates = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            it = ds[i]
            time_from_audio = it["features"].reshape(32, S, F)[:, :, 0].mean(1)  # source time of each output frame
            p = it["keypoints"].reshape(32, 68, 2)
            gap = np.linalg.norm(p[:, 66] - p[:, 62], axis=1)  # grows with source time, in normalised units
            # the lip gap is an affine function of the source frame index; so must the audio time be
            fit = np.polyfit(time_from_audio - 0.5, gap, 1)
            assert np.abs(np.polyval(fit, time_from_audio - 0.5) - gap).max() < 0.02 * np.ptp(gap) + 1e-6
            rates.add(round(float(np.diff(time_from_audio).mean()), 2))
    assert min(rates) < 0.9 and max(rates) > 1.1  # windows were really slowed down and sped up


def test_augmented_geometry_keeps_the_normalised_frame():
    """Rotation / aspect / shape act about the reference nose: frame 0 stays the reference and the nose stays at 0."""
    clip = _timed_clip()
    feats = np.zeros((len(clip.keypoints), 8), np.float32)
    ds = ClipWindowDataset(
        [clip],
        [feats],
        Normalizer(scale_by_face=True),
        32,
        8,
        augment=AugmentConfig(rotate=10, aspect=0.2, gain_db=3),
        seed=0,
    )
    it = ds[0]
    assert np.array_equal(it["keypoints"][0], it["reference"])
    assert np.abs(it["reference"].reshape(68, 2)[27]).max() < 1e-5
    plain = ClipWindowDataset([clip], [feats], Normalizer(scale_by_face=True), 32, 8)[0]
    assert not np.allclose(plain["keypoints"], it["keypoints"])
    shift = it["features"] - plain["features"]
    assert np.ptp(shift) < 1e-6 and 0 < abs(shift[0, 0]) <= 3  # one gain for the whole window


def test_noise_augmentation_needs_a_frontend_and_gain_needs_log_power(real_clips_dir, tiny_train_config, pm, tmp_path):
    from a2k_toolkit.catalog import Catalog
    from a2k_toolkit.testing import DummyPlugin

    pm.register(DummyPlugin())
    catalog = Catalog(pm)
    clip = _timed_clip()
    with pytest.raises(Exception, match="noise_snr_db needs an audio front-end"):
        ClipWindowDataset(
            [clip], [np.zeros((120, 8), np.float32)], Normalizer(), 32, 8, augment=AugmentConfig(noise_snr_db=(10, 20))
        )
    cfg = tiny_train_config(
        real_clips_dir, tmp_path / "run", max_steps=1, augment={"gain_db": 3}, audio={"name": "dummy-audio"}
    )
    with pytest.raises(ConfigError, match="gain_db shifts log-power features"):
        Trainer(cfg, catalog=catalog)


def test_gain_augmentation_takes_any_log_power_frontend(real_clips_dir, tiny_train_config, pm, tmp_path):
    """``log_power`` is a class attribute of the front-end: a third-party class that sets it trains with gain_db
    (its features shifted by the gain), and the error for one that does not names every qualifying front-end."""
    from a2k_toolkit.catalog import Catalog
    from a2k_toolkit.hookspecs import hookimpl
    from a2k_toolkit.testing import DummyFrontend, DummyPlugin

    class LogEnergy(DummyFrontend):
        """Frame energy in dB and zero-crossing rate (a log-power front-end of a third-party plugin)."""

        name = "log-energy"
        log_power = True

        def __call__(self, waveform, sample_rate):
            out = super().__call__(waveform, sample_rate)
            out[:, 0] = 20 * np.log10(np.maximum(out[:, 0], 1e-5))
            return out

    class LogEnergyPlugin:
        @hookimpl
        def register_audio_frontends(self, register):
            register(LogEnergy)

    pm.register(DummyPlugin())
    pm.register(LogEnergyPlugin())
    catalog = Catalog(pm)
    assert LogEnergy.log_power and not DummyFrontend.log_power
    assert catalog.get("audio", "logmel").log_power and catalog.get("audio", "librosa-mel").log_power
    assert not catalog.get("audio", "stack").log_power

    with pytest.raises(ConfigError, match="gain_db shifts log-power features") as err:
        Trainer(
            tiny_train_config(real_clips_dir, tmp_path / "no", augment={"gain_db": 3}, audio="dummy-audio"),
            catalog=catalog,
        )
    assert "use one of librosa-mel, log-energy, logmel" in str(err.value)

    cfg = tiny_train_config(
        real_clips_dir, tmp_path / "run", max_steps=2, augment={"gain_db": 6}, audio={"name": "log-energy"}
    )
    tr = Trainer(cfg, catalog=catalog)
    assert isinstance(tr.frontend, LogEnergy)
    plain = ClipWindowDataset(tr.train_set.clips, tr.frontend, tr.normalizer, 32, 16)
    item, ref = tr.train_set[0], plain[0]
    shift = item["features"].reshape(-1, 2)[:, 0] - ref["features"].reshape(-1, 2)[:, 0]
    assert np.ptp(shift) < 1e-4 and 0 < abs(shift[0]) <= 6  # one gain in dB for the whole window
    assert tr.fit()["step"] == 2


def test_the_components_a_training_config_names_are_checked_before_any_data_loads(tiny_train_config, catalog, tmp_path):
    """Front-end, detector and encoders are checked through the host's catalog, with their key paths, first: here
    before the (missing) training data is looked at."""
    missing = tmp_path / "no-clips"
    bad = [
        ({"model": {"pv_encoder": {"name": "pv", "params": {"hiddn": 8}}}}, r"model\.pv_encoder\.params\.hiddn"),
        ({"model": {"piv_encoder": {"name": "no-such-encoder"}}}, r"model\.piv_encoder\.name: unknown encoder"),
        ({"audio": {"name": "logmel", "params": {"n_mels": 3}}}, r"audio\.params\.n_mels"),
        ({"data": {"detector": {"name": "dlib", "params": {"nope": 1}}}}, r"data\.detector\.params\.nope"),
    ]
    for overrides, where in bad:
        with pytest.raises(ConfigError, match=where):
            Trainer(tiny_train_config(missing, tmp_path / "run", **overrides), catalog=catalog)
    with pytest.raises(ConfigError, match="does not exist"):
        Trainer(tiny_train_config(missing, tmp_path / "run"), catalog=catalog)


def test_min_coupling_needs_voxkp(real_clips_dir, tiny_train_config, catalog, tmp_path):
    cfg = tiny_train_config(real_clips_dir, tmp_path / "run", max_steps=1, data={"min_coupling": 0.1})
    with pytest.raises(ConfigError, match="min_coupling needs data.format: voxkp"):
        Trainer(cfg, catalog=catalog)


@pytest.mark.parametrize("metric", ["l1", "mouth_l1", "lip_sync"])
def test_validation_metrics_pick_best(real_clips_dir, real_clips, tiny_train_config, catalog, tmp_path, metric):
    val = real_clips_dir / f"{real_clips[0].clip_id}.npz"
    cfg = tiny_train_config(
        real_clips_dir,
        tmp_path / "run",
        max_steps=2,
        val_every=1,
        val_metric=metric,
        data={"val": [str(val)]},
        augment={"rotate": 3, "tempo": 0.1},
    )
    tr = Trainer(cfg, catalog=catalog)
    summary = tr.fit()
    assert summary["val_metric"] == metric and summary["best_val"] is not None
    hi = {"l1": 5.0, "mouth_l1": 5.0, "lip_sync": 2.0}[metric]
    assert 0 <= summary["best_val"] <= hi
    meta = json.loads((tmp_path / "run" / "best" / "config.json").read_text())
    assert meta["metrics"]["val_metric"] == metric
    assert load_train_config(cfg).val_metric == metric


def test_lip_losses_skip_weakly_coupled_clips():
    strong, weak, unknown = _timed_clip(), _timed_clip(), _timed_clip()
    strong.meta, weak.meta = {"corr": 0.3}, {"corr": 0.05}
    feats = [np.zeros((120, 8), np.float32)] * 3
    ds = ClipWindowDataset([strong, weak, unknown], feats, Normalizer(), 32, 32, lip_min_coupling=0.1)
    per_clip = len(ds) // 3
    batch = ds.__getitems__(list(range(len(ds))))
    assert batch["lip_weight"].tolist() == [1.0] * per_clip + [0.0] * (2 * per_clip)
    assert [float(ds[i]["lip_weight"]) for i in (0, per_clip)] == [1.0, 0.0]
    assert "lip_weight" not in ClipWindowDataset([strong], feats[:1], Normalizer(), 32, 32)[0]
    # the weighted losses ignore the windows with weight 0
    real = torch.rand(3, 64)
    w = torch.tensor([1.0, 0.0, 0.0])
    assert sync_loss(real, real, weights=w).item() == pytest.approx(sync_loss(real[:1], real[:1]).item())
    assert sync_loss(-real, real, weights=torch.zeros(3)).item() == 0.0
