"""The stacked form of an ensemble (``a2k_toolkit.models.stacked``): the members side by side as one network of
grouped layers gives the ensemble's mean, on the shipped model and on small random ensembles of every variant the
stacking handles (window input norm, no PIV encoder, no reference); what it cannot hold is left as it is."""

from __future__ import annotations

import pytest
import torch

from a2k_toolkit.models.encoders import KeypointMLP
from a2k_toolkit.models.generator import Audio2KeypointNet, EnsembleNet
from a2k_toolkit.models.inference import fuse_for_inference
from a2k_toolkit.models.stacked import TOLERANCE, StackedEnsembleNet, stack_ensemble, stackable
from a2k_toolkit.pipeline import Pipeline


def member(seed: int, *, width=16, input_norm="global", piv=True, pv=True, residual=True, normalize=True):
    torch.manual_seed(seed)
    net = Audio2KeypointNet(
        (4, 80),
        width=width,
        depth=3,
        channels_2d=(8, 16),
        pv=KeypointMLP(136, 32, 2, 8) if pv else None,
        piv=KeypointMLP(136, 32, 2, 8, normalize=normalize) if piv else None,
        residual=residual,
        input_norm=input_norm,
    )
    with torch.no_grad():  # a trained model's head is not zero, nor its statistics the identity
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
        net.feature_mean.copy_(torch.randn(320))
        net.feature_std.copy_(torch.rand(320) + 0.5)
    return net.eval()


def check(ens: EnsembleNet, T: int, batch: int = 3, seed: int = 0) -> None:
    stacked = stack_ensemble(ens)
    assert isinstance(stacked, StackedEnsembleNet)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, T, 320, generator=g)
    ref = torch.randn(batch, 136, generator=g) if ens.uses_reference else None
    with torch.inference_mode():
        want = ens(x, ref)
        for form in (stacked, fuse_for_inference(stacked)):
            got = form(x, ref)
            assert got.shape == want.shape
            assert float((got - want).abs().max()) < 1e-5


@pytest.mark.parametrize("T", [64, 37, 8])
def test_the_shipped_ensemble_stacked_equals_its_mean(T):
    """The shipped model's 4 members as one network: the same output (to float rounding) for windows of the
    model's length and for shorter ones that need the padding, alone and in a batch."""
    net = Pipeline.from_config(None).generator.net
    assert stackable(net)
    for batch in (1, 4):
        check(net, T, batch)


@pytest.mark.parametrize(
    "variant",
    [
        {},
        {"input_norm": "window"},
        {"piv": False},
        {"normalize": False},
        {"pv": False, "piv": False, "residual": False},
    ],
    ids=["plain", "window-norm", "no-piv", "piv-unnormalised", "audio-only"],
)
def test_random_ensembles_of_each_variant(variant):
    ens = EnsembleNet([member(k, **variant) for k in range(3)]).eval()
    check(ens, 40)


def test_what_it_cannot_hold_is_returned_as_it_is():
    """A single network, members of different widths, a third party's encoder: no stacked form."""
    one = member(0)
    assert not stackable(one) and stack_ensemble(one) is one
    mixed = EnsembleNet([member(0), member(1, width=24)])
    assert not stackable(mixed) and stack_ensemble(mixed) is mixed

    class Encoder(torch.nn.Module):
        out_dim = 8

        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(136, 8)

        def forward(self, k):
            return self.lin(k)

    odd = [member(k, piv=False) for k in range(2)]
    for m in odd:
        m.pv = Encoder()
    foreign = EnsembleNet(odd)
    assert not stackable(foreign) and stack_ensemble(foreign) is foreign


def test_a_stacked_form_that_disagrees_is_not_used(monkeypatch):
    """The build's check: where the stacked output differs from the ensemble's by more than the tolerance (here: a
    forward pass made wrong on purpose), the ensemble itself is returned."""
    ens = EnsembleNet([member(k) for k in range(2)]).eval()
    real = StackedEnsembleNet.forward
    monkeypatch.setattr(StackedEnsembleNet, "forward", lambda self, x, r=None: real(self, x, r) + 10 * TOLERANCE)
    assert stack_ensemble(ens) is ens
    assert isinstance(stack_ensemble(ens, check=False), StackedEnsembleNet)
