"""Keypoint formats for downstream tools (a2k_toolkit.formats), `a2k convert`, and the save options that use them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from a2k_toolkit import formats
from a2k_toolkit.errors import InputError
from a2k_toolkit.formats import openface, openpose, pose_images, pts
from a2k_toolkit.formats._common import short_floats
from a2k_toolkit.keypoints import LEFT_EYE_CENTRE, RIGHT_EYE_CENTRE, Keypoints


def a2k(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "a2k_toolkit.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd
    )


def assert_user_error(proc, *needles):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for n in needles:
        assert n in proc.stderr, (n, proc.stderr)


@pytest.fixture(scope="module")
def face(sample_image_path) -> np.ndarray:
    """The bundled sample's 68 dlib keypoints (512x512 image)."""
    from a2k_toolkit.builtin.dlib_detector import DlibDetector
    from a2k_toolkit.io import load_image

    return DlibDetector().detect(load_image(sample_image_path)).points[0]


@pytest.fixture
def seq(face) -> Keypoints:
    """A 6-frame sequence in pixels of the 512x512 sample with sub-pixel, non-round coordinates."""
    rng = np.random.default_rng(7)
    pts_ = face[None] + rng.normal(0, 2.0, (6, 68, 2)) + np.linspace(0, 5, 6)[:, None, None] + 1 / 3
    return Keypoints(pts_.astype(np.float32), fps=25.0, image_size=(512, 512), meta={"generator": "test"})


# ------------------------------------------------------------------------------------------------------ round trips

ROUND_TRIPS = [
    ("kp.npy", None, 1),
    ("kp.npz", None, 6),
    ("kp.json", None, 6),
    ("openpose/", None, 6),
    ("one.json", "openpose", 1),
    ("kp.csv", None, 6),
    ("face.pts", None, 1),
    ("frames/", "pts", 6),
]


@pytest.mark.parametrize("name,fmt,frames", ROUND_TRIPS)
def test_round_trip_is_lossless_for_the_points(tmp_path, seq, name, fmt, frames):
    kp = seq[:frames]
    out = f"{tmp_path}/{name}"  # a trailing '/' makes a folder output
    written = formats.write(out, kp, fmt)
    back = formats.read(out, fmt)
    np.testing.assert_array_equal(back.points, kp.points)  # float32 exactly: the text formats too
    assert back.layout == "ibug68" and back.fps == 25.0
    if written.name in ("npz", "json"):
        assert back.image_size == (512, 512) and back.meta["generator"] == "test"
    # nothing left beside the output but the output
    assert sorted(p.name for p in tmp_path.iterdir()) == [name.rstrip("/")]


def test_round_trips_keep_fps_where_the_format_stores_it(tmp_path, seq):
    kp = Keypoints(seq.points, fps=30.0, image_size=(512, 512))
    for name in ("kp.npz", "kp.json", "kp.csv"):
        formats.write(tmp_path / name, kp)
        assert formats.read(tmp_path / name).fps == 30.0, name
    # formats without a frame rate read as 25 fps unless told
    formats.write(f"{tmp_path}/op/", kp)
    assert formats.read(tmp_path / "op").fps == 25.0
    assert formats.read(tmp_path / "op", fps=30).fps == 30.0


def test_short_floats_are_exact_and_short():
    values = np.array([123.5, 1 / 3, 511.99, 0.0, -2.25e-5, 4095.123], np.float32)
    for offset in (0.0, 1.0):
        out = short_floats(values, offset)
        np.testing.assert_array_equal((out - offset).astype(np.float32), values)
    assert [repr(v) for v in short_floats(np.array([123.5, 511.99], np.float32)).tolist()] == ["123.5", "511.99"]


