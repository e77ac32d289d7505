"""The forms a :class:`~a2k_toolkit.models.batching.WindowBatcher`'s batches run through (:class:`BatchForms`): a
network's inference form traced, and for an ensemble of one architecture also its stacked form
(:mod:`~a2k_toolkit.models.stacked`) for small batches. Used by the batcher's worker threads and by its inference
processes alike."""

from __future__ import annotations

import contextlib
import threading
import weakref

import numpy as np

# batches of up to this many windows of an ensemble run through its stacked form (models.stacked): measured on the
# 2-core machine, shipped ensemble, traced, one thread: 0.64-0.88x the time of the members one after the other for
# 1-5 windows, the same at 8, slower from about 16 (grouped convolutions of larger batches are slower there)
STACKED_MAX_BATCH = 8
# a traced form's first call on a batch size it has not run yet took twice as long as later ones (measured, shipped
# ensemble, 2-core machine: 47 vs 23 ms for 4 windows): the forms run every batch size up to this twice when they are
# made, so that a server's first busy seconds do not pay it
WARM_SIZES = 12


class BatchForms:
    """Each network's forms per window shape, made on first use (``trace``: trace them; off, the inference form runs
    as it is). ``backend`` (:data:`~a2k_toolkit.models.ort_form.BACKENDS`): ``torch`` runs the traced forms,
    ``onnxruntime`` the network in ONNX Runtime (:mod:`~a2k_toolkit.models.ort_form`; the torch forms where it
    refuses the network), ``auto`` the latter where its packages are installed."""

    def __init__(self, trace: bool = True, backend: str = "torch"):
        from .ort_form import resolve_backend

        self.trace, self.backend = trace, resolve_backend(backend)
        self._models: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def has(self, net, window: int, dim: int) -> bool:
        """Whether ``net``'s forms for windows ``(window, dim)`` are made."""
        with self._lock:
            return (window, dim) in self._models.get(net, {})

    def model(self, net, window: int, dim: int):
        """The module a batch of ``net``'s windows ``(n, window, dim)`` runs through: its traced inference form (made
        on first use, once per network and shape), or the inference form itself where tracing is off or changed the
        output."""
        with self._lock:
            models = self._models.setdefault(net, {})
            if (window, dim) not in models:
                models[window, dim] = self._build(net, window, dim)
            return models[window, dim]

    def _build(self, net, W: int, D: int):
        """The module for ``net``'s windows of shape ``(W, D)``: :meth:`_trace` of its inference form, and where
        ``net`` is an ensemble of one architecture also of its stacked form (:mod:`~a2k_toolkit.models.stacked`)
        for batches of up to :data:`STACKED_MAX_BATCH` windows (:class:`_BySize`)."""
        from .inference import fuse_for_inference
        from .ort_form import ort_form
        from .stacked import stack_ensemble

        if self.backend == "onnxruntime":
            form = ort_form(net, W, D, range(1, WARM_SIZES + 1))
            if form is not None:
                return form
        stacked = stack_ensemble(net)
        if stacked is net:
            return self._trace(fuse_for_inference(net), net, W, D, range(1, WARM_SIZES + 1))
        small = self._trace(fuse_for_inference(stacked), net, W, D, range(1, STACKED_MAX_BATCH + 1))
        large = self._trace(fuse_for_inference(net), net, W, D, range(STACKED_MAX_BATCH + 1, WARM_SIZES + 1))
        return _BySize(small, large, STACKED_MAX_BATCH)

    def _trace(self, fused, net, W: int, D: int, warm=()):
        """``fused`` (an inference form of ``net``) traced, checked against itself on two batch sizes, then run
        twice on each batch size of ``warm`` (:data:`WARM_SIZES`); ``fused`` as it is where tracing is off, fails or
        changes the output."""
        import torch

        if not self.trace:
            return fused
        rng = np.random.default_rng(0)
        uses_ref = getattr(net, "uses_reference", True)

        def sample(n):
            x = torch.from_numpy(rng.standard_normal((n, W, D), dtype=np.float32))
            return x, torch.from_numpy(rng.standard_normal((n, 136), dtype=np.float32)) if uses_ref else None

        try:
            with torch.inference_mode(), _quiet_tracer_warnings():
                x, r = sample(2)
                traced = torch.jit.trace(fused, (x, r) if uses_ref else (x,), check_trace=False)
                for n in (1, 3):
                    x, r = sample(n)
                    if not torch.equal(fused(x, r), traced(x, r) if uses_ref else traced(x)):
                        return fused
                for n in warm:
                    x, r = sample(n)
                    for _ in range(2):
                        traced(x, r) if uses_ref else traced(x)
        except Exception:  # noqa: BLE001 - a network tracing cannot follow runs as it is
            return fused
        return traced if uses_ref else _NoReference(traced)

    def run(self, net, x: np.ndarray, ref: np.ndarray | None) -> np.ndarray:
        """``net``'s output for the windows ``x`` (and references ``ref``) through :meth:`model`, as float32."""
        import torch

        model = self.model(net, x.shape[1], x.shape[2])
        with torch.inference_mode():
            xt = torch.from_numpy(x)
            rt = None if ref is None else torch.from_numpy(ref)
            return model(xt, rt).float().numpy()


class _BySize:
    """Batches of up to ``limit`` windows through ``small``, larger ones through ``large`` (two forms of one
    network, called as it is: ``model(x, ref)``)."""

    def __init__(self, small, large, limit: int):
        self.small, self.large, self.limit = small, large, int(limit)

    def __call__(self, x, ref=None):
        return (self.small if len(x) <= self.limit else self.large)(x, ref)


class _NoReference:
    """A traced network that takes no reference, called as the others are: ``model(x, None)``."""

    def __init__(self, traced):
        self.traced = traced

    def __call__(self, x, ref=None):
        return self.traced(x)


@contextlib.contextmanager
def _quiet_tracer_warnings():
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        yield
