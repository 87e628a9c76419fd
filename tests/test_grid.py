"""Grid: stagger/unstagger and partition round trips, coarsening, and derivatives (spectral, 2nd-order FD)."""

import numpy as np
import pytest
import torch

from pdesolve.grid import Grid, GridAxis, GridError


def _grid(time=True):
    space = (GridAxis("x", 0.0, 2 * np.pi, 12, periodic=True), GridAxis("y", -1.0, 1.0, 8))
    return Grid(space, GridAxis("t", 0.0, 1.0, 6) if time else None)


@pytest.mark.parametrize("time", [True, False])
@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_stagger_unstagger_is_an_exact_inverse_pair(time, lib):
    g = _grid(time)
    shape = (3,) + ((6,) if time else ()) + (2,) + g.space_shape
    u = np.random.default_rng(0).normal(size=shape)
    if lib == "torch":
        u = torch.tensor(u)
    factors = {"x": 3, "y": 2, "t": 2} if time else {"x": 3, "y": 2}
    v = g.stagger(u, factors)
    s = 3 * 2 * (2 if time else 1)
    assert tuple(v.shape) == (3, s) + ((3,) if time else ()) + (2, 4, 4)
    back = g.unstagger(v, factors)
    assert (np.asarray(back) == np.asarray(u)).all()


def test_stagger_sub_grids_hold_the_right_points():
    g = _grid(time=True)
    factors = {"x": 3, "y": 2, "t": 2}
    mesh = g.mesh()  # coordinate arrays [t, x, y]
    coords = np.stack([mesh["t"], mesh["x"], mesh["y"]])  # [3, t, x, y]
    field = coords.transpose(1, 0, 2, 3)[None]  # [batch=1, time, channel=3, x, y]
    sub = g.stagger(field, factors)
    for k, sg in enumerate(g.stagger_grids(factors)):
        m = sg.mesh()
        np.testing.assert_allclose(sub[0, k, :, 0], m["t"])
        np.testing.assert_allclose(sub[0, k, :, 1], m["x"])
        np.testing.assert_allclose(sub[0, k, :, 2], m["y"])
        assert sg.axis("x").periodic and not sg.axis("y").periodic


def test_partition_covers_the_grid_exactly_once():
    g = _grid(time=True)
    parts = g.partition({"x": 3, "t": 2})
    assert len(parts) == 6
    hits = np.zeros(g.shape, dtype=int)
    for p in parts:
        hits[p.slices] += 1
        for a, s in zip(p.grid.axes, p.slices):
            np.testing.assert_allclose(a.coords, g.axis(a.name).coords[s])
    assert (hits == 1).all()


def test_coarsen_and_errors():
    g = _grid(time=False)
    c = g.coarsen({"x": 2, "y": 7})
    assert c.space_shape == (6, 2)
    np.testing.assert_allclose(c.coords("y"), [-1.0, 1.0])
    with pytest.raises(GridError, match="not divisible"):
        g.coarsen({"x": 5})
    with pytest.raises(GridError, match="different grids"):
        g.check_same(c)
    with pytest.raises(GridError, match="lo < hi"):
        GridAxis("x", 1.0, 0.0, 4)


def test_spectral_derivative_is_exact_for_trigonometric_fields():
    g = Grid((GridAxis("x", 0.0, 2 * np.pi, 32, periodic=True),))
    x = torch.tensor(g.coords("x"))
    u = torch.sin(3 * x) + torch.cos(x)
    np.testing.assert_allclose(g.diff(u, "x").numpy(), (3 * torch.cos(3 * x) - torch.sin(x)).numpy(), atol=1e-12)
    np.testing.assert_allclose(g.diff(u, "x", 2).numpy(), (-9 * torch.sin(3 * x) - torch.cos(x)).numpy(), atol=1e-11)


def test_finite_differences_are_second_order():
    errors, hs = [], []
    for n in (33, 65, 129, 257):
        g = Grid((GridAxis("x", 0.0, 1.0, n),))
        x = torch.tensor(g.coords("x"))
        du = g.diff(torch.exp(torch.sin(2 * x)), "x")
        exact = 2 * torch.cos(2 * x) * torch.exp(torch.sin(2 * x))
        errors.append(float((du - exact).abs().max()))
        hs.append(g.axis("x").spacing)
    slope = np.polyfit(np.log(hs), np.log(errors), 1)[0]
    assert 1.9 < slope < 2.1


def test_second_difference_on_bounded_axes():
    """Three-point inside (what finite-difference steppers use), four-point one-sided at the ends: exact for
    cubics at the ends and quadratics inside, second order everywhere."""
    g = Grid((GridAxis("x", 0.0, 1.0, 9),))
    x = torch.tensor(g.coords("x"))
    h = g.axis("x").spacing
    u = torch.exp(x)
    d2 = g.diff(u, "x", 2)
    torch.testing.assert_close(d2[1:-1], (u[:-2] - 2 * u[1:-1] + u[2:]) / h**2, rtol=0, atol=1e-12)
    np.testing.assert_allclose(g.diff(x**2 - x, "x", 2).numpy(), 2.0, atol=1e-10)
    np.testing.assert_allclose(g.diff(x**3, "x", 2)[[0, -1]].numpy(), (6 * x[[0, -1]]).numpy(), atol=1e-9)
    # batched over leading dimensions and along any space axis
    g2 = Grid((GridAxis("x", 0.0, 1.0, 9), GridAxis("y", 0.0, 2.0, 5)))
    m = {k: torch.tensor(v) for k, v in g2.mesh().items()}
    f = (m["x"] ** 2 * m["y"] ** 2).expand(3, 1, 9, 5)
    np.testing.assert_allclose(g2.diff(f, "y", 2).numpy(), np.broadcast_to(2 * m["x"].numpy() ** 2, (3, 1, 9, 5)), atol=1e-10)
    errors, hs = [], []
    for n in (33, 65, 129, 257):
        g = Grid((GridAxis("x", 0.0, 1.0, n),))
        x = torch.tensor(g.coords("x"))
        d2 = g.diff(torch.exp(torch.sin(2 * x)), "x", 2)
        exact = (4 * torch.cos(2 * x) ** 2 - 4 * torch.sin(2 * x)) * torch.exp(torch.sin(2 * x))
        errors.append(float((d2 - exact).abs().max()))
        hs.append(g.axis("x").spacing)
    assert 1.9 < np.polyfit(np.log(hs), np.log(errors), 1)[0] < 2.2
