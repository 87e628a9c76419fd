"""The study file (YAML) -> a typed :class:`Study`, with every error naming the file and the key.

A study names a pdesolve problem (a path relative to the study file, or the problem inline), the
simulations to stream (a ``simulate:`` section merged over the problem's own), the held-out validation
simulations, the surrogate, the buffer, the training and the MPI layout. See
``problems/heat2d_online.yaml`` and ``docs/online_training.md``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from pdesolve.config import ConfigError, OptimizerSpec, apply_overrides, check_run_name, load_run_config, read_yaml, validate_optimizer
from pdesolve.config_messages import unknown_name, validation_errors
from pdesolve.nn.mlp import ACTIVATIONS
from pdesolve.problem import Problem
from pdesolve.simulate import SimulateSettings, select_simulator

from .gradient_coding import DelaySpec, GradientCodingSpec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MLPSurrogate(_Strict):
    """The Melissa-style fully connected net: (parameters, t) -> the whole field."""

    kind: Literal["mlp"]
    width: int = Field(256, ge=1)
    depth: int = Field(3, ge=1, description="hidden layers")
    activation: str = "silu"

    @model_validator(mode="after")
    def _known_activation(self) -> MLPSurrogate:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; valid activations are {sorted(ACTIVATIONS)}")
        return self


class NoPropSurrogate(MLPSurrogate):
    """The same mapping by a NoProp chain of ``blocks`` denoisers (for the ``noprop`` training rule)."""

    kind: Literal["noprop"]  # type: ignore[assignment]
    blocks: int = Field(10, ge=1, description="denoising blocks (NoProp's T)")
    depth: int = Field(2, ge=1, description="hidden layers of each block")


class SineNetSurrogate(_Strict):
    """A pdesolve SineNet trained on streamed one-step pairs (frame k -> frame k+1)."""

    kind: Literal["sinenet"]
    width: int = Field(16, ge=1)
    waves: int = Field(2, ge=1)
    channel_mults: tuple[int, ...] = (1, 2, 2)
    residual: bool = Field(True, description="predict frame k + net(frame k)")


SURROGATES: dict[str, type[MLPSurrogate] | type[SineNetSurrogate]] = {
    "mlp": MLPSurrogate, "noprop": NoPropSurrogate, "sinenet": SineNetSurrogate}


class BufferSpec(_Strict):
    kind: Literal["fifo", "firo", "reservoir"] = "reservoir"
    capacity: int = Field(..., ge=1, description="records held at most (the buffer's memory bound)")
    watermark: int | None = Field(None, ge=1, description="records before training starts (default: the batch size)")

    @model_validator(mode="after")
    def _below_capacity(self) -> BufferSpec:
        if self.watermark is not None and self.watermark > self.capacity:
            raise ValueError(f"watermark: expected at most capacity = {self.capacity}, got {self.watermark}")
        return self


class TrainSpec(_Strict):
    steps: int = Field(..., ge=1, description="gradient steps at most (fewer if the stream runs dry)")
    batch_size: int = Field(32, ge=1, description="records per step and server")
    optimizer: OptimizerSpec = OptimizerSpec()
    log_every: int = Field(50, ge=1)
    validate_every: int = Field(200, ge=0, description="0: at the end only")
    checkpoint_every: int = Field(500, ge=0, description="0: at the end (and on a stop) only")


class OnlineSpec(_Strict):
    servers: int = Field(1, ge=1, description="server ranks (data-parallel trainers); the other ranks are clients")
    window: int = Field(16, ge=1, description="time steps a client may have in flight (its credits)")
    max_retries: int = Field(2, ge=0, description="re-runs of a failed simulation before it is given up")
    segment_steps: int | None = Field(None, ge=1, description="time steps per simulator call (None: whole trajectory)")
    threads: int = Field(1, ge=1, description="torch threads per rank")
    audit: bool = Field(False, description="log every sample sent and received with its CRC-32 (audit/)")
    gradient_coding: GradientCodingSpec = Field(GradientCodingSpec(), description="straggler-tolerant gradients (docs/gradient_coding.md)")
    inject_delay: DelaySpec | None = Field(None, description="slow one server down (tests and benchmarks)")


class ValidationSpec(_Strict):
    trajectories: int = Field(4, ge=1, description="held-out simulations, drawn apart from the training ones")
    sampler: Literal["random", "lhs", "sobol", "uniform"] = "random"


class OfflineSpec(_Strict):
    trajectories: int = Field(32, ge=1, description="simulations written to HDF5 in offline mode")


class StudyFile(_Strict):
    """The schema of a study file."""

    name: Annotated[str, AfterValidator(check_run_name)]
    description: str = ""
    problem: str | dict[str, Any]
    simulate: dict[str, Any] = {}
    online: OnlineSpec = OnlineSpec()
    validation: ValidationSpec = ValidationSpec()
    offline: OfflineSpec = OfflineSpec()
    surrogate: dict[str, Any] = Field(..., description="kind: mlp | sinenet, and that surrogate's options")
    buffer: BufferSpec
    train: TrainSpec
    seed: int = 0
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    output: str | None = Field(None, description="run folder (default runs/<name>)")


@dataclass(frozen=True)
class Study:
    """A validated study. ``raw`` is the resolved file with the problem inlined: enough to reproduce it."""

    path: str
    name: str
    problem: Problem
    problem_raw: dict[str, Any]
    simulate: SimulateSettings
    online: OnlineSpec
    validation: ValidationSpec
    offline: OfflineSpec
    surrogate: MLPSurrogate | SineNetSurrogate
    buffer: BufferSpec
    train: TrainSpec
    optimizer_options: BaseModel
    seed: int
    device: str
    output: Path
    raw: dict[str, Any]

    @property
    def parameter_names(self) -> tuple[str, ...]:
        """The per-simulation parameters (the surrogate's inputs), sorted."""
        return tuple(sorted(self.simulate.parameters))

    @property
    def watermark(self) -> int:
        return self.buffer.watermark or min(self.train.batch_size, self.buffer.capacity)

    def digest(self) -> str:
        """A fingerprint of everything that shapes the run except its length (``train.steps``) and output."""
        data = {k: v for k, v in self.raw.items() if k not in ("output", "description")}
        data["train"] = {k: v for k, v in data.get("train", {}).items() if k != "steps"}
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_study(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Study:
    """Read, override (``key.path=value``) and validate a study file; raises ConfigError listing every error."""
    path = str(path)
    raw = apply_overrides(read_yaml(path), list(overrides), path)
    try:
        spec = StudyFile.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(path, validation_errors(err, StudyFile)) from None
    surrogate = _surrogate(path, spec.surrogate)
    errors: list[str] = []

    # the problem: a file next to the study, or inline; its own errors name it
    if isinstance(spec.problem, str):
        problem_path = Path(path).parent / spec.problem
        if not problem_path.exists():
            raise ConfigError(path, [f"problem: no such file {str(problem_path)!r} (paths are relative to the study file)"])
        problem_raw, where = read_yaml(problem_path), str(problem_path)
    else:
        problem_raw, where = dict(spec.problem), f"{path}: problem"
    cfg = load_run_config(where, data=problem_raw)
    problem = cfg.problem

    # the simulations: the study's simulate: keys over the problem's
    base = problem_raw.get("simulate") or {}
    try:
        settings = SimulateSettings.model_validate({**base, **spec.simulate})
    except ValidationError as err:
        raise ConfigError(path, validation_errors(err, SimulateSettings, prefix="simulate")) from None
    try:
        sim = select_simulator(problem, settings.simulator)
        valid = set(problem.equation.parameters) | {f"initial.{f}" for f in problem.equation.fields} | set(sim.boundary_keys(problem))
        unknown = sorted(set(settings.parameters) - valid)
        if unknown:
            errors.append(f"simulate.parameters: unknown names {unknown}; valid names for {sim.name} are {sorted(valid)}")
        settings.shape(problem.domain.space_names)
    except ValueError as err:  # no simulator for the problem, a bad resolution mapping
        errors.append(f"simulate: {err}")
    if problem.domain.time is None:
        errors.append("problem: the online study needs a time-dependent problem (a t axis in domain)")

    # the surrogate fits the simulations
    if isinstance(surrogate, MLPSurrogate) and not settings.parameters:
        errors.append("surrogate.kind: mlp maps parameters and time to the field; simulate.parameters is empty")
    if isinstance(surrogate, MLPSurrogate) and settings.initial.kind != "problem":
        errors.append(
            f"surrogate.kind: mlp cannot see random initial fields (simulate.initial.kind = {settings.initial.kind!r}); "
            "use a grid surrogate (sinenet) or parameters only"
        )
    if isinstance(surrogate, SineNetSurrogate):
        multiple = 2 ** (len(surrogate.channel_mults) - 1)
        try:
            sizes = [v for k, v in settings.shape(problem.domain.space_names).items() if k != "t"]
        except ValueError:
            sizes = []
        if any(n % multiple for n in sizes):
            errors.append(
                f"simulate.resolution: sinenet with {len(surrogate.channel_mults)} levels needs sizes that are "
                f"multiples of {multiple}, got {sizes}"
            )

    # the training rule, the layout
    opt = spec.train.optimizer
    optimizer_options, optimizer_errors = validate_optimizer(opt)
    errors += optimizer_errors
    if spec.online.servers > 1 and opt.name in ("lbfgs", "adam_lbfgs"):
        errors.append(
            f"train.optimizer.name: {opt.name!r} runs line searches on each server's own batch, which would "
            f"desynchronize {spec.online.servers} data-parallel servers; use adam or adamw, or online.servers: 1"
        )
    errors += _coding_errors(spec.online, opt.name)
    if spec.online.segment_steps is not None and spec.online.segment_steps > settings.steps:
        errors.append(f"online.segment_steps: expected at most simulate.steps = {settings.steps}, got {spec.online.segment_steps}")
    if errors:
        raise ConfigError(path, errors)

    resolved = {**raw, "problem": problem_raw, "simulate": json.loads(settings.model_dump_json())}
    output = Path(spec.output) if spec.output else Path("runs") / spec.name
    return Study(
        path=path, name=spec.name, problem=problem, problem_raw=problem_raw, simulate=settings, online=spec.online,
        validation=spec.validation, offline=spec.offline, surrogate=surrogate, buffer=spec.buffer, train=spec.train,
        optimizer_options=optimizer_options, seed=spec.seed, device=spec.device, output=output, raw=resolved,  # type: ignore[arg-type]
    )


CODED_RULES = ("adam", "adamw")  # rules that take one backward pass of task.loss() per step and read the loss after it


def _coding_errors(online: OnlineSpec, rule: str) -> list[str]:
    """Refusals of online.gradient_coding and online.inject_delay that depend on the layout and the rule."""
    errors, coding, n = [], online.gradient_coding, online.servers
    if coding.scheme != "none":
        if n == 1:
            errors.append(f"online.gradient_coding.scheme: {coding.scheme!r} codes the gradients of several servers; "
                          "set online.servers >= 2 or scheme: none")
        elif coding.stragglers >= n:
            errors.append(f"online.gradient_coding.stragglers: expected fewer than online.servers = {n} "
                          f"(the full gradient decodes from n - s servers), got {coding.stragglers}")
        if rule not in CODED_RULES:
            errors.append(f"online.gradient_coding.scheme: {coding.scheme!r} needs a backprop rule that takes one backward pass "
                          f"per step ({', '.join(CODED_RULES)}), got train.optimizer.name = {rule!r}")
    if online.inject_delay is not None and online.inject_delay.server >= n:
        errors.append(f"online.inject_delay.server: expected a server index below online.servers = {n}, got {online.inject_delay.server}")
    return errors


def _surrogate(path: str, data: dict[str, Any]) -> MLPSurrogate | SineNetSurrogate:
    kind = data.get("kind")
    if kind not in SURROGATES:
        raise ConfigError(path, [unknown_name("surrogate.kind", "surrogate", str(kind), SURROGATES)])
    try:
        return SURROGATES[kind].model_validate(data)
    except ValidationError as err:
        raise ConfigError(path, validation_errors(err, SURROGATES[kind], prefix="surrogate")) from None


def study_text(study: Study) -> str:
    """The resolved study as YAML (the run folder's ``config.yaml``)."""
    return yaml.safe_dump(study.raw, sort_keys=False)