def test_native_json_is_the_documented_object_and_reads_the_older_files(tmp_path, seq):
    from a2k_toolkit.io import save_keypoints

    formats.write(tmp_path / "kp.json", seq)
    data = json.loads((tmp_path / "kp.json").read_text())
    assert data["format"] == "a2k-keypoints" and data["format_version"] == 1
    assert data["fps"] == 25.0 and data["image_size"] == [512, 512] and data["layout"] == "ibug68"
    assert data["num_frames"] == 6 and data["num_points"] == 68
    assert data["parts"]["jaw"] == [0, 17] and data["parts"]["inner_lip"] == [60, 68]
    assert len(data["points"]) == 6 and len(data["points"][0]) == 68 and len(data["points"][0][0]) == 2
    assert data["meta"] == {"generator": "test"}
    # a .json written by io.save_keypoints (the older form: meta keys at the top level) still reads
    save_keypoints(tmp_path / "old.json", seq)
    old = formats.read(tmp_path / "old.json")
    np.testing.assert_allclose(old.points, seq.points, atol=1e-3)
    assert old.image_size == (512, 512) and old.meta == {"generator": "test"}
    # and io's reader reads the documented one
    from a2k_toolkit.io import load_keypoints

    np.testing.assert_array_equal(load_keypoints(tmp_path / "kp.json").points, seq.points)


# ----------------------------------------------------------------------------------------------------- OpenPose


def _openpose_frame(*faces, canvas=None) -> dict:
    people = [{"person_id": [-1], "pose_keypoints_2d": [], "face_keypoints_2d": f} for f in faces]
    out = {"version": 1.3, "people": people}
    if canvas:
        out.update(canvas_height=canvas[0], canvas_width=canvas[1])
    return out


def _flat(points: np.ndarray, c: float = 0.9) -> list[float]:
    p70 = openpose.with_pupils(points)
    return np.concatenate([p70, np.full((70, 1), c)], 1).reshape(-1).tolist()


def test_openpose_files_have_openposes_layout_and_estimated_pupils(tmp_path, seq):
    formats.write(f"{tmp_path}/run/", seq)
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names == [f"run_{i:012d}_keypoints.json" for i in range(6)]
    data = json.loads((tmp_path / "run" / names[2]).read_text())
    assert data["version"] == 1.3 and len(data["people"]) == 1
    person = data["people"][0]
    assert person["pose_keypoints_2d"] == [] and person["hand_left_keypoints_2d"] == []
    flat = np.array(person["face_keypoints_2d"]).reshape(70, 3)
    np.testing.assert_array_equal(flat[:68, :2].astype(np.float32), seq.points[2])
    assert (flat[:, 2] == 1.0).all()  # generated keypoints: confidence 1
    # points 68 and 69: the right and left pupils, each the centre of its eye's six points
    np.testing.assert_allclose(flat[68, :2], seq.points[2][RIGHT_EYE_CENTRE].mean(0), atol=1e-4)
    np.testing.assert_allclose(flat[69, :2], seq.points[2][LEFT_EYE_CENTRE].mean(0), atol=1e-4)
    assert flat[68, 0] < flat[69, 0]  # the subject's right eye is on the image's left


def test_openpose_reading_takes_the_largest_of_two_people(tmp_path, face):
    small = (face - face.mean(0)) * 0.3 + face.mean(0) + 100
    (tmp_path / "x_000000000000_keypoints.json").write_text(json.dumps(_openpose_frame(_flat(small), _flat(face))))
    with pytest.warns(UserWarning, match="several faces.*largest"):
        kp = formats.read(tmp_path)
    np.testing.assert_allclose(kp.points[0], face, atol=1e-3)
    assert kp.meta["confidence"] == [pytest.approx(0.9)]


