"""Export an Audio2Keypoint checkpoint (or ensemble) to an ONNX model directory, checked against PyTorch.

:func:`export_onnx` builds the PyTorch generator through the public pipeline (``audio2keypoint`` with the given
checkpoint; the shipped weights by default), exports the network of one inference window with a dynamic batch axis
(torch's ``dynamo`` exporter, or the older ``torchscript`` one), checks each graph with ``onnx.checker``, writes the
manifest (:mod:`a2k_onnx.manifest`), and compares onnxruntime with torch before the directory is put in place:

* the window network on random inputs (features drawn from the training features' mean and std, two batch sizes, so
  the dynamic batch axis is exercised) and on the real windows of a clip: max abs difference in normalised units,
  refused above :data:`GRAPH_TOLERANCE`;
* the whole generator (windows, cross-fade, post-processing) on real speech and a real face (the bundled sample by
  default): max difference in pixels and as a fraction of the face's width, refused above ``tolerance``.

The numbers are printed and kept in the manifest's ``checks``. Nothing is written at ``out_dir`` unless every check
passes; an existing export there is replaced atomically.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import a2k_toolkit
from a2k_toolkit import InputError, __version__
from a2k_toolkit.io import atomic_folder
from a2k_toolkit.keypoints import face_width

from . import _toolkit as tk
from .manifest import (
    FORMAT,
    FORMAT_VERSION,
    INPUT_FEATURES,
    INPUT_REFERENCE,
    KP_DIM,
    MANIFEST_FILE,
    OUTPUT,
    PRIOR_FILE,
    Manifest,
    MissingPackageError,
    OnnxModelError,
    sha256_file,
)

EXPORTERS = ("dynamo", "torchscript")
DEFAULT_OPSET = 18
#: the largest difference between onnxruntime's and torch's window outputs accepted, in normalised keypoint units
#: (the keypoints' standard deviations over the training data); float32 rounding gives about 1e-6
GRAPH_TOLERANCE = 1e-3
#: the default bound on the whole generator's keypoint difference, as a fraction of the reference face's width
KEYPOINT_TOLERANCE = 1e-4
SAMPLES = Path(a2k_toolkit.__file__).resolve().parent / "samples"


def _require(module: str, purpose: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingPackageError(module, purpose) from None


def export_onnx(
    out_dir: str | os.PathLike,
    checkpoint: str | list[str] | None = None,
    *,
    opset: int = DEFAULT_OPSET,
    exporter: str = "dynamo",
    per_member: bool = False,
    tolerance: float = KEYPOINT_TOLERANCE,
    image: str | os.PathLike | None = None,
    audio: str | os.PathLike | None = None,
    plugins: Any = None,
    log: Callable[[str], None] = print,
) -> Manifest:
    """Export ``checkpoint`` (a checkpoint, run or ensemble directory, a list of checkpoints, or None for the shipped
    model) to ``out_dir`` and return its manifest. ``per_member``: one graph per ensemble member (averaged by the
    runtime) instead of one graph computing their mean. ``image`` / ``audio``: the real inputs of the check (default:
    the bundled sample). ``plugins``: the catalog or plugin manager that builds the PyTorch generator."""
    _check_options(exporter, opset, tolerance)
    torch, onnx = _require_exporter(exporter)
    target = Path(out_dir).expanduser()
    _check_target(target)
    image, audio = _check_inputs(image, audio)

    from a2k_toolkit.pipeline import Pipeline

    config = {"generator": {"name": "audio2keypoint", "params": {"checkpoint": checkpoint}}, "device": "cpu"}
    pipe = Pipeline.from_config(config, plugins=plugins)
    net = pipe.generator.net.eval()
    nets = list(net.members) if per_member and hasattr(net, "members") else [net]
    names = [f"member-{k}.onnx" for k in range(len(nets))] if len(nets) > 1 else ["generator.onnx"]

    # written in a temporary folder beside the target, which replaces an existing export only when every check passed
    with atomic_folder(target, aside=f".{target.name}.old") as tmp:
        graphs = _export_graphs(torch, onnx, pipe.generator, dict(zip(names, nets)), tmp, opset, exporter, log)
        manifest = _manifest(torch, pipe, checkpoint, exporter, opset, graphs)
        if pipe.generator.prior is not None:  # the mouth prior its defaults use travels with the graphs
            prior = pipe.generator.prior.save(tmp / PRIOR_FILE)
            manifest["mouth_prior"] = {"file": PRIOR_FILE, "sha256": sha256_file(prior), "bytes": prior.stat().st_size}
            names = [*names, PRIOR_FILE]
        _write_json(tmp / MANIFEST_FILE, manifest)
        checks = _check(torch, pipe, net, tmp, image, audio, tolerance, log)
        manifest["checks"] = checks
        _write_json(tmp / MANIFEST_FILE, manifest)
        result = Manifest.model_validate(manifest)
    log(f"wrote {target} ({', '.join(names)} + {MANIFEST_FILE})")
    return result


def _check_options(exporter: str, opset: int, tolerance: float) -> None:
    if exporter not in EXPORTERS:
        raise InputError(f"unknown exporter {exporter!r}; choose one of {', '.join(EXPORTERS)}")
    if not 7 <= opset <= 30:
        raise InputError(f"--opset {opset}: give an ONNX opset between 7 and 30 (default {DEFAULT_OPSET})")
    if exporter == "dynamo" and opset < 18:
        raise InputError(f"the dynamo exporter writes opset 18 or newer (got {opset}); use --exporter torchscript")
    if not tolerance > 0:
        raise InputError(f"tolerance must be positive, got {tolerance}")


def _require_exporter(exporter: str):
    """torch and onnx, after checking that the packages the export and its check need are installed."""
    torch = _require("torch", "exporting to ONNX")
    onnx = _require("onnx", "exporting to ONNX (the graph checker)")
    _require("onnxruntime", "checking an ONNX export")
    if exporter == "dynamo":
        _require("onnxscript", "torch's dynamo ONNX exporter")
    return torch, onnx


def _check_inputs(image, audio) -> tuple[Path, Path]:
    """The real inputs of the check (the bundled sample by default), which must exist."""
    image = Path(image) if image is not None else SAMPLES / "astronaut.jpg"
    audio = Path(audio) if audio is not None else SAMPLES / "speech.wav"
    for what, path in (("--image", image), ("--audio", audio)):
        if not path.is_file():
            raise InputError(f"{what} {path} not found (the real input of the export's check)")
    return image, audio


def _export_graphs(torch, onnx, gen, graph_nets: dict, tmp: Path, opset: int, exporter: str, log) -> list[dict]:
    """Each network of ``graph_nets`` (file name -> network) exported into ``tmp`` and checked with
    ``onnx.checker``; the manifest's entry of each graph."""
    uses_reference = bool(getattr(gen.net, "uses_reference", True))
    members = [i.path.name for i in gen.members]
    graphs = []
    for k, (name, member) in enumerate(graph_nets.items()):
        t0 = time.perf_counter()
        _export_graph(
            torch, member, tmp / name, gen.info.window, gen.info.feature_shape, uses_reference, opset, exporter
        )
        onnx.checker.check_model(str(tmp / name), full_check=True)
        graphs.append(
            {
                "file": name,
                "sha256": sha256_file(tmp / name),
                "bytes": (tmp / name).stat().st_size,
                "members": [members[k]] if len(graph_nets) > 1 else members,
            }
        )
        log(
            f"exported {name} ({graphs[-1]['bytes'] / 1e6:.1f} MB, {exporter}, opset {opset}) in "
            f"{time.perf_counter() - t0:.1f} s; onnx.checker: ok"
        )
    return graphs


