"""JAX curvature operators on several devices and several processes equal the single-device ones.

Each check runs in fresh interpreters: XLA's host device count is fixed at start-up
(``--xla_force_host_platform_device_count=2``), and ``jax.distributed`` takes a whole
process. The 2-process run talks over localhost (gloo CPU collectives).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("jax")

PROBLEM = """
import jax, jax.numpy as jnp, numpy as np
from specop.curvature.jax import FisherOperator, GGNOperator, HessianOperator
k = jax.random.PRNGKey(0)
params = {"W": jax.random.normal(k, (5, 3)), "b": 0.1 * jnp.ones(3)}
model = lambda p, x: jnp.tanh(x @ p["W"] + p["b"])
ce = lambda o, y: -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(o), y[:, None], axis=1))
X = np.asarray(jax.random.normal(jax.random.fold_in(k, 1), (16, 5))); y = np.arange(16) % 3
loss = lambda p, b: ce(model(p, b[0]), b[1])
V = jax.random.normal(jax.random.fold_in(k, 2), (18, 4))
BUILDERS = {
    "hessian": lambda data, **kw: HessianOperator(loss, params, data, **kw),
    "ggn": lambda data, **kw: GGNOperator(model, "cross_entropy", params, data, **kw),
    "fisher-mc": lambda data, **kw: FisherOperator(model, "cross_entropy", params, data, mc_samples=3, seed=2, **kw),
}
def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max() / np.abs(b).max())
"""

TWO_DEVICES = PROBLEM + """
assert jax.config.jax_enable_x64 and len(jax.devices()) == 2, jax.devices()
for name, build in BUILDERS.items():
    for kw in ({}, {"batch_size": 6}):  # one batch; 6 + 6 + 4 (short last batch)
        one, two = build((X, y), **kw), build((X, y), devices=jax.devices(), **kw)
        assert len(two.devices) == 2 and len(one.devices) == 1, (two.devices, one.devices)
        for b in two.batches:  # every input array is split over both devices, half each
            for a in b:
                assert len(a.sharding.device_set) == 2 and not a.sharding.is_fully_replicated, a.sharding
                assert {s.data.shape[0] for s in a.addressable_shards} == {a.shape[0] // 2}
        assert len(two.flat.sharding.device_set) == 2 and two.flat.sharding.is_fully_replicated
        ref, got = one.matmat(V), two.matmat(V)
        assert len(got.sharding.device_set) == 2, got.sharding
        err = max(rel(got, ref), rel(two.matvec(V[:, 0]), ref[:, 0]), rel(two.gradient(), one.gradient()))
        assert err <= 1e-12, (name, kw, err)
        print(name, kw, "err", err)
print("OK")
"""

TWO_PROCESSES = PROBLEM + """
import specop
assert jax.process_count() == 2 and len(jax.devices()) == 2 and len(jax.local_devices()) == 1
pid = jax.process_index()
mine = slice(8 * pid, 8 * pid + 8)  # each process passes its own half of the data
for name, build in BUILDERS.items():
    one, two = build((X, y)), build((X[mine], y[mine]), devices=jax.devices())
    assert two.num_samples == 16 and two.batches[0][0].shape == (16, 5)
    err = max(rel(two.matmat(V), one.matmat(V)), rel(two.gradient(), one.gradient()))
    assert err <= 1e-12, (name, err)
    w2, w1 = specop.eigsh(two, k=2, seed=0).eigenvalues, specop.eigsh(one, k=2, seed=0).eigenvalues
    assert np.abs(w2 - w1).max() <= 1e-10 * np.abs(w1).max(), (w2, w1)
    print(pid, name, "err", err)
print("OK", pid)
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    return dict(env, JAX_ENABLE_X64="1", JAX_PLATFORMS="cpu", **extra)


def test_sharded_operator_equals_single_device_on_two_devices():
    env = _env(XLA_FLAGS="--xla_force_host_platform_device_count=2")
    out = subprocess.run([sys.executable, "-c", TWO_DEVICES], capture_output=True, text=True, timeout=240, env=env)
    assert out.returncode == 0 and out.stdout.strip().endswith("OK"), out.stdout + out.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return int(s.getsockname()[1])


def test_two_processes_with_jax_distributed_equal_one_process():
    port = _free_port()
    procs = []
    for pid in range(2):
        code = textwrap.dedent(f"""
            import jax
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
            jax.distributed.initialize(coordinator_address="localhost:{port}", num_processes=2, process_id={pid})
        """) + TWO_PROCESSES
        procs.append(subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, env=_env()))
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=240))
        except subprocess.TimeoutExpired:
            p.kill()
            outs.append(p.communicate())
    for pid, (p, (stdout, stderr)) in enumerate(zip(procs, outs, strict=True)):
        assert p.returncode == 0 and f"OK {pid}" in stdout, stdout + stderr
