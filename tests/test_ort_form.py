"""The onnxruntime backend of the window batcher (``a2k_toolkit.models.ort_form``): the shipped ensemble exported in
memory and run by a real ONNX Runtime session gives the ensemble's output, through the batcher's threads and its
inference process; a network it cannot run exactly is left to torch; the backend names are checked."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_stacked import member

from a2k_toolkit.errors import InputError
from a2k_toolkit.models import ort_form as O
from a2k_toolkit.models.batch_forms import BatchForms
from a2k_toolkit.models.batching import WindowBatcher
from a2k_toolkit.models.generator import EnsembleNet
from a2k_toolkit.models.stacked import TOLERANCE
from a2k_toolkit.pipeline import Pipeline

pytestmark = pytest.mark.skipif(not O.available(), reason="needs onnx and onnxruntime (the a2k-onnx plugin's)")


@pytest.fixture(scope="module")
def net():
    return Pipeline.from_config(None).generator.net


def windows(n, seed=0, dim=320):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 64, dim), dtype=np.float32), rng.standard_normal((n, 136), dtype=np.float32)


def eager(net, x, r):
    with torch.inference_mode():
        return net(torch.from_numpy(x), None if r is None else torch.from_numpy(r)).numpy()


def test_the_shipped_ensemble_in_onnxruntime_equals_torch(net):
    """One graph for the 4 members (their stacked form), any batch size: the ensemble's output to float rounding."""
    forms = BatchForms(backend="onnxruntime")
    assert isinstance(forms.model(net, 64, 320), O.OrtForm)
    for n in (1, 2, 5, 13):
        x, r = windows(n, seed=n)
        got = forms.run(net, x, r)
        assert got.shape == (n, 64, 136) and got.dtype == np.float32
        np.testing.assert_allclose(got, eager(net, x, r), atol=TOLERANCE)


def test_a_network_without_a_reference_runs_too():
    """The audio-only ablation (no PV or PIV encoder) is exported with the features as its only input."""
    ens = EnsembleNet([member(k, pv=False, piv=False, residual=False) for k in range(2)]).eval()
    form = O.ort_form(ens, 64, 320)
    assert form is not None and not form.uses_reference
    x, _ = windows(3)
    got = BatchForms(backend="onnxruntime").run(ens, x, None)
    np.testing.assert_allclose(got, eager(ens, x, None), atol=TOLERANCE)
    assert form(torch.from_numpy(x)).shape == (3, 64, 136)


def test_the_inference_process_runs_it(net):
    """``processes=True``: the inference process builds its own session and returns the same rows."""
    x, r = windows(3)
    with WindowBatcher(processes=True, backend="onnxruntime") as batcher:
        assert batcher.backend == "onnxruntime"
        with batcher.caller():
            got = batcher.forward(net, x, r)
    np.testing.assert_allclose(got, eager(net, x, r), atol=TOLERANCE)


def test_a_form_that_disagrees_is_refused_and_torch_runs(net, monkeypatch):
    """A session whose output differs from the network's by more than the tolerance is not used: the batcher's forms
    fall back to the traced torch ones (and give the right rows)."""
    real = O.OrtForm.__call__
    monkeypatch.setattr(O.OrtForm, "__call__", lambda self, x, ref=None: real(self, x, ref) + 1e-2)
    assert O.ort_form(net, 64, 320) is None
    forms = BatchForms(backend="onnxruntime")
    assert not isinstance(forms.model(net, 64, 320), O.OrtForm)
    x, r = windows(2)
    np.testing.assert_allclose(forms.run(net, x, r), eager(net, x, r), atol=TOLERANCE)


def test_a_network_the_exporter_cannot_follow_is_left_to_torch():
    """A network whose forward the exporter cannot trace (here: it converts its input to numpy) gets ``None``."""

    class Opaque(torch.nn.Module):
        uses_reference = False

        def forward(self, x):
            return torch.from_numpy(np.repeat(x.numpy()[:, :, :1], 136, 2))

    assert O.ort_form(Opaque(), 64, 320) is None


def test_backend_names(monkeypatch):
    """``auto`` is onnxruntime where its packages import, torch where not; asking for onnxruntime without them, or
    for an unknown backend, is an error that names the fix."""
    assert O.resolve_backend("auto") == "onnxruntime" and O.resolve_backend("torch") == "torch"
    with pytest.raises(InputError, match="one of auto, torch, onnxruntime"):
        O.resolve_backend("tensorrt")
    real = O.importlib.util.find_spec
    monkeypatch.setattr(O.importlib.util, "find_spec", lambda name: None if name == "onnxruntime" else real(name))
    assert O.resolve_backend("auto") == "torch"
    with pytest.raises(InputError, match="pip install onnx onnxruntime"):
        O.resolve_backend("onnxruntime")
    assert BatchForms(backend="auto").backend == "torch"