def _manifest(torch, pipe, checkpoint, exporter: str, opset: int, graphs: list[dict]) -> dict[str, Any]:
    """The manifest of the export (:mod:`a2k_onnx.manifest`) before its ``checks``."""
    gen = pipe.generator
    info = gen.info
    uses_reference = bool(getattr(gen.net, "uses_reference", True))
    frontend = type(pipe.audio)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "a2k_version": __version__,
        "exporter": exporter,
        "opset": opset,
        "torch_version": torch.__version__,
        "source": {
            "checkpoint": "shipped default" if checkpoint is None else checkpoint,
            "members": [
                {
                    "name": i.path.name,
                    "step": i.meta.get("step"),
                    "weights_sha256": i.meta.get("files", {}).get("model.safetensors", {}).get("sha256"),
                }
                for i in gen.members
            ],
        },
        "window": info.window,
        "uses_reference": uses_reference,
        "frontend": {
            **info.frontend,
            "feature_shape": list(info.feature_shape),
            "fps": info.fps,
            "sample_rate": info.sample_rate,
            "log_power": bool(getattr(frontend, "log_power", False)),
        },
        "normalizer": info.normalizer.to_dict(),
        "defaults": {
            "overlap": gen.params.overlap,
            "anchor_frames": gen.params.anchor_frames,
            "head_motion": gen.head_motion,
            "mouth_scale": gen.mouth_scale,
            "blink_interval": gen.blink_interval,
            "energy_mouth": gen.energy_mouth,
            "keep_mouth_shape": gen.keep_mouth_shape,
            "mouth_prior": gen.mouth_prior,
        },
        "graphs": graphs,
        "combine": "mean",
    }


