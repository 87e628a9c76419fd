"""The ``simulate:`` section of a problem file: what dataset to generate and how to simulate it."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .base import Numerics


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProblemInitial(_Strict):
    """Every trajectory starts from the problem's ``initial`` expressions."""

    kind: Literal["problem"] = "problem"


class GaussianRandomField(_Strict):
    """Periodic Gaussian random fields: give ``length_scale`` (squared-exponential) or ``alpha`` (Matern-like)."""

    kind: Literal["grf"]
    length_scale: float | None = Field(None, gt=0)
    alpha: float | None = Field(None, gt=0)
    tau: float = Field(3.0, ge=0)
    sigma: float = Field(1.0, ge=0)
    mean: float = 0.0

    @model_validator(mode="after")
    def _one_spectrum(self) -> GaussianRandomField:
        if (self.length_scale is None) == (self.alpha is None):
            raise ValueError(
                f"give exactly one of length_scale and alpha, got length_scale={self.length_scale}, alpha={self.alpha}"
            )
        return self


class SineSum(_Strict):
    """PDEBench-style sums of ``modes`` random sines with integer wave numbers up to ``k_max``."""

    kind: Literal["sine_sum"]
    modes: int = Field(2, ge=1)
    k_max: int = Field(4, ge=1)
    amplitude: float = Field(1.0, ge=0)


InitialSampler = Annotated[ProblemInitial | GaussianRandomField | SineSum, Field(discriminator="kind")]


class ParameterRange(_Strict):
    """Values drawn in ``[low, high]`` (log-uniformly with ``log: true``); ``[low, high]`` is shorthand."""

    low: float
    high: float
    log: bool = False

    @model_validator(mode="before")
    @classmethod
    def _from_pair(cls, data: object) -> object:
        if isinstance(data, (list, tuple)):
            if len(data) != 2:
                raise ValueError(f"expected [low, high], got {list(data)}")
            return {"low": data[0], "high": data[1]}
        return data

    @model_validator(mode="after")
    def _ordered(self) -> ParameterRange:
        if not self.low <= self.high:
            raise ValueError(f"expected low <= high, got [{self.low}, {self.high}]")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs positive bounds, got [{self.low}, {self.high}]")
        return self


class SimulateSettings(_Strict):
    """Dataset generation: ``trajectories`` runs of ``steps`` saved steps at ``resolution``.

    ``parameters`` names equation parameters (``nu``), constant initial values (``initial.u``) or wall
    values (``boundary.x.lo``), each drawn per trajectory by ``sampler``. ``initial`` chooses the random
    initial condition. ``dt``, ``cfl``, ``rtol``, ``atol``, ``dealias``, ``method`` tune the simulator (see
    :class:`pdesolve.simulate.Numerics`).
    """

    trajectories: int = Field(16, ge=1)
    resolution: int | dict[str, int] = 64
    steps: int = Field(100, ge=1)
    initial: InitialSampler = ProblemInitial()
    parameters: dict[str, ParameterRange] = Field(default_factory=dict)
    sampler: Literal["random", "lhs", "sobol", "uniform"] = "random"
    seed: int | None = None
    batch_size: int = Field(32, ge=1)
    simulator: str | None = None
    device: str = "cpu"
    dtype: Literal["float64", "float32"] = "float64"
    dt: float | None = Field(None, gt=0)
    cfl: float = Field(0.5, gt=0)
    rtol: float = Field(1e-8, gt=0)
    atol: float = Field(1e-10, gt=0)
    dealias: bool = True
    method: str | None = None

    @model_validator(mode="after")
    def _positive_resolution(self) -> SimulateSettings:
        values = [self.resolution] if isinstance(self.resolution, int) else list(self.resolution.values())
        if any(v < 2 for v in values):
            raise ValueError(f"resolution: expected at least 2 points per axis, got {self.resolution}")
        return self

    def numerics(self) -> Numerics:
        return Numerics(dt=self.dt, cfl=self.cfl, rtol=self.rtol, atol=self.atol, dealias=self.dealias, method=self.method)

    def shape(self, space: tuple[str, ...]) -> dict[str, int]:
        """Points per space axis and the number of saved frames (``steps + 1``) under ``t``."""
        if isinstance(self.resolution, int):
            out = dict.fromkeys(space, self.resolution)
        else:
            missing = [a for a in space if a not in self.resolution]
            unknown = [a for a in self.resolution if a not in space]
            if missing or unknown:
                raise ValueError(f"resolution: expected one entry for each of {list(space)}, got {sorted(self.resolution)}")
            out = dict(self.resolution)
        return {**out, "t": self.steps + 1}
