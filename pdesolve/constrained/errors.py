"""The error for pieces that do not fit: the layer cannot do what the problem asks with what it was given."""

from pdesolve.errors import UserError


class ConstraintSetupError(UserError):
    """A residual without a Jacobian path, inequalities without cvxpylayers, ...: the message says what to change."""
