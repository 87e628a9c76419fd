"""The fused MLP jet pass (nn/fused_mlp.py) against the generic jets: the same jet, loss and parameter gradients."""

from pathlib import Path

import pytest
import torch

from pdesolve.config import load_run_config
from pdesolve.nn.fused_mlp import FusedMLPJet, RowLayout, fusable, fused_forward_jet, stack_rows
from pdesolve.nn.jet import Jet
from pdesolve.nn.mlp import MLP
from pdesolve.solvers.pinn import PINN

PROBLEMS = Path(__file__).resolve().parents[1] / "problems"

# float64: both passes agree to ~1e-14 relative (measured); float32: to ~1e-6 (measured up to 3e-6 on gradients)
TOLERANCE = {torch.float64: {"rtol": 1e-10, "atol": 1e-12}, torch.float32: {"rtol": 1e-4, "atol": 1e-5}}


def _input_jet(order: int, dtype: torch.dtype, n: int = 37) -> Jet:
    """A curved input jet [n, 3] with derivatives along coordinates 1 and 2 (nonzero rows of every order)."""
    x = torch.rand(n, 3, dtype=dtype, generator=torch.Generator().manual_seed(1))
    cols = Jet.variables(x, order, slice(1, 3))
    return Jet.stack([cols[0] * 0.7 + cols[1].sin(), cols[2] * cols[1] - 0.3, (cols[2] * 2.0).cos()])


def _rows_loss(jet: Jet) -> torch.Tensor:
    """A loss that reads every row of a jet with a different weight."""
    return sum((r * r).sum() * (i + 1) + r.sum() for i, r in enumerate(jet.rows()))  # type: ignore[return-value]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("act", ["tanh", "sin"])
@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("width,depth", [(7, 1), (16, 3), (9, 5)])
def test_jet_and_gradients_equal_the_generic_pass(order, act, width, depth, dtype):
    torch.manual_seed(width + depth)
    net = MLP(3, 2, width, depth, act).to(dtype)
    assert fusable(net)
    x = _input_jet(order, dtype)
    generic, fused = net.forward_jet(x), fused_forward_jet(net, x)
    assert fused.order == generic.order == order and fused.hess == generic.hess
    for a, b in zip(generic.rows(), fused.rows()):
        assert a.shape == b.shape
        torch.testing.assert_close(b, a, **TOLERANCE[dtype])
    params = list(net.parameters())
    lg, lf = _rows_loss(generic), _rows_loss(fused)
    torch.testing.assert_close(lf, lg, **TOLERANCE[dtype])
    for a, b in zip(torch.autograd.grad(lg, params), torch.autograd.grad(lf, params)):
        torch.testing.assert_close(b, a, rtol=TOLERANCE[dtype]["rtol"], atol=TOLERANCE[dtype]["atol"] * max(1.0, a.abs().max().item()))


@pytest.mark.parametrize("act", ["tanh", "sin"])
@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_gradcheck_of_the_function_in_float64(order, act):
    torch.manual_seed(order)
    net = MLP(3, 2, 5, 2, act).double()
    x = _input_jet(order, torch.float64, n=6)
    layout = RowLayout.of(x)
    rows = stack_rows(x).detach().requires_grad_(True)  # the input rows too (the Function returns their gradient)
    params = [p.detach().clone().requires_grad_(True) for p in net.parameters()]
    assert torch.autograd.gradcheck(lambda r, *p: FusedMLPJet.apply(r, layout, act, *p), (rows, *params))


def _task(problem: str, dtype: str, *overrides: str):
    cfg = load_run_config(PROBLEMS / problem, [f"solvers.pinn.dtype={dtype}", "solvers.pinn.points.interior=300",
                                                "solvers.pinn.points.boundary=40", "solvers.pinn.points.initial=40", *overrides])
    torch.manual_seed(0)
    solver = PINN(cfg.problem, cfg.solver_options, torch.device("cpu"))
    return solver, solver.task(lambda: {})


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("problem,order", [("burgers.yaml", 2), ("kdv.yaml", 3), ("kuramoto_sivashinsky.yaml", 4)])
@pytest.mark.parametrize("hard", [True, False], ids=["hard", "soft"])
def test_pinn_loss_and_every_parameter_gradient_equal_the_generic_path(problem, order, hard, dtype):
    marching = ["solvers.pinn.time_marching=null"] if not hard else []  # KdV marches in time, which needs the exact transform
    solver, task = _task(problem, dtype, f"solvers.pinn.hard_constraints={str(hard).lower()}", *marching)
    assert solver.model.fused and task.order == order
    results = []
    for fused in (True, False):
        solver.model.fused = fused
        solver.model.zero_grad(set_to_none=True)
        loss, terms = task.loss()
        loss.backward()
        results.append((loss.detach(), terms, [p.grad for p in solver.model.parameters()]))  # None: a later time window's
    (lf, tf, gf), (lg, tg, gg) = results
    assert tf.keys() == tg.keys()
    tol = TOLERANCE[torch.float64 if dtype == "float64" else torch.float32]
    torch.testing.assert_close(lf, lg, **tol)
    assert [a is None for a in gg] == [b is None for b in gf] and any(a is not None for a in gg)
    for a, b in zip(gg, gf):
        if a is not None:
            torch.testing.assert_close(b, a, rtol=tol["rtol"], atol=tol["atol"] * max(1.0, a.abs().max().item()))


