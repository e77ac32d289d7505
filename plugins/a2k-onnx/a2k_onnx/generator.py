"""``audio2keypoint-onnx``: the Audio2Keypoint generator on onnxruntime, without torch.

It loads a directory written by ``a2k export --onnx`` (:mod:`a2k_onnx.manifest`) and runs the exported window
network over the same windows, with the same cross-fade and the same post-processing as ``audio2keypoint``: the
frame-0 anchor, the denormalisation, the silence gate, the head / mouth motion scales, the energy mouth and the
blinks, through the toolkit's own functions (``a2k_toolkit.motion``). Its keypoints equal the PyTorch
generator's to float32 rounding (docs/export.md).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from pydantic import Field

from a2k_toolkit import AudioFrontend, ConfigError, InputError, KeypointGenerator, Keypoints, Params
from a2k_toolkit.components import path_field

from . import _toolkit as tk
from .manifest import (
    INPUT_FEATURES,
    INPUT_REFERENCE,
    KP_DIM,
    OUTPUT,
    MissingPackageError,
    OnnxModelError,
    check_overlap,
    read_manifest,
    verify_file,
    verify_graphs,
)


class OnnxGeneratorParams(Params):
    model: str = path_field(
        description="directory written by `a2k export --onnx` (a2k-onnx.json beside the .onnx graphs)"
    )
    overlap: int | None = Field(
        None, ge=0, description="frames shared (and cross-faded) by consecutive windows; null = the exported model's"
    )
    batch_size: int = Field(32, ge=1, description="windows per onnxruntime call (bounds memory)")
    anchor_frames: int | None = Field(
        None,
        ge=0,
        description="frames over which the offset that pins frame 0 to the reference fades out; null = the "
        "exported model's",
    )
    silence_gate_db: float | None = Field(
        None,
        gt=0,
        description="close the mouth in silence, as audio2keypoint's silence_gate_db (needs a log-power front-end); "
        "null = off",
    )
    head_motion: float | None = Field(
        None, ge=0, le=4, description="head motion scale as in audio2keypoint; null = the exported model's default"
    )
    blink_interval: float | None = Field(
        None, ge=0, le=60, description="mean seconds between blinks, 0 = none; null = the exported model's default"
    )
    mouth_scale: float | None = Field(
        None, ge=0, le=3, description="mouth and jaw motion scale; null = the exported model's default"
    )
    energy_mouth: float | None = Field(
        None,
        ge=0,
        le=3,
        description="procedural's loudness-driven jaw drop added to the mouth, as audio2keypoint's energy_mouth (needs "
        "a log-power front-end); null = the exported model's default",
    )
    keep_mouth_shape: float | None = Field(
        None,
        ge=0,
        le=1,
        description="keep the reference's mouth shape (the network's frame-0 mouth error kept corrected on every "
        "frame), as audio2keypoint's keep_mouth_shape; null = the exported model's default",
    )
    mouth_prior: float | None = Field(
        None,
        ge=0,
        le=2,
        description="the mouth prior's offset times this (as audio2keypoint's mouth_prior; the prior exported with "
        "the model); null = the exported model's default",
    )
    lip_contact: bool = Field(
        True, description="lips that meet rather than pass through each other, as audio2keypoint's lip_contact"
    )
    accept_frontends: list[str] = Field(
        default_factory=list,
        description="front-ends accepted besides the model's own, whose features are the same quantity: e.g. "
        "[librosa-mel] for a logmel model (the same log-mel computed by librosa, no torch; docs/export.md)",
    )
    threads: int | None = Field(None, ge=1, description="onnxruntime intra-op threads; null = onnxruntime's choice")
    providers: list[str] | None = Field(
        None,
        description="onnxruntime execution providers in order of preference, e.g. [CUDAExecutionProvider, "
        "CPUExecutionProvider]; null = the CPU (with CUDA first when the pipeline's device is cuda and onnxruntime "
        "has it)",
    )


def refuse_external_data(path: Path) -> None:
    """Refuse a graph whose tensors live in other files (exports keep every weight inside the graph, which its
    checksum covers). Checked with ``onnx`` where it is installed; onnxruntime itself confines external data to the
    graph's directory."""
    try:
        import onnx
    except ImportError:
        return
    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf's decode errors
        raise OnnxModelError(
            f"{path} is not a readable ONNX graph ({type(exc).__name__}); export the model again"
        ) from None
    pending, external = [model.graph], []
    while pending:
        graph = pending.pop()
        tensors = [*graph.initializer, *(s.values for s in graph.sparse_initializer)]
        for node in graph.node:
            for attr in node.attribute:
                tensors += [*attr.tensors, *(s.values for s in attr.sparse_tensors)]
                tensors += [attr.t] if attr.HasField("t") else []
                tensors += [attr.sparse_tensor.values] if attr.HasField("sparse_tensor") else []
                pending += [*attr.graphs, *([attr.g] if attr.HasField("g") else [])]
        external += [t.name or "?" for t in tensors if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise OnnxModelError(
            f"{path} keeps tensors in other files ({', '.join(external[:3])}), which its checksum does not cover; an "
            "a2k export has every weight inside the graph: export the model again"
        )


class OnnxAudio2KeypointGenerator(KeypointGenerator):
    """Audio2Keypoint exported to ONNX, run by onnxruntime (no torch): keypoints equal audio2keypoint's."""

    name = "audio2keypoint-onnx"
    Params = OnnxGeneratorParams

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        p = self.params
        self.root = Path(p.model).expanduser()
        self.manifest = m = read_manifest(self.root)
        d = m.defaults
        self.overlap = p.overlap if p.overlap is not None else d.overlap
        self.anchor_frames = p.anchor_frames if p.anchor_frames is not None else d.anchor_frames
        self.head_motion = p.head_motion if p.head_motion is not None else d.head_motion
        self.mouth_scale = p.mouth_scale if p.mouth_scale is not None else d.mouth_scale
        self.blink_interval = p.blink_interval if p.blink_interval is not None else d.blink_interval
        self.energy_mouth = p.energy_mouth if p.energy_mouth is not None else d.energy_mouth
        self.keep_mouth_shape = p.keep_mouth_shape if p.keep_mouth_shape is not None else d.keep_mouth_shape
        self.mouth_prior = p.mouth_prior if p.mouth_prior is not None else d.mouth_prior
        self.prior = None
        if self.mouth_prior > 0:
            if m.mouth_prior is None:
                raise ConfigError(
                    f"generator.params.mouth_prior {self.mouth_prior:g} needs a mouth prior, and the export in "
                    f"{self.root} has none; export a model whose defaults use one, or set mouth_prior: 0"
                )
            self.prior = tk.load_mouth_prior(verify_file(self.root, m.mouth_prior))
        check_overlap(self.overlap, m.window)
        key = tk.loudness_param(p.silence_gate_db, self.energy_mouth)
        if key is not None and not m.frontend.log_power:
            raise ConfigError(
                f"generator.params.{key} reads loudness from log-power features, but this model uses the "
                f"{m.frontend.name!r} front-end; {tk.LOUDNESS_PARAMS[key]}"
            )
        self.normalizer = m.keypoint_normalizer()
        self._sessions = None

    @classmethod
    def frontend_spec(cls, params, catalog=None):
        """The front-end the exported model was trained with (read from its manifest; no graph is loaded)."""
        fe = read_manifest(params.model).frontend
        return {"name": fe.name, "params": dict(fe.params)}

    @property
    def sessions(self):
        """One onnxruntime session per graph, created on first use after the graphs' checksums are verified."""
        if self._sessions is None:
            self._sessions = self._load()
        return self._sessions

    def to(self, device):
        if str(device) != self.device:
            self._sessions = None  # the providers follow the device
        return super().to(device)

    def _providers(self, ort) -> list[str]:
        if self.params.providers:
            missing = [x for x in self.params.providers if x not in ort.get_available_providers()]
            if missing:
                raise ConfigError(
                    f"generator.params.providers: onnxruntime here has no {', '.join(missing)} (it has "
                    f"{', '.join(ort.get_available_providers())})"
                )
            return list(self.params.providers)
        if self.device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        return ["CPUExecutionProvider"]

    def _load(self):
        try:
            import onnxruntime as ort
        except ImportError:
            raise MissingPackageError("onnxruntime", "the audio2keypoint-onnx generator") from None
        m = self.manifest
        paths = verify_graphs(self.root, m)
        options = ort.SessionOptions()
        if self.params.threads is not None:
            options.intra_op_num_threads = self.params.threads
            options.inter_op_num_threads = 1
        providers = self._providers(ort)
        sessions = []
        for path in paths:
            refuse_external_data(path)
            try:
                # loaded from its path, after the checksum: onnxruntime confines external data to this directory
                session = ort.InferenceSession(str(path), options, providers=providers)
            except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
                raise OnnxModelError(f"onnxruntime cannot load {path}: {str(exc).strip()[:300]}") from None
            self._check_signature(session, path)
            sessions.append(session)
        return sessions

    def _check_signature(self, session, path: Path) -> None:
        """The graph's inputs and output are the manifest's: names, and every fixed size (a symbolic size, like the
        batch, is checked on the arrays when the graph runs)."""
        m = self.manifest

        def fits(shape, want) -> bool:
            return len(shape) == len(want) and all(not isinstance(a, int) or a == b for a, b in zip(shape, want))

        want = {INPUT_FEATURES: [None, m.window, m.feature_dim], INPUT_REFERENCE: [None, KP_DIM]}
        inputs = {i.name: list(i.shape) for i in session.get_inputs()}
        problems = []
        if sorted(inputs) != sorted(m.input_names):
            problems.append(f"inputs {sorted(inputs)} (manifest: {m.input_names})")
        problems += [
            f"input {name} of shape {inputs[name]} (manifest: {want[name]})"
            for name in m.input_names
            if name in inputs and not fits(inputs[name][1:], want[name][1:])
        ]
        outputs = [(o.name, list(o.shape)) for o in session.get_outputs()]
        if len(outputs) != 1 or outputs[0][0] != OUTPUT or not fits(outputs[0][1][1:], [m.window, KP_DIM]):
            problems.append(f"outputs {outputs} (manifest: {OUTPUT} of shape [batch, {m.window}, {KP_DIM}])")
        if problems:
            raise OnnxModelError(f"{path} does not match its manifest: {'; '.join(problems)}; export the model again")

    def check_frontend(self, frontend: AudioFrontend) -> None:
        fe = self.manifest.frontend
        shape = tuple(int(v) for v in frontend.feature_shape)
        shape = shape if len(shape) == 2 else (1, shape[0])
        problems = []
        if frontend.name != fe.name and frontend.name not in self.params.accept_frontends:
            problems.append(f"front-end {frontend.name!r} (model: {fe.name!r})")
        if shape != tuple(fe.feature_shape):
            problems.append(f"feature_shape {shape} (model: {tuple(fe.feature_shape)})")
        if abs(frontend.fps - fe.fps) > 1e-6:
            problems.append(f"fps {frontend.fps:g} (model: {fe.fps:g})")
        if problems:
            raise ConfigError(
                f"the audio front-end does not match the exported model {self.root}: {'; '.join(problems)}. Set "
                f"`audio: {{name: {fe.name}, params: {dict(fe.params)}}}` in the pipeline config, or leave `audio` "
                "unset to use the model's"
            )
        ours = frontend.params.model_dump(mode="json")
        diff = sorted(k for k, v in fe.params.items() if k in ours and ours[k] != v)
        if diff:
            warnings.warn(
                f"audio front-end params {', '.join(diff)} differ from those the model was trained with; features "
                "may be off-distribution",
                UserWarning,
                stacklevel=2,
            )

    def window_outputs(self, features: np.ndarray, reference: np.ndarray | None) -> np.ndarray:
        """The exported network on one batch of windows: ``(B, W, D)`` + ``(B, 136)`` -> ``(B, W, 136)``, the mean
        over the graphs when there are several (an ensemble exported per member)."""
        feeds = {INPUT_FEATURES: np.ascontiguousarray(features, np.float32)}
        if self.manifest.uses_reference:
            feeds[INPUT_REFERENCE] = np.ascontiguousarray(reference, np.float32)
        out = None
        for session in self.sessions:
            y = session.run([OUTPUT], feeds)[0]
            if y.shape != (len(features), self.manifest.window, KP_DIM) or y.dtype != np.float32:
                raise OnnxModelError(
                    f"the graph of {self.root} returned {y.dtype} {y.shape} for {len(features)} windows, not "
                    f"float32 {(len(features), self.manifest.window, KP_DIM)}; export the model again"
                )
            out = y if out is None else out + y
        return out if len(self.sessions) == 1 else out / np.float32(len(self.sessions))

    def generate(self, features, reference, *, seed=None):
        return self.generate_batch([(features, reference)], seed=seed)[0]

    def generate_batch(self, requests, *, seed=None):
        """Keypoints for many ``(features, reference)`` pairs, their windows batched together; as
        ``audio2keypoint``'s ``generate_batch`` (``seed``, default 0, only draws the blink times)."""
        m, p, norm = self.manifest, self.params, self.normalizer
        dim = m.feature_dim
        jobs, refs = [], []
        for i, (features, reference) in enumerate(requests):
            feats = np.asarray(features, np.float32)
            if feats.ndim != 2 or len(feats) == 0 or feats.shape[1] != dim:
                raise InputError(
                    f"request {i}: features must have shape (T, {dim}) with T >= 1 for this model, got "
                    f"{feats.shape}; compute them with the model's front-end {m.frontend.name!r}"
                )
            if not all(np.isfinite(feats[j : j + tk.BLOCK]).all() for j in range(0, len(feats), tk.BLOCK)):
                raise InputError(f"request {i}: features contain NaN or infinite values")
            ref = np.asarray(reference.points[0][:, :2], np.float32)
            refs.append(ref)
            jobs.append((feats, norm.normalize(ref[None], ref)[0]))
        outs = tk.run_windows(jobs, self.window_outputs, m.window, self.overlap, p.batch_size, m.uses_reference)
        results = []
        for (feats, ref_n), ref, (_, reference), out in zip(jobs, refs, requests, outs):
            pts = tk.finish_sequence(
                out,
                ref,
                ref_n,
                feats,
                norm,
                fps=m.frontend.fps,
                anchor_frames=self.anchor_frames,
                keep_mouth_shape=self.keep_mouth_shape,
                mouth_offset=None if self.prior is None else self.mouth_prior * self.prior.offset(ref),
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
                    fps=m.frontend.fps,
                    image_size=reference.image_size,
                    meta={"generator": self.name, "model": str(self.root)},
                )
            )
        return results