def test_openpose_frames_without_people_are_refused_or_held(tmp_path, face):
    frames = [_openpose_frame(_flat(face)), _openpose_frame(), _openpose_frame(_flat(face + 4))]
    for i, f in enumerate(frames):
        (tmp_path / f"clip_{i:012d}_keypoints.json").write_text(json.dumps(f))
    with pytest.raises(InputError, match=r"clip_000000000001_keypoints.json has no face.*--missing hold"):
        formats.read(tmp_path)
    with pytest.warns(UserWarning, match="1 of 3 frames have no face"):
        kp = formats.read(tmp_path, missing="hold")
    np.testing.assert_allclose(kp.points[1], kp.points[0])
    np.testing.assert_allclose(kp.points[2], face + 4, atol=1e-3)
    assert kp.meta["confidence"] == [pytest.approx(0.9), 0.0, pytest.approx(0.9)]
    # a frame number missing from the sequence is a frame without a face too
    (tmp_path / "clip_000000000001_keypoints.json").unlink()
    with pytest.raises(InputError, match="frame 1"):
        formats.read(tmp_path)
    # zero people everywhere: refused whatever the policy
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "e_000000000000_keypoints.json").write_text(json.dumps(_openpose_frame()))
    with pytest.raises(InputError, match="no face in any of its 1 frames"):
        formats.read(tmp_path / "empty", missing="hold")


def test_openpose_normalised_coordinates_and_68_point_faces(tmp_path, face):
    norm = face / np.array([512.0, 256.0])  # a 512 wide, 256 high canvas
    flat68 = np.concatenate([norm, np.ones((68, 1))], 1).reshape(-1).tolist()  # DWPose: 68 points
    path = tmp_path / "dw.json"
    path.write_text(json.dumps(_openpose_frame(flat68, canvas=(256, 512))))
    kp = formats.read(path)
    np.testing.assert_allclose(kp.points[0], face, atol=1e-3)
    assert kp.image_size == (256, 512)
    # without the canvas, the size must be given
    path.write_text(json.dumps(_openpose_frame(flat68)))
    with pytest.raises(InputError, match="normalised coordinates"):
        formats.read(path)
    np.testing.assert_allclose(formats.read(path, image_size=(256, 512)).points[0], face, atol=1e-3)
    # and written normalised, they come back in pixels
    kp = Keypoints(face, image_size=(256, 512))
    formats.write(tmp_path / "n.json", kp, "openpose", normalized=True)
    data = json.loads((tmp_path / "n.json").read_text())
    assert data["canvas_width"] == 512 and max(data["people"][0]["face_keypoints_2d"]) <= 1.0
    np.testing.assert_allclose(formats.read(tmp_path / "n.json").points, kp.points, atol=1e-3)


def test_openpose_bad_files(tmp_path, face):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"people": [{"face_keypoints_2d": [1.0, 2.0, 3.0] * 50}]}))
    with pytest.raises(InputError, match="150 numbers; expected 70"):
        formats.read(bad)
    bad.write_text(json.dumps({"version": 1.3, "animals": []}))
    with pytest.raises(InputError, match="no 'points' list"):  # neither OpenPose nor a2k JSON
        formats.read(bad)
    with pytest.raises(InputError, match="holds one frame"):
        formats.write(tmp_path / "two.json", Keypoints(np.stack([face, face])), "openpose")


# -------------------------------------------------------------------------------------------------- pose images


def _assert_dots(image: np.ndarray, points: np.ndarray, radius: int = 3) -> None:
    h, w = image.shape[:2]
    centres = np.floor(points).astype(int)
    assert image.dtype == np.uint8 and image.shape == (h, w, 3)
    for x, y in centres:
        assert (image[y - 1 : y + 2, x - 1 : x + 2] == 255).all(), (x, y)  # white dot on every point
    yy, xx = np.mgrid[0:h, 0:w]
    d = np.min([np.hypot(xx - x, yy - y) for x, y in centres], axis=0)
    assert (image[d > radius + 1] == 0).all()  # black everywhere else: no lines, no colour
    assert set(np.unique(image)) == {0, 255}  # no anti-aliasing


def test_pose_images_are_white_dots_on_black_at_the_image_size(tmp_path, seq):
    import cv2

    formats.write(tmp_path / "pose/", seq, "pose-images")
    files = sorted((tmp_path / "pose").iterdir())
    assert [f.name for f in files] == [f"pose_{i:012d}_rendered.png" for i in range(6)]
    for i in (0, 5):
        image = cv2.imread(str(files[i]))
        _assert_dots(image, openpose.with_pupils(seq.points[i]))
    # DWPose's face: the 68 points only, so no dot on the pupils
    frame = pose_images.draw_face_pose(np.zeros((512, 512, 3), np.uint8), seq.points[0], pupils=False)
    _assert_dots(frame, seq.points[0])
    # pose images have no reader
    with pytest.raises(InputError, match="cannot be read back"):
        formats.read(tmp_path / "pose")


