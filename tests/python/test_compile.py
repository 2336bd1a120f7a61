"""torch.compile(fullgraph=True) on modules using LatticeLinear: same output as eager."""

from __future__ import annotations

import pytest
import torch

from conftest import rel_err
from lattq.nn import LatticeLinear


class Block(torch.nn.Module):
    def __init__(self, gen):
        super().__init__()
        self.norm = torch.nn.LayerNorm(256)
        self.up = LatticeLinear.from_float(torch.nn.Linear(256, 512, bias=True), seed=1)
        self.down = LatticeLinear.from_float(torch.nn.Linear(512, 256), seed=2, a_init="orthogonal")

    def forward(self, x):
        h = self.up(self.norm(x))
        return x + self.down(torch.nn.functional.silu(h))


@pytest.fixture(autouse=True)
def _reset_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_compile_single_layer_bit_exact(native, gen):
    mod = LatticeLinear.from_float(torch.nn.Linear(256, 128, bias=True), seed=0)
    x = torch.randn(3, 256, generator=gen)
    eager = mod(x)
    compiled = torch.compile(mod, fullgraph=True)
    assert torch.equal(compiled(x), eager)


def test_compile_block_matches_eager(native, gen):
    block = Block(gen).eval()
    x = torch.randn(2, 5, 256, generator=gen)
    with torch.no_grad():
        eager = block(x)
        compiled = torch.compile(block, fullgraph=True)(x)
    # the custom op runs the same kernel; only the surrounding torch ops may be fused differently
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)


def test_compile_dynamic_batch(native, gen):
    mod = LatticeLinear.from_float(torch.nn.Linear(128, 64), seed=0)
    compiled = torch.compile(mod, fullgraph=True, dynamic=True)
    for m in (1, 3, 17):
        x = torch.randn(m, 128, generator=gen).to(torch.bfloat16)
        assert torch.equal(compiled(x), mod(x))


def test_compile_backward(native, gen):
    """Input gradients of eager and compiled modules both match a float64 reference.

    Compared normwise (relative Frobenius error), as every other fp32 check in the suite is:
    Inductor fuses square/sum differently from eager, so an element whose gradient nearly
    cancels may differ by a few ulps of the gradient's scale, which an elementwise rtol cannot
    express.
    """
    mod = LatticeLinear.from_float(torch.nn.Linear(128, 64, bias=True), seed=0)
    x1 = torch.randn(4, 128, generator=gen, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    mod(x1).square().sum().backward()
    torch.compile(mod, fullgraph=True)(x2).square().sum().backward()

    w = mod.dense_weight().double()
    xd = x1.detach().double()
    ref = 2.0 * (xd @ w.T + mod.bias.detach().double()) @ w  # d/dx sum((x W^T + b)^2)
    assert rel_err(x1.grad, ref.numpy()) <= 1e-5
    assert rel_err(x2.grad, ref.numpy()) <= 1e-5
    assert rel_err(x2.grad, x1.grad.double().numpy()) <= 1e-5


def test_compile_grouped_projections(native, gen):
    # layers grouped by lattq.group_projections compute alone inside torch.compile (fullgraph: no graph break)
    mk = lambda n, s: LatticeLinear.from_float(torch.nn.Linear(256, n), seed=s)  # noqa: E731
    block = torch.nn.Module()
    block.q_proj, block.k_proj, block.v_proj = mk(128, 3), mk(64, 4), mk(64, 5)
    import lattq

    assert lattq.group_projections(block) == 1
    run = lambda t: block.q_proj(t) + torch.cat([block.k_proj(t), block.v_proj(t)], -1)  # noqa: E731
    x = torch.randn(3, 256, generator=gen)
    with torch.no_grad():
        eager = run(x)
        assert torch.equal(torch.compile(run, fullgraph=True)(x), eager)
