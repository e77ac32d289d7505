"""``a2k mouth-prior CONFIG --out FILE``: fit the mouth prior (a2k_toolkit/mouth_prior.py) on a run's training
clips."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "mouth-prior",
        help="fit the mouth prior (where a talking mouth sits, given the photo's) on a training config's clips",
        description="Fit the mouth prior on exactly the clips `a2k train CONFIG` trains on (with --fold, the clips of "
        "the other folds' people only): a ridge regression from each clip's first-frame mouth to the mean of its "
        "mouth over the clip, relative to the nose tip, in units of the inter-ocular distance. audio2keypoint adds "
        "it with `mouth_prior` (docs/model.md); `a2k ensemble --mouth-prior FILE` bundles it with a model.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("config", help="training config file (YAML, JSON or TOML); see configs/train/")
    p.add_argument("--out", required=True, help="prior file to write (safetensors, written atomically)")
    p.add_argument(
        "--fold",
        default=None,
        metavar="I/N",
        help="cross-validation by identity: fit on the people outside fold I of N, as `a2k train --fold I/N` trains",
    )
    p.add_argument("--ridge", type=float, default=None, help="ridge penalty (default: mouth_prior.RIDGE)")
    p.add_argument(
        "--family-cap",
        type=int,
        default=None,
        help="a source family with more clips weighs as this many (default: mouth_prior.FAMILY_CAP)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from ..catalog import Catalog
    from ..data.folds import family_of
    from ..errors import InputError
    from ..mouth_prior import FAMILY_CAP, RIDGE, clip_sample, fit_mouth_prior
    from ..training.config import load_train_config
    from ..training.datasets import training_clips

    ridge = RIDGE if args.ridge is None else args.ridge
    cap = FAMILY_CAP if args.family_cap is None else args.family_cap
    if not ridge > 0:
        raise InputError(f"--ridge must be > 0, got {args.ridge}")
    if cap < 1:
        raise InputError(f"--family-cap must be at least 1, got {args.family_cap}")
    overrides = {}
    if args.fold is not None:
        from ..data.folds import parse_fold

        fold, folds = parse_fold(args.fold)
        overrides["data"] = {"folds": folds, "fold": fold}
    cfg = load_train_config(args.config, **overrides)
    clips = training_clips(cfg, Catalog())
    samples, skipped = [], 0
    for clip in clips:
        s = clip_sample(clip.keypoints, clip.valid)
        if s is None:
            skipped += 1
        else:
            samples.append((*s, family_of(clip)))
    meta = {"config": str(args.config), **({"fold": args.fold} if args.fold else {})}
    prior = fit_mouth_prior(samples, ridge=ridge, family_cap=cap, meta=meta)
    prior.save(args.out)
    fams = ", ".join(f"{k} {v}" for k, v in prior.meta["families"].items())
    print(f"wrote mouth prior {args.out}: {len(samples)} clips ({fams}); {skipped} too short or faceless skipped")
    return 0
