"""``qa/report.md`` of a Vox-KP dataset: the QA report (:func:`~.report.write_report`'s dict) as Markdown --
counts per split, rejections, notes, histograms, the per-family and per-language tables, the lip-audio coupling per
clip and the contact sheet."""

from __future__ import annotations


def _bar(count: int, peak: int, width: int = 30) -> str:
    return "#" * (round(width * count / peak) if peak else 0)


def markdown(r: dict) -> str:
    c = r["counts"]
    out = [
        "# Vox-KP QA report",
        "",
        f"- videos: {c['videos']} ({c['done']} done, {c['failed']} rejected)",
        f"- clips: {c['clips']} ({c['hours'] * 60:.2f} min)",
        "",
    ]
    out += ["| split | clips | identities | frames | hours |", "|---|---|---|---|---|"]
    for s, v in c["per_split"].items():
        out.append(f"| {s} | {v['clips']} | {v['identities']} | {v['frames']} | {v['hours']} |")
    out += ["", "## Rejections", ""]
    if r["failed"]:
        out += ["| video | reason | detail |", "|---|---|---|"]
        out += [f"| {f['key']} | {f['reason']} | {f['message']} |" for f in r["failed"]]
    else:
        out.append("none")
    if r["notes"]:
        out += ["", "## Notes", ""]
        out += [f"- {k}: {'; '.join(v)}" for k, v in r["notes"].items()]
    for name, unit in (("duration_s", "s"), ("face_width_px", "px"), ("lip_audio_coupling", "")):
        bins = r["histograms"][name]
        peak = max((b["count"] for b in bins), default=0)
        out += ["", f"## Histogram: {name}", "", "```"]
        for b in bins:
            hi = "inf" if b["to"] is None else f"{b['to']:g}"
            out.append(f"[{b['from']:>5g}, {hi:>5}) {unit:>2} {b['count']:>6}  {_bar(b['count'], peak)}")
        out.append("```")
    out += _family_markdown(r["families"])
    cp = r["coupling"]
    out += ["", "## Lip-audio coupling", "", cp["definition"] + ".", ""]
    if cp["source"] == "recomputed":
        ch = cp["recompute"]
        out += [
            f"Recomputed from the stored keypoints and audio (`a2k dataset report --recompute-qa`); the packs and "
            f"index.json keep the values stored at build time. Against those: {ch['changed']} of "
            f"{ch['compared']} clips changed, mean change {ch['mean_change']}, mean absolute change "
            f"{ch['mean_abs_change']}, largest {ch['max_abs_change']} ({ch['max_change_clip']}); best lag "
            f"changed in {ch['lag_changed']} clips; median {ch['median_stored']} -> {ch['median_recomputed']}; "
            f"clips below {cp['weak_threshold']}: {ch['weak_stored']} -> {ch['weak_recomputed']}; "
            f"undefined -> defined: {ch['became_defined']}, defined -> undefined: {ch['became_undefined']}.",
            "",
        ]
    else:
        out += [
            "Stored in each clip's metadata at build time (`a2k dataset report --recompute-qa` measures it again "
            "on the stored keypoints and audio).",
            "",
        ]
    out += [
        f"Median: {cp['median']}. Clips below {cp['weak_threshold']} (suspect for lip-sync training): "
        f"{len(cp['weak'])}.",
        "",
    ]
    if cp["source"] == "recomputed":
        out += ["| clip | corr | best lag (ms) | stored corr | stored lag (ms) |", "|---|---|---|---|---|"]
        out += [
            f"| {p['key']} | {p['corr']} | {p['lag_ms']} | {p['stored_corr']} | {p['stored_lag_ms']} |"
            for p in cp["per_clip"]
        ]
    else:
        out += ["| clip | corr | best lag (ms) |", "|---|---|---|"]
        out += [f"| {p['key']} | {p['corr']} | {p['lag_ms']} |" for p in cp["per_clip"]]
    if r["contact_sheet"]:
        out += ["", "## Contact sheet", "", "![keypoints over sampled frames](contact_sheet.png)"]
    return "\n".join(out) + "\n"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f} %"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:g}"


def _family_markdown(fam: dict) -> list[str]:
    rows = fam["per_family"]
    out = [
        "",
        "## Per family",
        "",
        "Family: `data.folds.family_of` of the clip's recorded family (lrs2, lrs3 and lrw count as `lipread`). "
        "Faceless: frames without a detected face, interpolated from their neighbours (share of frames; clips "
        f"with any). Coupling: the clips' lip-audio `corr` (below): median, mean, share of clips >= "
        f"{fam['strong_threshold']:g}; best lag > 0: the mouth moves before the sound.",
        "",
    ]
    if not fam["recorded"]["family"]:
        out += [
            "This dataset records no family (built from a folder or a plain `path,identity` manifest): all clips "
            "count as family `unknown`. Build from a manifest with named columns (`family`, `language`, like "
            "`clips.csv`) to get the families.",
            "",
        ]
    out += [
        "| family | clips | identities | person groups | minutes | faceless frames | clips with faceless | "
        "face width (px, median) | corr median | corr mean | corr >= 0.2 | best lag (ms, median) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, v in [*rows.items(), ("**all**", fam["all"])]:
        out.append(
            f"| {name} | {v['clips']} | {v['identities']} | {v['groups']} | {v['minutes']:.2f} | "
            f"{_pct(v['faceless_fraction'])} | {v['clips_with_faceless']} | {_num(v['face_width_median'])} | "
            f"{_num(v['coupling_median'])} | {_num(v['coupling_mean'])} | "
            f"{_pct(v['coupling_strong_fraction'])} | {_num(v['lag_ms_median'])} |"
        )
    out += ["", "## Per language", ""]
    if not fam["recorded"]["language"]:
        out += ["This dataset records no language: all clips count as `unknown`.", ""]
    out += [
        "| language | clips | identities | minutes | faceless frames | corr median | corr mean | corr >= 0.2 | "
        "best lag (ms, median) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, v in [*fam["per_language"].items(), ("**all**", fam["all"])]:
        out.append(
            f"| {name} | {v['clips']} | {v['identities']} | {v['minutes']:.2f} | "
            f"{_pct(v['faceless_fraction'])} | {_num(v['coupling_median'])} | {_num(v['coupling_mean'])} | "
            f"{_pct(v['coupling_strong_fraction'])} | {_num(v['lag_ms_median'])} |"
        )
    return out