@pytest.mark.parametrize("overrides", [("solvers.pinn.activation=gelu",), ("solvers.pinn.network=residual",),
                                       ("solvers.pinn.weight_factorization={mu: 1.0, sigma: 0.1}",),
                                       ("solvers.pinn.sparsity={n: 2, m: 4, mode: consistent}",)],
                         ids=["gelu", "residual", "rwf", "sparsity"])
def test_networks_it_does_not_cover_keep_the_generic_path(overrides):
    solver, task = _task("burgers.yaml", "float32", *overrides)
    assert not solver.model.fused
    assert torch.isfinite(task.loss()[0])


def test_plain_mlp_default_is_fused():
    solver, _ = _task("burgers.yaml", "float32")
    assert solver.model.fused and fusable(solver.model.net)


def test_a_second_derivative_through_the_pass_is_refused():
    net = MLP(3, 1, 5, 2).double()
    x = _input_jet(2, torch.float64, n=4)
    rows = stack_rows(x).detach().requires_grad_(True)
    out = FusedMLPJet.apply(rows, RowLayout.of(x), "tanh", *net.parameters())
    with pytest.raises(RuntimeError, match="differentiable once"):
        torch.autograd.grad(out.sum(), rows, create_graph=True)


@pytest.mark.parametrize("layout", [RowLayout(2, 1, 1, 1), RowLayout(2, 1, 1, 2), RowLayout(3, 1, 2, 3), RowLayout(3, 0, 2, 4),
                                    RowLayout(4, 1, 3, 4)], ids=["o1", "o2", "o3", "o4-all-axes", "o4"])
def test_the_block_formulation_under_compile_equals_the_slice_writes(layout):
    """torch.compile runs the chain rule by whole row blocks (nn/fused_mlp.py's _chain_rows, _chain_backward_rows);
    eagerly it writes into row slices: both give the same rows and the same gradient of the pre-activation rows."""
    from pdesolve.nn import fused_mlp

    gen = torch.Generator().manual_seed(layout.rows)
    z = torch.randn(layout.rows, 11, 6, dtype=torch.float64, generator=gen)
    grad = torch.randn(layout.rows, 11, 6, dtype=torch.float64, generator=gen)
    f = fused_mlp._tanh_derivatives(z[0], torch.tanh(z[0]), layout.order + 1)
    sliced = torch.empty_like(z)
    fused_mlp._chain(z, f[: layout.order], layout, sliced)
    torch.testing.assert_close(torch.cat(fused_mlp._chain_rows(z, f[: layout.order], layout)), sliced[1:], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fused_mlp._chain_backward_rows(z, f, layout, grad), fused_mlp._chain_backward(z, f, layout, grad),
                               rtol=1e-12, atol=1e-12)


def _cpp_compiler() -> bool:
    """Whether torch.compile's CPU backend finds a C++ compiler (``solvers.pinn.compile`` needs one)."""
    import shutil

    from torch._inductor import cpp_builder

    try:
        return shutil.which(cpp_builder.get_cpp_compiler()) is not None
    except Exception:  # noqa: BLE001 - no compiler found, in whatever way torch reports it
        return False


@pytest.mark.skipif(not _cpp_compiler(), reason="torch.compile on CPU needs a C++ compiler")
def test_the_compiled_loss_equals_the_eager_one_and_compiles_once():
    """``solvers.pinn.compile=true``: the loss and every gradient as eagerly (float32 round-off), over steps that change
    nothing the compiled graph guards on (the point set is built before the compiled loss runs)."""
    eager_solver, eager = _task("burgers.yaml", "float32")
    compiled_solver, compiled = _task("burgers.yaml", "float32", "solvers.pinn.compile=true")
    compiled_solver.model.load_state_dict(eager_solver.model.state_dict())
    torch._dynamo.reset()
    for _ in range(3):
        grads = []
        for solver, task in ((eager_solver, eager), (compiled_solver, compiled)):
            solver.model.zero_grad(set_to_none=True)
            loss, _ = task.loss()
            loss.backward()
            grads.append((loss.detach(), [p.grad for p in solver.model.parameters()]))
        (le, ge), (lc, gc) = grads
        torch.testing.assert_close(lc, le, **TOLERANCE[torch.float32])
        for a, b in zip(ge, gc):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5 * max(1.0, a.abs().max().item()))
    # one graph for the loss (and its backward): a recompile would mean a guard fails from step to step
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1


def _native_or_skip():
    from pdesolve.nn import native_jets

    lib = native_jets.library()
    if lib is None:
        pytest.skip("no C compiler built the native jet loops")
    return native_jets, lib


