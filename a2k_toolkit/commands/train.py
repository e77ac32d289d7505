"""``a2k train CONFIG [--resume]``: train an Audio2Keypoint model (multi-GPU: launch it with ``torchrun``)."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train an Audio2Keypoint model from a training config",
        description="Train the Audio2Keypoint GAN (paper §4) from a YAML training config. Checkpoints go to the "
        "config's run_dir (latest/ and best/). For several GPUs or nodes launch with torchrun, e.g. "
        "`torchrun --nproc_per_node 4 -m a2k_toolkit.cli train CONFIG`.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("config", help="training config file (YAML, JSON or TOML); see configs/train/")
    p.add_argument("--resume", action="store_true", help="continue the run in run_dir from its latest/ checkpoint")
    p.add_argument("--run-dir", default=None, help="override the config's run_dir")
    p.add_argument("--device", default=None, help="override the config's device (auto, cpu, cuda, mps)")
    p.add_argument("--max-steps", type=int, default=None, help="override the config's max_steps")
    p.add_argument("--seed", type=int, default=None, help="override the config's seed")
    p.add_argument(
        "--fold",
        default=None,
        metavar="I/N",
        help="cross-validation by identity: hold out fold I of N of data.train's people as the validation "
        "set (sets data.folds and data.fold; score it with `a2k eval --fold I/N`)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..cpu_runtime import TRAIN_ENV_DEFAULTS, apply_env_defaults

    apply_env_defaults(TRAIN_ENV_DEFAULTS)  # before torch loads: OpenMP reads it once (docs/training.md, Performance)
    from ..training import train

    overrides = {"run_dir": args.run_dir, "device": args.device, "max_steps": args.max_steps, "seed": args.seed}
    if args.fold is not None:
        from ..data.folds import parse_fold

        fold, folds = parse_fold(args.fold)
        overrides["data"] = {"folds": folds, "fold": fold}
    if args.no_progress:
        overrides["progress"] = False
    summary = train(args.config, resume=args.resume, **overrides)
    best = summary["best_val"]
    print(
        f"trained to step {summary['step']} (epoch {summary['epoch']}); "
        + (
            f"best validation {summary['val_metric']} {best:.4f} at step {summary['best_step']}; "
            if best is not None
            else ""
        )
        + f"checkpoints in {summary['run_dir']}"
    )
    return 0