def _check_target(target: Path) -> None:
    if target.exists() and not target.is_dir():
        raise InputError(f"{target} is a file; give a directory to write the export to")
    if target.is_dir() and any(target.iterdir()) and not (target / MANIFEST_FILE).is_file():
        raise InputError(
            f"{target} exists and is not an ONNX export (no {MANIFEST_FILE}); it would be replaced. Give a new or "
            "empty directory (an existing export is replaced atomically)"
        )
    parent = target.parent if target.parent != Path("") else Path(".")
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise InputError(f"cannot write {target}: {probe} is not writable")


def _export_graph(torch, net, path: Path, window: int, feature_shape, uses_reference: bool, opset: int, exporter: str):
    """One window network to ``path``: inputs ``features (batch, window, D)`` [+ ``reference (batch, 136)``],
    output ``keypoints (batch, window, 136)``, the batch axis dynamic, the weights inside the file."""

    class WithReference(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, features, reference):
            return self.net(features, reference)

    class AudioOnly(WithReference):
        def forward(self, features):
            return self.net(features, None)

    module = (WithReference if uses_reference else AudioOnly)(net).eval()
    dim = int(feature_shape[0]) * int(feature_shape[1])
    gen = torch.Generator().manual_seed(0)
    args = (torch.randn(2, window, dim, generator=gen),)  # batch 2: a batch of 1 would be specialised as constant
    if uses_reference:
        args += (torch.randn(2, KP_DIM, generator=gen),)
    inputs = [INPUT_FEATURES, INPUT_REFERENCE][: len(args)]
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    other = "torchscript" if exporter == "dynamo" else "dynamo"
    try:
        with warnings.catch_warnings():
            # the torchscript tracer warns that the padding of T to a multiple of 2**depth is traced as a constant:
            # it is, on purpose (the window is fixed), and that the exporter is deprecated (docs/export.md). The
            # dynamo exporter logs that torchvision's operators are skipped: this model has none
            warnings.simplefilter("ignore")
            onnx_log.setLevel(logging.ERROR)
            if exporter == "dynamo":
                batch = torch.export.Dim("batch", min=1, max=1 << 16)
                program = torch.onnx.export(
                    module,
                    args,
                    input_names=inputs,
                    output_names=[OUTPUT],
                    dynamic_shapes=tuple({0: batch} for _ in args),
                    opset_version=opset,
                    dynamo=True,
                    optimize=True,
                    verbose=False,
                )
                program.save(str(path), external_data=False)
            else:
                torch.onnx.export(
                    module,
                    args,
                    str(path),
                    input_names=inputs,
                    output_names=[OUTPUT],
                    dynamic_axes={name: {0: "batch"} for name in [*inputs, OUTPUT]},
                    opset_version=opset,
                    dynamo=False,
                )
    except Exception as exc:  # noqa: BLE001 - the exporters raise many types; the message says what failed
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise OnnxModelError(
            f"torch's {exporter} ONNX exporter failed ({type(exc).__name__}: {first}); try --exporter {other} or "
            f"another --opset"
        ) from exc
    finally:
        onnx_log.setLevel(level)
    for extra in path.parent.iterdir():  # the weights must be inside the graph: one hashed file per graph
        if extra.name.startswith(path.name) and extra != path:
            raise OnnxModelError(f"the exporter wrote external data ({extra.name}); the model is too large to export")


