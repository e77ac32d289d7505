"""A network's windows run by ONNX Runtime: the ``onnxruntime`` backend of a
:class:`~a2k_toolkit.models.batching.WindowBatcher`'s forms (:class:`~a2k_toolkit.models.batch_forms.BatchForms`).

On a CPU the shipped model's small layers cost more in per-layer dispatch than in arithmetic, and ONNX Runtime's
dispatch is leaner than TorchScript's: measured on the 2-core machine, the shipped ensemble's stacked form, one
thread, 4.8 / 8.1 / 11.2 / 14.7 ms for 1 / 2 / 3 / 4 windows against 8.1 / 10.9 / 13.3 / 16.3 ms traced in torch.

:func:`ort_form` exports a network (the ensemble's stacked form where it has one: one graph for every member) to
ONNX in memory with torch's TorchScript-based exporter (a dynamic batch axis, the window's length and width fixed),
opens it in an ``onnxruntime.InferenceSession`` on the CPU with the calling process's torch thread count, and checks
it against the network itself (eager torch) on random windows of two batch sizes: a form whose output differs by more
than :data:`~a2k_toolkit.models.stacked.TOLERANCE` (normalised keypoint units) is refused, as is one that cannot be
exported. It needs the ``onnx`` and ``onnxruntime`` packages (``pip install onnx onnxruntime``; the ``a2k-onnx``
plugin depends on both): :func:`available` says whether they import.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import warnings

import numpy as np

#: the backends a batcher's forms may use: ``torch`` (traced), ``onnxruntime`` (this module), ``auto`` (onnxruntime
#: where it is installed, else torch)
BACKENDS = ("auto", "torch", "onnxruntime")
#: the packages the onnxruntime backend needs
PACKAGES = ("onnx", "onnxruntime")


def available() -> bool:
    """Whether the packages of the onnxruntime backend (:data:`PACKAGES`) are installed."""
    return all(importlib.util.find_spec(p) is not None for p in PACKAGES)


def resolve_backend(backend: str) -> str:
    """``backend`` (one of :data:`BACKENDS`) as the one that will run: ``auto`` is ``onnxruntime`` where
    :func:`available`, else ``torch``. ``onnxruntime`` without its packages is an error naming them."""
    from ..errors import InputError

    if backend not in BACKENDS:
        raise InputError(f"the inference backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "auto":
        return "onnxruntime" if available() else "torch"
    if backend == "onnxruntime" and not available():
        missing = [p for p in PACKAGES if importlib.util.find_spec(p) is None]
        raise InputError(
            f"the onnxruntime inference backend needs {' and '.join(missing)}: pip install {' '.join(PACKAGES)} "
            "(or choose the torch backend)"
        )
    return backend


class OrtForm:
    """An ONNX Runtime session called as the batcher's other forms are: ``form(x, ref)`` with torch tensors ``x``
    ``(n, W, D)`` and ``ref`` ``(n, 136)`` (``None`` for a network without a reference) -> ``(n, W, 136)``."""

    def __init__(self, session, uses_reference: bool):
        self.session, self.uses_reference = session, uses_reference

    def __call__(self, x, ref=None):
        import torch

        feeds = {"features": np.ascontiguousarray(x.numpy(), np.float32)}
        if self.uses_reference:
            feeds["reference"] = np.ascontiguousarray(ref.numpy(), np.float32)
        return torch.from_numpy(self.session.run(None, feeds)[0])


def ort_form(net, W: int, D: int, warm=()) -> OrtForm | None:
    """``net``'s windows ``(n, W, D)`` in ONNX Runtime (see the module docstring), run twice on each batch size of
    ``warm`` (the first call on a new batch size is the slowest); ``None`` where the packages are missing or the
    export, the session or the check fails."""
    import torch

    from .stacked import TOLERANCE, stack_ensemble

    if not available():
        return None
    try:
        import onnxruntime as ort

        model = stack_ensemble(net)  # net itself where it has no stacked form
        uses_ref = bool(getattr(net, "uses_reference", True))
        rng = np.random.default_rng(0)

        def sample(n):
            x = torch.from_numpy(rng.standard_normal((n, W, D), dtype=np.float32))
            return x, torch.from_numpy(rng.standard_normal((n, 136), dtype=np.float32)) if uses_ref else None

        x, r = sample(2)
        names = ["features", "reference"] if uses_ref else ["features"]
        buf = io.BytesIO()
        with torch.no_grad(), _quiet_export():
            torch.onnx.export(
                _named_inputs(model, uses_ref),
                (x, r) if uses_ref else (x,),
                buf,
                input_names=names,
                output_names=["keypoints"],
                dynamic_axes={name: {0: "batch"} for name in [*names, "keypoints"]},
                dynamo=False,
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only
        form = OrtForm(ort.InferenceSession(buf.getvalue(), options, providers=["CPUExecutionProvider"]), uses_ref)
        with torch.inference_mode():
            for n in (1, 3):
                x, r = sample(n)
                want, got = net(x, r) if uses_ref else net(x), form(x, r)
                if got.shape != want.shape or float((got - want).abs().max()) > TOLERANCE:
                    return None
            for n in warm:
                x, r = sample(n)
                form(x, r)
                form(x, r)
    except Exception:  # noqa: BLE001 - a network the exporter or runtime cannot follow runs in torch
        return None
    return form


def _named_inputs(model, uses_reference: bool):
    """``model`` with the inputs the graph names: ``(features, reference)``, or ``(features,)`` for a network that
    reads no reference."""
    from torch import nn

    class Inputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, features, reference=None):
            return self.model(features, reference) if uses_reference else self.model(features)

    return Inputs()


@contextlib.contextmanager
def _quiet_export():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's tracer and deprecation warnings
        yield