def test_pose_video_and_size_from_options(tmp_path, seq):
    from a2k_toolkit.io import probe_video, read_video_frames

    formats.write(tmp_path / "pose.mp4", seq)
    info = probe_video(tmp_path / "pose.mp4")
    assert (info["width"], info["height"], info["frames"]) == (512, 512, 6)
    frame = next(iter(read_video_frames(tmp_path / "pose.mp4")))
    x, y = np.floor(seq.points[0, 30]).astype(int)
    assert frame[y, x].min() > 200 and frame[5, 5].max() < 30
    with pytest.raises(InputError, match="source image's size"):
        formats.write(tmp_path / "p.mp4", Keypoints(seq.points))
    with pytest.raises(InputError, match="no option 'normalized'"):
        formats.write(tmp_path / "p/", seq, "pose-images", normalized=True)


# ---------------------------------------------------------------------------------------------------- OpenFace

# the first columns of OpenFace 2.2 FeatureExtraction output, then landmarks among its other columns
_OF_HEAD = ["frame", "face_id", "timestamp", "confidence", "success", "gaze_0_x", "gaze_0_y", "gaze_angle_x"]
_OF_TAIL = [f"X_{i}" for i in range(68)] + ["pose_Tx", "pose_Rx", "AU01_r", "AU45_c"]


def _openface_text(frames, sep=", ", fps=30.0, success=None, face_ids=None) -> str:
    header = _OF_HEAD + [f"eye_lmk_x_{i}" for i in range(3)] + list(openface.X_COLUMNS) + list(openface.Y_COLUMNS)
    header += _OF_TAIL
    lines = [sep.join(header)]
    for i, f in enumerate(frames):
        ok = 1 if success is None else success[i]
        fid = 0 if face_ids is None else face_ids[i]
        frame_no = i + 1 if face_ids is None else i // 2 + 1
        row = [frame_no, fid, f"{(frame_no - 1) / fps:.3f}", 0.98, ok, 0.1, -0.2, 0.05, 1.5, 2.5, 3.5]
        row += [f"{v:.1f}" for v in f[:, 0]] + [f"{v:.1f}" for v in f[:, 1]]
        row += [-12.5] * 68 + [10.0, 0.1, 1.2, 0]
        lines.append(sep.join(map(str, row)))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("sep", [", ", ","])
def test_openface_csv_with_its_many_columns_reads(tmp_path, face, sep):
    frames = [np.round(face + i, 1) for i in range(4)]
    path = tmp_path / "of.csv"
    path.write_text(_openface_text(frames, sep))
    kp = formats.read(path)
    np.testing.assert_allclose(kp.points, np.stack(frames), atol=1e-4)  # x_i, y_i, not X_i or eye_lmk_x_i
    assert kp.fps == 30.0 and kp.image_size is None
    assert kp.meta["confidence"] == [pytest.approx(0.98)] * 4


def test_openface_failed_frames_and_several_faces(tmp_path, face):
    frames = [face + i for i in range(4)]
    path = tmp_path / "of.csv"
    path.write_text(_openface_text(frames, success=[1, 0, 1, 1]))
    with pytest.raises(InputError, match="frame 2 has no face"):
        formats.read(path)
    with pytest.warns(UserWarning, match="1 of 4 frames have no face"):
        kp = formats.read(path, missing="hold")
    np.testing.assert_allclose(kp.points[1], kp.points[0])
    # two faces per frame (FaceLandmarkVidMulti): the larger one is taken
    small = (face - face.mean(0)) * 0.5 + face.mean(0)
    path.write_text(_openface_text([face, small, face + 1, small + 1], face_ids=[0, 1, 0, 1]))
    with pytest.warns(UserWarning, match="face_id 0, the largest"):
        kp = formats.read(path)
    np.testing.assert_allclose(kp.points, np.stack([face, face + 1]), atol=0.06)


