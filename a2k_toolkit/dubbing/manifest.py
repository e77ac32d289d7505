"""Dubbing manifests: read a CSV or JSONL file, check every row, and turn the good ones into jobs.

One row is one job: an identity source (``image`` or ``video`` + optional ``frame``), speech (``audio``, or ``text``
+ optional ``lang``), an ``output`` under the output folder, an optional ``keypoints`` file name and an optional
per-row ``config`` (a JSON object merged into the pipeline config).

Problems with the file as a whole (unreadable, unknown CSV columns, duplicate ids or outputs) raise
:class:`ManifestError`; problems with one row become that row's error and never stop the others.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from ..config import PipelineConfig
from ..errors import InputError

COLUMNS = ("id", "image", "video", "frame", "audio", "text", "lang", "output", "keypoints", "config")
VIDEO_EXTS = (".mp4",)
KEYPOINT_EXTS = (".npz", ".npy", ".json")
STATE_DIR = ".a2k-dub"  # journal, lock and face cache, inside the output folder
REPORT_FILES = ("dub-report.jsonl", "dub-report.csv", "dub-summary.json")
ROW_CONFIG_KEYS = tuple(k for k in PipelineConfig.model_fields if k != "device")


class ManifestError(InputError):
    """The manifest as a whole cannot be used (unreadable, wrong columns, duplicate ids or outputs)."""


class RowError(InputError):
    """One manifest row is invalid; the message names the column and the fix."""


@dataclass
class Row:
    """One manifest row as read: its line number, its fields, and a parse error if the line was unreadable."""

    line: int
    fields: dict[str, Any]
    error: str | None = None

    @property
    def id(self) -> str | None:
        value = self.fields.get("id")
        if value is None or isinstance(value, (dict, list, bool)):
            return None
        value = str(value).strip()
        return value or None


@dataclass
class RowSpec:
    """A row whose columns are valid (files not yet checked): paths resolved, outputs confined to the out folder."""

    id: str
    line: int
    image: Path | None
    video: Path | None
    frame: int | None
    audio: Path | None
    text: str | None
    lang: str | None
    output: str  # relative to the out folder, POSIX separators
    keypoints: str
    config_override: dict[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> Path:
        return self.image if self.image is not None else self.video  # type: ignore[return-value]

    @property
    def writes_video(self) -> bool:
        return self.output.lower().endswith(VIDEO_EXTS)

    @property
    def output_files(self) -> list[str]:
        return [self.output, self.keypoints] if self.writes_video else [self.output]


# ----------------------------------------------------------------------------------------------------------- reading


def read_manifest(path: str | os.PathLike) -> list[Row]:
    """The rows of a ``.csv`` or ``.jsonl`` manifest (blank lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    ext = path.suffix.lower()
    try:
        text = path.read_text("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"manifest {path} is not UTF-8 text ({exc}); save it as UTF-8") from None
    if ext == ".csv":
        return _read_csv(path, text)
    if ext in (".jsonl", ".ndjson"):
        return _read_jsonl(text)
    raise ManifestError(f"unsupported manifest type {ext!r} for {path}; use a .csv or .jsonl file")


def _read_csv(path: Path, text: str) -> list[Row]:
    reader = csv.reader(text.splitlines(keepends=True))
    try:
        header = next(reader)
    except StopIteration:
        raise ManifestError(f"manifest {path} is empty; it needs a header line: {','.join(COLUMNS)}") from None
    except csv.Error as exc:
        raise ManifestError(f"cannot parse the header of {path}: {exc}") from None
    header = [h.strip() for h in header]
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        raise ManifestError(
            f"manifest {path} has unknown column(s) {', '.join(map(repr, unknown))}; "
            f"known columns: {', '.join(COLUMNS)}"
        )
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise ManifestError(f"manifest {path} repeats column(s) {', '.join(map(repr, dupes))} in its header")
    missing = [c for c in ("id", "output") if c not in header]
    if missing:
        raise ManifestError(
            f"manifest {path} lacks the required column(s) {', '.join(missing)}; its header is: {','.join(header)}"
        )
    rows: list[Row] = []
    while True:
        line = reader.line_num + 1
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            rows.append(Row(line, {}, f"cannot parse this CSV line: {exc}"))
            continue
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            rows.append(
                Row(
                    line,
                    dict(zip(header, values)),
                    f"this line has {len(values)} fields but the header has {len(header)}; "
                    "quote fields that contain commas",
                )
            )
            continue
        rows.append(Row(line, {h: (v if v.strip() else None) for h, v in zip(header, values)}))
    return rows


def _read_jsonl(text: str) -> list[Row]:
    rows: list[Row] = []
    for i, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            rows.append(Row(i, {}, f"this line is not valid JSON ({exc.msg} at column {exc.colno})"))
            continue
        if not isinstance(obj, dict):
            rows.append(Row(i, {}, f"each line must be a JSON object, got {type(obj).__name__}"))
            continue
        unknown = [k for k in obj if k not in COLUMNS]
        fields = {k: (None if v == "" else v) for k, v in obj.items()}
        err = None
        if unknown:
            err = f"unknown key(s) {', '.join(map(repr, unknown))}; known keys: {', '.join(COLUMNS)}"
        rows.append(Row(i, fields, err))
    return rows


# -------------------------------------------------------------------------------------------------------- validating


def _text(row: Row, key: str) -> str | None:
    value = row.fields.get(key)
    if value is None:
        return None
    if isinstance(value, (dict, list, bool)):
        raise RowError(f"`{key}` must be a string, got {type(value).__name__}")
    value = str(value)
    if "\x00" in value:
        raise RowError(f"`{key}` contains a NUL character")
    return value


def safe_relative(value: str, key: str) -> str:
    """A normalised POSIX relative path that stays inside its base folder, or :class:`RowError`."""
    if any(ord(ch) < 32 for ch in value):
        raise RowError(f"`{key}` {value!r} contains control characters; use a plain file name")
    if "\\" in value:
        raise RowError(f"`{key}` {value!r} contains a backslash; use '/' to separate folders")
    if PurePosixPath(value).is_absolute() or PureWindowsPath(value).drive or value.startswith("~"):
        raise RowError(
            f"`{key}` {value!r} is an absolute path; outputs must be file names relative to --out "
            "(for example clips/{id}.mp4)"
        )
    parts = [p for p in PurePosixPath(value).parts if p not in ("", ".")]
    if ".." in parts:
        raise RowError(
            f"`{key}` {value!r} leaves the output folder ('..' is not allowed); "
            "use a path below --out such as clips/name.mp4"
        )
    if not parts:
        raise RowError(f"`{key}` is empty; give a file name such as name.mp4")
    if parts[0] == STATE_DIR or (len(parts) == 1 and parts[0] in REPORT_FILES):
        raise RowError(f"`{key}` {value!r} is reserved for the batch's own state and reports; choose another name")
    if any(p.startswith(".") for p in parts):
        raise RowError(
            f"`{key}` {value!r}: names starting with '.' are reserved for temporary files; "
            "choose a name without a leading dot"
        )
    return "/".join(parts)


def resolve_input(value: str, base: Path) -> Path:
    """An input path from the manifest: relative paths are relative to the manifest's folder."""
    p = Path(value)
    return p if p.is_absolute() else base / p


def parse_row(row: Row, base: Path) -> RowSpec:
    """Check one row's columns (not the files they name); raise :class:`RowError` naming the column and the fix."""
    if row.error:
        raise RowError(row.error)
    rid = row.id
    if rid is None:
        raise RowError("`id` is missing or empty; give every row a unique id")
    if len(rid) > 200 or any(ord(ch) < 32 for ch in rid):
        raise RowError("`id` must be at most 200 printable characters")
    image, video, audio, text = (_text(row, k) for k in ("image", "video", "audio", "text"))
    lang, output, keypoints = (_text(row, k) for k in ("lang", "output", "keypoints"))
    if (image is None) == (video is None):
        raise RowError("give exactly one of `image` (a face photo) or `video` (a face video) as the identity source")
    if (audio is None) == (text is None):
        raise RowError("give exactly one of `audio` (a speech file) or `text` (spoken with the speech synthesizer)")
    if lang is not None and text is None:
        raise RowError("`lang` applies to `text` rows only; remove it or give `text` instead of `audio`")
    if text is not None and not text.strip():
        raise RowError("`text` is empty; give the words to speak")
    frame = _frame(row.fields.get("frame"), video)
    if output is None:
        raise RowError("`output` is missing; give a file name under --out ending in .mp4 (or a keypoint file)")
    output = safe_relative(output, "output")
    ext = PurePosixPath(output).suffix.lower()
    if ext not in VIDEO_EXTS + KEYPOINT_EXTS:
        raise RowError(
            f"`output` {output!r} must end in .mp4 (video + keypoints) or .npz / .npy / .json (keypoints only)"
        )
    if ext in KEYPOINT_EXTS:
        if keypoints is not None:
            raise RowError("`keypoints` is only used with an .mp4 `output`; this row's output is a keypoint file")
        keypoints = output
    elif keypoints is None:
        keypoints = str(PurePosixPath(output).with_suffix(".npz"))
    else:
        keypoints = safe_relative(keypoints, "keypoints")
        if PurePosixPath(keypoints).suffix.lower() not in KEYPOINT_EXTS:
            raise RowError(f"`keypoints` {keypoints!r} must end in .npz, .npy or .json")
        if keypoints == output:
            raise RowError("`keypoints` and `output` name the same file")
    return RowSpec(
        id=rid,
        line=row.line,
        image=resolve_input(image, base) if image else None,
        video=resolve_input(video, base) if video else None,
        frame=frame,
        audio=resolve_input(audio, base) if audio else None,
        text=text,
        lang=lang,
        output=output,
        keypoints=keypoints,
        config_override=_row_config(row.fields.get("config")),
    )


def _frame(value: Any, video: str | None) -> int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
        return None
    if video is None:
        raise RowError("`frame` picks a frame of a `video`; remove it for image rows")
    try:
        frame = int(str(value).strip()) if not isinstance(value, bool) else -1
    except ValueError:
        frame = -1
    if frame < 0:
        raise RowError(f"`frame` must be a frame index >= 0 or empty (first frame with a face), got {value!r}")
    return frame


def _row_config(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise RowError(
                f"`config` is not valid JSON ({exc.msg} at column {exc.colno}); give a JSON object "
                'such as {"renderer": {"params": {"size": 256}}}'
            ) from None
    if not isinstance(value, dict):
        raise RowError(f"`config` must be a JSON object, got {type(value).__name__}")
    if "device" in value:
        raise RowError("`config` cannot set `device` per row; the runner places workers on devices (use --device)")
    unknown = [k for k in value if k not in ROW_CONFIG_KEYS]
    if unknown:
        raise RowError(
            f"`config` has unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(ROW_CONFIG_KEYS)}"
        )
    return value


def merge_config(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` (a dumped :class:`PipelineConfig`) with a row's overrides.

    A slot given as a string, or as a mapping naming a different component, replaces the slot; a mapping with the
    same (or no) ``name`` merges its ``params`` into the base slot's params; ``null`` removes an optional slot.
    """
    merged = dict(base)
    for key, value in override.items():
        cur = base.get(key)
        if isinstance(value, dict) and isinstance(cur, dict) and value.get("name", cur.get("name")) == cur.get("name"):
            params = value.get("params", {})
            if not isinstance(params, dict):
                raise RowError(f"`config.{key}.params` must be a JSON object")
            extra = {k: v for k, v in value.items() if k not in ("name", "params")}
            merged[key] = {**extra, "name": cur["name"], "params": {**cur.get("params", {}), **params}}
        else:
            merged[key] = value
    return merged


def check_duplicates(specs: list[RowSpec], rows: list[Row]) -> None:
    """Refuse duplicate ids, and outputs (video or keypoint files) written by more than one row."""
    problems: list[str] = []
    seen_ids: dict[str, int] = {}
    for row in rows:
        rid = row.id
        if rid is None:
            continue
        if rid in seen_ids:
            problems.append(f"id {rid!r} on lines {seen_ids[rid]} and {row.line}")
        else:
            seen_ids[rid] = row.line
    seen_out: dict[str, tuple[int, str]] = {}
    for spec in specs:
        for rel in dict.fromkeys(spec.output_files):
            key = os.path.normcase(rel).lower()  # case-insensitive file systems would merge these too
            if key in seen_out:
                line, other = seen_out[key]
                problems.append(f"output {rel!r} (line {spec.line}) is also written by line {line} ({other!r})")
            else:
                seen_out[key] = (spec.line, rel)
    if problems:
        shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise ManifestError(
            f"duplicate ids or outputs in the manifest: {shown}. Every row needs a unique `id` and "
            "its own `output` (and `keypoints`) file; fix the manifest and run again"
        )
