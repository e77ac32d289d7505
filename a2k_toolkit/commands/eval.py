"""``a2k eval``: score generators on real clips and write a report (markdown tables, PNG plots, JSON numbers)."""

from __future__ import annotations

import sys
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate keypoint generators on real clips and write a report",
        description="Run each generator on each clip (frame 0 of the clip as the reference face, the clip's own "
        "audio as input) and compare with the clip's real keypoints: L1 and PCK (paper §5.3), mouth landmark "
        "distance, lip-sync correlations, motion amplitude, jerk and identity error. Writes REPORT_DIR/report.md, "
        "results.json and plots/*.png. Clips that carry a source family (datasets built from a manifest with a "
        "family column) also get every figure as the mean over families, by language, and the spread over each "
        "candidate's seeds. Metric definitions: docs/evaluation.md.",
    )
    _add_inputs(p)
    _add_selection(p)
    p.add_argument("--device", default="auto", help="device: auto (default), cpu, cuda, mps")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument(
        "--save-predictions",
        action="store_true",
        help="also write each scored clip's real and predicted keypoints to REPORT_DIR/predictions/ (one .npz a "
        "clip; a2k_toolkit.eval.predictions.load_predictions reads them)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=run)


def _add_inputs(p) -> None:
    """The clips, the generators and what scores them."""
    p.add_argument(
        "--clips",
        nargs="+",
        required=True,
        metavar="PATH",
        help="saved clip files (.npz, data.clips.save_clip), videos, or directories of them",
    )
    p.add_argument(
        "--generators",
        action="append",
        metavar="SPECS",
        help="comma-separated generator names, NAME:CHECKPOINT_DIR to set a checkpoint; may repeat "
        "(default: static,procedural when --config has no entries)",
    )
    p.add_argument(
        "--config",
        help="eval config file (YAML/JSON/TOML): labelled generator entries with params "
        "(and the candidate each is one seed of), audio front-end, seed, alpha, max_lag, normalizer; see "
        "docs/evaluation.md",
    )
    p.add_argument("--out", default="eval-report", metavar="REPORT_DIR", help="report directory (default: eval-report)")
    p.add_argument(
        "--cache",
        metavar="DIR",
        help="cache of keypoints extracted from videos (default: $XDG_CACHE_HOME/a2k-toolkit/eval-clips)",
    )
    p.add_argument("--no-cache", action="store_true", help="extract video keypoints without reading/writing a cache")
    p.add_argument("--detector", default="dlib", help="keypoint detector for videos (default: dlib)")
    p.add_argument("--audio", help="audio front-end name (overrides the config's; default logmel)")
    p.add_argument(
        "--norm-stats",
        metavar="JSON",
        help="L1 statistics (Normalizer.to_dict JSON, or a results.json); default: fitted on the "
        "evaluated clips' ground truth",
    )
    p.add_argument("--seed", type=int, help="seed for stochastic generators (overrides the config's; default 0)")


def _add_selection(p) -> None:
    """Which clips are scored: a subset, dataset splits, cross-validation folds."""
    p.add_argument("--limit", type=int, metavar="N", help="evaluate only the first N clips")
    p.add_argument(
        "--max-per-family",
        type=int,
        metavar="N",
        help="score at most N clips of each source family: a fixed subset spread over the family (the "
        "N with the lowest hash of their clip id), the same in every fold and run; figures are means over "
        "families, so a family of 1,600 one-word clips is measured well by a few hundred of them",
    )
    p.add_argument(
        "--split",
        metavar="NAME",
        help="treat each --clips path as a built dataset directory and "
        "evaluate its split NAME (or NAME,NAME: several splits)",
    )
    p.add_argument(
        "--fold",
        metavar="I/N",
        help="cross-validation: evaluate only the people dealt into fold I of N "
        "(as a training run with data.folds: N, data.fold: I over the same clips; docs/training.md); "
        "{fold} in a checkpoint path becomes I",
    )
    p.add_argument(
        "--folds",
        type=int,
        metavar="N",
        help="cross-validation: evaluate every fold I of N on its "
        "held-out people, with {fold} in checkpoint paths replaced by I, and report all clips together",
    )
    p.add_argument("--fold-seed", type=int, default=0, help="seed of the deal into folds (data.fold_seed; default 0)")
    p.add_argument(
        "--photo-gap",
        type=int,
        metavar="N",
        help="score each clip with its frame 0 as the photo and its audio and later frames from frame N on (less "
        "for clips under N + 16 frames; every clip stays): the photo's moment then does not match the speech's "
        "start, as a user's photo does not",
    )


def check_held_out(generators, held, where: str) -> None:
    """Refuse to score a cross-validation model on other people than those its fold held out in training (recorded
    in its checkpoint): a deal over other clips, or another fold seed, would score it on people it trained on."""
    from ..errors import InputError

    people = sorted({c.identity for c in held})
    for label, gen in generators.items():
        for info in getattr(gen, "members", []):
            cv = info.meta.get("cross_validation")
            if cv and sorted(cv.get("held_out") or []) != people:
                raise InputError(
                    f"{label!r}: checkpoint {info.path} was trained holding out {', '.join(cv.get('held_out') or [])} "
                    f"(fold {cv.get('fold')}/{cv.get('folds')}, fold seed {cv.get('fold_seed')}), but {where} of "
                    f"these clips holds out {', '.join(people) or 'nobody'}; give eval the clips the run dealt its "
                    "folds from (the same dataset splits) and the same --fold-seed"
                )


def _check_args(args) -> tuple[tuple[int, int] | None, list[str | None], Path]:
    """The flags checked on their own, before anything is read: the fold, the dataset splits, the report folder."""
    from ..data.folds import parse_fold
    from ..errors import InputError

    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be at least 1, got {args.limit}")
    fold = parse_fold(args.fold) if args.fold else None
    if args.folds is not None:
        if fold is not None:
            raise InputError("give --fold I/N (one fold) or --folds N (every fold), not both")
        if args.folds < 2:
            raise InputError(f"--folds must be at least 2, got {args.folds}")
        if args.limit:
            raise InputError("--limit cannot be combined with --folds (every fold needs its people)")
    splits = [s.strip() for s in args.split.split(",") if s.strip()] if args.split else [None]
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a directory; give a directory for the report")
    return fold, splits, out


def _select_clips(args, catalog, detector_spec, device, frontend, splits, fold, generators):
    """The clips to score (read lazily where nothing needs them all) and the ``--max-per-family`` subset's clip ids
    (None without it); with ``--fold`` only that fold's held-out people, checked against its ``generators``."""
    import itertools

    from ..data.folds import family_of, family_subset, group_of, split_fold
    from ..errors import InputError
    from ..eval.sources import default_cache_dir, iter_clips

    cache = None if args.no_cache else Path(args.cache) if args.cache else default_cache_dir()
    clips = itertools.chain.from_iterable(
        iter_clips(
            args.clips,
            detector=lambda: catalog.build("detector", detector_spec).to(device),
            cache_dir=cache,
            fps=frontend.fps,
            sample_rate=frontend.sample_rate,
            split=split,
        )
        for split in splits
    )
    if args.photo_gap:
        from ..eval.sources import photo_gap

        clips = photo_gap(clips, args.photo_gap)
    if args.max_per_family is not None and args.max_per_family < 1:
        raise InputError(f"--max-per-family must be at least 1, got {args.max_per_family}")
    keep = None
    if args.max_per_family:  # the subset is chosen over all clips, before any fold is dealt
        clips = list(clips)
        keep = family_subset(clips, args.max_per_family)
    if fold is not None:  # the deal needs every identity first
        clips = split_fold(list(clips), group_of, fold[0], fold[1], args.fold_seed, family_of)[1]
        check_held_out(generators, clips, f"fold {fold[0]}/{fold[1]}")
    if keep is not None and not args.folds:
        clips = [c for c in clips if c.clip_id in keep]
    if args.limit:
        clips = itertools.islice(clips, args.limit)
    return clips, keep


def _evaluate_folds(args, clips, keep, per_fold, frontend, normalizer, norm_path, scoring, progress, writer):
    """``--folds N``: each fold's generators on the people it held out, merged into one set of results (one set of
    L1 statistics for all folds, so their clips average as one table)."""
    from ..data.folds import family_of, group_of, split_fold
    from ..eval.evaluate import evaluate, fit_normalizer, merge_results

    clips = list(clips)
    if normalizer is None:
        normalizer = fit_normalizer(clips)
    parts = []
    for i, generators in enumerate(per_fold):
        held = split_fold(clips, group_of, i, args.folds, args.fold_seed, family_of)[1]
        check_held_out(generators, held, f"fold {i}/{args.folds}")
        if keep is not None:
            held = [c for c in held if c.clip_id in keep]
        progress(f"fold {i}/{args.folds}: {', '.join(sorted({c.identity for c in held}))}")
        if writer is not None:
            writer.fold = i
        parts.append(
            evaluate(
                generators, held, frontend, normalizer=normalizer, progress=progress, predictions=writer, **scoring
            )
        )
    checkpoints = {}  # label -> the checkpoint of each fold
    for lb in per_fold[0]:
        ckpts = [gens[lb].params.model_dump(mode="json").get("checkpoint") for gens in per_fold]
        if any(c is not None for c in ckpts):
            checkpoints[lb] = ckpts
    cv = {"folds": args.folds, "fold_seed": args.fold_seed, "checkpoints": checkpoints}
    source = (
        f"given ({Path(norm_path).name})"
        if norm_path
        else f"fitted on the ground truth of all {len(clips)} clips of the folds"
    )
    return merge_results(parts, {"cross_validation": cv, "normalizer_source": source})


def run(args) -> int:
    from ..catalog import Catalog
    from ..config import ComponentSpec, validate_spec
    from ..device import resolve_device
    from ..eval.config import build_generators, candidate_map, load_eval_config, load_normalizer, parse_generator_specs
    from ..eval.evaluate import evaluate
    from ..eval.report import summary_table, write_report

    fold, splits, out = _check_args(args)
    cfg = load_eval_config(args.config)
    entries = list(cfg.entries) + parse_generator_specs(args.generators)
    if not entries:
        entries = parse_generator_specs(["static,procedural"])
    catalog = Catalog()  # the run's one catalog: every component below is checked and built through it
    # validate everything (generators, front-end, detector, stats) before any weights load or clip is read
    audio_spec = ComponentSpec(name=args.audio) if args.audio else cfg.audio
    validate_spec(audio_spec, catalog, "audio", kind="audio", what="audio front-end")  # a stack's members too
    detector_spec = ComponentSpec(name=args.detector)
    validate_spec(detector_spec, catalog, "detector", kind="detector")
    norm_path = args.norm_stats or cfg.normalizer
    normalizer = load_normalizer(norm_path) if norm_path else None
    device = resolve_device(args.device)
    fold_ids = range(args.folds) if args.folds else [fold[0] if fold else None]
    # every fold's generators are built (configs read and checked; weights load on first use) before any clip is read
    per_fold = [build_generators(entries, catalog, fold=i) for i in fold_ids]
    frontend = catalog.build("audio", audio_spec).to(device)  # a stack builds its members here
    for generators in per_fold:
        for gen in generators.values():
            gen.to(device)
    clips, keep = _select_clips(args, catalog, detector_spec, device, frontend, splits, fold, per_fold[0])

    def progress(msg: str) -> None:
        if not args.quiet:
            print(f"  {msg}", file=sys.stderr, flush=True)

    writer = None
    if args.save_predictions:
        from ..eval.predictions import PredictionWriter

        writer = PredictionWriter(out / "predictions")
    seed = args.seed if args.seed is not None else cfg.seed
    scoring = {"alpha": cfg.alpha, "max_lag": cfg.max_lag, "seed": seed, "candidates": candidate_map(entries)}
    if args.folds:
        results = _evaluate_folds(
            args, clips, keep, per_fold, frontend, normalizer, norm_path, scoring, progress, writer
        )
    else:
        results = evaluate(
            per_fold[0], clips, frontend, normalizer=normalizer, progress=progress, predictions=writer, **scoring
        )
        if norm_path:
            results.settings["normalizer_source"] = f"given ({Path(norm_path).name})"
    if args.photo_gap:
        results.settings["photo_gap"] = args.photo_gap
    written = write_report(results, out, plots=not args.no_plots)
    print("\n".join(summary_table(results)))
    print(f"{results.num_clips} clips, {results.seconds:.1f} s -> {written['markdown']}")
    if writer is not None:
        print(f"{writer.count} clips' predictions -> {writer.folder}")
    return 0
