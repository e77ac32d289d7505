"""Any-length inference with memory bounded by the window: overlapping windows, batched, cross-faded.

A sequence of ``T`` frames is cut into windows of the training length ``W`` starting every ``W - overlap`` frames
(the last window ends exactly at ``T``; a sequence shorter than ``W`` is one window whose features are padded by
repeating the last frame). Windows of many requests are stacked ``batch_size`` at a time, so the model never sees more
than ``batch_size x W`` frames at once, whatever the audio length. Every window is conditioned on the same reference
frame, so all windows share one coordinate frame; each window's output is weighted by a raised-cosine ramp over the
``overlap`` frames it shares with its neighbours, and the weighted outputs are summed and renormalised: the sequence
is continuous across window boundaries (no hard cuts).

Every window is computed on its own: the network's GroupNorm statistics are taken over the window, as in training,
so a window's output depends on that window's features only. (Running the audio encoder once over the whole clip
would share the convolutions of the overlaps but normalise over the whole clip instead: on a trained checkpoint that
moves the output by up to 0.8 normalised units, half a frame-to-frame motion on average; see docs/benchmarks.md.)

The plan, the padding and the blend are numpy code in :mod:`a2k_toolkit.models.windows`, shared with runtimes
without torch.

Fast path (the default, ``fast=True``): the same arithmetic, arranged for the CPU:

* :func:`fuse_for_inference` replaces each conv -> GroupNorm -> LeakyReLU block by :class:`FusedConvNormAct`
  (per-channel statistics in two cheap passes, one fused affine, both in place) and runs the 2D audio stem
  channels-last (oneDNN's fast layout); the result equals the module's output to float32 rounding;
* on a CPU that other work is using (:func:`a2k_toolkit.cpu_runtime.cpu_is_shared`: another runnable thread when
  generation starts), the batches of windows are spread over ``torch.get_num_threads()`` worker threads that each run
  with one intra-op thread: windows are independent, so this parallelism needs no synchronisation inside each layer
  (on this 2-core machine, two intra-op threads on a loaded CPU were 2.4x slower than one). On an idle CPU the
  batches run on the intra-op threads, 10-25 % faster there.

Inside a :class:`~a2k_toolkit.models.batching.WindowBatcher`'s caller (``a2k serve``'s session pushes), the fast
float32 CPU path hands its windows to the batcher, which runs them with other threads' windows in one traced forward
pass.

``fast=False`` is the straightforward path (``a2k bench --naive`` runs it with ``batch_size=1``).
"""

from __future__ import annotations

import contextlib
import copy
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..cpu_runtime import cpu_is_shared
from .batch_context import active_batcher
from .windows import WindowBlend, window_features

# re-exported: the numpy half of windowed inference moved to .windows, where callers without torch import it
from .windows import window_plan as window_plan
from .windows import window_weights as window_weights