def test_openface_written_columns(tmp_path, seq):
    formats.write(tmp_path / "kp.csv", seq)
    lines = (tmp_path / "kp.csv").read_text().splitlines()
    header = lines[0].split(", ")
    assert header[:5] == ["frame", "face_id", "timestamp", "confidence", "success"]
    assert header[5] == "x_0" and header[72] == "x_67" and header[73] == "y_0" and header[-1] == "y_67"
    row = lines[3].split(", ")
    assert row[:5] == ["3", "0", "0.080", "1", "1"] and len(lines) == 7
    assert float(row[5]) == pytest.approx(seq.points[2, 0, 0], abs=1e-4)


def test_openface_bad_csv(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("frame, timestamp, x_0\n1, 0.0, 3\n")
    with pytest.raises(InputError, match="no column 'x_1'"):
        formats.read(path)
    path.write_text(", ".join(openface.HEADER) + "\n" + ", ".join(["1"] * 5 + ["oops"] * 136) + "\n")
    with pytest.raises(InputError, match="line 2: 'oops' is not a number"):
        formats.read(path)


# --------------------------------------------------------------------------------------------------------- .pts

PTS_TEXT = "version: 1\nn_points:  68\n{\n" + "\n".join(f"{10 + i}.5 {200 - i}" for i in range(68)) + "\n}\n"


def test_pts_files_are_one_based(tmp_path):
    (tmp_path / "image_001.pts").write_text(PTS_TEXT)
    kp = formats.read(tmp_path / "image_001.pts")
    assert kp.points.shape == (1, 68, 2)
    np.testing.assert_array_equal(kp.points[0, 0], [9.5, 199.0])
    np.testing.assert_array_equal(kp.points[0, 67], [76.5, 132.0])
    assert pts.to_text(kp.points[0]) == PTS_TEXT  # written back as it was read
    # a folder is a sequence in natural order (frame 2 before frame 10)
    seq_dir = tmp_path / "annot"
    seq_dir.mkdir()
    for n, shift in ((10, 2.0), (2, 1.0)):
        (seq_dir / f"frame{n}.pts").write_text(pts.to_text(kp.points[0] + shift))
    np.testing.assert_array_equal(formats.read(seq_dir).points[:, 0, 0], [10.5, 11.5])


def test_pts_other_layouts_are_refused(tmp_path):
    (tmp_path / "wflw.pts").write_text("version: 1\nn_points: 98\n{\n" + "1 2\n" * 98 + "}\n")
    with pytest.raises(InputError, match="98 points; only the 68-point"):
        formats.read(tmp_path / "wflw.pts")
    (tmp_path / "cut.pts").write_text(PTS_TEXT[:300])
    with pytest.raises(InputError, match="not a .pts file"):
        formats.read(tmp_path / "cut.pts")


# -------------------------------------------------------------------------------------------- inference, atomicity


def test_formats_are_inferred_from_paths(tmp_path, seq):
    assert formats.output_format("x.csv").name == "openface"
    assert formats.output_format("x.mp4").name == "pose-images"
    assert formats.output_format("out/").name == "openpose"
    assert formats.output_format("out", "pts").name == "pts"
    with pytest.raises(InputError, match="no extension"):
        formats.output_format("out")
    with pytest.raises(InputError, match="unsupported extension '.txt'"):
        formats.output_format("x.txt")
    with pytest.raises(InputError, match="openface writes a file"):
        formats.output_format("out/", "openface")
    # (not mediapipe: a plugin's read-only format, known once a host has loaded the plugins' formats)
    with pytest.raises(InputError, match="unknown keypoint format 'wflw'"):
        formats.output_format("x.json", "wflw")
    formats.write(f"{tmp_path}/op/", seq)
    formats.write(f"{tmp_path}/p/", seq, "pts")
    formats.write(tmp_path / "single.json", seq[:1], "openpose")
    assert formats.input_format(tmp_path / "op").name == "openpose"
    assert formats.input_format(tmp_path / "p").name == "pts"
    assert formats.input_format(tmp_path / "single.json").name == "openpose"  # a .json's content decides
    formats.write(tmp_path / "kp.json", seq)
    assert formats.input_format(tmp_path / "kp.json").name == "json"


def test_folder_outputs_replace_their_own_files_only(tmp_path, seq):
    out = tmp_path / "op"
    formats.write(str(out) + "/", seq)
    formats.write(str(out) + "/", seq[:2])  # a shorter sequence replaces the whole folder: no stale frames
    assert len(list(out.iterdir())) == 2
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="already holds other files"):
        formats.check_output(str(out) + "/")
    with pytest.raises(InputError, match=r"notes.txt"):
        formats.write(str(out) + "/", seq)
    assert (out / "notes.txt").read_text() == "mine" and len(list(out.iterdir())) == 3


