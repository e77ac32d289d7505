"""Components that contain components: typed ``ComponentSpec`` params, checked with the config (key paths) before
any weights load, and built through the host's catalog (one catalog per pipeline); the generator's front-end as the
default ``audio`` slot; validated params passed through."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from pydantic import Field

from a2k_toolkit import Pipeline, hookimpl
from a2k_toolkit.catalog import Catalog
from a2k_toolkit.components import KeypointGenerator, Params, Renderer, path_field
from a2k_toolkit.config import (
    ComponentSpec,
    EncoderSpec,
    GeneratorSpec,
    RendererSpec,
    check_paths,
    load_config,
    nested_specs,
    validate_components,
)
from a2k_toolkit.errors import ConfigError, UnknownComponentError
from a2k_toolkit.plugins import make_plugin_manager


class NestingRenderer(Renderer):
    """A renderer holding nested specs of every shape: optional, a list, inside a sub-model."""

    name = "nesting-test"
    uses_catalog = True

    class Inner(Params):
        encoder: EncoderSpec = Field(default_factory=lambda: EncoderSpec(name="pv"))

    class Params(Params):
        one: RendererSpec | None = None
        many: list[RendererSpec] = Field(default_factory=list)
        inner: NestingRenderer.Inner = Field(default_factory=lambda: NestingRenderer.Inner())
        untyped: ComponentSpec | None = None  # not a component reference: not checked

    def __init__(self, params=None, *, catalog=None, **kwargs):
        super().__init__(params, **kwargs)
        self.parts = [catalog.build("renderer", s) for s in self.params.many] if catalog is not None else None


class FileRenderer(Renderer):
    """A renderer with a parameter naming a file."""

    name = "file-test"

    class Params(Params):
        file: str | None = path_field(None)


class TestPlugin:
    @staticmethod
    @hookimpl
    def register_renderers(register):
        register(NestingRenderer)
        register(FileRenderer)


@pytest.fixture
def host():
    return Catalog(make_plugin_manager(entry_points=False, plugins=[TestPlugin()]))


# ------------------------------------------------------------------------------------------ nested validation


def test_nested_specs_of_every_shape_are_checked_with_key_paths(host):
    def check(params):
        return validate_components(load_config({"renderer": {"name": "nesting-test", "params": params}}), host)

    params = check({"one": "sketch", "many": ["warp", {"name": "sketch", "params": {"size": 64}}]})["renderer"]
    found = [(path, s.name) for path, s in nested_specs(params, "renderer.params")]
    assert found == [
        ("renderer.params.one", "sketch"),
        ("renderer.params.many[0]", "warp"),
        ("renderer.params.many[1]", "sketch"),
        ("renderer.params.inner.encoder", "pv"),
    ]
    assert all(s.checked_params is not None for _, s in nested_specs(params))  # kept for the build
    with pytest.raises(ConfigError, match=r"renderer\.params\.one\.params\.size: "):
        check({"one": {"name": "sketch", "params": {"size": "big"}}})
    with pytest.raises(ConfigError, match=r"renderer\.params\.many\[1\]\.params\.colour: unknown key"):
        check({"many": ["warp", {"name": "sketch", "params": {"colour": 1}}]})
    with pytest.raises(ConfigError, match=r"renderer\.params\.inner\.encoder\.params\.hiddn: unknown key"):
        check({"inner": {"encoder": {"name": "pv", "params": {"hiddn": 3}}}})
    with pytest.raises(UnknownComponentError, match=r"renderer\.params\.many\[0\]\.name: unknown renderer 'skech'"):
        check({"many": ["skech"]})
    check({"untyped": {"name": "anything", "params": {"x": 1}}})  # an untyped spec is the component's own business


def test_nested_paths_are_checked_too(host, tmp_path):
    def cfg(file):
        many = [{"name": "file-test", "params": {"file": str(file)}}]
        return load_config({"generator": "static", "renderer": {"name": "nesting-test", "params": {"many": many}}})

    check_paths(validate_components(cfg(tmp_path), host))
    with pytest.raises(ConfigError, match=r"renderer\.params\.many\[0\]\.params\.file: .*nowhere not found"):
        check_paths(validate_components(cfg(tmp_path / "nowhere"), host))


def test_a_bad_panel_fails_before_any_component_is_built(host, tmp_path):
    """The generator's checkpoint does not exist, so building it would fail with a checkpoint error: the panel's
    error comes first, from validation."""
    cfg = {
        "audio": "logmel",
        "generator": {"name": "audio2keypoint", "params": {"checkpoint": str(tmp_path / "no-such-run")}},
        "renderer": {
            "name": "side-by-side",
            "params": {"panels": ["reference", {"name": "sketch", "params": {"thickness": 0}}]},
        },
        "device": "cpu",
    }
    with pytest.raises(ConfigError, match=r"renderer\.params\.panels\[1\]\.params\.thickness: "):
        Pipeline.from_config(cfg, plugins=host)


def shipped_copy(tmp_path, member: str, edit) -> str:
    """A copy of the shipped ensemble with ``edit(config)`` applied to one member's config.json and every member's
    weights removed: loading any weights would fail with a missing-weights error (the ensemble's mouth prior, which
    the generator reads when it is built, stays)."""
    from a2k_toolkit.models.checkpoint import DEFAULT_WEIGHTS_DIR

    root = tmp_path / "ensemble"
    shutil.copytree(DEFAULT_WEIGHTS_DIR, root, ignore=shutil.ignore_patterns("model.safetensors"))
    path = root / member / "config.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))
    return str(root)


def test_a_bad_encoder_in_a_checkpoint_fails_before_weights_load(host, tmp_path):
    def bad_pv(meta):
        meta["model"]["pv_encoder"]["params"]["hiddn"] = 64

    cfg = {
        "generator": {"name": "audio2keypoint", "params": {"checkpoint": shipped_copy(tmp_path, "member-1", bad_pv)}}
    }
    with pytest.raises(ConfigError, match=r"checkpoint .*member-1: model\.pv_encoder\.params\.hiddn: unknown key"):
        Pipeline.from_config({**cfg, "renderer": None, "device": "cpu"}, plugins=host)

    def plugin_encoder(meta):
        meta["model"]["piv_encoder"]["name"] = "piv-from-a-plugin"

    cfg = {"checkpoint": shipped_copy(tmp_path / "b", "member-0", plugin_encoder)}
    with pytest.raises(UnknownComponentError, match=r"model\.piv_encoder\.name: unknown encoder 'piv-from-a-plugin'"):
        host.build("generator", "audio2keypoint", cfg)


def test_the_model_encoders_of_a_training_config(host):
    from a2k_toolkit.builtin.audio2keypoint import model_encoders
    from a2k_toolkit.models.config import ModelConfig, build_generator

    cfg = ModelConfig(width=8, depth=1, channels_2d=(4, 8), pv_encoder={"name": "pv", "params": {"hidden": 8}})
    parts = model_encoders(cfg, host)
    assert parts["pv_encoder"].params.hidden == 8 and parts["piv_encoder"].name == "piv"
    assert build_generator(cfg, (4, 80), **parts).pv.out_dim == 64
    with pytest.raises(ConfigError, match=r"invalid config: model\.pv_encoder\.params\.hiddn: unknown key"):
        model_encoders(ModelConfig(pv_encoder={"name": "pv", "params": {"hiddn": 8}}), host)


# ------------------------------------------------------------------------------------------- one catalog


def test_generate_with_the_shipped_ensemble_builds_one_catalog(monkeypatch, tmp_path, sample_image_path):
    import soundfile as sf

    from a2k_toolkit import catalog as catalog_module
    from a2k_toolkit import plugins
    from a2k_toolkit.cli import main
    from a2k_toolkit.models.ensemble import read_members

    assert len(read_members(None)) == 4  # the shipped model is an ensemble of four checkpoints (docs/results.md)
    made, scans = [], []
    real_init, real_scan = catalog_module.Catalog.__init__, plugins.load_entry_point_plugins

    def counting_init(self, *args, **kwargs):
        made.append(self)
        real_init(self, *args, **kwargs)

    def counting_scan(pm):
        scans.append(pm)
        return real_scan(pm)

    monkeypatch.setattr(catalog_module.Catalog, "__init__", counting_init)
    monkeypatch.setattr(plugins, "load_entry_point_plugins", counting_scan)
    wav, sr = sf.read(str(sample_image_path.parent / "speech.wav"), dtype="float32")
    sf.write(str(tmp_path / "speech.wav"), wav[: 2 * sr], sr)
    config = tmp_path / "shipped.yaml"
    config.write_text("generator: audio2keypoint\nrenderer: null\ndevice: cpu\n")
    out = tmp_path / "kp.npy"
    argv = ["generate", "--image", str(sample_image_path), "--audio", str(tmp_path / "speech.wav")]
    assert main([*argv, "--config", str(config), "--keypoints-out", str(out), "--device", "cpu"]) == 0
    assert np.load(out).shape == (50, 68, 2)
    assert len(made) == 1 and len(scans) == 1  # one catalog, one entry-point scan: 2 encoders x 4 members built in it


# --------------------------------------------------------------------------------------- the front-end slot


def test_audio_slot_defaults_to_the_generators(host, tiny_a2k_checkpoint):
    import warnings

    from a2k_toolkit.models.checkpoint import read_checkpoint

    fe = read_checkpoint(tiny_a2k_checkpoint).frontend
    gen = {"name": "audio2keypoint", "params": {"checkpoint": str(tiny_a2k_checkpoint)}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "params differ" warning: it is the checkpoint's own front-end
        pipe = Pipeline.from_config({"generator": gen, "renderer": None, "device": "cpu"}, plugins=host)
    assert pipe.audio.name == fe["name"] and pipe.audio.params.model_dump(mode="json") == fe["params"]
    assert pipe.config.audio.name == fe["name"]  # the config written back names it
    explicit = Pipeline.from_config({"generator": gen, "audio": fe, "renderer": None, "device": "cpu"}, plugins=host)
    assert explicit.audio.params == pipe.audio.params
    with pytest.raises(ConfigError, match="does not match the Audio2Keypoint checkpoint"):
        Pipeline.from_config({"generator": gen, "audio": "librosa-mel", "renderer": None}, plugins=host)
    # a generator that declares nothing gets logmel
    assert Pipeline.from_config({"generator": "static", "renderer": None}, plugins=host).audio.name == "logmel"


def test_config_show_fills_in_the_generators_front_end(tmp_path, tiny_a2k_checkpoint, capsys):
    import yaml

    from a2k_toolkit.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"generator: {{name: audio2keypoint, params: {{checkpoint: '{tiny_a2k_checkpoint}'}}}}\n")
    assert main(["config", "show", str(cfg)]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["audio"]["name"] == "logmel" and shown["audio"]["params"]["n_mels"] == 80


# ------------------------------------------------------------------------------------- each conversion once


def test_validated_params_are_passed_through(host):
    cfg = load_config(
        {
            "generator": "static",
            "renderer": {"name": "side-by-side", "params": {"panels": [{"name": "sketch", "params": {"size": 32}}]}},
        }
    )
    pipe = Pipeline.from_config(cfg, plugins=host, device="cpu")  # an override: the config is not dumped
    assert pipe.renderer.params is cfg.renderer.checked_params
    assert pipe.renderer.panels[0].params is pipe.renderer.params.panels[0].checked_params
    assert pipe.generator.params is cfg.generator.checked_params
    spec = RendererSpec(name="sketch", params={"size": 40})
    assert host.build("renderer", spec).params is spec.checked_params


# ------------------------------------------------------------------------------------------------ a2k eval


class WrappingGenerator(KeypointGenerator):
    """A generator wrapping another (a nested generator spec), built through the catalog it is given."""

    name = "wrapping-test"
    uses_catalog = True
    built: list[WrappingGenerator] = []

    class Params(Params):
        base: GeneratorSpec = Field(default_factory=lambda: GeneratorSpec(name="static"))

    def __init__(self, params=None, *, catalog=None, **kwargs):
        super().__init__(params, **kwargs)
        self.catalog = catalog
        self.base = catalog.build("generator", self.params.base, where="generator.params.base")
        WrappingGenerator.built.append(self)

    def generate(self, features, reference, *, seed=None):
        return self.base.generate(features, reference, seed=seed)


def test_eval_builds_its_generators_through_the_host_catalog(tmp_path):
    """``a2k eval``'s generators are built through the run's catalog: a checkpoint naming a plugin's encoder loads,
    and a nested generator spec is checked, with its key path, before any generator is built."""
    from a2k_toolkit.builtin.audio2keypoint import PIVEncoder
    from a2k_toolkit.eval.config import EvalEntry, build_generators

    class PluginPIV(PIVEncoder):
        name = "piv-from-a-plugin"

    class EvalPlugin:
        @staticmethod
        @hookimpl
        def register_generators(register):
            register(WrappingGenerator)

        @staticmethod
        @hookimpl
        def register_keypoint_encoders(register):
            register(PluginPIV)

    def plugin_encoder(meta):
        meta["model"]["piv_encoder"]["name"] = "piv-from-a-plugin"

    host = Catalog(make_plugin_manager(entry_points=False, plugins=[EvalPlugin()]))
    ckpt = shipped_copy(tmp_path, "member-0", plugin_encoder)
    a2k = {"name": "audio2keypoint", "params": {"checkpoint": ckpt}}
    entries = [
        EvalEntry(label="direct", generator=a2k),
        EvalEntry(label="wrapped", generator={"name": "wrapping-test", "params": {"base": a2k}}),
    ]
    WrappingGenerator.built.clear()
    gens = build_generators(entries, host)
    assert isinstance(gens["direct"]._encoders[0]["piv_encoder"], PluginPIV)
    wrapped = gens["wrapped"]
    assert wrapped.catalog is host and isinstance(wrapped.base._encoders[0]["piv_encoder"], PluginPIV)

    WrappingGenerator.built.clear()
    bad = {"name": "wrapping-test", "params": {"base": {"name": "audio2keypoint", "params": {"overlapp": 1}}}}
    entries = [EvalEntry(label="fine", generator={"name": "wrapping-test"}), EvalEntry(label="bad", generator=bad)]
    with pytest.raises(ConfigError, match=r"generator entry 'bad': generator\.params\.base\.params\.overlapp: unknown"):
        build_generators(entries, host)
    assert WrappingGenerator.built == []  # checked before the first one was built
