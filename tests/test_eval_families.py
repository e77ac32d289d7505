"""The selection protocol's numbers: means over source families (lipread aliasing, ratios within a family, LMD
against `static`, lip-sync wins against `procedural`), the language table and the spread over seeds, on real clips
given known family metadata, checked against sums done by hand from the per-clip numbers."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import yaml

from a2k_toolkit.components import KeypointGenerator
from a2k_toolkit.errors import InputError
from a2k_toolkit.eval import evaluate
from a2k_toolkit.eval.evaluate import merge_results
from a2k_toolkit.eval.groups import candidate_groups, family_of, language_groups, language_of
from a2k_toolkit.eval.report import results_json, selection_section, write_report
from a2k_toolkit.keypoints import Keypoints, Normalizer


class NoisyTruth(KeypointGenerator):
    """The clip's real keypoints (found by the reference frame), delayed by ``delay`` frames, plus Gaussian noise of
    ``noise`` pixels drawn from ``draw`` (a stand-in for one training seed of a model)."""

    name = "noisy-truth"

    def __init__(self, clips, draw: int = 0, noise: float = 0.6, delay: int = 0):
        super().__init__()
        self.truth = {np.asarray(c.keypoints[0], np.float32).tobytes(): np.asarray(c.keypoints) for c in clips}
        self.draw, self.noise, self.delay = draw, noise, delay

    def generate(self, features, reference, *, seed=None):
        gt = self.truth[reference.points[0].tobytes()][: len(features)].astype(np.float64)
        if self.delay:
            gt = np.concatenate([np.repeat(gt[:1], self.delay, 0), gt[: -self.delay]])
        out = gt + np.random.default_rng(self.draw).normal(0, self.noise, gt.shape)
        out[0] = gt[0]
        return Keypoints(out.astype(np.float32), image_size=reference.image_size)


def _tail(clip, start: int, clip_id: str, meta: dict):
    """The clip from frame ``start`` on (its own clip, with its own frame 0), with ``meta``."""
    cut = int(round(start * clip.sample_rate / clip.fps))
    valid = None if clip.valid is None else clip.valid[start:]
    return replace(
        clip, keypoints=clip.keypoints[start:], audio=clip.audio[cut:], valid=valid, clip_id=clip_id, meta=meta
    )


# family (as the dataset writes it) and language of each test clip; lrs2 + LRS3 are one family, lipread
META = {
    "aldridge": {"family": "voxceleb2", "language": "en", "group": "aldridge"},
    "aldridge-b": {"family": "voxceleb2", "language": "en"},
    "ralph": {"family": "lrs2", "language": "en"},
    "avsr": {"family": "LRS3", "language": "en"},
    "avsr-b": {"family": "lrcar", "language": "ar"},
    "ralph-b": {"family": "lrcar", "language": "ar"},
    "aldridge-c": {"family": "lrcar", "language": "AR"},
}
FAMILY = {
    "aldridge": "voxceleb2",
    "aldridge-b": "voxceleb2",
    "ralph": "lipread",
    "avsr": "lipread",
    "avsr-b": "lrcar",
    "ralph-b": "lrcar",
    "aldridge-c": "lrcar",
}


@pytest.fixture(scope="module")
def family_clips(real_clips):
    aldridge, ralph, avsr = real_clips  # conftest.REAL_CLIP_NAMES
    return [
        replace(aldridge, meta=META["aldridge"], clip_id="aldridge"),
        _tail(aldridge, 40, "aldridge-b", META["aldridge-b"]),
        replace(ralph, meta=META["ralph"], clip_id="ralph"),
        replace(avsr, meta=META["avsr"], clip_id="avsr"),
        _tail(avsr, 30, "avsr-b", META["avsr-b"]),
        _tail(ralph, 30, "ralph-b", META["ralph-b"]),
        _tail(aldridge, 70, "aldridge-c", META["aldridge-c"]),
    ]


@pytest.fixture(scope="module")
def generators(family_clips):
    from a2k_toolkit.builtin.baselines import ProceduralGenerator, StaticGenerator

    return {
        "static": StaticGenerator(),
        "procedural": ProceduralGenerator(),
        "A: seed 0": NoisyTruth(family_clips, draw=0),
        "A: seed 1": NoisyTruth(family_clips, draw=1),
        "A: seed 2": NoisyTruth(family_clips, draw=2),
        "late, run 1": NoisyTruth(family_clips, draw=3, delay=2),
        "late, run 2": NoisyTruth(family_clips, draw=4, delay=2),
    }


CANDIDATES = {"late, run 1": "late", "late, run 2": "late"}


@pytest.fixture(scope="module")
def stats(family_clips):
    return Normalizer.fit([c.keypoints for c in family_clips])


@pytest.fixture(scope="module")
def results(generators, family_clips, stats):
    from a2k_toolkit.builtin.logmel import LogMel

    return evaluate(generators, family_clips, LogMel(), normalizer=stats, candidates=CANDIDATES)


@pytest.fixture(scope="module")
def sel(results):
    return results.selection()


def _by_family(results, fn):
    """``{family: [fn(record), ...]}`` over the evaluated clips."""
    out: dict[str, list] = {}
    for rec in results.clips:
        out.setdefault(rec.family, []).append(fn(rec))
    return out


def test_family_and_language_come_from_the_metadata_through_the_alias_tables():
    assert family_of({"family": "lrs2"}) == family_of({"family": "LRS3 "}) == family_of({"family": "lrw"}) == "lipread"
    assert family_of({"family": "voxceleb2"}) == "voxceleb2" and family_of({"family": "GRID"}) == "grid"
    assert family_of({}) == family_of(None) == family_of({"family": ""}) == "unknown"
    assert language_of({"language": "en-US"}) == language_of({"language": "English"}) == "en"
    assert language_of({"language": "AR"}) == "ar" and language_of({}) == "unknown"
    assert language_groups(["en", "ar", "en"]) == {"en": ["en"], "non-en": ["ar"]}
    assert language_groups(["en", "zh", "ar", "unknown"]) == {
        "en": ["en"],
        "non-en": ["ar", "zh"],
        "ar": ["ar"],
        "zh": ["zh"],
        "unknown": ["unknown"],
    }
    assert candidate_groups(["static", "A: seed 0", "A: Seed 12", "x", "y"], {"x": "B", "y": "B"}) == {
        "A": ["A: seed 0", "A: Seed 12"],
        "B": ["x", "y"],
    }


def test_clips_carry_their_family_and_lipread_pools_lrs2_and_lrs3(results, sel):
    assert {r.clip_id: r.family for r in results.clips} == FAMILY
    assert results.clips[0].meta == {"family": "voxceleb2", "language": "en", "group": "aldridge"}
    assert results.clips[3].meta["family"] == "LRS3" and results.clips[-1].language == "ar"
    assert list(sel["families"]) == ["lipread", "lrcar", "voxceleb2"]
    lipread = sel["families"]["lipread"]
    assert lipread["n_clips"] == 2 and lipread["sources"] == ["lrs2", "lrs3"] and lipread["languages"] == {"en": 2}
    assert sel["families"]["lrcar"]["n_clips"] == 3 and sel["families"]["lrcar"]["languages"] == {"ar": 3}
    assert sel["family_aliases"]["lrw"] == "lipread"


@pytest.mark.parametrize("key", ["lip_corr", "lmd", "l1", "pck", "jerk", "audio_corr"])
def test_the_family_mean_is_the_unweighted_mean_of_the_family_means_over_clips(results, sel, key):
    for label in results.labels:
        per_family = {f: float(np.mean(v)) for f, v in _by_family(results, lambda r: r.generators[label][key]).items()}
        for fam, value in per_family.items():
            agg = sel["families"][fam]["aggregate"][label][key]
            assert agg["mean"] == pytest.approx(value) and agg["n_clips"] == sel["families"][fam]["n_clips"]
        got = sel["family_mean"][label][key]
        assert got["mean"] == pytest.approx(np.mean(list(per_family.values())), abs=1e-12), label
        assert got["min"] == pytest.approx(min(per_family.values())) and got["n_families"] == 3
        assert got["max"] == pytest.approx(max(per_family.values()))
        assert per_family[got["max_family"]] == pytest.approx(got["max"])
    # the 3 lrcar clips weigh 3/7 of the mean over clips but 1/3 of the family mean: the two differ
    lip = [sel["family_mean"][lb]["lip_corr"]["mean"] for lb in ("A: seed 0", "procedural")]
    clip_lip = [results.aggregate[lb]["lip_corr"]["mean"] for lb in ("A: seed 0", "procedural")]
    assert all(abs(a - b) > 1e-6 for a, b in zip(lip, clip_lip))


def test_a_family_ratio_is_the_ratio_of_the_means_over_the_familys_clips(results, sel):
    for label in ("procedural", "A: seed 1", "late, run 2"):
        for ratio, key in (("mouth_ratio", "mouth_std"), ("head_ratio", "head_motion"), ("identity_ratio", "identity")):
            pred = _by_family(results, lambda r: r.generators[label][key])
            real = _by_family(results, lambda r: r.real[key])
            family = {f: np.mean(pred[f]) / np.mean(real[f]) for f in pred}
            for fam, value in family.items():
                assert sel["families"][fam]["aggregate"][label][ratio]["mean"] == pytest.approx(value)
                assert sel["families"][fam]["headline"][label][ratio] == pytest.approx(value)
            mean = np.mean(list(family.values()))
            assert sel["family_mean"][label][ratio]["mean"] == pytest.approx(mean)
            assert sel["headline"][label][ratio]["mean"] == pytest.approx(mean)
            # not the mean of the per-clip ratios, nor the ratio of the family means of the amplitudes
            per_clip = np.mean([np.mean(v) for v in _by_family(results, lambda r: r.generators[label][ratio]).values()])
            assert mean != pytest.approx(per_clip, rel=1e-9)


def test_lmd_is_reported_against_static_in_the_same_family(results, sel):
    lmd = {lb: _by_family(results, lambda r, lb=lb: r.generators[lb]["lmd"]) for lb in results.labels}
    for label in results.labels:
        family = {f: np.mean(lmd[label][f]) / np.mean(lmd["static"][f]) for f in lmd[label]}
        for fam, value in family.items():
            assert sel["families"][fam]["headline"][label]["lmd_vs_static"] == pytest.approx(value)
        assert sel["headline"][label]["lmd_vs_static"]["mean"] == pytest.approx(np.mean(list(family.values())))
    assert sel["headline"]["static"]["lmd_vs_static"] == {
        **sel["headline"]["static"]["lmd_vs_static"],
        "mean": 1.0,
        "min": 1.0,
        "max": 1.0,
    }
    assert sel["headline"]["A: seed 0"]["lmd_vs_static"]["mean"] < 1  # the noisy truth is far closer than a still face


def test_without_static_there_is_no_lmd_ratio(generators, family_clips, stats):
    from a2k_toolkit.builtin.logmel import LogMel

    res = evaluate({"A: seed 0": generators["A: seed 0"]}, family_clips[:3], LogMel(), normalizer=stats)
    sel = res.selection()
    assert "lmd_vs_static" not in sel["headline"]["A: seed 0"] and sel["lip_sync_wins"] is None
    assert list(sel["candidates"]) == ["A"] and sel["candidates"]["A"]["figures"]["lip_corr"]["std"] is None
    md = "\n".join(selection_section(res))
    assert "LMD ×static" not in md and "lip sync won" not in md


def test_families_won_on_lip_sync_against_procedural(results, sel):
    wins = sel["lip_sync_wins"]
    assert wins["against"] == "procedural" and "procedural" not in wins["labels"]
    for label in results.labels:
        if label == "procedural":
            continue
        won = sorted(
            f
            for f, e in sel["families"].items()
            if e["headline"][label]["lip_corr"] > e["headline"]["procedural"]["lip_corr"]
        )
        assert wins["labels"][label]["won"] == won and wins["labels"][label]["n_families"] == 3
    assert wins["labels"]["A: seed 0"]["won"] == ["lipread", "lrcar", "voxceleb2"]  # the truth, slightly noisy
    assert wins["labels"]["static"]["won"] == []  # a still mouth correlates with nothing


def test_non_english_clips_are_reported_on_their_own(results, sel):
    langs = sel["languages"]
    assert list(langs) == ["en", "non-en"]
    assert langs["non-en"]["languages"] == ["ar"] and langs["non-en"]["n_clips"] == 3
    assert list(langs["non-en"]["families"]) == ["lrcar"] and list(langs["en"]["families"]) == ["lipread", "voxceleb2"]
    for label in results.labels:
        lrcar = sel["families"]["lrcar"]["headline"][label]
        for key, value in lrcar.items():
            assert langs["non-en"]["headline"][label][key]["mean"] == pytest.approx(value, nan_ok=True)
        en = [sel["families"][f]["headline"][label]["lip_corr"] for f in ("lipread", "voxceleb2")]
        assert langs["en"]["headline"][label]["lip_corr"]["mean"] == pytest.approx(np.mean(en))


def test_the_spread_over_seeds_of_each_candidate(results, sel):
    cands = sel["candidates"]
    assert {k: v["labels"] for k, v in cands.items()} == {
        "A": ["A: seed 0", "A: seed 1", "A: seed 2"],
        "late": ["late, run 1", "late, run 2"],
    }
    for c in cands.values():
        for key in ("lip_corr", "lmd_vs_static", "mouth_ratio", "head_ratio", "identity_ratio"):
            values = [sel["headline"][lb][key]["mean"] for lb in c["labels"]]
            got = c["figures"][key]
            assert got["mean"] == pytest.approx(np.mean(values)) and got["std"] == pytest.approx(np.std(values, ddof=1))
            assert got["min"] == min(values) and got["max"] == max(values) and got["n_seeds"] == len(values)
        assert c["lip_sync_won"]["mean"] == np.mean(
            [len(sel["lip_sync_wins"]["labels"][lb]["won"]) for lb in c["labels"]]
        )
    assert cands["A"]["figures"]["lip_corr"]["std"] > 0  # three noise draws differ
    # the two-frame delay costs lip sync at lag 0 but the best-lag search finds it
    assert cands["late"]["figures"]["lip_corr"]["mean"] > 0.5
    with pytest.raises(InputError, match="candidates name labels that are not evaluated: 'nope'"):
        evaluate({"static": object()}, [], None, candidates={"nope": "x"})


def test_merged_folds_give_the_same_family_tables(results, generators, family_clips, stats):
    from a2k_toolkit.builtin.logmel import LogMel

    fe = LogMel()
    parts = [evaluate(generators, family_clips[i::2], fe, normalizer=stats, candidates=CANDIDATES) for i in (0, 1)]
    merged = merge_results(parts)
    assert merged.candidates == CANDIDATES
    a, b = merged.selection(), results.selection()
    for label in results.labels:
        for key, s in b["headline"][label].items():
            assert a["headline"][label][key]["mean"] == pytest.approx(s["mean"])
    assert a["candidates"]["A"]["figures"]["lip_corr"]["mean"] == pytest.approx(
        b["candidates"]["A"]["figures"]["lip_corr"]["mean"]
    )


def test_the_report_has_the_family_language_and_seed_tables(results, sel, tmp_path):
    paths = write_report(results, tmp_path / "r", plots=False)
    data = json.loads(paths["json"].read_text())
    assert json.loads(results_json(results))["selection"]["families"]["lipread"]["n_clips"] == 2
    js = data["selection"]
    assert js["family_mean"]["procedural"]["lip_corr"]["mean"] == pytest.approx(
        sel["family_mean"]["procedural"]["lip_corr"]["mean"]
    )
    assert set(js["figures"]) == {"lip_corr", "lmd_vs_static", "mouth_ratio", "head_ratio", "identity_ratio"}
    assert data["clips"][2]["family"] == "lipread" and data["clips"][2]["meta"]["family"] == "lrs2"
    md = paths["markdown"].read_text()
    for title in (
        "## Mean over families (selection protocol)",
        "### Per family",
        "### Every metric, mean over families",
        "#### Family `lipread` (lrs2+lrs3): 2 clips",
        "## By language",
        "## Spread over seeds",
    ):
        assert title in md, title
    assert "3 families (clips): `lipread` (lrs2+lrs3) 2, `lrcar` 3, `voxceleb2` 2." in md
    hl = sel["headline"]["A: seed 1"]
    row = next(ln for ln in md.splitlines() if ln.startswith("| `A: seed 1` | 3 |"))
    assert f"{hl['lip_corr']['mean']:.3g} [{hl['lip_corr']['min']:.3g}–{hl['lip_corr']['max']:.3g}]" in row
    assert "| 3/3 (lipread, lrcar, voxceleb2) |" in row
    assert "| non-en (ar) | 3 | lrcar 3 |" in md
    a = sel["candidates"]["A"]["figures"]["lip_corr"]
    assert f"| `A` | 3 | {a['mean']:.3g} ± {a['std']:.3g} [{a['min']:.3g}–{a['max']:.3g}] |" in md
    (tmp_path / "sample.md").write_text(md)


def test_clips_without_a_family_are_one_family_unknown(real_clips, generators, stats):
    from a2k_toolkit.builtin.logmel import LogMel
    from a2k_toolkit.eval.report import markdown

    res = evaluate({"static": generators["static"]}, real_clips[:2], LogMel(), normalizer=stats)
    sel = res.selection()
    assert list(sel["families"]) == ["unknown"] and list(sel["languages"]) == ["unknown"]
    assert sel["family_mean"]["static"]["lmd"]["mean"] == pytest.approx(res.aggregate["static"]["lmd"]["mean"])
    md = markdown(res, [])
    assert "No clip has a source family" in md and "## By language" not in md and "## Spread over seeds" not in md


def test_config_entries_name_their_candidate(tmp_path):
    from a2k_toolkit.errors import ConfigError
    from a2k_toolkit.eval.config import candidate_map, load_eval_config, with_fold

    cfg = tmp_path / "eval.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "entries": [
                    "static",
                    {
                        "label": "B, run 0",
                        "candidate": "B",
                        "generator": {"name": "audio2keypoint", "params": {"checkpoint": "runs/b-f{fold}-s0"}},
                    },
                    {
                        "candidate": "B",
                        "generator": {"name": "audio2keypoint", "params": {"checkpoint": "runs/b-f{fold}-s1"}},
                    },
                ]
            }
        )
    )
    entries = load_eval_config(cfg).entries
    assert candidate_map(entries) == {"B, run 0": "B", "audio2keypoint:b-f{fold}-s1": "B"}
    assert candidate_map(with_fold(entries, 2)) == candidate_map(entries)  # the fold keeps labels and candidates
    cfg.write_text(yaml.safe_dump({"entries": [{"candidate": "", "generator": {"name": "static"}}]}))
    with pytest.raises(ConfigError, match="candidate"):
        load_eval_config(cfg)


def test_cli_reports_families_and_candidates(family_clips, tmp_path):
    from a2k_toolkit.cli import main
    from a2k_toolkit.data.clips import save_clip

    clips = tmp_path / "clips"
    for clip in family_clips[:5]:
        save_clip(clips / f"{clip.clip_id}.npz", clip)
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "entries": [
                    "static",
                    "procedural",
                    {"label": "P: seed 0", "generator": {"name": "procedural", "params": {"mouth_open": 0.2}}},
                    {"label": "P: seed 1", "generator": {"name": "procedural", "params": {"mouth_open": 0.5}}},
                    {
                        "label": "wide",
                        "candidate": "Q",
                        "generator": {"name": "procedural", "params": {"head_motion": 0.08}},
                    },
                ]
            }
        )
    )
    out = tmp_path / "report"
    assert main(["eval", "--clips", str(clips), "--config", str(cfg), "--out", str(out), "--quiet", "--no-plots"]) == 0
    sel = json.loads((out / "results.json").read_text())["selection"]
    assert list(sel["families"]) == ["lipread", "lrcar", "voxceleb2"]
    assert {k: v["labels"] for k, v in sel["candidates"].items()} == {"P": ["P: seed 0", "P: seed 1"], "Q": ["wide"]}
    p = sel["candidates"]["P"]["figures"]["mouth_ratio"]
    assert p["min"] < p["max"]  # a wider jaw drop, a larger mouth amplitude
    assert "## Spread over seeds" in (out / "report.md").read_text()
