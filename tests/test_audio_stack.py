"""The ``stack`` front-end: members built through the host's catalog, layouts, frame counts, errors."""

from __future__ import annotations

import numpy as np
import pytest

from a2k_toolkit import Pipeline
from a2k_toolkit.builtin.stack import StackFrontend
from a2k_toolkit.catalog import Catalog
from a2k_toolkit.errors import ConfigError, UnknownComponentError
from a2k_toolkit.plugins import make_plugin_manager
from a2k_toolkit.testing import AudioFrontendContract, DummyPlugin, test_waveform


@pytest.fixture
def host():
    """A host catalog holding a component the default catalog lacks (``dummy-audio``)."""
    return Catalog(make_plugin_manager(entry_points=False, plugins=[DummyPlugin()]))


class TestStackContract(AudioFrontendContract):
    component_class = StackFrontend
    params = {"members": ["logmel", {"name": "logmel", "params": {"n_mels": 40}}]}

    def make(self, **extra):
        return Catalog(make_plugin_manager(entry_points=False)).build("audio", "stack", {**self.params, **extra})


def test_members_come_from_the_host_catalog(host):
    fe = host.build("audio", "stack", {"members": ["logmel", "dummy-audio"]})
    assert [m.name for m in fe.members] == ["logmel", "dummy-audio"]
    wav = test_waveform(1.3)
    feats = fe(wav, 16000)
    assert fe.feature_shape == (322,) and feats.shape == (33, 322) and feats.dtype == np.float32
    np.testing.assert_array_equal(feats[:, :320], fe.members[0](wav, 16000))
    np.testing.assert_array_equal(feats[:, 320:], fe.members[1](wav, 16000))
    # the default catalog has no dummy-audio: a stack that made its own catalog would fail here
    with pytest.raises(UnknownComponentError, match="dummy-audio"):
        Catalog(make_plugin_manager(entry_points=False)).build("audio", "stack", {"members": ["dummy-audio"]})


def test_pipeline_and_config_round_trip(host, sample_image_path):
    cfg = {
        "audio": {"name": "stack", "params": {"members": ["logmel", "dummy-audio"]}},
        "detector": "dummy-detector",
        "generator": "dummy-generator",
        "renderer": None,
    }
    pipe = Pipeline.from_config(cfg, plugins=host)
    assert isinstance(pipe.audio, StackFrontend) and pipe.audio.feature_dim == 322
    again = Pipeline.from_config(pipe.config, plugins=host)
    assert again.audio.params == pipe.audio.params
    assert len(pipe(sample_image_path, (test_waveform(2.0), 16000)).keypoints) == 50


def test_layouts(host):
    same = {"members": ["logmel", {"name": "logmel", "params": {"n_mels": 40}}]}
    wav = test_waveform(1.0)
    auto = host.build("audio", "stack", same)
    assert auto.feature_shape == (4, 120)
    a, b = (m(wav, 16000).reshape(25, 4, -1) for m in auto.members)
    np.testing.assert_array_equal(auto(wav, 16000).reshape(25, 4, 120), np.concatenate([a, b], axis=2))
    flat = host.build("audio", "stack", {**same, "layout": "flat"})
    assert flat.feature_shape == (480,)
    np.testing.assert_array_equal(flat(wav, 16000), np.concatenate([a.reshape(25, -1), b.reshape(25, -1)], 1))
    rep = host.build("audio", "stack", {"members": ["logmel", "dummy-audio"], "layout": "repeat"})
    assert rep.feature_shape == (4, 82)
    out = rep(wav, 16000).reshape(25, 4, 82)
    np.testing.assert_array_equal(out[:, :, 80:], np.repeat(rep.members[1](wav, 16000)[:, None], 4, axis=1))
    with pytest.raises(ConfigError, match="layout 'repeat'"):
        host.build(
            "audio",
            "stack",
            {"members": ["logmel", {"name": "logmel", "params": {"subframes": 2}}], "layout": "repeat"},
        )


@pytest.mark.parametrize(
    "seconds, sr, fps", [(0.0001, 16000, 25), (1 / 25, 16000, 25), (2.37, 44100, 25), (1.0, 8000, 30)]
)
def test_frame_count_any_rate(host, seconds, sr, fps):
    fe = host.build("audio", "stack", {"members": ["logmel", "dummy-audio"], "fps": fps})
    assert all(m.fps == fps for m in fe.members)
    n = max(1, round(seconds * sr))
    assert fe(test_waveform(seconds, sr)[:n] if n > 1 else np.zeros(1, np.float32), sr).shape == (
        fe.num_frames(n, sr),
        322,
    )


def test_errors(host):
    with pytest.raises(ConfigError, match=r"members\[1\]\.params.*n_mels"):
        host.build("audio", "stack", {"members": ["logmel", {"name": "logmel", "params": {"n_mels": 1}}]})
    with pytest.raises(ConfigError, match="fps"):
        host.build("audio", "stack", {"members": [{"name": "logmel", "params": {"fps": 30}}]})
    with pytest.raises(ConfigError, match="host's catalog"):
        StackFrontend({"members": ["logmel"]}).feature_shape  # noqa: B018
    with pytest.raises(ConfigError):
        Pipeline.from_config({"audio": {"name": "stack", "params": {"members": []}}}, plugins=host)
