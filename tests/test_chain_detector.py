"""The ``chain`` detector: members checked with the config, built through the host's catalog, tried in order (the
first that finds a face wins), and one error naming every member's reason when all fail."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from a2k_toolkit import hookimpl
from a2k_toolkit.builtin.chain_detector import ChainDetector
from a2k_toolkit.catalog import Catalog
from a2k_toolkit.components import KeypointDetector
from a2k_toolkit.config import load_config, validate_components
from a2k_toolkit.errors import A2KError, ConfigError, InputError, NoFaceFoundError, UnknownComponentError
from a2k_toolkit.io import load_image
from a2k_toolkit.plugins import make_plugin_manager
from a2k_toolkit.testing import DetectorContract

SAMPLE = Path(__file__).resolve().parents[1] / "a2k_toolkit" / "samples" / "astronaut.jpg"


class NoFace(KeypointDetector):
    """Finds no face, ever; counts its calls."""

    name = "no-face-test"
    calls = 0

    def detect_all(self, image):
        type(self).calls += 1
        return []


class Broken(KeypointDetector):
    """Fails with an error of its own (as a detector whose weights are missing does)."""

    name = "broken-test"

    def detect_all(self, image):
        raise A2KError("the broken-test detector has no weights; copy them to the cache")


class Picky(KeypointDetector):
    """Refuses its input (an error about the image, which must stop the chain)."""

    name = "picky-test"

    def detect_all(self, image):
        raise InputError("picky-test takes only square images")


class TestPlugin:
    @staticmethod
    @hookimpl
    def register_keypoint_detectors(register):
        register(NoFace)
        register(Broken)
        register(Picky)


@pytest.fixture(scope="module")
def catalog():
    return Catalog(make_plugin_manager(entry_points=False, plugins=[TestPlugin()]))


@pytest.fixture(scope="module")
def face():
    return load_image(SAMPLE)


def chain(catalog, *members):
    return catalog.build("detector", "chain", {"members": list(members)})


class TestChainContract(DetectorContract):
    component_class = ChainDetector
    params = {"members": ["dlib"]}
    face_image = SAMPLE

    def make(self, **extra):
        return Catalog(make_plugin_manager(entry_points=False)).build("detector", "chain", {**self.params, **extra})


def test_chain_is_a_builtin():
    entry = Catalog(make_plugin_manager(entry_points=False)).entry("detector", "chain")
    assert entry.plugin == "a2k_toolkit.builtin.chain_detector" and entry.distribution == "a2k-toolkit"


def test_first_member_that_finds_a_face_wins(catalog, face):
    dlib_alone = catalog.build("detector", "dlib").detect(face)
    for members in (["no-face-test", "dlib"], ["broken-test", "dlib"], ["dlib", "broken-test"]):
        kp = chain(catalog, *members).detect(face)
        np.testing.assert_array_equal(kp.points, dlib_alone.points)
        assert kp.meta["detector"] == "dlib" and kp.image_size == face.shape[:2]


def test_later_members_do_not_run_once_a_face_is_found(catalog, face):
    det = chain(catalog, "dlib", "no-face-test")
    NoFace.calls = 0
    det.detect(face)
    assert NoFace.calls == 0 and det.last_failures == []
    assert det.detect_all(np.full((120, 120, 3), 127, np.uint8)) == []  # dlib finds nothing: the next one is asked
    assert NoFace.calls == 1


def test_all_fail_one_error_naming_each_reason(catalog):
    det = chain(catalog, "dlib", "broken-test", "no-face-test")
    blank = np.full((200, 300, 3), 127, np.uint8)
    with pytest.raises(NoFaceFoundError) as exc:
        det.detect(blank)
    msg = str(exc.value)
    assert "300x200" in msg and "dlib: found no face" in msg and "no-face-test: found no face" in msg
    assert "broken-test: the broken-test detector has no weights" in msg
    assert msg.index("dlib:") < msg.index("broken-test:") < msg.index("no-face-test:")  # in the chain's order
    assert det.detect_all(blank) == [] and [n for n, _ in det.last_failures] == ["dlib", "broken-test", "no-face-test"]


def test_an_input_error_stops_the_chain(catalog, face):
    with pytest.raises(InputError, match="square"):
        chain(catalog, "picky-test", "dlib").detect(face)


def test_detect_batch_asks_later_members_only_for_the_misses(catalog, face):
    blank = np.full((150, 150, 3), 127, np.uint8)
    NoFace.calls = 0
    out = chain(catalog, "dlib", "broken-test", "no-face-test").detect_batch([face, blank, face])
    assert out[1] is None and NoFace.calls == 1  # only the blank image reached the last member
    np.testing.assert_array_equal(out[0], catalog.build("detector", "dlib").detect_all(face)[0])
    np.testing.assert_array_equal(out[0], out[2])


def test_members_are_checked_with_the_config_before_anything_is_built(catalog):
    cfg = load_config(
        {"detector": {"name": "chain", "params": {"members": ["dlib", {"name": "dlib", "params": {"upsample": 9}}]}}}
    )
    with pytest.raises(ConfigError, match=r"detector\.params\.members\[1\]\.params\.upsample"):
        validate_components(cfg, catalog)
    cfg = load_config({"detector": {"name": "chain", "params": {"members": ["dlib", "dlbi"]}}})
    with pytest.raises(UnknownComponentError, match=r"members\[1\]"):
        validate_components(cfg, catalog)
    with pytest.raises(ConfigError, match="members"):
        validate_components(load_config({"detector": {"name": "chain", "params": {"members": []}}}), catalog)


def test_chain_in_a_pipeline_config(catalog, face):
    from a2k_toolkit import Pipeline

    pipe = Pipeline.from_config(
        {
            "detector": {"name": "chain", "params": {"members": ["no-face-test", "dlib"]}},
            "generator": "static",
            "renderer": None,
        },
        plugins=catalog,
    )
    assert [m.name for m in pipe.detector.members] == ["no-face-test", "dlib"]
    assert pipe.detect(face).meta["detector"] == "dlib"
    # the config round-trips: the members are in it, and build the same chain again
    assert pipe.config.detector.params == {
        "members": [{"name": "no-face-test", "params": {}}, {"name": "dlib", "params": {}}]
    }
    again = Pipeline.from_config(pipe.config, plugins=catalog)
    assert [m.name for m in again.detector.members] == ["no-face-test", "dlib"]


def test_without_the_hosts_catalog_it_says_how_to_build_it(face):
    det = ChainDetector({"members": ["dlib"]})
    with pytest.raises(ConfigError, match="catalog"):
        det.detect(face)
