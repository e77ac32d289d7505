"""``a2k plugins list``: every registered component with its kind, providing plugin and version."""

from __future__ import annotations

import json


def add_parser(sub) -> None:
    p = sub.add_parser("plugins", help="list installed plugins and their components")
    psub = p.add_subparsers(dest="plugins_command", metavar="SUBCOMMAND", required=True)
    lst = psub.add_parser("list", help="list every component: name, kind, plugin, distribution and version")
    lst.add_argument("--kind", choices=["audio", "speech", "detector", "encoder", "generator", "renderer"])
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    lst.set_defaults(func=run_list)


def run_list(args) -> int:
    from ..catalog import Catalog

    entries = Catalog().entries(args.kind)
    rows = [
        {
            "name": e.name,
            "kind": e.kind,
            "plugin": e.plugin,
            "distribution": e.distribution or "-",
            "version": e.version or "-",
            "summary": e.cls.summary(),
        }
        for e in entries
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    cols = ["kind", "name", "distribution", "version", "plugin"]
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) if rows else len(c) for c in cols}
    print("  ".join(c.upper().ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(r[c].ljust(widths[c]) for c in cols))
    return 0
