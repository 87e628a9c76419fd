"""Options of the hard-constraint solvers ``hc`` and ``moe_hc`` (``solvers.hc`` / ``solvers.moe_hc`` in YAML)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ...nn.mlp import Activation
from ...sampling import Sampler
from ...simulate.family import DesignSampler
from ...simulate.settings import InitialSampler, ParameterRange
from ..pinn_options import NETWORK_HELP, Network
from ..pinn_training import CausalOptions, CurriculumOptions, FourierOptions, RWFOptions


class FamilyOptions(BaseModel):
    """``train`` / ``test`` initial conditions of the family setting (see :mod:`.family`).

    ``initial``, ``parameters``, ``sampler`` and ``seed`` are the draws, as in a ``simulate:`` section. Give
    ``initial`` or ``parameters`` to draw the family's own initial conditions (``sampler`` random and
    ``seed`` 1 unless given); leave both out to draw them as the problem's ``simulate:`` section declares
    (``sampler`` and ``seed``, when given, replace that section's).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    train: int = Field(32, gt=0, description="initial conditions to train on")
    test: int = Field(8, ge=0, description="held-out initial conditions, evaluated against the simulator")
    batch: int = Field(4, gt=0, description="initial conditions per training step")
    sensors: int = Field(32, ge=2, description="points per space axis where the backbone reads the initial condition")
    resolution: int = Field(257, ge=2, description="points per space axis the random initial fields are drawn on")
    initial: InitialSampler | None = Field(None, description="the random initial field (none: the simulate: section's, "
                                           "or the problem's own initial condition when parameters are given)")
    parameters: dict[str, ParameterRange] | None = Field(None, description="initial.<field>: [low, high] constants "
                                                         "(none: the simulate: section's, unless initial is given)")
    sampler: DesignSampler | None = Field(None, description="the design of the parameter draws (none: the simulate: "
                                          "section's, or random)")
    seed: int | None = Field(None, description="the draw; train and test come from one stream (none: the simulate: "
                             "section's seed, or 1)")


class HCPointsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    solve: int = Field(512, gt=0, description="points per expert where the inner solve fits the PDE (fixed)")
    loss: int = Field(512, gt=0, description="fresh points per expert for the backbone's loss, each step")
    initial: int = Field(12, ge=0, description="initial-condition constraint points (exact, shared by all experts)")
    boundary: int = Field(8, ge=0, description="constraint points per boundary condition (exact, shared by all experts)")
    sampler: Sampler = "lhs"


class NonlinearOptions(BaseModel):
    """The Levenberg-Marquardt solve for nonlinear equations."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_iter: int = Field(30, gt=0)
    tol: float = Field(1e-9, ge=0, description="xtol and gtol of the iterations")
    u_floor: float | None = Field(None, description="read u as max(u, u_floor) in the residual: for equations where u "
                                  "enters only through a coefficient with a fractional power (diffusion-sorption's "
                                  "retardation), which is undefined below 0")


class HCOptions(BaseModel):
    """Network: ``width``, ``depth``, ``activation``, ``basis`` (N). Advanced: the rest.

    The PINN's training methods that fit this backbone and loss are options here too, with the PINN's option
    models and implementations (:mod:`pdesolve.solvers.pinn_options`, :mod:`pdesolve.solvers.pinn_training`):

    - ``network``: the backbone's architecture (the PINN's :data:`~pdesolve.solvers.pinn_options.PINN_NETWORKS`;
      every one runs on jets; ``modified_mlp``: Wang, Teng, Perdikaris 2021; ``piratenet``: Wang, Li, Chen,
      Perdikaris 2024; ``parallel``: Bermeitinger et al. 2023);
    - ``fourier_features``: random Fourier features of the non-periodic coordinates before the backbone (Tancik
      et al. 2020; Wang, Wang, Perdikaris 2021); the family setting's sensor values enter beside them, unembedded;
    - ``weight_factorization``: every dense layer of the backbone ``W = diag(exp(s)) V`` (Wang, Wang, Seidman,
      Perdikaris 2022);
    - ``causal``: the residual term of the loss per time chunk of the loss points, weighted by
      ``exp(-eps sum_{k<i} L_k)`` (Wang, Sankaran, Perdikaris, "Respecting causality is all you need for training
      physics-informed neural networks", 2022); problems with time only;
    - ``curriculum``: an equation parameter ramped from an easy value to the problem's (Krishnapriyan et al. 2021);
      the inner solves and the loss both use the ramped value, and predictions the value of the last step taken.

    Left out: time marching (the experts of ``moe_hc`` already tile time, each time slab starting from the
    previous one's solution) and adaptive loss weights (with exact conditions the loss has one term; with
    ``constraint_weight`` the conditions' weight is the solve's own row weight rho, which the loss shares so that
    the backbone is trained for the solve it gets).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    width: int = Field(64, gt=0)
    depth: int = Field(3, gt=0)
    activation: Activation = "tanh"
    network: Network = Field("mlp", description="the backbone: " + NETWORK_HELP)
    basis: int = Field(48, gt=0, description="N basis functions (the last layer's outputs), at most width")
    periodic_modes: int = Field(1, ge=1)
    fourier_features: FourierOptions | None = Field(None, description="random Fourier features of the non-periodic coordinates")
    weight_factorization: RWFOptions | None = Field(None, description="random weight factorization of every dense layer")
    causal: CausalOptions | None = Field(None, description="weight the residual by time chunks of the loss points, respecting "
                                         "causality (problems with time)")
    curriculum: CurriculumOptions | None = Field(None, description="ramp an equation parameter from an easy value (solves and loss)")
    dtype: Literal["float32", "float64"] = Field("float64", description="float32 bases lose the exact conditions to cancellation in b . w")
    tikhonov: float = Field(1e-9, ge=0, description="lambda relative to the mean diagonal of the normal matrix")
    constraint_weight: float | None = Field(None, gt=0, description="None: initial/boundary conditions exact (KKT); rho: "
                                            "weighted rows, rho times the mean square violation beside the mean square residual")
    bounds: tuple[float, float] | None = Field(None, description="lo <= u <= hi at the solve points (cvxpylayers)")
    points: HCPointsOptions = HCPointsOptions()
    nonlinear: NonlinearOptions = NonlinearOptions()
    soft: bool = Field(False, description="the soft-constraint baseline on the same backbone: the weights w are trained with it "
                       "(residual plus constraint_weight (default 1) times the condition violations) instead of solved for")
    family: FamilyOptions | None = Field(None, description="learn over drawn initial conditions (backbone input: the "
                                         "initial condition at sensor points); see pdesolve.solvers.hc.family")
    distributed: bool = Field(False, description="spread each batch of solves (the experts of a time slab, times the family's "
                              "initial conditions) over the ranks of a torchrun launch; rank 0 writes the run folder")


class MoEHCOptions(HCOptions):
    experts: dict[str, int] = Field(default_factory=lambda: {"t": 2, "x": 2},
                                    description="experts along each axis (t and space axes); their product is K")
