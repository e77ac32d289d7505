"""Cross-validation by identity: the deal into folds, training on all folds but one, and `a2k eval --fold/--folds`."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from a2k_toolkit.data.folds import identity_folds, parse_fold, split_fold
from a2k_toolkit.errors import InputError
from a2k_toolkit.training.config import load_train_config


def test_the_deal_is_deterministic_balanced_and_covers_everyone():
    names = [f"person{i:02d}" for i in range(17)]
    deal = identity_folds(reversed(names), 4)  # the order given does not matter
    assert deal == identity_folds(names * 2, 4)  # nor do repeats (several clips of one person)
    assert set(deal) == set(names)
    sizes = sorted(list(deal.values()).count(f) for f in range(4))
    assert sizes == [4, 4, 4, 5]
    assert identity_folds(names, 4, seed=1) != deal  # another seed, another deal
    assert sorted(identity_folds(names, 4, seed=1).values()) == sorted(deal.values())


def test_split_fold_holds_out_whole_people_in_order():
    items = [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("d", 5), ("b", 6)]
    seen = []
    for fold in range(2):
        rest, held = split_fold(items, lambda x: x[0], fold, 2)
        assert sorted(rest + held) == sorted(items)
        assert not {x[0] for x in rest} & {x[0] for x in held}  # a person is on one side only
        assert held == [x for x in items if x in held]  # the original order is kept
        seen += held
    assert sorted(seen) == sorted(items)  # every item is held out exactly once over the folds


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: identity_folds(["a", "b"], 3), "2 identities cannot fill 3 folds"),
        (lambda: identity_folds(["a", "b"], 1), "at least 2 folds"),
        (lambda: parse_fold("2/2"), "0 <= I < N"),
        (lambda: parse_fold("1-4"), "I/N"),
    ],
)
def test_bad_folds_are_clear_errors(call, message):
    with pytest.raises(InputError, match=message):
        call()


def test_train_config_checks_the_fold(tiny_train_config, tmp_path):
    from a2k_toolkit.errors import ConfigError

    with pytest.raises(ConfigError, match="fold 3 is out of range for 3 folds"):
        load_train_config(tiny_train_config(tmp_path, tmp_path / "r", data={"folds": 3, "fold": 3}))
    with pytest.raises(ConfigError, match="remove data.val"):
        load_train_config(tiny_train_config(tmp_path, tmp_path / "r", data={"folds": 3, "val": [str(tmp_path)]}))


def test_a_fold_trains_on_the_other_people_and_validates_on_its_own(
    real_clips_dir, real_clips, tiny_train_config, catalog, tmp_path
):
    from a2k_toolkit.training import Trainer

    people = sorted({c.identity for c in real_clips})
    assert len(people) == 3
    deal = identity_folds(people, 3)
    for fold in range(3):
        cfg = tiny_train_config(real_clips_dir, tmp_path / f"f{fold}", data={"folds": 3, "fold": fold})
        trainer = Trainer(cfg, catalog=catalog)
        held = {c.identity for c in trainer.val_set.clips}
        assert held == {p for p in people if deal[p] == fold}
        assert {c.identity for c in trainer.train_set.clips} == set(people) - held


def test_train_and_eval_folds_from_the_cli(real_clips_dir, real_clips, tiny_train_config, tmp_path, capsys):
    """`a2k train --fold I/N` per fold, then `a2k eval --folds N` scores each fold's model on its held-out people and
    reports all of them together; `--fold I/N` gives one fold's figures, the same as in the merged report."""
    from a2k_toolkit.cli import main

    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml.safe_dump(tiny_train_config(real_clips_dir, tmp_path / "unused", max_steps=2)))
    deal = identity_folds({c.identity for c in real_clips}, 3)
    for fold in range(3):
        assert (
            main(["train", str(cfg), "--fold", f"{fold}/3", "--seed", "1", "--run-dir", str(tmp_path / f"cv-f{fold}")])
            == 0
        )
        meta = json.loads((tmp_path / f"cv-f{fold}" / "latest" / "config.json").read_text())
        saved = meta["train_config"]
        assert (saved["data"]["folds"], saved["data"]["fold"], saved["seed"]) == (3, fold, 1)
        assert meta["cross_validation"]["held_out"] == sorted(p for p, f in deal.items() if f == fold)
        assert not (tmp_path / f"cv-f{fold}" / "best").exists()  # it would be picked on the held-out people
    capsys.readouterr()
    ev = tmp_path / "eval.yaml"
    template = str(tmp_path / "cv-f{fold}" / "latest")
    ev.write_text(
        yaml.safe_dump(
            {
                "entries": [
                    "static",
                    {
                        "label": "model",
                        "generator": {"name": "audio2keypoint", "params": {"checkpoint": template, "fast": False}},
                    },
                ]
            }
        )
    )
    # fast: false keeps every run on one arithmetic path (the fast path picks worker threads by the machine's load)
    base = ["eval", "--clips", str(real_clips_dir), "--config", str(ev), "--no-plots", "--quiet"]
    assert main([*base, "--folds", "3", "--out", str(tmp_path / "all")]) == 0
    merged = json.loads((tmp_path / "all" / "results.json").read_text())
    assert merged["num_clips"] == len(real_clips)
    assert merged["settings"]["cross_validation"]["checkpoints"]["model"] == [template.format(fold=f) for f in range(3)]
    per_fold = {}
    for fold in range(3):
        assert (
            main(
                [
                    *base,
                    "--fold",
                    f"{fold}/3",
                    "--out",
                    str(tmp_path / f"one{fold}"),
                    "--norm-stats",
                    str(tmp_path / "all" / "results.json"),
                ]
            )
            == 0
        )
        one = json.loads((tmp_path / f"one{fold}" / "results.json").read_text())
        assert one["num_clips"] == 1
        per_fold.update({c["clip_id"]: c for c in one["clips"]})
    for clip in merged["clips"]:
        assert clip["generators"]["model"] == pytest.approx(per_fold[clip["clip_id"]]["generators"]["model"])
    # a {fold} checkpoint without --fold/--folds, and both at once, are user errors
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "x")]) == 2
    assert "--folds N" in capsys.readouterr().err
    assert main([*base, "--folds", "3", "--fold", "0/3", "--out", str(tmp_path / "x")]) == 2
    assert "not both" in capsys.readouterr().err
    # another fold seed deals other people: scoring a fold's model on people it trained on is refused
    assert main([*base, "--folds", "3", "--fold-seed", "5", "--out", str(tmp_path / "x")]) == 2
    assert "was trained holding out" in capsys.readouterr().err
    shutil.rmtree(tmp_path / "cv-f2")
    assert main([*base, "--folds", "3", "--out", str(tmp_path / "x")]) == 2  # checked before any clip is scored
    assert "cv-f2" in capsys.readouterr().err


