"""Every model's blocks compose exactly (bit for bit) to its forward pass, and own exactly its parameters."""

from __future__ import annotations

import pytest
import torch

from pdesolve.nn.blocks import Carry, compose
from pdesolve.nn.mlp import MLP
from pdesolve.nn.sinenet import SineNet, SineNetOptions
from pdesolve.nn.unet import UNetWave
from pdesolve.solvers.sinenet import SineNetStepper


def _owns_its_parameters(model, blocks) -> bool:
    """The blocks hold each parameter of the model once, and nothing else (rules optimize blocks separately)."""
    ids = [id(p) for b in blocks for p in b.parameters()]
    return sorted(ids) == sorted(id(p) for p in model.parameters())


@pytest.mark.parametrize("depth, act", [(1, "tanh"), (3, "sin"), (4, "silu")])
def test_mlp_blocks(depth, act):
    torch.manual_seed(0)
    model = MLP(3, 2, width=16, depth=depth, act=act)
    x = torch.randn(50, 3)
    blocks = model.blocks()
    assert len(blocks) == depth + 1
    assert torch.equal(compose(blocks, x), model(x))
    assert _owns_its_parameters(model, blocks)


@pytest.mark.parametrize("disentangled", [True, False])
@pytest.mark.parametrize("channels", [(4,), (4, 8), (4, 8, 8)])
def test_unet_wave_blocks_carry_the_skips(disentangled, channels):
    torch.manual_seed(1)
    wave = UNetWave(channels, (True, False), disentangled=disentangled)
    x = torch.randn(2, 4, 16, 8)
    blocks = wave.blocks()
    levels = len(channels)
    assert len(blocks) == levels + (levels - 1) + 1
    assert torch.equal(compose(blocks, x), wave(x))
    assert _owns_its_parameters(wave, blocks)
    # the deepest point of the U: the wave input and one skip per finer level are kept
    carry = Carry(x)
    for b in blocks[:levels]:
        carry = b(carry)
    assert len(carry.kept) == 1 + (levels - 1)


@pytest.mark.parametrize("waves, mults, disentangled, ndim", [(3, (1, 2, 2), True, 2), (1, (1, 2), False, 1), (2, (1,), True, 3)])
def test_sinenet_blocks(waves, mults, disentangled, ndim):
    torch.manual_seed(2)
    o = SineNetOptions(fields=2, periodic=(True,) * ndim, history=2, waves=waves, width=4, channel_mults=mults,
                       disentangled=disentangled)
    model = SineNet(o)
    x = torch.randn(2, 4, *(8,) * ndim, dtype=torch.float32)
    blocks = model.blocks()
    assert torch.equal(compose(blocks, x), model(x))
    assert _owns_its_parameters(model, blocks)


@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("coordinates", [True, False])
def test_sinenet_stepper_blocks_include_normalization_positions_and_residual(residual, coordinates):
    torch.manual_seed(3)
    periodic = (True, False)
    extra = 3 if coordinates else 0  # cos, sin on the periodic axis, the coordinate on the bounded one
    o = SineNetOptions(fields=2 + extra, periodic=periodic, history=3, waves=2, width=4, channel_mults=(1, 2))
    model = SineNetStepper(o, fields=2, periodic=periodic, residual=residual)
    model.set_data_scale(torch.tensor([0.5, -2.0]), torch.tensor([3.0, 0.25]), 0.1)
    frames = torch.randn(4, 3, 2, 8, 8)
    blocks = model.blocks()
    assert torch.equal(compose(blocks, frames), model(frames))
    assert _owns_its_parameters(model, blocks)


def test_blocks_that_leave_tensors_kept_do_not_compose():
    wave = UNetWave((4, 8), (True,))
    with pytest.raises(ValueError, match="kept tensors unused"):
        compose(wave.blocks()[:-1], torch.randn(1, 4, 8))


def test_field_mlp_blocks_end_in_physical_units():
    from pdesolve.nn.field_mlp import FieldMLP

    torch.manual_seed(4)
    model = FieldMLP(inputs=6, channels=2, points=9, width=16, depth=2)
    model.set_scale(torch.tensor([300.0, -1.0]), torch.tensor([50.0, 0.1]))
    x = torch.randn(7, 6)
    blocks = model.blocks()
    assert torch.equal(compose(blocks, x), model(x)) and model(x).shape == (7, 2, 9)
    assert _owns_its_parameters(model, blocks)
