"""Built-in plugin: the Audio2Keypoint generator (paper §4) and its keypoint encoders ``pv`` and ``piv``.

The generator loads a checkpoint directory written by ``a2k train`` (see ``docs/model.md``); with no ``checkpoint``
param it uses the default weights shipped in ``a2k_toolkit/weights/`` when a release includes them. A checkpoint's
model names its PV / PIV encoders (``model.pv_encoder`` / ``model.piv_encoder`` in its ``config.json``): the
generator builds them through the host's catalog when it is built (:func:`model_encoders`), so a bad encoder spec
fails before any weights load, and it declares the checkpoint's front-end as the pipeline's default ``audio`` slot
(:meth:`Audio2KeypointGenerator.frontend_spec`).
"""

from __future__ import annotations

import threading
import warnings

import numpy as np
from pydantic import Field, ValidationError

from ..components import AudioFrontend, KeypointEncoder, KeypointGenerator, Params
from ..config import format_validation_error
from ..errors import CheckpointError, ConfigError, InputError
from ..hookspecs import hookimpl
from ..keypoints import Keypoints
from ..motion import (
    BLOCK,
    LOUDNESS_PARAMS,
    anchor_start,
    energy_drop,
    finish_sequence,
    loudness_param,
    voice_activity,
)
from .audio2keypoint_params import Audio2KeypointParams

_LOAD_LOCK = threading.Lock()  # networks load one at a time (a load is disk and memory bound anyway)


class MLPEncoderParams(Params):
    hidden: int = Field(256, ge=1, description="width of the hidden layers")
    layers: int = Field(2, ge=1, le=8, description="hidden layers")
    out_dim: int = Field(64, ge=1, description="size of the latent code")


class PVEncoder(KeypointEncoder):
    """Pose-variant (PV) encoder: a per-frame MLP over the 136 normalised keypoint values (paper §4.1)."""

    name = "pv"
    Params = MLPEncoderParams

    @property
    def out_dim(self) -> int:
        return self.params.out_dim

    def build(self, in_dim: int = 136):
        from ..models.encoders import KeypointMLP

        p = self.params
        return KeypointMLP(in_dim, p.hidden, p.layers, p.out_dim, normalize=self.unit_rms_codes)

    @property
    def unit_rms_codes(self) -> bool:
        return False


class PIVEncoderParams(MLPEncoderParams):
    normalize: bool = Field(True, description="rescale codes to unit RMS, so the triplet margin has a fixed meaning")


class PIVEncoder(PVEncoder):
    """Pose-invariant (PIV) encoder E(k): a per-frame MLP trained with a triplet loss (paper §4.2); the PV encoder's
    network with optional unit-RMS codes."""

    name = "piv"
    Params = PIVEncoderParams

    @property
    def unit_rms_codes(self) -> bool:
        return self.params.normalize


#: the encoders of this module, which a model built without a host catalog can use (a bare constructor,
#: ``from_pretrained``); any other encoder needs the host's catalog
OWN_ENCODERS: dict[str, type[KeypointEncoder]] = {PVEncoder.name: PVEncoder, PIVEncoder.name: PIVEncoder}


def model_encoders(model, catalog=None, *, what: str = "config") -> dict[str, KeypointEncoder | None]:
    """The keypoint-encoder components a :class:`~a2k_toolkit.models.config.ModelConfig` names, built through the
    host's ``catalog``, as the keyword arguments of :func:`~a2k_toolkit.models.config.build_generator`
    (``{"pv_encoder": ..., "piv_encoder": ...}``, None where the model has none). Their params are validated here,
    before any weights load; errors name the key (``model.pv_encoder.params.hidden: ...``) in ``what`` (the config,
    or a checkpoint). Without a catalog only this module's encoders (``pv``, ``piv``) can be built."""
    parts: dict[str, KeypointEncoder | None] = {}
    for key in ("pv_encoder", "piv_encoder"):
        spec, where = getattr(model, key), f"model.{key}"
        if spec is None:
            parts[key] = None
        elif catalog is not None:
            parts[key] = catalog.build("encoder", spec, where=where, what=what)
        elif spec.name in OWN_ENCODERS:
            cls = OWN_ENCODERS[spec.name]
            try:
                parts[key] = cls(cls.Params.model_validate(spec.params))
            except ValidationError as exc:
                raise ConfigError(f"invalid {what}: {format_validation_error(exc, f'{where}.params')}") from None
        else:
            raise ConfigError(
                f"{what}: {where} is the keypoint encoder {spec.name!r}, which only a host's catalog can build (this "
                f"module has {', '.join(OWN_ENCODERS)}); build the generator through one: Pipeline.from_config, or "
                "catalog.build('generator', ...)"
            )
    return parts