def _broken_openpose():
    from dataclasses import replace

    def broken(path, keypoints, **kw):
        (path / "x_000000000000_keypoints.json").write_text("{}")
        raise RuntimeError("disk full")

    return replace(formats.FORMATS["openpose"], write=broken)


def test_a_failed_folder_write_leaves_the_previous_output(tmp_path, seq):
    out = tmp_path / "op"
    formats.write(str(out) + "/", seq)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(RuntimeError, match="disk full"):
        formats.write(str(out) + "/", seq, _broken_openpose())
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["op"]  # no temporary folder left


def test_a_killed_writers_temporary_folder_is_removed_and_a_half_swapped_output_restored(tmp_path, seq):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    stale = tmp_path / f".op.a2k-{pid}.abc123"
    stale.mkdir()
    (stale / "op_000000000000_keypoints.json").write_text("{}")
    formats.write(str(tmp_path / "op") + "/", seq)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["op"]
    # killed between the two renames of a swap: the previous output is aside, the target gone
    os.replace(tmp_path / "op", tmp_path / f".op.a2k-{pid}.xyz.old")
    with pytest.raises(RuntimeError, match="disk full"):
        formats.write(str(tmp_path / "op") + "/", seq[:2], _broken_openpose())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["op"]  # put back, then kept as the write failed
    np.testing.assert_array_equal(formats.read(tmp_path / "op").points, seq.points)


# ------------------------------------------------------------------------------------------------- save and CLI


def test_result_save_dispatches_through_the_registry(tmp_path, seq):
    from a2k_toolkit.pipeline import Result

    result = Result(seq, np.zeros((512, 512, 3), np.uint8), np.zeros(16000, np.float32), 16000)
    result.save(keypoints=tmp_path / "kp.csv")
    np.testing.assert_array_equal(formats.read(tmp_path / "kp.csv").points, seq.points)
    result.save(keypoints=str(tmp_path / "op") + "/")
    assert len(list((tmp_path / "op").iterdir())) == 6
    result.save(keypoints=tmp_path / "pose", format="pose-images")
    assert (tmp_path / "pose" / "pose_000000000005_rendered.png").is_file()
    with pytest.raises(InputError, match="unsupported extension '.txt'"):
        result.save(keypoints=tmp_path / "kp.txt")


def test_convert_cli_between_formats(tmp_path, seq):
    formats.write(tmp_path / "kp.npy", seq)
    proc = a2k("convert", tmp_path / "kp.npy", str(tmp_path / "op") + "/")
    assert proc.returncode == 0, proc.stderr
    assert "6 frames" in proc.stdout and "(npy)" in proc.stdout and "(openpose)" in proc.stdout
    proc = a2k("convert", tmp_path / "op", tmp_path / "kp.csv", "--fps", "30")
    assert proc.returncode == 0, proc.stderr
    back = formats.read(tmp_path / "kp.csv")
    np.testing.assert_array_equal(back.points, seq.points)
    assert back.fps == 30.0
    proc = a2k("convert", tmp_path / "kp.csv", tmp_path / "pose", "--to", "pose-images", "--image-size", "512x512")
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "pose").iterdir())) == 6
    from a2k_toolkit.plugins import make_plugin_manager

    formats.add_plugin_formats(make_plugin_manager())  # the installed plugins' formats, as `a2k convert` adds them
    assert a2k("convert", "--list").stdout.count("\n") == len(formats.FORMATS) + 1


