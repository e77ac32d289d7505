"""All of the shared data in training: the named-column manifest (clips.csv: family, language, person groups), short
clips as padded and masked windows, family-stratified folds over person groups, and family-balanced sampling."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from a2k_toolkit.data.clips import Clip, save_clip
from a2k_toolkit.data.folds import family_of, group_of, identity_folds, split_fold
from a2k_toolkit.data.sources import discover, identity_groups, read_manifest
from a2k_toolkit.data.windows import ClipWindowDataset
from a2k_toolkit.errors import InputError
from a2k_toolkit.keypoints import Normalizer
from a2k_toolkit.models.inference import WindowedRunner
from a2k_toolkit.training import Trainer
from a2k_toolkit.training.data import WeightedDistributedSampler, balance_weights
from a2k_toolkit.training.losses import masked_mean, piv_gen_loss, reg_loss, sync_loss

pytestmark = pytest.mark.usefixtures("torch_one_thread")


# ------------------------------------------------------------------------------------------------------ manifest


def test_named_column_manifest_carries_family_language_and_groups(tmp_path):
    (tmp_path / "v").mkdir()
    m = tmp_path / "clips.csv"
    m.write_text(
        "path,identity,family,source_repo,language,notes\n"
        'v/a.mp4,c01,lrcar,x/y,ar,"one word; may be the same person as c02, c09"\n'
        "v/b.mp4,c02,lrcar,x/y,ar,one word\n"
        "v/c.mp4,c03,lrcar,x/y,ar,may be the same person as c04\n"
        "v/d.mp4,c04,lrcar,x/y,ar,\n"
        "v/e.mp4,rdj,voxceleb2,x/y,en,same person as pcavs_rdj_b\n"  # a clip name, not an identity: ignored
        "v/f.mp4,aldridge,voxceleb2,x/y,en,\n"
    )
    src = {s.identity: s for s in read_manifest(m)}
    assert src["c01"].meta == {"family": "lrcar", "language": "ar", "group": "c01"}
    assert src["c02"].meta["group"] == "c01"  # linked by c01's note (c09 is no identity here)
    assert src["c03"].meta["group"] == src["c04"].meta["group"] == "c03"
    assert src["rdj"].meta["group"] == "rdj" and src["aldridge"].meta["group"] == "aldridge"
    assert src["c01"].key == "v/a" and src["c01"].path == tmp_path / "v" / "a.mp4"
    assert identity_groups({"a", "b", "c"}, {"c": ["may be the same person as b and a"]}) == {
        "a": "a",
        "b": "a",
        "c": "a",
    }
    bad = tmp_path / "bad.csv"
    bad.write_text("path,family,notes\nv/a.mp4,lrcar,x,y\n")
    with pytest.raises(InputError, match="line 2: 4 columns where the header names 3"):
        read_manifest(bad)


def test_the_shared_clips_csv_reads_with_its_families(shared_data):
    sources = discover(shared_data / "clips.csv")
    assert len(sources) == 1656 and len({s.identity for s in sources}) == 75
    fams = {s.meta["family"] for s in sources}
    assert {"lrcar", "grid", "mead", "lrs2", "lrs3", "lrw", "voxceleb2", "hdtf", "talk"} <= fams
    assert all(s.path.is_file() for s in sources[:20])
    groups = {s.meta["group"] for s in sources if s.meta["family"] == "lrcar"}
    assert len(groups) < len({s.identity for s in sources if s.meta["family"] == "lrcar"})  # clusters merged


# ------------------------------------------------------------------------------------------------- short clips


def _clip(T: int, seed: int = 0, identity: str = "p", family: str | None = None, group: str | None = None) -> Clip:
    rng = np.random.default_rng(seed)
    base = rng.uniform(80, 160, (68, 2))
    kp = (base[None] + rng.normal(0, 1.0, (T, 68, 2))).astype(np.float32)
    meta = {k: v for k, v in (("family", family), ("group", group)) if v}
    return Clip(
        keypoints=kp,
        audio=(0.1 * rng.standard_normal(T * 640)).astype(np.float32),
        clip_id=f"{identity}-{T}",
        identity=identity,
        meta=meta,
    )


def test_short_clips_give_one_window_padded_as_inference_pads():
    W = 32
    clips = [_clip(70), _clip(20, 1), _clip(5, 2)]
    feats = [
        np.random.default_rng(i).normal(size=(len(c.keypoints), 6)).astype(np.float32) for i, c in enumerate(clips)
    ]
    plain = ClipWindowDataset(clips, feats, Normalizer(), W, 16)
    assert "mask" not in plain[0] and len(plain) == 3  # clips shorter than the window are not used
    ds = ClipWindowDataset(clips, feats, Normalizer(), W, 16, min_frames=8)
    assert len(ds) == 4 and ds.lengths == [W, W, W, 20]  # the 5-frame clip is under min_frames
    item = ds[3]
    assert item["mask"].tolist() == [1.0] * 20 + [0.0] * 12
    runner = WindowedRunner(torch.nn.Identity(), W)
    assert np.array_equal(item["features"], runner._window(feats[1], 0))  # the padding inference uses
    kp = item["keypoints"].reshape(W, 136)
    assert np.array_equal(kp[20:], np.repeat(kp[19:20], 12, 0))
    assert np.array_equal(ds[0]["features"], plain[0]["features"]) and ds[0]["mask"].min() == 1.0
    batch = ds.__getitems__([0, 3])  # the loader's vectorised fetch equals item by item
    assert all(np.allclose(batch[k][1], item[k], atol=1e-6) for k in item)
    with pytest.raises(InputError, match="min_frames"):
        ClipWindowDataset(clips, feats, Normalizer(), W, 16, min_frames=40)


def test_masked_losses_equal_the_losses_of_the_unpadded_frames():
    g = torch.Generator().manual_seed(0)
    pred, real = torch.randn(3, 20, 136, generator=g), torch.randn(3, 20, 136, generator=g)
    pad = lambda x: torch.cat([x, x[:, -1:].expand(-1, 12, *x.shape[2:]) * 7.0], 1)  # noqa: E731 - junk padding
    mask = torch.cat([torch.ones(3, 20), torch.zeros(3, 12)], 1)
    assert torch.allclose(reg_loss(pad(pred), pad(real), mask), reg_loss(pred, real))
    po, ro = pred[..., 0], real[..., 0]
    assert torch.allclose(sync_loss(pad(po), pad(ro) * 3, mask=mask), sync_loss(po, ro * 3), atol=1e-6)
    e_ref, e = torch.randn(3, 4, generator=g), torch.randn(3, 20, 4, generator=g)
    assert torch.allclose(piv_gen_loss(e_ref, pad(e), mask), piv_gen_loss(e_ref, e))
    assert torch.allclose(masked_mean(pad(e), mask), e.mean())
    assert torch.allclose(masked_mean(pad(e), None), pad(e).mean())


# ------------------------------------------------------------------------------------------------ folds, balance


def test_folds_keep_groups_together_and_deal_every_family():
    clips = []
    for fam, n in (("lrcar", 8), ("grid", 4), ("lrs3", 2), ("lrw", 2)):
        for i in range(n):
            clips += [_clip(10, i, f"{fam}{i}", fam, f"{fam}{i // 2}")] * 2  # pairs of people are one group
    assert family_of(clips[-1]) == "lipread" and family_of({"family": "grid"}) == "grid"
    assert family_of(_clip(3)) == "unknown" and group_of(_clip(3)) == "p"
    for fold in range(4):
        rest, held = split_fold(clips, group_of, fold, 4, family=family_of)
        assert {group_of(c) for c in rest}.isdisjoint({group_of(c) for c in held})
        fams = {family_of(c) for c in held}  # 4 lrcar groups, 2 grid, 2 lipread: dealt family by family
        assert "lrcar" in fams and len(fams & {"grid", "lipread"}) == 1
    fam = {family_of(c) for c in clips}
    held_by_fold = [split_fold(clips, group_of, f, 2, family=family_of)[1] for f in range(2)]
    assert all({family_of(c) for c in h} == fam for h in held_by_fold)  # 2 folds: each holds every family
    names = [f"n{i}" for i in range(9)]
    assert identity_folds(names, 3) == identity_folds(names, 3, strata=None)  # plain deals are unchanged


def test_balanced_sampling_gives_families_their_share():
    units = ["big"] * 900 + ["small"] * 100
    w = balance_weights(units, 0.0)
    assert w[:900].sum() == pytest.approx(0.5) and w[900:].sum() == pytest.approx(0.5)
    assert np.allclose(balance_weights(units, 1.0), 1 / 1000)
    half = balance_weights(units, 0.5)
    assert half[900:].sum() == pytest.approx(10 / 40)  # sqrt(100) / (sqrt(900) + sqrt(100))
    s0, s1 = WeightedDistributedSampler(w, 2, 0, seed=3), WeightedDistributedSampler(w, 2, 1, seed=3)
    a, b = list(s0), list(s1)
    assert len(a) == len(b) == len(s0) == 500 and a == list(s0)  # deterministic
    s0.set_epoch(1)
    assert list(s0) != a
    share = np.mean(np.array(a + b) >= 900)
    assert 0.4 < share < 0.6


def test_training_on_short_clips_with_family_balance(real_clips, tiny_train_config, catalog, tmp_path):
    root = tmp_path / "clips"
    root.mkdir()
    for c in real_clips:
        save_clip(root / f"{c.clip_id}.npz", Clip(**{**c.__dict__, "meta": {"family": "long"}}))
        T = 24  # one word: shorter than the 32-frame window
        short = Clip(
            keypoints=c.keypoints[:T],
            audio=c.audio[: T * 640],
            valid=None if c.valid is None else c.valid[:T],
            clip_id=f"{c.clip_id}-word",
            identity=c.identity,
            meta={"family": "word"},
        )
        save_clip(root / f"{c.clip_id}-word.npz", short)
    cfg = tiny_train_config(
        root,
        tmp_path / "run",
        max_steps=3,
        loss={"mouth": 1.0, "sync": 0.5, "adv": 0.3, "adv_start": 0, "adv_ramp": 0},
        data={"min_frames": 16, "balance": "family", "balance_power": 0.0},
    )
    tr = Trainer(cfg, catalog=catalog)
    short = [i for i, n in enumerate(tr.train_set.lengths) if n < 32]
    assert short and isinstance(tr.sampler, WeightedDistributedSampler)
    drawn = [i for b in tr.epoch_batches(0) for i in b]
    assert 0.25 < np.mean([i in short for i in drawn]) <= 0.75  # the one-window family gets about half the draws
    tr.fit()
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if "loss_reg" in x]
    assert len(rows) == 3 and all(np.isfinite(r["loss_g"]) and r["loss_adv"] > 0 for r in rows)


def test_family_subset_is_fixed_and_spread():
    from a2k_toolkit.data.folds import family_subset

    clips = [_clip(3, i, f"w{i % 7}", "lrcar") for i in range(50)] + [_clip(3, i, f"g{i}", "grid") for i in range(3)]
    for i, c in enumerate(clips):
        c.clip_id = f"clip{i:03d}"
    keep = family_subset(clips, 10)
    assert len(keep) == 13 and {f"clip{i:03d}" for i in range(50, 53)} <= keep  # small families whole
    assert keep == family_subset(list(reversed(clips)), 10)  # independent of order
    assert len({c.identity for c in clips if c.clip_id in keep and c.meta["family"] == "lrcar"}) >= 4