class Audio2KeypointGenerator(KeypointGenerator):
    """Audio2Keypoint: a trained UNet generator conditioned on the reference keypoints (paper §4)."""

    name = "audio2keypoint"
    # the host's catalog builds the checkpoints' encoders and says what their front-end class can do (log_power)
    uses_catalog = True

    Params = Audio2KeypointParams

    def __init__(self, params=None, *, catalog=None, **kwargs):
        """``catalog``: the host's catalog (the build context, passed by ``Catalog.build``), which builds the
        checkpoints' keypoint encoders; without one only the built-in ``pv`` / ``piv`` encoders can be built."""
        super().__init__(params, **kwargs)
        from ..models.ensemble import checkpoint_defaults, read_members

        p = self.params
        self.members = read_members(p.checkpoint)
        defaults = checkpoint_defaults(p.checkpoint)
        # the motion scales in effect: the params', else the model's stored defaults, else as generated
        self.head_motion = p.head_motion if p.head_motion is not None else defaults.get("head_motion", 1.0)
        self.mouth_scale = p.mouth_scale if p.mouth_scale is not None else defaults.get("mouth_scale", 1.0)
        self.blink_interval = p.blink_interval if p.blink_interval is not None else defaults.get("blink_interval", 0.0)
        self.energy_mouth = p.energy_mouth if p.energy_mouth is not None else defaults.get("energy_mouth", 0.0)
        keep = p.keep_mouth_shape
        self.keep_mouth_shape = keep if keep is not None else defaults.get("keep_mouth_shape", 0.0)
        prior = p.mouth_prior
        self.mouth_prior = prior if prior is not None else defaults.get("mouth_prior", 0.0)
        self.prior = self._load_mouth_prior() if self.mouth_prior > 0 else None
        self.info = self.members[0]  # members agree on front-end, window and statistics (read_members checks)
        wanted = {k: getattr(p, k) for k in ("width", "depth") if getattr(p, k) is not None}
        for info in self.members:
            found = {k: getattr(info.model, k) for k in wanted}
            if wanted != found:
                diff = ", ".join(f"{k}={found[k]} (params say {wanted[k]})" for k in wanted if wanted[k] != found[k])
                raise CheckpointError(
                    f"checkpoint {info.path} does not match the generator params: it was trained with {diff}; "
                    "remove these params to use the checkpoint's architecture, or point `checkpoint` at a matching one"
                )
        if self._reads_loudness and catalog is not None:
            self._check_log_power(catalog)  # without a host's catalog, check_frontend checks the front-end it gets
        if p.overlap >= self.info.window:
            raise ConfigError(
                f"generator.params.overlap ({p.overlap}) must be smaller than the checkpoint's window "
                f"({self.info.window} frames)"
            )
        # every member's encoders, built (and their params validated) now: a bad spec fails before weights load
        self._encoders = [model_encoders(i.model, catalog, what=f"checkpoint {i.path}") for i in self.members]
        self._net = None

    def _load_mouth_prior(self):
        from ..models.ensemble import checkpoint_mouth_prior
        from ..mouth_prior import load_mouth_prior

        p = self.params
        path = p.mouth_prior_file if p.mouth_prior_file is not None else checkpoint_mouth_prior(p.checkpoint)
        if path is None:
            raise ConfigError(
                f"mouth_prior {self.mouth_prior:g} needs a mouth prior, and this checkpoint has none "
                "(mouth_prior.safetensors); set mouth_prior_file to one from `a2k mouth-prior`, or mouth_prior: 0"
            )
        return load_mouth_prior(path)

    def mouth_prior_offset(self, reference: np.ndarray) -> np.ndarray | None:
        """The mouth prior's offset ``(20, 2)`` for ``reference (68, 2)`` in its pixels, times ``mouth_prior``;
        None when the prior is off."""
        if self.prior is None:
            return None
        return self.mouth_prior * self.prior.offset(reference)

    @property
    def _reads_loudness(self) -> str | None:
        """The param that reads loudness off the features (None if none is on)."""
        return loudness_param(self.params.silence_gate_db, self.energy_mouth)

    def _check_log_power(self, catalog) -> None:
        """The silence gate and the energy mouth read loudness off the features: the checkpoint's front-end class,
        looked up by name in
        the host's ``catalog``, must set ``log_power``. A generator built without a host cannot look it up (a
        component never makes a catalog of its own): :meth:`check_frontend` then checks the class of the front-end
        object it is given, which a pipeline and ``a2k eval`` call before generating."""
        name = self.info.frontend["name"]
        if name in catalog.names("audio") and catalog.get("audio", name).log_power:
            return
        qualify = [e.name for e in catalog.entries("audio") if e.cls.log_power]
        key = self._reads_loudness
        raise ConfigError(
            f"generator.params.{key} reads loudness from log-power features, but this checkpoint uses the "
            f"{name!r} front-end (use one of {', '.join(qualify)}, or {LOUDNESS_PARAMS[key]})"
        )

    @classmethod
    def frontend_spec(cls, params, catalog=None):
        """The front-end the checkpoint was trained with (read from its ``config.json``; no weights are loaded)."""
        from ..models.ensemble import read_members

        fe = read_members(params.checkpoint)[0].frontend
        return {"name": fe["name"], "params": fe["params"]}

    @classmethod
    def from_pretrained(cls, path=None, *, catalog=None, **params):
        """The generator for the checkpoint directory ``path`` (``model.safetensors`` + ``config.json``, as written by
        ``a2k train`` into ``RUN_DIR/best`` or ``RUN_DIR/latest``, or a run directory); ``None`` = the default weights
        shipped in ``a2k_toolkit/weights/``. Other ``params`` as in the pipeline config; ``catalog`` as for the
        constructor."""
        return cls({**params, "checkpoint": None if path is None else str(path)}, catalog=catalog)

    @property
    def checkpoint_label(self) -> str:
        """Where the weights came from: the checkpoint directory, or the ensemble's (or its members', joined)."""
        if len(self.members) == 1:
            return str(self.info.path)
        if isinstance(self.params.checkpoint, list):
            return ", ".join(str(i.path) for i in self.members)
        return str(self.members[0].path.parent)  # an ensemble directory holds its members

    @property
    def net(self):
        """The generator network, loaded on first use (once, whatever the threads asking: sessions opened together
        share one network, which a batcher of their windows needs)."""
        if self._net is None:
            with _LOAD_LOCK:
                if self._net is None:
                    from ..models.ensemble import load_members

                    self._net = load_members(self.members, device=self.device, encoders=self._encoders)
        return self._net

    def to(self, device):
        super().to(device)
        if self._net is not None:
            self._net.to(self.device)
        return self

    def check_frontend(self, frontend: AudioFrontend) -> None:
        fe = self.info.frontend
        shape = tuple(int(v) for v in frontend.feature_shape)
        shape = shape if len(shape) == 2 else (1, shape[0])
        problems = []
        if frontend.name != fe["name"]:
            problems.append(f"front-end {frontend.name!r} (checkpoint: {fe['name']!r})")
        if shape != self.info.feature_shape:
            problems.append(f"feature_shape {shape} (checkpoint: {self.info.feature_shape})")
        if abs(frontend.fps - self.info.fps) > 1e-6:
            problems.append(f"fps {frontend.fps:g} (checkpoint: {self.info.fps:g})")
        if problems:
            raise ConfigError(
                f"the audio front-end does not match the Audio2Keypoint checkpoint {self.info.path}: "
                + "; ".join(problems)
                + f". Set `audio: {{name: {fe['name']}, params: {fe['params']}}}` in the pipeline config, or train a "
                "checkpoint for this front-end with `a2k train`"
            )
        key = self._reads_loudness
        if key is not None and not frontend.log_power:
            raise ConfigError(
                f"generator.params.{key} reads loudness from log-power features, but the {frontend.name!r} "
                f"front-end's class does not set log_power (use a log-power front-end such as logmel, or "
                f"{LOUDNESS_PARAMS[key]})"
            )
        ours = frontend.params.model_dump(mode="json")
        diff = sorted(k for k, v in fe["params"].items() if k in ours and ours[k] != v)
        if diff:
            warnings.warn(
                f"audio front-end params {', '.join(diff)} differ from those the checkpoint was trained with; "
                "features may be off-distribution",
                UserWarning,
                stacklevel=2,
            )

    def generate(self, features, reference, *, seed=None):
        return self.generate_batch([(features, reference)], seed=seed)[0]

    def generate_batch(self, requests, *, seed=None):
        """Keypoints for many ``(features, reference)`` pairs, their windows batched together.

        The network samples nothing; ``seed`` (default 0) only draws the blink times when ``blink_interval`` is on,
        so the output is deterministic for a given seed.
        """
        from ..models.inference import WindowedRunner

        info, p = self.info, self.params
        dim = info.feature_shape[0] * info.feature_shape[1]
        jobs, refs = [], []
        for i, (features, reference) in enumerate(requests):
            feats = np.asarray(features, np.float32)
            if feats.ndim != 2 or len(feats) == 0 or feats.shape[1] != dim:
                raise InputError(
                    f"request {i}: features must have shape (T, {dim}) with T >= 1 for this checkpoint, "
                    f"got {feats.shape}; compute them with the checkpoint's front-end "
                    f"{info.frontend['name']!r}"
                )
            if not all(np.isfinite(feats[i : i + BLOCK]).all() for i in range(0, len(feats), BLOCK)):
                raise InputError(f"request {i}: features contain NaN or infinite values")
            ref = np.asarray(reference.points[0][:, :2], np.float32)
            refs.append(ref)
            jobs.append((feats, info.normalizer.normalize(ref[None], ref)[0]))
        runner = WindowedRunner(self.net, info.window, p.overlap, p.batch_size, p.precision, fast=p.fast)
        results = []
        for (feats, ref_n), ref, (_, reference), out in zip(jobs, refs, requests, runner.run(jobs)):
            pts = finish_sequence(
                out,
                ref,
                ref_n,
                feats,
                info.normalizer,
                fps=info.fps,
                anchor_frames=p.anchor_frames,
                keep_mouth_shape=self.keep_mouth_shape,
                mouth_offset=self.mouth_prior_offset(ref),
                seed=seed,
                silence_gate_db=p.silence_gate_db,
                head_motion=self.head_motion,
                mouth_scale=self.mouth_scale,
                energy_mouth=self.energy_mouth,
                blink_interval=self.blink_interval,
                lip_contact=p.lip_contact,
            )
            results.append(
                Keypoints(
                    pts,
                    fps=info.fps,
                    image_size=reference.image_size,
                    meta={"generator": self.name, "checkpoint": self.checkpoint_label},
                )
            )
        return results

    def energy_drop(self, reference: np.ndarray) -> float:
        """The energy mouth's jaw drop at full loudness, in pixels of the reference ``(68, 2)``."""
        return energy_drop(reference, self.energy_mouth)

    def stream(self, reference, *, lookahead=None, seed=None, hop=None):
        """A :class:`~a2k_toolkit.streaming.contract.KeypointStream` of this generator. ``lookahead=None`` (or at
        least the checkpoint's window) runs the offline window plan and equals :meth:`generate`; a shorter one runs a
        window every ``hop`` frames (at most ``lookahead + 1``; default 1 below 5 frames of lookahead, else 2) and
        blends those ending up to ``lookahead`` frames after each frame (docs/streaming.md). With ``energy_mouth``
        on, ``lookahead=None`` returns every frame at flush (its loudness range is the whole clip's, as offline);
        with a lookahead, that range is the last seconds' up to the frame's lookahead (:class:`EnergyTrack`)."""
        from .streams import Audio2KeypointStream, WholeStream

        if lookahead is None and self.energy_mouth > 0:  # its loudness range is the whole clip's: at flush
            return WholeStream(self, reference, seed)
        return Audio2KeypointStream(
            self, reference, lookahead, seed, anchor=anchor_start, activity=voice_activity, hop=hop
        )


@hookimpl
def register_generators(register):
    register(Audio2KeypointGenerator)


@hookimpl
def register_keypoint_encoders(register):
    register(PVEncoder)
    register(PIVEncoder)
