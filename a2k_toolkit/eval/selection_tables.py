"""The report's "Mean over families" part (the selection protocol, docs/evaluation.md): the family-mean table, one
table per headline figure over families, the language groups and the spread over seeds (:func:`selection_section`).
"""

from __future__ import annotations

from .results import EvalResults
from .tables import aggregate_table, fmt, md_table

ARROW = {"lower": " ↓", "higher": " ↑", "1": " →1", "": ""}


def _figures(sel: dict) -> list[tuple[str, str]]:
    """``(key, header)`` of the headline figures present (LMD ×static only with a `static` generator)."""
    keys = {k for per in sel["headline"].values() for k in per}
    return [(k, f"{f['title']}{ARROW[f['better']]}") for k, f in sel["figures"].items() if k in keys]


def _range(s: dict) -> str:
    """``mean [min–max]`` of a spread over families."""
    if s["mean"] is None:
        return "n/a"
    if s["n_families"] < 2:
        return fmt(s["mean"])
    return f"{fmt(s['mean'])} [{fmt(s['min'])}–{fmt(s['max'])}]"


def _family_name(fam: str, entry: dict) -> str:
    """``lipread`` (lrs2+lrs3): the family and, when it pools several, the source families in it."""
    sources = [x for x in entry["sources"] if x != fam]
    return f"`{fam}` ({'+'.join(sources)})" if sources else f"`{fam}`"


def _wins(wins: dict | None, label: str) -> str | None:
    if wins is None:
        return None
    if label not in wins["labels"]:
        return "—"
    w = wins["labels"][label]
    return f"{len(w['won'])}/{w['n_families']}" + (f" ({', '.join(w['won'])})" if w["won"] else "")


def family_mean_table(labels: list[str], view: dict, sel: dict) -> list[str]:
    """One row per generator: each headline figure as the mean over families [min–max], and families won on lip
    sync against `procedural` (when it is a label)."""
    figs = _figures(sel)
    wins = view["lip_sync_wins"]
    header = ["generator", "families", *(h for _, h in figs)]
    if wins is not None:
        header.append(f"lip sync won vs `{wins['against']}`")
    rows = []
    for label in labels:
        per = view["headline"][label]
        row = [f"`{label}`", str(per["lip_corr"]["n_families"]), *(_range(per[k]) for k, _ in figs)]
        if wins is not None:
            row.append(_wins(wins, label))
        rows.append(row)
    return md_table(header, rows)


def per_family_tables(labels: list[str], sel: dict) -> list[str]:
    """For each headline figure, one table: generators × families, then the family mean and the min–max."""
    fams = sel["families"]
    lines: list[str] = []
    for key, title in _figures(sel):
        header = ["generator", *(f"{_family_name(f, e)} n={e['n_clips']}" for f, e in fams.items()), "mean", "min–max"]
        rows = []
        for label in labels:
            s = sel["headline"][label][key]
            rng = "n/a" if s["mean"] is None else f"{fmt(s['min'])}–{fmt(s['max'])}"
            rows.append(
                [
                    f"`{label}`",
                    *(fmt(e["headline"][label].get(key)) for e in fams.values()),
                    f"**{fmt(s['mean'])}**",
                    rng,
                ]
            )
        lines += [f"**{title}** (columns: family, n = its clips)", "", *md_table(header, rows), ""]
    return lines


def language_table(labels: list[str], sel: dict) -> list[str]:
    figs = _figures(sel)
    header = ["language", "clips", "families", "generator", *(h for _, h in figs)]
    rows = []
    for group, view in sel["languages"].items():
        name = group if view["languages"] == [group] else f"{group} ({', '.join(view['languages'])})"
        fams = ", ".join(f"{f} {e['n_clips']}" for f, e in view["families"].items())
        for i, label in enumerate(labels):
            per = view["headline"][label]
            lead = [name, str(view["n_clips"]), fams] if i == 0 else ["", "", ""]
            rows.append([*lead, f"`{label}`", *(_range(per.get(k, {"mean": None})) for k, _ in figs)])
    return md_table(header, rows)


