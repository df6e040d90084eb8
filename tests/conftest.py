"""Shared fixtures: the ``backend`` fixture runs a test body once per installed backend.

The hypothesis profile ``ci`` (default) runs at least 200 derandomized examples per
property, so CI is reproducible; ``HYPOTHESIS_PROFILE=dev`` runs 25 for quick local work.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from specop import backends

settings.register_profile(
    "ci", max_examples=200, derandomize=True, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "dev", max_examples=25, derandomize=True, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

try:  # tests compare float64 on every backend: JAX needs x64 switched on
    import jax

    jax.config.update("jax_enable_x64", True)
except ImportError:  # jax not installed: its parametrization is simply absent
    pass

BACKEND_NAMES = backends.available_backends()


@dataclass(frozen=True)
class Backend:
    """One installed backend as seen by a test: its namespace and converters."""

    name: str
    xp: Any
    device: Any = None

    def asarray(self, a: Any, dtype: str | None = None) -> Any:
        """A host array ``a`` as an array of this backend (dtype name optional)."""
        a = np.asarray(a)
        dt = None if dtype is None else getattr(self.xp, dtype)
        if dt is None and a.dtype.kind == "f":
            dt = getattr(self.xp, a.dtype.name)
        return backends.from_numpy(a, self.xp, self.device, dt)

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(backends.to_numpy(x))


def _make(name: str) -> Backend:
    xp = backends.namespace(name)
    device = None
    if name == "torch":
        import torch

        device = torch.device("cpu")
    if name == "cupy":
        device = backends.device_of(xp.zeros(1))
    return Backend(name, xp, device)


_PARAMS = [_make(n) for n in BACKEND_NAMES]
try:  # torch on CUDA is a backend of its own when a GPU is present
    import torch

    torch.set_num_threads(1)  # the suite runs tiny problems: threads only add contention on 2 cores

    if torch.cuda.is_available():
        _PARAMS.append(Backend("torch-cuda", backends.namespace("torch"), torch.device("cuda")))
except ImportError:
    pass


@pytest.fixture(params=_PARAMS, ids=[b.name for b in _PARAMS])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Every installed backend (numpy, torch, jax, array-api-strict; cupy/CUDA with a GPU)."""
    return request.param