def autocast(device: str, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


class FusedConvNormAct(nn.Module):
    """Inference form of ``Sequential(Conv, GroupNorm, LeakyReLU)`` with the same weights (shared, not copied).

    GroupNorm's statistics come from per-channel means and centred sums of squares (two vectorised passes instead of
    a Welford reduction), the normalisation and affine are one in-place ``addcmul`` with per-(sample, channel)
    scale and shift, and the LeakyReLU runs in place. 2D convolutions run channels-last. Inference only (it is used
    under ``torch.inference_mode``; no autograd support).
    """

    def __init__(self, conv: nn.Module, norm: nn.GroupNorm, act: nn.LeakyReLU):
        super().__init__()
        self.conv, self.norm = conv, norm
        self.slope = float(act.negative_slope)
        self.channels_last = isinstance(conv, nn.Conv2d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = self.conv(x)
        B, C = y.shape[:2]
        if y.dim() == 4 and self.channels_last:
            flat, dim = y.permute(0, 2, 3, 1).reshape(B, -1, C), 1  # a view of the channels-last tensor
        else:
            flat, dim = y.reshape(B, C, -1), 2
        n = flat.shape[dim]
        mean = flat.sum(dim, keepdim=True).div_(n)
        centred = flat - mean
        var = centred.mul_(centred).sum(dim).div_(n)  # (B, C), per channel
        del centred
        mean = mean.reshape(B, C)
        G = self.norm.num_groups
        gmean = mean.view(B, G, -1).mean(2, keepdim=True)
        gvar = (var.view(B, G, -1) + (mean.view(B, G, -1) - gmean).square_()).mean(2, keepdim=True)
        rstd = torch.rsqrt(gvar + self.norm.eps)
        weight = self.norm.weight.view(G, -1) if self.norm.affine else torch.ones_like(gmean)
        bias = self.norm.bias.view(G, -1) if self.norm.affine else torch.zeros_like(gmean)
        scale = (weight * rstd).reshape(B, C)
        shift = (bias - gmean * scale.view(B, G, -1)).reshape(B, C)
        view = (B, C) + (1,) * (y.dim() - 2)
        out = torch.addcmul(shift.view(view), y, scale.view(view), out=y)  # in place: y is ours
        return F.leaky_relu_(out, self.slope)


def fuse_for_inference(net: nn.Module) -> nn.Module:
    """An inference copy of ``net`` (in eval mode, parameters shared with ``net``) whose conv -> GroupNorm ->
    LeakyReLU blocks are :class:`FusedConvNormAct`; every other module, and ``net``'s own ``forward``, is kept."""
    fused = copy.copy(net)  # a shallow copy: the same parameters, its own module dict
    fused._modules = dict(net._modules)
    for name, child in net.named_children():
        if (
            isinstance(child, nn.Sequential)
            and len(child) == 3
            and isinstance(child[0], (nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d))
            and isinstance(child[1], nn.GroupNorm)
            and isinstance(child[2], nn.LeakyReLU)
        ):
            fused._modules[name] = FusedConvNormAct(child[0], child[1], child[2])
        elif len(child._modules):
            fused._modules[name] = fuse_for_inference(child)
    return fused


class WindowedRunner:
    """Runs a generator net over sequences of any length (see the module docstring).

    ``fast`` (default) runs :func:`fuse_for_inference`'s form of the net (in float32; other precisions run the net as
    it is) and, on a CPU shared with other work, spreads the batches over worker threads of one intra-op thread each;
    ``workers`` sets their number (1: never; default: ``torch.get_num_threads()`` when the CPU is shared, else 1).
    ``fast=False`` runs the net as it is, batch after batch.
    """

    def __init__(
        self,
        net: torch.nn.Module,
        window: int,
        overlap: int = 16,
        batch_size: int = 32,
        precision: str = "fp32",
        *,
        fast: bool = True,
        workers: int | None = None,
    ):
        if not 0 <= overlap < window:
            raise ValueError(f"overlap must be in [0, window) = [0, {window}), got {overlap}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.net, self.window, self.overlap = net, window, overlap
        self.batch_size, self.precision, self.fast = batch_size, precision, fast
        self.workers = workers
        self._fused: nn.Module | None = None

    def model(self) -> torch.nn.Module:
        """The module the windows go through: the fused inference form on the fast float32 path, else the net."""
        if not (self.fast and self.precision == "fp32"):
            return self.net
        if self._fused is None:
            self._fused = fuse_for_inference(self.net)
        return self._fused

    def run(self, requests: list[tuple[np.ndarray, np.ndarray | None]]) -> list[np.ndarray]:
        """``[(features (T, D), reference (136,) or None), ...]`` -> ``[(T, 136) float32, ...]`` (normalised space)."""
        blend = WindowBlend([len(f) for f, _ in requests], self.window, self.overlap)
        jobs = blend.jobs
        device = next(self.net.parameters()).device
        uses_ref = getattr(self.net, "uses_reference", True)
        model = self.model()
        cpu_fast = self.fast and device.type == "cpu"
        batcher = active_batcher() if cpu_fast and self.precision == "fp32" and jobs else None
        if batcher is not None:  # with other streams' windows, in one forward pass (models.batching)
            feats = np.stack([self._window(requests[r][0], s) for r, s in jobs])
            refs = np.stack([requests[r][1] for r, _ in jobs]).astype(np.float32) if uses_ref else None
            for (r, s), y in zip(jobs, batcher.forward(self.net, feats, refs)):
                blend.add(r, s, y)
            return blend.result()
        workers = self.workers
        if workers is None:  # look at the machine's load only where the choice matters
            workers = torch.get_num_threads() if cpu_fast and len(jobs) > 1 and cpu_is_shared() else 1
        workers = max(1, min(workers, len(jobs)))
        parallel = cpu_fast and workers > 1
        # in parallel, the workers share the batch: at most batch_size windows in the model at once, as serially
        size = max(1, min(self.batch_size // workers, math.ceil(len(jobs) / workers))) if parallel else self.batch_size
        batches = [jobs[b0 : b0 + size] for b0 in range(0, len(jobs), size)]

        def forward(batch):
            with torch.inference_mode(), autocast(str(device), self.precision):
                feats = np.stack([self._window(requests[r][0], s) for r, s in batch])
                x = torch.from_numpy(feats).to(device)
                ref = None
                if uses_ref:
                    ref = torch.from_numpy(np.stack([requests[r][1] for r, _ in batch]).astype(np.float32)).to(device)
                return model(x, ref).float().cpu().numpy()

        def blend_batch(batch, y):
            for (r, s), yy in zip(batch, y):
                blend.add(r, s, yy)

        if parallel:
            for batch, y in zip(batches, self._parallel(forward, batches, workers)):
                blend_batch(batch, y)
        else:
            for batch in batches:
                blend_batch(batch, forward(batch))
        return blend.result()

    @staticmethod
    def _parallel(forward, batches, workers):
        """``forward`` of each batch on ``workers`` threads of one intra-op thread each, yielded in order (at most
        ``2 * workers`` batches in flight). Setting a worker's thread count also changes process-wide settings (MKL's),
        so the caller's count is restored at the end."""
        threads = torch.get_num_threads()
        try:
            with ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
                pending = []
                for batch in batches:
                    pending.append(pool.submit(forward, batch))
                    if len(pending) >= 2 * workers:
                        yield pending.pop(0).result()
                for future in pending:
                    yield future.result()
        finally:
            torch.set_num_threads(threads)

    def _window(self, features: np.ndarray, start: int) -> np.ndarray:
        return window_features(features, start, self.window)
