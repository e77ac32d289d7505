"""Dubbing manifests: reading CSV / JSONL, per-row checks, output confinement, config merging, duplicates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from a2k_toolkit.dubbing import ManifestError, RowError, dub_batch, read_manifest
from a2k_toolkit.dubbing.manifest import Row, merge_config, parse_row, safe_relative


def write_csv(path: Path, header: str, *lines: str) -> Path:
    path.write_text("\n".join([header, *lines]) + "\n", "utf-8")
    return path


def test_csv_and_jsonl_read_the_same_rows(tmp_path):
    csv_path = write_csv(
        tmp_path / "m.csv",
        "id,image,audio,output,config",
        'a,face.jpg,s.wav,a.mp4,"{""renderer"": {""params"": {""size"": 64}}}"',
        "",
        "b,face.jpg,s.wav,b.mp4,",
    )
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text(
        json.dumps(
            {
                "id": "a",
                "image": "face.jpg",
                "audio": "s.wav",
                "output": "a.mp4",
                "config": {"renderer": {"params": {"size": 64}}},
            }
        )
        + "\n\n"
        + json.dumps({"id": "b", "image": "face.jpg", "audio": "s.wav", "output": "b.mp4"})
        + "\n"
    )
    a, b = read_manifest(csv_path), read_manifest(jsonl)
    assert [r.id for r in a] == [r.id for r in b] == ["a", "b"]
    assert [r.line for r in a] == [2, 4] and [r.line for r in b] == [1, 3]
    sa, sb = parse_row(a[0], tmp_path), parse_row(b[0], tmp_path)
    assert sa.config_override == sb.config_override == {"renderer": {"params": {"size": 64}}}
    assert sa.image == tmp_path / "face.jpg" and sa.keypoints == "a.npz" and sa.writes_video
    assert parse_row(a[1], tmp_path).config_override == {}


def test_manifest_level_errors(tmp_path):
    with pytest.raises(ManifestError, match="manifest not found"):
        read_manifest(tmp_path / "nope.csv")
    with pytest.raises(ManifestError, match=r"use a \.csv or \.jsonl"):
        read_manifest(write_csv(tmp_path / "m.txt", "id,output"))
    with pytest.raises(ManifestError, match="unknown column.*'audoi'.*known columns"):
        read_manifest(write_csv(tmp_path / "m.csv", "id,image,audoi,output", "a,f.jpg,s.wav,a.mp4"))
    with pytest.raises(ManifestError, match="lacks the required column.*output"):
        read_manifest(write_csv(tmp_path / "m2.csv", "id,image,audio", "a,f.jpg,s.wav"))
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(ManifestError, match="empty"):
        read_manifest(tmp_path / "e.csv")


def test_bad_jsonl_lines_become_row_errors(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text(
        '{"id": "a", "image": "f.jpg", "audio": "s.wav", "output": "a.mp4"}\n{not json\n[1, 2]\n'
        '{"id": "d", "image": "f.jpg", "audio": "s.wav", "output": "d.mp4", "colour": "red"}\n'
    )
    rows = read_manifest(p)
    assert [r.error is None for r in rows] == [True, False, False, False]
    assert "not valid JSON" in rows[1].error and "JSON object" in rows[2].error and "'colour'" in rows[3].error


@pytest.mark.parametrize(
    "value, needle",
    [
        ("../x.mp4", "'..' is not allowed"),
        ("a/../../x.mp4", "'..' is not allowed"),
        ("/tmp/x.mp4", "absolute"),
        ("C:\\x.mp4", "backslash"),
        ("C:x.mp4", "absolute"),
        ("~/x.mp4", "absolute"),
        ("a\x01.mp4", "control"),
        (".a2k-dub/journal.jsonl", "reserved"),
        ("dub-report.csv", "reserved"),
        ("./", "empty"),
        (".hidden.mp4", "leading dot"),
        ("a/.b/c.mp4", "leading dot"),
    ],
)
def test_unsafe_outputs_are_refused(value, needle):
    with pytest.raises(RowError, match=needle):
        safe_relative(value, "output")


def test_safe_outputs_are_normalised():
    assert safe_relative("./clips//a.mp4", "output") == "clips/a.mp4"
    assert safe_relative("x/dub-report.csv", "output") == "x/dub-report.csv"


@pytest.mark.parametrize(
    "fields, needle",
    [
        ({"image": "f.jpg", "audio": "s.wav", "output": "a.mp4"}, "`id` is missing"),
        (
            {"id": "a", "image": "f.jpg", "video": "v.mp4", "audio": "s.wav", "output": "a.mp4"},
            "exactly one of `image`",
        ),
        ({"id": "a", "audio": "s.wav", "output": "a.mp4"}, "exactly one of `image`"),
        ({"id": "a", "image": "f.jpg", "output": "a.mp4"}, "exactly one of `audio`"),
        ({"id": "a", "image": "f.jpg", "audio": "s.wav", "text": "hi", "output": "a.mp4"}, "exactly one of `audio`"),
        ({"id": "a", "image": "f.jpg", "audio": "s.wav", "lang": "de", "output": "a.mp4"}, "`lang` applies to `text`"),
        ({"id": "a", "image": "f.jpg", "text": "  ", "output": "a.mp4"}, "`text` is empty"),
        ({"id": "a", "image": "f.jpg", "audio": "s.wav", "frame": "3", "output": "a.mp4"}, "`frame` picks a frame"),
        ({"id": "a", "video": "v.mp4", "audio": "s.wav", "frame": "-1", "output": "a.mp4"}, "frame index >= 0"),
        ({"id": "a", "video": "v.mp4", "audio": "s.wav", "frame": "x", "output": "a.mp4"}, "frame index >= 0"),
        ({"id": "a", "image": "f.jpg", "audio": "s.wav"}, "`output` is missing"),
        ({"id": "a", "image": "f.jpg", "audio": "s.wav", "output": "a.avi"}, "must end in .mp4"),
        ({"id": "a", "image": "f.jpg", "audio": "s.wav", "output": "a.mp4", "keypoints": "a.mp4"}, "must end in .npz"),
        ({"id": "a", "image": "f.jpg", "audio": "s.wav", "output": "a.npz", "keypoints": "b.npz"}, "only used with"),
        ({"id": "a", "image": "f.jpg", "audio": "s.wav", "output": "a.mp4", "keypoints": "../k.npz"}, "'..'"),
        ({"id": "a", "image": "f.jpg", "audio": "s.wav", "output": "a.mp4", "config": "{bad"}, "not valid JSON"),
        ({"id": "a", "image": "f.jpg", "audio": "s.wav", "output": "a.mp4", "config": "[1]"}, "must be a JSON object"),
        (
            {"id": "a", "image": "f.jpg", "audio": "s.wav", "output": "a.mp4", "config": '{"device": "cuda"}'},
            "cannot set `device`",
        ),
        (
            {"id": "a", "image": "f.jpg", "audio": "s.wav", "output": "a.mp4", "config": '{"plugin": "x.y:z"}'},
            "unknown key",
        ),
    ],
)
def test_row_errors_name_the_column_and_fix(fields, needle, tmp_path):
    with pytest.raises(RowError, match=needle):
        parse_row(Row(2, fields), tmp_path)


def test_video_row_frame_and_keypoint_only_row(tmp_path):
    spec = parse_row(
        Row(3, {"id": 7, "video": "v.mp4", "frame": "12", "text": "hallo", "lang": "de", "output": "sub/k.json"}),
        tmp_path,
    )
    assert spec.id == "7" and spec.frame == 12 and spec.video == tmp_path / "v.mp4" and spec.image is None
    assert not spec.writes_video and spec.output_files == ["sub/k.json"] and spec.keypoints == "sub/k.json"
    assert parse_row(
        Row(3, {"id": "x", "video": "/abs/v.mp4", "frame": "auto", "audio": "a.wav", "output": "x.mp4"}), tmp_path
    ).video == Path("/abs/v.mp4")


def test_merge_config_merges_params_and_replaces_components():
    base = {
        "renderer": {"name": "sketch", "params": {"size": 512, "background": "reference"}},
        "generator": {"name": "procedural", "params": {"mouth_open": 0.4}},
        "seed": 0,
    }
    merged = merge_config(base, {"renderer": {"params": {"size": 64}}, "generator": "static", "seed": 3})
    assert merged["renderer"] == {"name": "sketch", "params": {"size": 64, "background": "reference"}}
    assert merged["generator"] == "static" and merged["seed"] == 3
    assert merge_config(base, {"renderer": None})["renderer"] is None
    other = merge_config(base, {"renderer": {"name": "heatmap", "params": {"size": 64}}})
    assert other["renderer"] == {"name": "heatmap", "params": {"size": 64}}  # a different component: no mixing
    assert base["renderer"]["params"]["size"] == 512  # the base is not modified


def test_duplicate_ids_and_outputs_are_rejected_up_front(tmp_path):
    m = write_csv(
        tmp_path / "m.csv",
        "id,image,audio,output,keypoints",
        "a,f.jpg,s.wav,a.mp4,",
        "b,f.jpg,s.wav,b.mp4,",
        "a,f.jpg,s.wav,c.mp4,",
        "d,f.jpg,s.wav,D/x.mp4,",
        "e,f.jpg,s.wav,d/X.mp4,",
        "f,f.jpg,s.wav,f.mp4,b.npz",
    )
    with pytest.raises(ManifestError) as err:
        dub_batch(m, tmp_path / "out", workers=0, progress=False)
    msg = str(err.value)
    assert "id 'a' on lines 2 and 4" in msg
    assert "output 'd/X.mp4' (line 6) is also written by line 5" in msg
    assert "output 'b.npz' (line 7) is also written by line 3" in msg  # b.mp4's default keypoint file
    assert not list((tmp_path / "out").glob("*.mp4")) and not (tmp_path / "out" / "dub-report.csv").exists()
