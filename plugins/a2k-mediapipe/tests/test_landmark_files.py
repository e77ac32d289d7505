"""The ``mediapipe`` keypoint format (MediaPipe landmark files, read only): every documented layout gives the 68 points
the detector maps, real MediaPipe output on a shared face reads as the ``mediapipe`` detector's points, through
``a2k convert`` and as a pose source; frames without a face, several faces and bad files are handled."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from importlib import metadata

import numpy as np
import pytest
from conftest import needs_mediapipe, shared_face

from a2k_mediapipe import mesh_to_ibug68
from a2k_mediapipe.landmark_files import detect, read

H, W = 240, 320


def installed() -> bool:
    return any(ep.name == "mediapipe" for ep in metadata.entry_points(group="a2k_toolkit"))


needs_entry_point = pytest.mark.skipif(not installed(), reason="a2k-mediapipe is not installed (pip install -e ...)")


def a2k(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "a2k_toolkit.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd
    )


@pytest.fixture(scope="module")
def meshes():
    """Three frames of a 478-point mesh in normalised coordinates, x, y, z (a moving blob: the reader does not care
    that it is no face)."""
    rng = np.random.default_rng(0)
    return rng.uniform(0.2, 0.8, (1, 478, 3)) + rng.normal(0, 0.01, (3, 1, 3))


def expected(meshes) -> np.ndarray:
    return np.stack([mesh_to_ibug68((m[:, :2] * [W, H]).astype(np.float32)) for m in meshes])


def write_csv(path, meshes, names="x{i}", times=None):
    header = [c for i in range(478) for c in (names.format(i=i), names.replace("x", "y").format(i=i), f"z{i}")]
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["frame", *(["timestamp_ms"] if times is not None else []), *header])
        for k, m in enumerate(meshes):
            out.writerow([k, *([times[k]] if times is not None else []), *m.reshape(-1).tolist()])


# ----------------------------------------------------------------------------------------------- the layouts


def test_the_plugin_registers_a_read_only_format(catalog):
    calls = []
    catalog.pm.hook.register_keypoint_formats(register=lambda name, **kw: calls.append((name, kw)))
    [(name, kw)] = calls
    assert name == "mediapipe" and kw["read"] is read and kw["detect"] is detect and "write" not in kw
    assert set(kw["extensions"]) == {".json", ".csv"}


def test_every_layout_reads_the_same_68_points(tmp_path, meshes):
    lists = [m.tolist() for m in meshes]
    dicts = [[{"x": x, "y": y, "z": z} for x, y, z in m] for m in lists]
    layouts = {
        "lists.json": lists,  # results.multi_face_landmarks[0].landmark as [x, y, z] lists, one face per frame
        "dicts.json": dicts,
        "protos.json": [{"landmark": d} for d in dicts],  # MessageToDict of the NormalizedLandmarkList
        "multi.json": [{"multi_face_landmarks": [{"landmark": d}]} for d in dicts],
        "tasks.json": [{"face_landmarks": [d]} for d in dicts],  # the Tasks API's FaceLandmarkerResult
        "flat.json": [m.reshape(-1).tolist() for m in meshes],
        "faces.json": [[m] for m in lists],  # a list of faces per frame
        "object.json": {"fps": 30, "image_size": [H, W], "frames": lists},
    }
    for name, data in layouts.items():
        (tmp_path / name).write_text(json.dumps(data))
    write_csv(tmp_path / "wide.csv", meshes)
    write_csv(tmp_path / "underscore.csv", meshes, names="x_{i}", times=[0, 33.333, 66.667])
    for path in sorted(tmp_path.iterdir()):
        size = None if path.name == "object.json" else (H, W)
        kp = read(path, image_size=size)
        np.testing.assert_array_equal(kp.points, expected(meshes), err_msg=path.name)
        assert kp.image_size == (H, W) and kp.meta == {"source_format": "mediapipe"}
        assert kp.fps == {"object.json": 30.0, "underscore.csv": 30.0}.get(path.name, 25.0), path.name
        assert detect(path), path.name
    (tmp_path / "one.json").write_text(json.dumps(lists[1]))  # a file of one face: one frame
    np.testing.assert_array_equal(read(tmp_path / "one.json", image_size=(H, W)).points, expected(meshes)[1:2])


def test_pixels_are_kept_and_normalised_coordinates_need_the_size(tmp_path, meshes):
    px = meshes[..., :2] * [W, H]
    (tmp_path / "px.json").write_text(json.dumps(px.tolist()))
    np.testing.assert_allclose(read(tmp_path / "px.json").points, expected(meshes), atol=1e-4)
    (tmp_path / "norm.json").write_text(json.dumps(meshes.tolist()))
    with pytest.raises(ValueError, match=r"normalised coordinates .* give the image size"):
        read(tmp_path / "norm.json")
    (tmp_path / "sized.json").write_text(json.dumps({"width": W, "height": H, "frames": meshes.tolist()}))
    with pytest.raises(ValueError, match=r"is for a 320x240 image, not 100x50"):
        read(tmp_path / "sized.json", image_size=(50, 100))


def test_frames_without_a_face_and_frames_with_several(tmp_path, meshes):
    small = (meshes[0] - 0.5) * 0.2 + 0.5  # a second, smaller face
    frames = [[meshes[0].tolist(), small.tolist()], None, {"multi_face_landmarks": []}, meshes[2].tolist()]
    (tmp_path / "gaps.json").write_text(json.dumps(frames))
    with pytest.raises(ValueError, match=r"frame 1 has no face \(and 1 more\).*missing='hold'"):
        read(tmp_path / "gaps.json", image_size=(H, W))
    with pytest.warns(UserWarning, match="2 of 4 frames have no face"):
        kp = read(tmp_path / "gaps.json", image_size=(H, W), missing="hold")
    want = expected(meshes)
    np.testing.assert_array_equal(kp.points, want[[0, 0, 0, 2]])  # the larger face; held over the gaps
    assert kp.meta["confidence"] == [1.0, 0.0, 0.0, 1.0]
    (tmp_path / "none.json").write_text(json.dumps([None, []]))
    with pytest.raises(ValueError, match="no face in any of its 2 frames"):
        read(tmp_path / "none.json", image_size=(H, W), missing="hold")


def test_files_of_other_formats_are_not_taken_and_bad_files_say_why(tmp_path, meshes):
    (tmp_path / "a2k.json").write_text(json.dumps({"format": "a2k-keypoints", "points": [[[1.0, 2.0]] * 68]}))
    (tmp_path / "openface.csv").write_text(", ".join(["frame", *(f"x_{i}" for i in range(68))]) + "\n1" + ", 1" * 68)
    (tmp_path / "short.json").write_text(json.dumps([meshes[0][:100].tolist()]))
    (tmp_path / "broken.json").write_text("[[[0.1, 0.2")
    for name in ("a2k.json", "openface.csv", "short.json"):
        assert not detect(tmp_path / name), name
    with pytest.raises(ValueError, match="a face holds 468 or 478 landmarks"):
        read(tmp_path / "short.json", image_size=(H, W))
    with pytest.raises(ValueError, match="cannot read MediaPipe landmark file"):
        read(tmp_path / "broken.json")
    with pytest.raises(ValueError, match="is not a MediaPipe landmark CSV: it needs columns x0, y0"):
        read(tmp_path / "openface.csv")


@needs_entry_point
def test_a2k_convert_reads_it_by_its_content(tmp_path, meshes):
    (tmp_path / "lm.json").write_text(json.dumps(meshes.tolist()))
    proc = a2k("convert", tmp_path / "lm.json", tmp_path / "kp.npy", "--image-size", f"{W}x{H}")
    assert proc.returncode == 0 and "(mediapipe)" in proc.stdout, proc.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "kp.npy"), expected(meshes))
    listed = a2k("convert", "--list").stdout
    assert any(line.split()[:3] == ["mediapipe", ".json,", ".csv"] for line in listed.splitlines()), listed
    for args, needle in (
        ([tmp_path / "lm.json", tmp_path / "kp2.npy"], "give the image size"),
        ([tmp_path / "kp.npy", tmp_path / "out.json", "--to", "mediapipe"], "the mediapipe format cannot be written"),
    ):
        proc = a2k("convert", *args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.strip().splitlines()[-1].startswith("error: ") and needle in proc.stderr, proc.stderr


# ------------------------------------------------------------------------------------------ real MediaPipe output


def face_mesh_landmarks(images):
    """MediaPipe's own output for ``images``, as its legacy Python solution gives it: per image, the landmark protos
    of each face (the detector's graph settings)."""
    from mediapipe.python.solutions import face_mesh

    with face_mesh.FaceMesh(static_image_mode=True, max_num_faces=4, refine_landmarks=True) as graph:
        return [list(graph.process(img).multi_face_landmarks or []) for img in images]


@needs_mediapipe
@needs_entry_point
def test_real_mediapipe_output_reads_as_the_detectors_points(tmp_path):
    from google.protobuf.json_format import MessageToDict

    from a2k_mediapipe import MediapipeDetector
    from a2k_toolkit.io import load_image

    path = shared_face("obama.jpg")
    image = load_image(path)
    (faces,) = face_mesh_landmarks([image])
    assert len(faces) == 1 and len(faces[0].landmark) == 478
    (tmp_path / "lists.json").write_text(json.dumps([[[p.x, p.y, p.z] for p in faces[0].landmark]]))
    (tmp_path / "protos.json").write_text(json.dumps([MessageToDict(faces[0])]))
    with open(tmp_path / "wide.csv", "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow([c for i in range(478) for c in (f"x{i}", f"y{i}", f"z{i}")])
        out.writerow([v for p in faces[0].landmark for v in (p.x, p.y, p.z)])
    detected = MediapipeDetector().detect(image).points
    for name in ("lists.json", "protos.json", "wide.csv"):
        proc = a2k("convert", tmp_path / name, tmp_path / f"{name}.npy", "--image", path)
        assert proc.returncode == 0, proc.stderr
        np.testing.assert_allclose(np.load(tmp_path / f"{name}.npy"), detected, atol=1e-4, err_msg=name)


@needs_mediapipe
def test_a_mediapipe_file_as_a_pose_source(tmp_path, catalog):
    from pathlib import Path

    from a2k_mediapipe import MediapipeDetector
    from a2k_toolkit.io import read_video_frames
    from a2k_toolkit.pipeline import Pipeline

    clip = Path(shared_face("obama.jpg")).parents[1] / "clips" / "pcavs_ralph.mp4"
    if not clip.is_file():
        pytest.skip(f"shared clip {clip.name} not found")
    frames = [f for _, f in zip(range(12), read_video_frames(clip, fps=25))]
    h, w = frames[0].shape[:2]
    meshes = [[[[p.x, p.y, p.z] for p in face.landmark] for face in faces] for faces in face_mesh_landmarks(frames)]
    (tmp_path / "pose.json").write_text(json.dumps({"image_size": [h, w], "frames": meshes}))
    np.save(tmp_path / "pose.npy", np.concatenate([MediapipeDetector().detect(f).points for f in frames]))
    speech = (np.random.default_rng(0).normal(0, 0.05, 16000).astype(np.float32), 16000)  # 25 frames: 12 looped

    def posed(source):
        cfg = {"renderer": None, "device": "cpu", "generator": "static", "pose": str(source)}
        return Pipeline.from_config(cfg, plugins=catalog)(frames[0], speech).keypoints.points

    from_file, from_detector = posed(tmp_path / "pose.json"), posed(tmp_path / "pose.npy")
    assert from_file.shape == (25, 68, 2)
    np.testing.assert_allclose(from_file, from_detector, atol=1e-3)
    assert np.abs(from_file[:, 30] - from_file[0, 30]).max() > 0.5  # the head moved as the clip's does
