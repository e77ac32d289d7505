"""Write an evaluation report directory: ``report.md`` (tables), ``results.json`` (every number) and ``plots/*.png``.

Every file is written atomically; ``report.md`` is written last, so its presence means the report is complete.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_write_text, save_image
from .evaluate import EvalResults

MAX_CLIP_ROWS = 60  # per-clip rows in report.md (results.json always has every clip)
ARROW = {"lower": " ↓", "higher": " ↑", "1": " →1", "": ""}


def fmt(v: float | int | None, signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if abs(v) < 1e-9:
        return "0"
    return f"{v:+.3g}" if signed else f"{v:.3g}"


def _json_default(o: Any):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _clean(o: Any) -> Any:
    """NaN/inf -> None, so results.json is strict JSON."""
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def results_json(results: EvalResults, selection: dict | None = None) -> str:
    return json.dumps(_clean(results.to_dict(selection)), indent=2, default=_json_default, allow_nan=False) + "\n"


# ------------------------------------------------------------------------------------------------------------ tables

SUMMARY_COLUMNS = (
    # (header, metric key, ratio key or None, lag key or None)
    ("L1 ↓", "l1", None, None),
    ("PCK@α (%) ↑", "pck", None, None),
    ("LMD (IOD) ↓", "lmd", None, None),
    ("lip corr ↑ (lag)", "lip_corr", None, "lip_lag"),
    ("audio corr ↑ (lag)", "audio_corr", None, "audio_lag"),
    ("mouth std, IOD (×real →1)", "mouth_std", "mouth_ratio", None),
    ("head motion, IOD (×real →1)", "head_motion", "head_ratio", None),
    ("jerk, IOD/frame³ (×real)", "jerk", "jerk_ratio", None),
    ("identity err., IOD ↓ (×real)", "identity", "identity_ratio", None),
)
REAL_ONLY = {"l1", "pck", "lmd", "lip_corr"}  # trivial for the ground truth itself


def _cell(agg: dict, key: str, ratio: str | None, lag: str | None) -> str:
    text = fmt(agg[key]["mean"])
    if lag:
        text += f" ({fmt(agg[lag]['mean'], signed=True)})"
    if ratio:
        text += f" ({fmt(agg[ratio]['mean'])}×)"
    return text


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _summary(
    labels: list[str], aggregate: dict, real: dict, alpha: float, counts: tuple[str, ...] = ("clips", "seconds")
) -> list[str]:
    """The summary table of one aggregate (``label -> metric -> {mean, n_clips, seconds}``); with ``counts``
    ``("families",)`` the aggregate is a family mean (``{mean, n_families, ...}``)."""
    header = ["generator", *counts, *(c[0].replace("α", str(alpha)) for c in SUMMARY_COLUMNS)]

    def count_cells(agg: dict) -> list[str]:
        if counts == ("families",):
            return [str(agg["n_families"])]
        return [str(agg["n_clips"]), f"{agg['seconds']:.1f}"]

    rows = []
    for label in labels:
        agg = aggregate[label]
        rows.append([f"`{label}`", *count_cells(agg["l1"]), *(_cell(agg, *c[1:]) for c in SUMMARY_COLUMNS)])
    real_row = ["real clips (ground truth)", *count_cells(real["mouth_std"])]
    for _, key, _ratio, lag in SUMMARY_COLUMNS:
        if key in REAL_ONLY:
            real_row.append("—")
        else:
            real_row.append(fmt(real[key]["mean"]) + (f" ({fmt(real[lag]['mean'], signed=True)})" if lag else ""))
    rows.append(real_row)
    return _md_table(header, rows)


def summary_table(results: EvalResults) -> list[str]:
    return _summary(results.labels, results.aggregate, results.real_aggregate, results.settings["alpha"])


# --------------------------------------------------------------------------------------- selection (by family) tables


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
    return _md_table(header, rows)


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
        lines += [f"**{title}** (columns: family, n = its clips)", "", *_md_table(header, rows), ""]
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
    return _md_table(header, rows)


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
    return _md_table(header, rows)


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
            *_summary(
                labels, sel["family_mean"], sel["real_family_mean"], results.settings["alpha"], counts=("families",)
            ),
            "",
        ]
        for fam, e in fams.items():
            langs = ", ".join(f"{lang} {n}" for lang, n in sorted(e["languages"].items()))
            lines += [
                f"#### Family {_family_name(fam, e)}: {e['n_clips']} clips, {e['seconds']:.1f} s ({langs})",
                "",
                *_summary(labels, e["aggregate"], e["real_aggregate"], results.settings["alpha"]),
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


def clip_table(results: EvalResults) -> list[str]:
    header = [
        "clip",
        "family",
        "s",
        "generator",
        "L1",
        "PCK %",
        "LMD",
        "lip corr",
        "audio corr (real)",
        "mouth ×",
        "head ×",
        "jerk ×",
        "identity ×",
    ]
    rows = []
    for rec in results.clips[:MAX_CLIP_ROWS]:
        for label in results.labels:
            m = rec.generators[label]
            rows.append(
                [
                    rec.clip_id,
                    rec.family,
                    f"{rec.seconds:.2f}",
                    f"`{label}`",
                    fmt(m["l1"]),
                    fmt(m["pck"]),
                    fmt(m["lmd"]),
                    fmt(m["lip_corr"]),
                    f"{fmt(m['audio_corr'])} ({fmt(rec.real['audio_corr'])})",
                    fmt(m["mouth_ratio"]),
                    fmt(m["head_ratio"]),
                    fmt(m["jerk_ratio"]),
                    fmt(m["identity_ratio"]),
                ]
            )
    return _md_table(header, rows)


def markdown(results: EvalResults, plots: list[str], plot_note: str = "", selection: dict | None = None) -> str:
    s = results.settings
    lines = [
        "# Keypoint evaluation report",
        "",
        f"{results.num_clips} clips, {results.seconds:.1f} s at {s['fps']:g} fps; "
        f"generators: {', '.join(f'`{lb}`' for lb in results.labels)}; audio front-end `{s['frontend']['name']}`; "
        f"seed {s['seed']}.",
        "",
        f"Each generator got frame 0 of each clip as its reference and the clip's own audio. Distances are in IOD "
        f"(the inter-ocular distance of frame 0); L1 is in normalised units with statistics "
        f"{s['normalizer_source']}; PCK threshold {s['alpha']}·max(h, w) of the clip's ground-truth keypoint box; "
        f"correlations at the best lag within ±{s['max_lag']} frames (a correlation with a still side counts as 0). "
        "Error metrics skip frame 0 (the given reference). Definitions: docs/evaluation.md.",
        "",
        "## Summary (mean over clips)",
        "",
        "↓ lower is better, ↑ higher is better, →1 closest to the real clips is best. Lags in frames (mean over "
        "clips): lip lag > 0 means the prediction is late; audio lag > 0 means the mouth leads the sound. "
        "(N×) is the ratio to the real clips (ratio of the means over clips).",
        "",
        *summary_table(results),
        "",
    ]
    partial = [
        f"`{lb}` {key}: {agg['n_clips']} clips"
        for lb in results.labels
        for key, agg in results.aggregate[lb].items()
        if agg["n_clips"] != results.num_clips
    ]
    if partial:
        lines += ["Metrics averaged over fewer clips (undefined where the real value is 0): " + "; ".join(partial), ""]
    lines += selection_section(results, selection)
    lines += ["## Plots", ""]
    lines += [f"![{Path(p).stem}]({p})" for p in plots]
    if plot_note:
        lines.append(plot_note)
    lines += ["", "## Per clip", ""]
    if results.num_clips > MAX_CLIP_ROWS:
        lines += [f"First {MAX_CLIP_ROWS} of {results.num_clips} clips; results.json has all of them.", ""]
    lines += clip_table(results)
    notes = [f"- `{c.clip_id}`: {n}" for c in results.clips for n in c.notes]
    notes += [f"- skipped `{s['clip_id']}`: {s['reason']}" for s in results.skipped]
    if notes:
        lines += ["", "## Notes", "", *notes]
    lines += ["", "All numbers: `results.json`.", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------------- plots


def mouth_plot(results: EvalResults, clip_id: str) -> np.ndarray:
    from .plots import GREY, color, line_chart

    ser = results.series[clip_id]
    fps = results.settings["fps"]
    t = np.arange(len(ser["real"])) / fps
    lines: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    colors = {}
    rms = ser["rms"]
    real = ser["real"]
    if rms.max() > 0:  # audio RMS rescaled onto the opening axis, for reading the timing
        scaled = real.min() + rms / rms.max() * (real.max() - real.min() if np.ptp(real) > 0 else 1.0)
        lines["audio RMS (scaled)"] = (t, scaled)
        colors["audio RMS (scaled)"] = GREY
    lines["real"] = (t, real)
    colors["real"] = (0, 0, 0)
    for i, label in enumerate(results.labels):
        if label in ser:
            lines[label] = (t, ser[label])
            colors[label] = color(i)
    return line_chart(
        lines,
        title=f"Mouth opening, clip {clip_id}",
        xlabel="time (s)",
        ylabel="opening (IOD)",
        colors=colors,
        widths={"audio RMS (scaled)": 1},
    )


def metrics_plot(results: EvalResults) -> np.ndarray:
    from .plots import bar_grid

    real = results.real_aggregate
    one = 1.0
    spec = [
        ("L1 (lower better)", "l1", None),
        ("PCK % (higher better)", "pck", None),
        ("LMD, IOD", "lmd", None),
        ("lip corr", "lip_corr", None),
        ("audio corr (- - real)", "audio_corr", real["audio_corr"]["mean"]),
        ("mouth amp. pred/real", "mouth_ratio", one),
        ("head amp. pred/real", "head_ratio", one),
        ("jerk, IOD/frame^3 (- - real)", "jerk", real["jerk"]["mean"]),
        ("identity err., IOD (- - real)", "identity", real["identity"]["mean"]),
    ]
    panels = [
        (title, {lb: results.aggregate[lb][key]["mean"] for lb in results.labels}, ref) for title, key, ref in spec
    ]
    return bar_grid(panels, results.labels, title=f"Mean over {results.num_clips} clips ({results.seconds:.1f} s)")


def write_report(results: EvalResults, out_dir: str | Path, *, plots: bool = True) -> dict[str, Path]:
    """Write ``results.json``, ``plots/*.png`` and ``report.md`` (last) under ``out_dir``; return their paths."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        from ..errors import InputError

        raise InputError(f"report output {out} exists and is not a directory; give a directory path")
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    selection = results.selection()  # once, for results.json and report.md
    atomic_write_text(out / "results.json", results_json(results, selection))
    written["json"] = out / "results.json"
    rel_plots: list[str] = []
    note = ""
    if plots:
        images = {"metrics": metrics_plot(results)}
        if results.series:
            clip_id = max(results.series, key=lambda c: len(results.series[c]["real"]))  # longest kept clip
            images["mouth_opening"] = mouth_plot(results, clip_id)
        for name, img in images.items():
            path = out / "plots" / f"{name}.png"
            save_image(path, img)
            written[f"plot_{name}"] = path
            rel_plots.append(f"plots/{name}.png")
    else:
        note = "(plots not written: run without --no-plots to get them)"
    atomic_write_text(out / "report.md", markdown(results, rel_plots, note, selection))
    written["markdown"] = out / "report.md"
    return written
