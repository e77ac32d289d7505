"""``a2k config schema`` and ``a2k config validate FILE``."""

from __future__ import annotations

import json


def add_parser(sub) -> None:
    p = sub.add_parser("config", help="print the config schema or validate a config file")
    csub = p.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    sch = csub.add_parser("schema", help="print the JSON schema of the pipeline config")
    sch.set_defaults(func=run_schema)
    val = csub.add_parser(
        "validate",
        help="check a config file: shape, component names, every slot's params and that "
        "the files they name (checkpoints, the pose source) exist",
    )
    val.add_argument("file", help="YAML, JSON or TOML config file")
    val.set_defaults(func=run_validate)
    show = csub.add_parser("show", help="print the full config (defaults filled in) as YAML")
    show.add_argument("file", nargs="?", help="config file (default: the built-in defaults)")
    show.set_defaults(func=run_show)


def run_schema(args) -> int:
    from ..config import config_schema

    print(json.dumps(config_schema(), indent=2))
    return 0


def _resolved(path, paths: bool = False, frontend: bool = False):
    """The config with every slot's params validated and filled in; ``paths``: the files they name must exist, and
    the pose source must be one (read as a pose source is: a keypoint file read, a video probed);
    ``frontend``: an unset ``audio`` slot is filled in with the generator's front-end (read from its checkpoint)."""
    from .. import formats
    from ..catalog import Catalog
    from ..config import check_paths, load_config, validate_components, with_frontend

    cfg = load_config(path)
    catalog = Catalog()
    params = validate_components(cfg, catalog)
    if paths:
        check_paths(params)
        if cfg.pose is not None:
            from ..pose import PoseSource

            formats.add_plugin_formats(catalog.pm)  # a pose file in a plugin's format (mediapipe landmarks)
            PoseSource(cfg.pose)  # a missing source: "invalid config: pose.source: ... not found", as above
    if frontend:
        cfg = with_frontend(cfg, catalog)
        params = validate_components(cfg, catalog)  # the slots checked above are not checked again
    data = cfg.model_dump(mode="json")
    for slot, p in params.items():
        data[slot]["params"] = p.model_dump(mode="json")
    return data


def run_validate(args) -> int:
    data = _resolved(args.file, paths=True)
    if data.get("audio") is None:  # unset: the front-end the generator declares (not read here)
        data["audio"] = {"name": "the generator's"}
    names = ", ".join(f"{k}={v['name']}" for k, v in data.items() if isinstance(v, dict) and "name" in v)
    if data.get("pose") is not None:  # not a component: its source
        names += f", pose={data['pose']['source']}"
    print(f"{args.file}: valid ({names})")
    return 0


def run_show(args) -> int:
    import yaml

    print(yaml.safe_dump(_resolved(args.file, frontend=True), sort_keys=False), end="")
    return 0
