"""The expression grammar: correct values in numpy and torch, and hostile input refused."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pdesolve.expr import Expression, ExpressionError, constant


def test_values_match_numpy_and_torch():
    e = Expression.parse("exp(-(x-0.3)**2/0.01) - sin(pi*x)*t + u0 + 0.1*cos(2*pi*y)", ("t", "x", "y"), {"u0": 2.0})
    x = np.linspace(0, 1, 7)
    expected = np.exp(-((x - 0.3) ** 2) / 0.01) - np.sin(np.pi * x) * 0.5 + 2.0 + 0.1 * np.cos(2 * np.pi * 0.25)
    np.testing.assert_allclose(e.numpy(t=0.5, x=x, y=0.25), expected, rtol=1e-14)
    got = e.torch(t=torch.tensor(0.5, dtype=torch.float64), x=torch.tensor(x), y=torch.tensor(0.25, dtype=torch.float64))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-14)


def test_constant_expressions_and_caret():
    assert constant("0.01/pi") == pytest.approx(0.01 / math.pi)
    assert constant("2^3") == 8.0
    assert constant(3) == 3.0
    assert not Expression.parse("x*0 + 1", ("x",)).is_constant()


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("__import__('os').system('x')", "not allowed"),
        ("x.__class__", "Attribute"),
        ("[x for x in ()]", "ListComp"),
        ("lambda: 1", "Lambda"),
        ("x[0]", "Subscript"),
        ("open('f')", "not allowed"),
        ("sin(x, y)", "exactly one"),
        ("sin(x=1)", "exactly one"),
        ("z + 1", "unknown name 'z'"),
        ("'text'", "only numbers"),
        ("x if x else 1", "IfExp"),
        ("x and 1", "BoolOp"),
        ("x < 1", "Compare"),
        ("x +", "cannot parse"),
        ("", "empty"),
        ("x % 2", "not allowed"),
    ],
)
def test_hostile_or_malformed_input_is_refused(text, fragment):
    with pytest.raises(ExpressionError, match=None) as err:
        Expression.parse(text, ("x",))
    assert fragment in str(err.value)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_arbitrary_text_never_escapes_the_grammar(text):
    """Any string either parses into an allowed tree or raises ExpressionError, never anything else."""
    try:
        e = Expression.parse(text, ("x",))
    except ExpressionError:
        return
    assert e.free_names() <= {"x", "pi", "e"}
