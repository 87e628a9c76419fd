"""Training rules by name: ``OPTIMIZERS[name] = (rule class, options model)``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from .auglocal import AugLocal, AugLocalOptions
from .auglocal_jets import AugLocalJets, AugLocalJetsOptions
from .backprop import LBFGS, Adam, AdamLBFGS, AdamLBFGSOptions, AdamOptions, AdamW, LBFGSOptions
from .base import LossFn, Optimizer
from .counter_current import CounterCurrent, CounterCurrentOptions
from .forward_only import ForwardOnly, ForwardOnlyOptions
from .man import MAN, MANOptions
from .model_free import ModelFree, ModelFreeOptions
from .noprop import NoProp, NoPropOptions
from .synthetic import BPTT, BPTTOptions, SyntheticGradients, SyntheticGradientsOptions
from .synthetic_jets import SyntheticGradientsJets, SyntheticGradientsJetsOptions
from .target_projection import TargetProjection, TargetProjectionOptions

OPTIMIZERS: dict[str, tuple[type[Optimizer], type[BaseModel]]] = {
    "adam": (Adam, AdamOptions),
    "adamw": (AdamW, AdamOptions),
    "lbfgs": (LBFGS, LBFGSOptions),
    "adam_lbfgs": (AdamLBFGS, AdamLBFGSOptions),
    "auglocal": (AugLocal, AugLocalOptions),
    "auglocal_jets": (AugLocalJets, AugLocalJetsOptions),
    "man": (MAN, MANOptions),
    "noprop": (NoProp, NoPropOptions),
    "model_free": (ModelFree, ModelFreeOptions),
    "forward_only": (ForwardOnly, ForwardOnlyOptions),
    "counter_current": (CounterCurrent, CounterCurrentOptions),
    "target_projection": (TargetProjection, TargetProjectionOptions),
    "synthetic_gradients": (SyntheticGradients, SyntheticGradientsOptions),
    "synthetic_gradients_jets": (SyntheticGradientsJets, SyntheticGradientsJetsOptions),
    "bptt": (BPTT, BPTTOptions),
}


def make_optimizer(name: str, options: BaseModel | dict[str, Any], total_steps: int) -> Optimizer:
    """The rule called ``name`` with its options (a dict is validated by the rule's options model)."""
    if name not in OPTIMIZERS:
        raise KeyError(f"unknown optimizer {name!r}; valid optimizers are {sorted(OPTIMIZERS)}")
    cls, model = OPTIMIZERS[name]
    opts = options if isinstance(options, model) else model.model_validate(options)
    return cls(opts, total_steps)  # type: ignore[call-arg]


__all__ = ["OPTIMIZERS", "LossFn", "Optimizer", "make_optimizer"]
