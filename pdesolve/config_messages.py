"""Error messages for configuration files: one line per mistake, naming the key path and what was expected.

Pydantic's validation errors become ``file: key.path: message`` lines; unknown keys and names come with a
did-you-mean and the list of valid ones. Shared by :mod:`pdesolve.config` and the online trainer's study files.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError


def unknown_name(path: str, what: str, name: str, valid: Mapping[str, Any]) -> str:
    return f"{path}: unknown {what} {name!r}; valid {what}s are {sorted(valid)}" + _did_you_mean(name, valid)


def _did_you_mean(name: str, valid: Mapping[str, Any] | Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


_UNION_MARKERS = ("tuple[", "function-", "AxisSpec", "ReferenceSpec", "RangeSpec", "UnknownSpec", "float", "str")


def _loc(loc: Sequence[Any], prefix: str = "") -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(_UNION_MARKERS):
            continue  # pydantic's union-branch markers are noise for a user
        else:
            out += ("." if out else "") + str(part)
    return out


def _fields_at(model: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    """Known keys of the model reached by following ``loc`` (best effort, for did-you-mean)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        named = [m for m in _models_in(current) if m.__name__ == part]  # a tagged union's branch, named by its class
        if named:
            current = named[0]
            continue
        found = _model_in(current)
        if found is not None and part in found.model_fields:
            current = found.model_fields[part].annotation
    found = _model_in(current)
    return list(found.model_fields) if found is not None else []


def _models_in(ann: Any) -> list[type[BaseModel]]:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return [ann]
    return [m for arg in (get_args(ann) if get_origin(ann) is not None else ()) for m in _models_in(arg)]


def _model_in(ann: Any) -> Any:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in get_args(ann) if get_origin(ann) is not None else ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def validation_errors(err: ValidationError, model: type[BaseModel], prefix: str = "") -> list[str]:
    out, seen = [], set()
    for e in err.errors():
        where = _loc(e["loc"], prefix)
        if e["type"] == "extra_forbidden":
            key = str(e["loc"][-1])
            fields = _fields_at(model, e["loc"][:-1])
            msg = f"{where}: unknown key {key!r}" + (_did_you_mean(key, fields) if fields else "")
            if fields:
                msg += f"; valid keys are {sorted(fields)}"
        elif e["type"] == "missing":
            msg = f"{where}: missing required key"
        else:
            got = e.get("input")
            text = e["msg"].removeprefix("Value error, ")  # pydantic's prefix for a validator's own message
            shown = repr(got) if len(repr(got)) <= 80 else repr(got)[:77] + "..."
            msg = f"{where}: {text} (got {shown})" if not isinstance(got, (dict, list)) else f"{where}: {text}"
        if msg not in seen:
            seen.add(msg)
            out.append(msg)
    return out