@pytest.mark.parametrize("layout", [RowLayout(2, 1, 1, 1), RowLayout(2, 1, 1, 2), RowLayout(3, 1, 2, 2), RowLayout(3, 0, 3, 2)],
                         ids=["o1", "o2", "o2-two-axes", "o2-all-axes"])
def test_the_native_tanh_loops_equal_the_torch_kernels(layout):
    """nn/native/jet_tanh.c, one layer forward and backward, against the torch kernels of the fused pass (float32)."""
    from pdesolve.nn import fused_mlp

    native_jets, lib = _native_or_skip()
    gen = torch.Generator().manual_seed(layout.rows)
    z = torch.randn(layout.rows, 53, 21, generator=gen)  # a width that is no multiple of the vector length
    bias, grad = torch.randn(21, generator=gen), torch.randn(layout.rows, 53, 21, generator=gen)
    z_native, z_torch = z.clone(), z.clone()
    y_native = native_jets.tanh_forward(lib, layout, z_native, bias)
    z_torch[0].add_(bias)
    y_torch = torch.empty_like(z)
    fused_mlp._tanh(z_torch[0], out=y_torch[0])
    fused_mlp._chain(z_torch, fused_mlp._tanh_derivatives(z_torch[0], y_torch[0], layout.order), layout, y_torch)
    torch.testing.assert_close(z_native, z_torch)  # the bias added to the value row in place, as the torch kernels do
    torch.testing.assert_close(y_native, y_torch, **TOLERANCE[torch.float32])  # rows with cancellation: ~1e-5
    g_native = native_jets.tanh_backward(lib, layout, z_native, y_native[0], grad)
    g_torch = fused_mlp._chain_backward(z_torch, fused_mlp._tanh_derivatives(z_torch[0], y_torch[0], layout.order + 1), layout, grad)
    # the value row sums several products (cancellation): float32 round-off relative to the largest gradient
    torch.testing.assert_close(g_native, g_torch, rtol=1e-4, atol=1e-5 * g_torch.abs().max().item())


def test_the_pass_takes_the_native_loops_where_they_apply_and_falls_back_without_them(monkeypatch):
    """Float32 tanh jets up to second order run the native loops (when built); the same pass without them (no
    compiler) gives the same rows and gradients to float32 round-off."""
    from pdesolve.nn import native_jets

    _native_or_skip()
    torch.manual_seed(3)
    net = MLP(3, 2, 16, 3, "tanh")
    x = _input_jet(2, torch.float32)
    assert native_jets.takes(stack_rows(x), "tanh", 2, [16, 16, 16, 2])
    assert not native_jets.takes(stack_rows(x).double(), "tanh", 2, [16]) and not native_jets.takes(stack_rows(x), "sin", 2, [16])
    assert not native_jets.takes(stack_rows(x), "tanh", 3, [16]) and not native_jets.takes(stack_rows(x), "tanh", 2, [2048])
    params = list(net.parameters())
    with_native = fused_forward_jet(net, x)
    grads_native = torch.autograd.grad(_rows_loss(with_native), params)
    monkeypatch.setattr(native_jets, "library", lambda: None)
    without = fused_forward_jet(net, x)
    grads_torch = torch.autograd.grad(_rows_loss(without), params)
    for a, b in zip(with_native.rows(), without.rows()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    for a, b in zip(grads_native, grads_torch):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * max(1.0, b.abs().max().item()))


def test_the_native_library_is_built_atomically_where_asked(tmp_path):
    """_build writes the shared library under a temporary name and renames it into place; it loads and runs."""
    import ctypes
    from importlib import resources

    from pdesolve.nn import native_jets

    compiler = native_jets._compiler()
    if compiler is None:
        pytest.skip("no C compiler")
    source = resources.files("pdesolve.nn.native").joinpath("jet_tanh.c").read_text()
    target = tmp_path / "cache" / "jet_tanh-test.so"
    native_jets._build(source, compiler, [], target)
    assert sorted(p.name for p in target.parent.iterdir()) == ["jet_tanh-test.so"]  # no temporary left behind
    assert hasattr(ctypes.CDLL(str(target)), "jet_tanh_backward")


def test_a_failed_build_leaves_the_torch_kernels_and_says_why(tmp_path, monkeypatch, caplog):
    """A compiler error is logged with its message and the pass keeps its torch kernels (no native library)."""
    import logging
    import subprocess

    from pdesolve.nn import native_jets

    def fail(source, compiler, flags, target):
        raise subprocess.CalledProcessError(1, [compiler], stderr="jet_tanh.c:1: error: broken")

    monkeypatch.setenv("HOME", str(tmp_path))  # no cached build found
    monkeypatch.setattr(native_jets, "_compiler", lambda: "cc")
    monkeypatch.setattr(native_jets, "_build", fail)
    native_jets.library.cache_clear()
    try:
        with caplog.at_level(logging.INFO, logger="pdesolve.nn.native_jets"):
            assert native_jets.library() is None
        assert "error: broken" in caplog.text and "torch kernels" in caplog.text
    finally:
        native_jets.library.cache_clear()
