"""The Audio2Keypoint architecture: shapes through every block, gradient routing of the §4.4 losses, encoders as
components, and the training-window dataset on real clips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from a2k_toolkit.builtin.audio2keypoint import model_encoders
from a2k_toolkit.errors import ConfigError, InputError
from a2k_toolkit.models import ModelConfig, build_discriminator, build_generator, count_parameters
from a2k_toolkit.models.audio import stem_output, stem_plan

TINY = {
    "width": 16,
    "depth": 2,
    "channels_2d": (4, 8),
    "disc_width": 8,
    "pv_encoder": {"name": "pv", "params": {"hidden": 32, "out_dim": 8}},
    "piv_encoder": {"name": "piv", "params": {"hidden": 32, "out_dim": 8}},
}


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def tiny(catalog, feature_shape=(4, 80), **over):
    cfg = ModelConfig(**{**TINY, **over})
    return build_generator(cfg, feature_shape, **model_encoders(cfg, catalog))


def test_encoders_are_registered_components(catalog):
    torch.manual_seed(0)  # weights and inputs independent of the tests that ran before (and of their RNG use)
    assert {"pv", "piv"} <= set(catalog.names("encoder"))
    pv = catalog.get("encoder", "pv")({"hidden": 32, "out_dim": 12})
    piv = catalog.get("encoder", "piv")({"hidden": 32, "out_dim": 10})
    k = torch.randn(3, 5, 136)
    assert pv.build().forward(k).shape == (3, 5, 12) and pv.out_dim == 12
    e = piv.build()(k)
    assert e.shape == (3, 5, 10)
    # PIV codes are rescaled to unit RMS so that the triplet margin keeps its meaning
    np.testing.assert_allclose(e.pow(2).mean(-1).sqrt().detach().numpy(), 1.0, atol=1e-4)
    with pytest.raises(ValidationError):
        catalog.get("encoder", "pv")({"hiden": 3})


def test_unknown_encoder_params_are_a_config_error(catalog):
    with pytest.raises(ConfigError, match=r"model\.pv_encoder\.params\.bogus"):
        tiny(catalog, pv_encoder={"name": "pv", "params": {"bogus": 1}})


def test_generators_are_built_from_built_parts(catalog):
    """models/ builds networks from the encoder components the host built; it never looks components up."""
    import ast
    from pathlib import Path

    import a2k_toolkit.models as models

    for f in Path(models.__file__).parent.glob("*.py"):
        tree = ast.parse(f.read_text("utf-8"))
        names = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        names += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert not [m for m in names if m.endswith("catalog") or m.endswith("plugins")], f.name
    cfg = ModelConfig(**TINY)
    with pytest.raises(ConfigError, match=r"model\.pv_encoder is 'pv' but no encoder was given"):
        build_generator(cfg, (4, 80))
    parts = model_encoders(cfg, catalog)
    with pytest.raises(ConfigError, match=r"model\.piv_encoder is null but an encoder was given"):
        build_generator(ModelConfig(**{**TINY, "piv_encoder": None}), (4, 80), **parts)
    torch.manual_seed(0)
    a = build_generator(cfg, (4, 80), **parts)
    torch.manual_seed(0)
    with pytest.warns(DeprecationWarning, match="deprecated"):
        b = build_generator(cfg, (4, 80), catalog)  # the transitional form: the catalog builds them here
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("shape", [(4, 80), (2, 96), (1, 26), (3, 40), (96,)])
def test_audio_encoder_levels_for_any_feature_shape(catalog, shape):
    g = tiny(catalog, shape)
    S, F = shape if len(shape) == 2 else (1, shape[0])
    f, s = stem_output((S, F))
    assert f <= 8 and (s == 1 or s % 2 == 1)
    assert len(stem_plan((S, F))) >= 1
    x = torch.randn(2, 32, S * F)
    levels = g.audio(x)
    assert [tuple(h.shape) for h in levels] == [(2, 16, 32), (2, 16, 16), (2, 16, 8)]
    # the 2D map is (frequency x time) with the sub-frames of a video frame in time order
    spec = g.audio.spectrogram(x)
    assert spec.shape == (2, 1, F, 32 * S)
    assert torch.equal(spec[0, 0, :, 5 * S + (S - 1)], x[0, 5, (S - 1) * F : S * F])


def test_generator_and_discriminator_shapes(catalog):
    g = tiny(catalog)
    d = build_discriminator(ModelConfig(**TINY))
    for T in (32, 64, 50, 1):  # any length: padded to a multiple of 2**depth inside
        y = g(torch.randn(3, T, 320), torch.randn(3, 136))
        assert y.shape == (3, T, 136)
    assert d(torch.randn(3, 64, 136)).shape[:1] == (3,) and d(torch.randn(3, 64, 136)).ndim == 2
    levels, T = g.encode_audio(torch.randn(2, 32, 320))
    pv, piv = g.codes(torch.randn(2, 136))
    assert pv.shape == (2, 8) and piv.shape == (2, 8)
    assert g.decode(levels, T, [pv, piv]).shape == (2, 32, 136)


def test_ablation_architectures(catalog):
    audio_only = tiny(catalog, pv_encoder=None, piv_encoder=None)
    assert not audio_only.uses_reference
    assert audio_only(torch.randn(2, 32, 320)).shape == (2, 32, 136)
    no_piv = tiny(catalog, piv_encoder=None)
    assert no_piv.piv is None and no_piv(torch.randn(2, 32, 320), torch.randn(2, 136)).shape == (2, 32, 136)
    with pytest.raises(ValueError, match="reference"):
        no_piv(torch.randn(2, 32, 320))
    with pytest.raises(ConfigError, match="pv_encoder is null"):
        tiny(catalog, pv_encoder=None)


def test_input_standardisation_uses_stored_feature_stats(catalog):
    g = tiny(catalog)
    x = torch.randn(2, 32, 320) * 20 - 60  # raw dB-like log-mel
    ref = torch.randn(2, 136)
    g.set_feature_stats(torch.full((320,), -60.0), torch.full((320,), 20.0))
    a = g(x, ref)
    g.set_feature_stats(torch.zeros(320), torch.ones(320))
    b = g((x + 60) / 20, ref)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert "feature_mean" in g.state_dict() and "feature_std" in g.state_dict()


def test_paper_width_has_about_7_6m_generator_parameters(catalog):
    g = build_generator(ModelConfig(), (4, 80), **model_encoders(ModelConfig(), catalog))
    assert 7.2e6 < count_parameters(g) < 8.0e6


def _grad_of(loss, params):
    gs = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, gs)]


def test_every_parameter_gets_exactly_its_objectives_gradient(catalog):
    """One backward of the summed losses gives the generator the gradient of L_Gen = L_Adv + L_Reg + L_PIV-Gen, the
    PIV encoder that of L_PIV = L_Reg + L_Adv + L_PIV-PIV, and reaches every parameter (paper §4.4)."""
    from torch.func import functional_call

    from a2k_toolkit.training.losses import (
        GANForward,
        adversarial_loss,
        discriminator_loss,
        frozen,
        piv_gen_loss,
        piv_triplet_loss,
        reg_loss,
    )

    torch.manual_seed(0)
    g = tiny(catalog)
    d = build_discriminator(ModelConfig(**TINY))
    gan = GANForward(g, exact_piv_gradients=True)
    feats, kp = torch.randn(4, 32, 320), torch.randn(4, 32, 136)
    ref = kp[:, 0]
    out = gan(feats, ref, kp)
    pred = out["pred"]
    loss_d = discriminator_loss(d(kp), d(pred.detach()))
    loss_d.backward()
    for n, p in d.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"discriminator parameter {n} got no gradient"

    l_reg = reg_loss(pred, kp)
    l_adv = adversarial_loss(functional_call(d, frozen(d), (pred,)))
    l_pg = piv_gen_loss(out["e_ref_fixed"], out["e_pred_fixed"])
    l_pp = piv_triplet_loss(out["e_ref"], out["e_pos"], out["e_neg"], margin=10.0)  # large margin: active
    g_params = [p for n, p in g.named_parameters() if not n.startswith("piv.")]
    e_params = list(g.piv.parameters())
    # the objectives as the paper writes them, computed naively on the same forward
    naive_pg = piv_gen_loss(
        functional_call(g.piv, frozen(g.piv), (ref[:, None],))[:, 0], functional_call(g.piv, frozen(g.piv), (pred,))
    )
    want_g = _grad_of(l_reg + l_adv + naive_pg, g_params)
    want_e = _grad_of(l_reg + l_adv + l_pp, e_params)
    assert any(w.abs().sum() > 0 for w in _grad_of(naive_pg, e_params)), "L_PIV-Gen would reach E naively"

    (l_reg + l_adv + l_pg + l_pp).backward()
    for (n, p), w in zip([(n, p) for n, p in g.named_parameters() if not n.startswith("piv.")], want_g):
        assert p.grad is not None and p.grad.abs().sum() > 0, f"generator parameter {n} got no gradient"
        torch.testing.assert_close(p.grad, w, atol=1e-6, rtol=1e-4)
    for (n, p), w in zip(g.piv.named_parameters(), want_e):
        assert p.grad is not None and p.grad.abs().sum() > 0, f"PIV parameter {n} got no gradient"
        torch.testing.assert_close(p.grad, w, atol=1e-6, rtol=1e-4)


def test_losses_match_their_definitions():
    from a2k_toolkit.training.losses import adversarial_loss, discriminator_loss, piv_triplet_loss, rms_distance

    d_real, d_fake = torch.tensor([[1.0, 0.5]]), torch.tensor([[0.0, 0.5]])
    assert discriminator_loss(d_real, d_fake).item() == pytest.approx((0 + 0.25) / 2 + (0 + 0.25) / 2)
    assert adversarial_loss(d_fake).item() == pytest.approx((1 + 0.25) / 2)
    ref = torch.zeros(1, 4)
    pos = torch.zeros(1, 2, 4)
    neg = torch.ones(1, 2, 4)
    assert rms_distance(ref[:, None], neg).squeeze().tolist() == pytest.approx([1.0, 1.0], abs=1e-6)
    # negatives farther than the margin: no loss; closer: hinge
    assert piv_triplet_loss(ref, pos, neg, margin=0.5).item() == pytest.approx(0.0, abs=1e-4)
    assert piv_triplet_loss(ref, pos, neg, margin=1.5).item() == pytest.approx(0.5, abs=1e-3)


# ------------------------------------------------------------------------------------------------- windows


def test_window_dataset_on_real_clips(real_clips):
    from a2k_toolkit.builtin.logmel import LogMel
    from a2k_toolkit.data.windows import ClipWindowDataset, collate

    fe = LogMel()
    ds = ClipWindowDataset(real_clips, fe, None, window=32, stride=16)
    lengths = [c.num_frames for c in real_clips]
    assert len(ds) == sum((T - 32) // 16 + 1 for T in lengths)
    item = ds[len(ds) - 1]
    assert item["features"].shape == (32, 320) and item["features"].dtype == np.float32
    assert item["keypoints"].shape == (32, 136) and item["keypoints"].dtype == np.float32
    np.testing.assert_array_equal(item["reference"], item["keypoints"][0])
    # features come from the whole clip, then sliced; keypoints are relative to the window's frame 0
    ci, s = ds.index[len(ds) - 1]
    clip = real_clips[ci]
    np.testing.assert_allclose(item["features"], fe(clip.audio, clip.sample_rate)[s : s + 32], atol=1e-5)
    raw = clip.keypoints[s : s + 32]
    np.testing.assert_allclose(ds.normalizer.denormalize(item["keypoints"], raw[0]), raw, atol=1e-3)
    batch = collate([ds[0], ds[1]])
    assert batch["features"].shape == (2, 32, 320) and batch["reference"].shape == (2, 136)
    mean, std = ds.feature_stats()
    assert mean.shape == (320,) and (std > 0).all()


def test_window_dataset_skips_undetected_frames_and_checks_lengths(real_clips):
    from dataclasses import replace

    from a2k_toolkit.builtin.logmel import LogMel
    from a2k_toolkit.data.windows import ClipWindowDataset

    clip = real_clips[0]
    valid = np.ones(clip.num_frames, bool)
    valid[40] = False
    feats = [LogMel()(clip.audio, clip.sample_rate)]
    ds = ClipWindowDataset([replace(clip, valid=valid)], feats, None, window=32, stride=8)
    assert ds.index and all(not (s <= 40 < s + 32) for _, s in ds.index)
    with pytest.raises(InputError, match="feature frames"):
        ClipWindowDataset([clip], [feats[0][:50]], None, window=32)
    with pytest.raises(InputError, match="no training windows"):
        ClipWindowDataset([clip], feats, None, window=clip.num_frames + 1)


def test_inexact_piv_gradients_let_piv_gen_reach_the_encoder(catalog):
    from a2k_toolkit.training.losses import GANForward, piv_gen_loss

    torch.manual_seed(0)
    g = tiny(catalog)
    feats, kp = torch.randn(2, 32, 320), torch.randn(2, 32, 136)
    e_params = list(g.piv.parameters())
    for exact, reaches in ((True, False), (False, True)):
        out = GANForward(g, exact_piv_gradients=exact)(feats, kp[:, 0], kp)
        grads = _grad_of(piv_gen_loss(out["e_ref_fixed"], out["e_pred_fixed"]), e_params)
        assert any(gr.abs().sum() > 0 for gr in grads) == reaches