def _check(torch, pipe, net, tmp: Path, image: Path, audio: Path, tolerance: float, log) -> dict[str, Any]:
    """onnxruntime against torch (see the module docstring); the measured numbers."""
    from .generator import OnnxAudio2KeypointGenerator

    gen = pipe.generator
    onx = OnnxAudio2KeypointGenerator({"model": str(tmp)})
    W, D = gen.info.window, gen.info.feature_shape[0] * gen.info.feature_shape[1]
    first = net.members[0] if hasattr(net, "members") else net
    mean, std = first.feature_mean.numpy().astype(np.float64), first.feature_std.numpy().astype(np.float64)
    rng = np.random.default_rng(0)
    random_diff = 0.0
    for B in (1, 3):
        feats = (mean + std * rng.standard_normal((B, W, D))).astype(np.float32)
        ref = rng.standard_normal((B, KP_DIM)).astype(np.float32)
        random_diff = max(random_diff, _max_diff(torch, net, onx, feats, ref))
    wav = pipe.load_audio(str(audio))
    features = pipe.features(wav)
    reference = pipe.detect(str(image))
    ref_n = gen.info.normalizer.normalize(reference.points[:1], reference.points[0])
    windows = np.stack([tk.window_features(features, s, W) for s in tk.window_plan(len(features), W, onx.overlap)])
    real_diff = _max_diff(torch, net, onx, windows, np.repeat(ref_n, len(windows), 0))
    t0 = time.perf_counter()
    ours = gen.generate(features, reference, seed=0).points
    t_torch = time.perf_counter() - t0
    t0 = time.perf_counter()
    theirs = onx.generate(features, reference, seed=0).points
    t_ort = time.perf_counter() - t0
    px = float(np.abs(ours.astype(np.float64) - theirs).max())
    size = float(face_width(reference.points[0]))
    checks = {
        "inputs": f"{image.name} + {audio.name} ({len(features)} frames)",
        "random_max_abs_diff": random_diff,
        "real_max_abs_diff": real_diff,
        "keypoints_max_diff_px": px,
        "face_width_px": size,
        "keypoints_max_diff_face": px / size,
        "tolerance_face": tolerance,
        "seconds_torch": round(t_torch, 3),
        "seconds_onnxruntime": round(t_ort, 3),
    }
    log(
        f"onnxruntime vs torch: window outputs max |diff| {random_diff:.2e} (random inputs, batch 1 and 3), "
        f"{real_diff:.2e} ({len(windows)} real windows) normalised units; keypoints on {checks['inputs']}: max "
        f"{px:.2e} px = {px / size:.2e} of the face width ({size:.0f} px); generate {t_torch:.2f} s torch, "
        f"{t_ort:.2f} s onnxruntime"
    )
    worst = max(random_diff, real_diff)
    if worst > GRAPH_TOLERANCE or px / size > tolerance:
        raise OnnxModelError(
            f"the exported model does not match PyTorch: window outputs differ by up to {worst:.2e} normalised units "
            f"(allowed {GRAPH_TOLERANCE:g}) and keypoints by {px / size:.2e} of the face width (allowed "
            f"{tolerance:g}); try another --opset or --exporter. Nothing was written"
        )
    return checks


def _max_diff(torch, net, onx, feats: np.ndarray, ref: np.ndarray) -> float:
    with torch.inference_mode():
        want = net(torch.from_numpy(feats), torch.from_numpy(ref) if onx.manifest.uses_reference else None).numpy()
    got = onx.window_outputs(feats, ref)
    return float(np.abs(want.astype(np.float64) - got).max())


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
