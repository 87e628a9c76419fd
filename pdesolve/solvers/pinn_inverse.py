"""Inverse problems with the PINN: unknown coefficients learned jointly with the network from observations.

Raissi, Perdikaris & Karniadakis (2019), "Physics-informed neural networks", J. Comput. Phys. 378, section 4
(data-driven discovery): each unknown coefficient of the equation becomes a trainable scalar that the residual
reads, and the loss gains a data-misfit term ``weight * mean((u(x_i, t_i) - u_i)^2)`` over the observations. The
optimizer updates network and coefficients together; the coefficients are parameters of the model, so checkpoints
carry them and a resumed run continues exactly.

Parametrisations (which the problem declaration chooses, :class:`Parametrisation`): a box ``[minimum, maximum]`` is
learned through a sigmoid (of the logarithm with ``scale: log``); a coefficient with ``scale: log``, or that the equation
requires non-negative (its ``Parameter.minimum`` is 0) and starts positive, through its logarithm, which keeps it
admissible and makes steps relative (a diffusivity of 2e-3 and a rate of 0.1 move alike); any other as it is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..equations.base import Parameter
from ..observations import Observations
from ..plot import PARAMETER_COLUMN  # the history column of a learned coefficient, param_<name>
from ..problem import Problem, Unknown
from .pinn_options import PINNOptions

DATA_TERM = "data"  # the loss term of the observations' misfit


@dataclass(frozen=True)
class Parametrisation:
    """How a coefficient's value is computed from its unconstrained trainable number ``r``.

    ``box``: ``lo + (hi - lo) sigmoid(r)``; ``logbox``: the same in ``log`` (a box spanning decades); ``log``: ``exp(r)``;
    ``plain``: ``r``.
    """

    kind: str
    lo: float = 0.0
    hi: float = 1.0

    @classmethod
    def of(cls, unknown: Unknown, parameter: Parameter) -> Parametrisation:
        log = unknown.scale == "log" or (unknown.scale is None and parameter.minimum == 0 and unknown.initial > 0)
        if unknown.minimum is not None and unknown.maximum is not None:
            if unknown.scale == "log":
                return cls("logbox", math.log(unknown.minimum), math.log(unknown.maximum))
            return cls("box", unknown.minimum, unknown.maximum)
        return cls("log") if log else cls("plain")

    def value(self, r: Tensor) -> Tensor:
        if self.kind in ("box", "logbox"):
            v = self.lo + (self.hi - self.lo) * torch.sigmoid(r)
            return torch.exp(v) if self.kind == "logbox" else v
        return torch.exp(r) if self.kind == "log" else r

    def raw(self, value: float) -> float:
        """The inverse of :meth:`value` (the starting number of a coefficient that starts at ``value``)."""
        if self.kind in ("box", "logbox"):
            v = math.log(value) if self.kind == "logbox" else value
            g = (v - self.lo) / (self.hi - self.lo)
            return math.log(g / (1 - g))
        return math.log(value) if self.kind == "log" else value


class UnknownCoefficients(nn.Module):
    """The problem's unknown coefficients as trainable scalars (empty for a forward problem: no parameters, no state)."""

    def __init__(self, problem: Problem):
        super().__init__()
        self.maps = {k: Parametrisation.of(u, problem.equation.parameters[k]) for k, u in problem.unknowns.items()}
        self.raw = nn.ParameterDict({k: nn.Parameter(torch.tensor(self.maps[k].raw(u.initial), dtype=torch.float64))
                                     for k, u in problem.unknowns.items()})

    def values(self) -> dict[str, Tensor]:
        """Each coefficient's current value, a 0-d tensor in the autograd graph."""
        return {k: self.maps[k].value(r) for k, r in self.raw.items()}

    def numbers(self) -> dict[str, float]:
        with torch.no_grad():
            return {k: float(v) for k, v in self.values().items()}

    def record(self) -> dict[str, float]:
        """History columns: ``param_<name>`` per coefficient."""
        return {PARAMETER_COLUMN + k: v for k, v in self.numbers().items()}


class ObservationTerm:
    """The observations as tensors, and the misfit of the model's fields there."""

    def __init__(self, obs: Observations, names: Sequence[str], fields: Sequence[str], device: torch.device, dtype: torch.dtype):
        order = [obs.names.index(n) for n in names]  # the model's coordinate columns (t first)
        self.points = torch.as_tensor(obs.points[:, order], dtype=dtype, device=device)  # [N, d]
        self.values = torch.as_tensor(obs.values, dtype=dtype, device=device)  # [N, observed fields]
        self.columns = [list(fields).index(f) for f in obs.fields]
        self.weight = obs.weight

    def misfit(self, fields: Tensor) -> Tensor:
        """``u(x_i) - u_i`` per point and observed field ``[N, observed]`` from the model's fields there ``[N, channels]``."""
        return fields[:, self.columns] - self.values


def observation_term(problem: Problem, device: torch.device, dtype: torch.dtype) -> ObservationTerm | None:
    obs = problem.observations
    return None if obs is None else ObservationTerm(obs, problem.domain.names, problem.equation.fields, device, dtype)


def inverse_mismatches(problem: Problem, options: PINNOptions) -> list[str]:
    """PINN options that do not fit an inverse problem (empty when they do)."""
    out = []
    cur = options.curriculum
    if cur is not None and cur.parameter in problem.unknowns:
        out.append(f"solvers.pinn.curriculum.parameter: {cur.parameter!r} is unknown (learned from the data); a curriculum needs a "
                   "coefficient with a value")
    if options.time_marching is not None and (problem.unknowns or problem.observations is not None):
        out.append("solvers.pinn.time_marching trains one time window at a time, and observations span the whole interval; "
                   "leave time_marching out for an inverse problem")
    return out


def recovered(problem: Problem, unknowns: UnknownCoefficients) -> dict[str, dict[str, float]]:
    """``{name: {value, initial, true?, relative_error?}}``: what ``metrics.json`` records."""
    out = {}
    for k, v in unknowns.numbers().items():
        u = problem.unknowns[k]
        row = {"value": v, "initial": u.initial}
        if u.true is not None:
            row["true"] = u.true
            row["relative_error"] = abs(v - u.true) / abs(u.true) if u.true else abs(v)
        out[k] = row
    return out


def data_misfit(model: Any, term: ObservationTerm, noise: float | None) -> dict[str, Any]:
    """The RMS misfit of the model's fields at the observations, beside the stated noise level, for ``metrics.json``
    (a fit that explains the data and no more has ``rms`` near ``noise``)."""
    with torch.no_grad():
        r = torch.cat([term.misfit(model(chunk)) for chunk in term.points.split(65536)]).double().cpu().numpy()
    out: dict[str, Any] = {"rms": float(np.sqrt((r**2).mean())), "points": int(len(r))}
    if noise is not None:
        out["noise"] = noise
    return out