def _seed_cell(st: dict) -> str:
    if st["mean"] is None:
        return "n/a"
    if st["n_seeds"] < 2:
        return fmt(st["mean"])
    return f"{fmt(st['mean'])} ± {fmt(st['std'])} [{fmt(st['min'])}–{fmt(st['max'])}]"


def seed_table(sel: dict) -> list[str]:
    figs = _figures(sel)
    cands = sel["candidates"]
    with_wins = any("lip_sync_won" in c for c in cands.values())
    header = ["candidate", "seeds", *(h for _, h in figs)]
    if with_wins:
        header.append("families won on lip sync")
    rows = []
    for name, c in cands.items():
        row = [
            f"`{name}`",
            str(len(c["labels"])),
            *(_seed_cell(c["figures"][k]) if k in c["figures"] else "n/a" for k, _ in figs),
        ]
        if with_wins:
            row.append(_seed_cell(c["lip_sync_won"]) if "lip_sync_won" in c else "—")
        rows.append(row)
    return md_table(header, rows)


def selection_section(results: EvalResults, sel: dict | None = None) -> list[str]:
    """The report's "Mean over families" part (and languages, and the spread over seeds)."""
    from .groups import STATIC, UNKNOWN

    sel = sel if sel is not None else results.selection()
    labels = results.labels
    fams = sel["families"]
    lines = ["## Mean over families (selection protocol)", ""]
    if set(fams) == {UNKNOWN}:
        lines += [
            "No clip has a source family (`family` in its metadata), so there is one family, `unknown`, and "
            "the family mean is the mean over clips above; results.json still has the family tables.",
            "",
        ]
    else:
        listing = ", ".join(f"{_family_name(f, e)} {e['n_clips']}" for f, e in fams.items())
        lines += [
            f"{len(fams)} families (clips): {listing}. Each family counts once, however many clips it has: a "
            "family's value is the mean over its clips (a ratio: the ratio of the means over its clips, as in the "
            "summary above), and the figure is the unweighted mean of the family values, [min–max] over families. "
            + (
                "LMD ×static is the mouth LMD divided by `static`'s on the same family's clips. "
                if STATIC in labels
                else ""
            )
            + "Families: docs/evaluation.md (lrs2, lrs3 and lrw are one family, `lipread`).",
            "",
            *family_mean_table(labels, sel, sel),
            "",
            "### Per family",
            "",
            *per_family_tables(labels, sel),
            "### Every metric, mean over families",
            "",
            "The summary's columns, each the unweighted mean of the family values; (N×) is the mean over families "
            "of the family ratios.",
            "",
            *aggregate_table(
                labels, sel["family_mean"], sel["real_family_mean"], results.settings["alpha"], counts=("families",)
            ),
            "",
        ]
        for fam, e in fams.items():
            langs = ", ".join(f"{lang} {n}" for lang, n in sorted(e["languages"].items()))
            lines += [
                f"#### Family {_family_name(fam, e)}: {e['n_clips']} clips, {e['seconds']:.1f} s ({langs})",
                "",
                *aggregate_table(labels, e["aggregate"], e["real_aggregate"], results.settings["alpha"]),
                "",
            ]
    if set(sel["languages"]) - {UNKNOWN}:
        lines += [
            "## By language",
            "",
            "Each language group on its own, every figure the mean over the families present in it "
            "[min–max]. non-en pools every language but English.",
            "",
            *language_table(labels, sel),
            "",
        ]
    if sel["candidates"]:
        lines += [
            "## Spread over seeds",
            "",
            "Per candidate (the entries' `candidate:`, or labels `X: seed N`): the mean over its seeds of each "
            "family-mean figure ± the std over seeds (n − 1) [min–max over seeds].",
            "",
            *seed_table(sel),
            "",
        ]
    return lines
