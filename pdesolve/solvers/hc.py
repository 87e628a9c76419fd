"""``solver: hc`` (one global hard constraint) and ``solver: moe_hc`` (K experts); see :mod:`.hard_constrained`."""

from __future__ import annotations

from .hard_constrained import HardConstrainedSolver
from .hc_options import HCOptions, MoEHCOptions


class HC(HardConstrainedSolver):
    """``solver: hc`` — one expert over the whole space-time box; see :class:`HCOptions`."""

    name = "hc"
    Options = HCOptions


class MoEHC(HardConstrainedSolver):
    """``solver: moe_hc`` — ``experts`` boxes per axis, solved as one batch; see :class:`MoEHCOptions`."""

    name = "moe_hc"
    Options = MoEHCOptions

    def expert_counts(self) -> dict[str, int]:
        return dict(self.options.experts)  # type: ignore[attr-defined]
