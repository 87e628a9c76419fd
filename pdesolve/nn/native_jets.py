"""The native loops of the fused jet pass (``native/jet_tanh.c``): built with the system's C compiler at first use,
cached, loaded with ctypes; the pass falls back to its torch kernels where they cannot be built.

Eager PyTorch runs each elementwise step of a layer's chain rule as its own kernel (a dozen per layer forward, more
backward), each a pass over the stacked rows plus the per-op dispatch cost; the C loops do a layer in one pass. On the
Burgers benchmark's rows (``[4, 2540, 20]``) one tanh layer took 125 us forward and 104 us backward against 592 and 1742
for the torch kernels (measured side by side, quiet CPU). Float32 tanh layers of jets up to second order only: other
activations, orders and dtypes keep the torch kernels.

The library is built once per source, compiler and CPU capability (torch's ``get_cpu_capability``: the vector flags
follow it, so a cache shared by machines of different CPUs keeps one build per kind) into ``~/.cache/pdesolve/native``,
atomically (a temporary file renamed into place).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from functools import cache
from importlib import resources
from pathlib import Path

import torch
from torch import Tensor

log = logging.getLogger(__name__)

MAX_WIDTH = 1024
"""The widest layer the C loops take (their per-point scratch arrays)."""

VECTOR_FLAGS = {"AVX512": ["-mavx512f", "-mavx512dq", "-mavx2", "-mfma"], "AVX2": ["-mavx2", "-mfma"]}
"""torch's CPU capability -> the compiler's vector flags (others: the compiler's default target)."""


def _compiler() -> str | None:
    return next((found for name in ("cc", "gcc", "clang") if (found := shutil.which(name))), None)


def _build(source: str, compiler: str, flags: list[str], target: Path) -> None:
    """Compile ``source`` into the shared library ``target`` (written to a temporary name, then renamed)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        src, lib = Path(tmp) / "jet_tanh.c", Path(tmp) / target.name
        src.write_text(source)
        subprocess.run([compiler, "-O3", "-ffast-math", "-fPIC", "-shared", *flags, "-o", str(lib), str(src), "-lm"],
                       check=True, capture_output=True, text=True, timeout=120)
        os.replace(lib, target)


@cache
def library() -> ctypes.CDLL | None:
    """The loaded native loops, built on first use; None (logged once) where no C compiler builds them."""
    source = resources.files("pdesolve.nn.native").joinpath("jet_tanh.c").read_text()
    compiler = _compiler()
    if compiler is None:
        log.info("no C compiler found: the fused jet pass uses its torch kernels")
        return None
    capability = torch.backends.cpu.get_cpu_capability()
    flags = VECTOR_FLAGS.get(capability, [])
    key = hashlib.sha256("\0".join([source, compiler, capability, *flags]).encode()).hexdigest()[:16]
    target = Path.home() / ".cache" / "pdesolve" / "native" / f"jet_tanh-{key}.so"
    try:
        if not target.exists():
            _build(source, compiler, flags, target)
        lib = ctypes.CDLL(str(target))
    except subprocess.CalledProcessError as err:
        return _unbuilt(err.stderr or err)
    except (OSError, subprocess.TimeoutExpired) as err:
        return _unbuilt(err)
    ints = [ctypes.c_int] * 4 + [ctypes.c_long, ctypes.c_int]
    lib.jet_tanh_forward.argtypes = ints + [ctypes.c_void_p] * 3
    lib.jet_tanh_backward.argtypes = ints + [ctypes.c_void_p] * 4
    lib.jet_tanh_forward.restype = lib.jet_tanh_backward.restype = None
    return lib


def _unbuilt(reason: object) -> None:
    log.info("the native jet loops were not built (%s): the fused jet pass uses its torch kernels", reason)


def takes(rows: Tensor, act: str, order: int, widths: list[int]) -> bool:
    """Whether the native loops compute a network's layers from its input rows: float32 on the CPU, tanh, order <= 2,
    every layer at most :data:`MAX_WIDTH` wide."""
    return (act == "tanh" and order <= 2 and rows.dtype == torch.float32 and rows.device.type == "cpu"
            and max(widths) <= MAX_WIDTH)


def tanh_forward(lib: ctypes.CDLL, layout, z: Tensor, bias: Tensor) -> Tensor:
    """The output rows of tanh on the pre-activation rows ``z`` ``[R, N, C]`` (contiguous; its value row gets
    ``bias`` added in place, as the torch kernels do)."""
    y, bias = torch.empty_like(z), bias.detach().contiguous()  # held here: the C call reads their memory
    lib.jet_tanh_forward(layout.d, layout.hess_start, layout.k, layout.order, z.shape[1], z.shape[2], z.data_ptr(),
                         bias.data_ptr(), y.data_ptr())
    return y


def tanh_backward(lib: ctypes.CDLL, layout, z: Tensor, value: Tensor, grad: Tensor) -> Tensor:
    """The gradient of the pre-activation rows ``z`` from the gradient ``grad`` of the output rows and tanh's value
    row ``value`` ``[N, C]``."""
    grad, value = grad.contiguous(), value.contiguous()
    gz = torch.empty_like(z)
    lib.jet_tanh_backward(layout.d, layout.hess_start, layout.k, layout.order, z.shape[1], z.shape[2], z.data_ptr(),
                          value.data_ptr(), grad.data_ptr(), gz.data_ptr())
    return gz
