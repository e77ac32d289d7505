"""a2k-onnx: the Audio2Keypoint generator exported to ONNX and run by onnxruntime, without torch.

* :func:`export_onnx` (``a2k export --onnx DIR``): a checkpoint or ensemble -> ``DIR/generator.onnx`` +
  ``DIR/a2k-onnx.json``, checked against PyTorch (needs torch, onnx and onnxscript);
* the ``audio2keypoint-onnx`` generator (:class:`OnnxAudio2KeypointGenerator`): loads such a directory (manifest
  validated, checksums verified) and needs only numpy and onnxruntime.

Importing this package is cheap: neither torch nor onnxruntime is imported until they are used.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .generator import OnnxAudio2KeypointGenerator, OnnxGeneratorParams
from .manifest import MANIFEST_FILE, Manifest, MissingPackageError, OnnxModelError, read_manifest, verify_graphs


def export_onnx(*args, **kwargs):
    """:func:`a2k_onnx.export.export_onnx` (imported on first call: it needs torch)."""
    from .export import export_onnx as export

    return export(*args, **kwargs)


__all__ = [
    "MANIFEST_FILE",
    "Manifest",
    "MissingPackageError",
    "OnnxAudio2KeypointGenerator",
    "OnnxGeneratorParams",
    "OnnxModelError",
    "__version__",
    "export_onnx",
    "read_manifest",
    "verify_graphs",
]