@pytest.mark.parametrize(
    "args,needles",
    [
        (["kp.npy", "out.txt"], ["unsupported extension '.txt'", "use .npy"]),
        (["missing.csv", "out.json"], ["keypoint input not found: missing.csv"]),
        (["corrupt.json", "out.csv"], ["cannot read keypoint file corrupt.json"]),
        (["corrupt.csv", "out.json"], ["corrupt.csv is not an OpenFace-style landmark CSV"]),
        (["kp.npy", "out.csv", "--to", "wflw"], ["unknown keypoint format 'wflw'"]),
        (["kp.npy", "pose/", "--to", "pose-images"], ["source image's size", "--image-size"]),
        (["kp.npy", "out.csv", "--normalized"], ["--normalized does not apply to openface"]),
        (["kp.npy", "out.csv", "--image-size", "512"], ["WIDTHxHEIGHT"]),
        (["kp.npy"], ["give an INPUT and an OUTPUT"]),
    ],
)
def test_convert_cli_errors_are_one_line(tmp_path, seq, args, needles):
    formats.write(tmp_path / "kp.npy", seq)
    (tmp_path / "corrupt.json").write_text('{"people": [')
    (tmp_path / "corrupt.csv").write_bytes(b"\x00\x01garbage,,\n")
    proc = a2k("convert", *args, cwd=tmp_path)
    assert_user_error(proc, *needles)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.csv", "corrupt.json", "kp.npy"]


def test_generate_writes_a_csv_equal_to_its_npy(tmp_path, sample_image_path, sample_speech_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    outs = {}
    for name in ("kp.npy", "kp.csv"):
        proc = subprocess.run(
            [sys.executable, "-m", "a2k_toolkit.cli", "generate", "--image", str(sample_image_path), "--audio",
             str(sample_speech_path), "--keypoints-out", str(tmp_path / name)],
            capture_output=True, text=True, env=env,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        outs[name] = formats.read(tmp_path / name)
    assert outs["kp.csv"].points.shape == outs["kp.npy"].points.shape == (265, 68, 2)
    # the same run twice: equal up to float32 rounding of the threaded generator; the CSV itself is lossless
    np.testing.assert_allclose(outs["kp.csv"].points, outs["kp.npy"].points, atol=1e-3)
    assert outs["kp.csv"].fps == 25.0


def test_generate_refuses_a_bad_keypoints_out_before_any_work(tmp_path):
    proc = a2k("generate", "--image", "none.jpg", "--audio", "none.wav", "--keypoints-out", "kp.txt", cwd=tmp_path)
    assert_user_error(proc, "unsupported extension '.txt'", ".csv")
    (tmp_path / "op").mkdir()
    (tmp_path / "op" / "mine.txt").write_text("x")
    proc = a2k("generate", "--image", "none.jpg", "--audio", "none.wav", "--keypoints-out", "op/", cwd=tmp_path)
    assert_user_error(proc, "already holds other files")


def test_docs_list_every_format_and_show_the_pose_image():
    from pathlib import Path

    docs = Path(__file__).resolve().parents[1] / "docs"
    doc = (docs / "formats.md").read_text("utf-8")
    table = dict(re.findall(r"^\| `([\w-]+)` \| [^|]+ \| (both|write|read) \|", doc, flags=re.M))
    own = [f for f in formats.FORMATS.values() if not f.plugin]  # plugins' formats have a table of their own
    assert table == {f.name: "both" if f.read and f.write else "write" if f.write else "read" for f in own}
    for name in (f.name for f in own):
        assert f"## `{name}`" in doc or f"`{name}`, `" in doc or f", `{name}`" in doc, name
    for image in re.findall(r"\(images/([\w.-]+\.png)\)", doc):
        assert (docs / "images" / image).is_file(), image
    assert "formats-pose-image.png" in doc
    assert "docs/formats.md" in (docs.parent / "README.md").read_text("utf-8")
