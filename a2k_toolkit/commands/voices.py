"""``a2k voices``: the languages (and voice variants) a speech synthesizer offers for ``a2k generate --text --lang``."""

from __future__ import annotations

import json

from ..errors import InputError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "voices",
        help="list the languages (and voice variants) for text input",
        description="List the languages a speech synthesizer can speak (the values of `a2k generate --lang`).",
    )
    p.add_argument("--speech", default="espeak", help="speech synthesizer component (default: espeak)")
    p.add_argument("--variants", action="store_true", help="list voice variants (f3, m1, klatt, ...) instead")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..catalog import Catalog

    cls = Catalog().get("speech", args.speech)
    lister = getattr(cls, "variants" if args.variants else "languages", None)
    if lister is None:
        what = "voice variants" if args.variants else "languages"
        raise InputError(f"speech synthesizer {args.speech!r} does not list its {what}")
    items = lister()
    if args.variants:
        print(json.dumps(list(items)) if args.json else "\n".join(items))
        return 0
    rows = [{"code": x.code, "name": x.name, "aliases": list(x.aliases)} for x in items]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["code"]) for r in rows) if rows else 4
    print(f"{'CODE'.ljust(width)}  NAME")
    for r in rows:
        also = f"  (also: {', '.join(r['aliases'])})" if r["aliases"] else ""
        print(f"{r['code'].ljust(width)}  {r['name']}{also}")
    print(f"{len(rows)} voices; use a code with `a2k generate --text ... --lang CODE`")
    return 0
