"""``a2k ensemble OUT CHECKPOINT...``: bundle trained checkpoints into one ensemble directory."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser(
        "ensemble",
        help="bundle checkpoints of one recipe (e.g. several seeds) into an ensemble directory",
        description="Copy the given checkpoints (checkpoint directories, or run directories: best/, else latest/) "
        "into OUT/member-K and write OUT/ensemble.json. The audio2keypoint generator loads OUT like a checkpoint "
        "(`checkpoint: OUT`) and averages its members' predictions. The members must share the front-end, window and "
        "keypoint statistics: models of one recipe on one data set (docs/model.md).",
    )
    p.add_argument("out", metavar="OUT", help="ensemble directory to write (replaced atomically if it exists)")
    p.add_argument(
        "checkpoints",
        nargs="+",
        metavar="CHECKPOINT",
        help="checkpoint or run directories (one: a packaged model that carries --default settings)",
    )
    p.add_argument("--description", default="", help="free text stored in ensemble.json (e.g. the recipe)")
    p.add_argument(
        "--mouth-prior",
        default=None,
        metavar="FILE",
        help="a mouth prior (`a2k mouth-prior`) to bundle as OUT/mouth_prior.safetensors; the generator's "
        "`mouth_prior` strength (e.g. --default mouth_prior=0.75) then uses it",
    )
    p.add_argument(
        "--default",
        action="append",
        default=[],
        metavar="PARAM=VALUE",
        help="a generator param's default for this model (head_motion, mouth_scale, mouth_prior, ...): used where the "
        "pipeline config leaves it unset; may repeat",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import InputError
    from ..models.ensemble import ensemble_members, write_ensemble

    defaults = {}
    for item in args.default:
        key, sep, value = item.partition("=")
        try:
            defaults[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise InputError(f"--default {item!r}: expected PARAM=NUMBER, e.g. --default head_motion=2")
    if len(args.checkpoints) < 2 and not defaults:
        raise InputError(
            "an ensemble needs at least 2 checkpoints (or --default settings to package with one); a "
            "single checkpoint is used directly as `checkpoint`"
        )
    out = write_ensemble(args.out, args.checkpoints, args.description, defaults, args.mouth_prior)
    print(f"wrote ensemble {out} with {len(ensemble_members(out))} members")
    return 0