def test_the_repo_selection_configs_name_the_runs_make_cv_trains():
    """configs/eval/selection/*.yaml (make cv): every model entry names a fold's run of a candidate that `make cv`
    trains (configs/train/shipped/CONFIG.yaml exists, the seed is stage 1's 0, one of the winner's stage-2 seeds,
    one of the stage-3 recipe's seeds or one of stage 7's seeds of H)."""
    import re
    from pathlib import Path

    from a2k_toolkit.eval.config import load_eval_config, with_fold

    repo = Path(__file__).resolve().parents[1]
    makefile = (repo / "Makefile").read_text()
    candidates = dict(reversed(c.split(":")) for c in re.search(r"CV_CANDIDATES \?= (.+)", makefile).group(1).split())
    for later in ("CV_STAGE4", "CV_STAGE6"):  # seed 0 of each
        candidates.update(reversed(c.split(":")) for c in re.search(rf"{later} \?= (.+)", makefile).group(1).split())
    more_seeds: dict[str, set[str]] = {}  # label: the seeds beyond 0 that make cv trains of it
    for var in ("CV_WINNER", "CV_STAGE3", "CV_STAGE7"):  # CONFIG:LABEL and VAR_SEEDS
        cfg, label = re.search(rf"{var} \?= (\S+):(\w+)", makefile).groups()
        assert candidates.setdefault(label, cfg) == cfg  # a label names one recipe
        more_seeds.setdefault(label, set()).update(re.search(rf"{var}_SEEDS \?= ([\d ]+)", makefile).group(1).split())
    assert all((repo / "configs" / "train" / "shipped" / f"{cfg}.yaml").is_file() for cfg in candidates.values())
    reports = re.search(r"for fe in ([\w -]+); do", makefile).group(1).split() + ["photo-gap"]
    assert {"stage5b", "stage6", "stage7"} <= set(reports)
    for fe in reports:
        entries = load_eval_config(repo / "configs" / "eval" / "selection" / f"{fe}.yaml").entries
        assert len({e.display_label for e in entries}) == len(entries)
        for fold in range(3):
            for e in with_fold(entries, fold):
                ckpt = e.generator.params.get("checkpoint")
                for path in [ckpt] if isinstance(ckpt, str) else ckpt or []:
                    label, f, seed = re.fullmatch(r"runs/cv-all/(\w)-f(\d)-s(\d)/latest", path).groups()
                    assert label in candidates and int(f) == fold
                    assert seed == "0" or seed in more_seeds.get(label, set())
