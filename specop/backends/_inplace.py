"""Level-1 vector updates in place where the backend allows (the host fast paths of the recurrences).

Each returns its result; the caller owns the array it updates and must use the return value,
since backends without in-place updates (JAX, array-api-strict) return a new array.
"""

from __future__ import annotations

import math
from typing import Any

import array_api_compat as aac
import numpy as np

__all__ = ["axpy", "scale", "vdot", "workspace", "xpay"]

# numpy arrays: every level-1 operation below stays in numpy (its own OpenBLAS build) rather than
# scipy.linalg.blas (scipy bundles a second OpenBLAS with its own thread pool). The recurrences also
# call numpy's matmul and eigh; with two pools each one's idle threads spin for a while after a
# call and take the cores from the other: eigsh on the 30^3 Laplacian (scipy.sparse) took 6.7 s
# with the two pools and 0.5-0.8 s with numpy's alone, on 2 cores.


def workspace(x: Any) -> Any:
    """A scratch vector like ``x`` for repeated :func:`axpy` calls (numpy; ``None`` elsewhere).

    A fresh temporary of a large vector is a new memory mapping whose pages fault in on
    first touch; reusing one buffer keeps the numpy update at memory speed.
    """
    return np.empty_like(x) if aac.is_numpy_array(x) else None


def axpy(y: Any, a: Any, x: Any, work: Any = None) -> Any:
    """``y + a * x`` with ``a`` a 0-d array or float; updates ``y`` in place where the backend allows.

    numpy: ``y += a * x`` through ``work`` (see :func:`workspace`) when given; torch:
    ``addcmul_`` (no host read of ``a``, so no device synchronisation); others:
    ``y + a * x``. The caller must own ``y`` (it may be overwritten) and use the return value.
    """
    if (type(y) is np.ndarray or aac.is_numpy_array(y)) and y.flags.writeable and y.dtype == x.dtype:
        if work is None:
            y += float(a) * x
        else:
            np.multiply(x, float(a), out=work)
            y += work
        return y
    if aac.is_torch_array(y) and not y.requires_grad:
        a_t = a if aac.is_torch_array(a) else y.new_tensor(float(a))
        return y.addcmul_(x, a_t.to(y.dtype))
    return y + a * x


def vdot(u: Any, v: Any) -> Any:
    """``u . v`` of two vectors as a 0-d array (numpy: a numpy scalar)."""
    return u @ v


def scale(x: Any, c: Any) -> Any:
    """``x / c`` for a 0-d array or float ``c``, in place where the backend allows (caller owns ``x``)."""
    if (type(x) is np.ndarray or aac.is_numpy_array(x)) and x.flags.writeable:
        inv = 1.0 / float(c)
        if math.isfinite(inv):
            x *= inv
        else:  # a subnormal c: its reciprocal overflows, the quotient does not
            x /= float(c)
        return x
    if aac.is_torch_array(x) and not x.requires_grad:
        return x.div_(c)
    return x / c


def xpay(y: Any, a: Any, x: Any) -> Any:
    """``x + a * y`` with ``a`` a 0-d array or float, into ``y``'s storage where the backend allows.

    The update of a search direction (``p = z + beta p``): numpy ``y *= a; y += x``, torch
    ``mul_``/``add_``, others ``x + a * y``. The caller must own ``y`` and use the return value.
    """
    if (type(y) is np.ndarray or aac.is_numpy_array(y)) and y.flags.writeable and y.dtype == x.dtype:
        y *= float(a)
        y += x
        return y
    if aac.is_torch_array(y) and not y.requires_grad:
        return y.mul_(a).add_(x)
    return x + a * y
