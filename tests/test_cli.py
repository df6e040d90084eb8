"""The ``specop`` command: outputs, user factories, one-line errors, checkpoint resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from specop.cli import main  # noqa: E402
from specop.cli.jobs import count_outliers  # noqa: E402

TORCH_FACTORY = textwrap.dedent("""
    import torch

    def make():
        gen = torch.Generator().manual_seed(0)
        X = torch.randn(64, 5, generator=gen, dtype=torch.float64)
        y = torch.randint(0, 3, (64,), generator=gen)
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)).double()
        return model, torch.nn.CrossEntropyLoss(), (X, y)

    def wrong():
        return 42, "not a loss"
""")

JAX_FACTORY = textwrap.dedent("""
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)

    def make():
        k1, k2 = jax.random.split(jax.random.PRNGKey(0))
        X = jax.random.normal(k1, (40, 4))
        y = jax.random.normal(k2, (40, 2))
        params = {"w": 0.3 * jnp.ones((4, 2)), "b": jnp.zeros(2)}
        model_fn = lambda p, x: jnp.tanh(x @ p["w"] + p["b"])
        loss_fn = lambda out, t: jnp.mean((out - t) ** 2)
        return loss_fn, params, (X, y), model_fn
""")


@pytest.fixture
def factory_dir(tmp_path, monkeypatch):
    (tmp_path / "userfactory.py").write_text(TORCH_FACTORY)
    (tmp_path / "userjax.py").write_text(JAX_FACTORY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _dense_hessian(tmp_path):
    sys.path.insert(0, str(tmp_path))
    import userfactory

    model, loss_fn, (X, y) = userfactory.make()
    params = dict(model.named_parameters())
    names = list(params)
    flat = torch.cat([p.detach().reshape(-1) for p in params.values()])

    def loss(f):
        out, i = {}, 0
        for n in names:
            k = params[n].numel()
            out[n] = f[i:i + k].reshape(params[n].shape)
            i += k
        return loss_fn(torch.func.functional_call(model, out, (X,)), y)

    return torch.autograd.functional.hessian(loss, flat).numpy()


def test_top_on_user_torch_factory_matches_dense(factory_dir):
    assert main(["top", "--model", "userfactory:make", "--k", "3", "--quiet", "--output", "top.json"]) == 0
    doc = json.loads((factory_dir / "top.json").read_text())
    want = np.sort(np.linalg.eigvalsh(_dense_hessian(factory_dir)))[::-1][:3]
    np.testing.assert_allclose(doc["top"]["eigenvalues"], want, rtol=1e-8, atol=1e-10)
    assert doc["settings"]["k"] == 3 and doc["model"]["backend"] == "torch"


def test_report_writes_json_and_png(factory_dir):
    args = ["--model", "userfactory.py:make", "--k", "4", "--probes", "2", "--steps", "20", "--quiet"]
    assert main([*args, "--output", "out/r.json"]) == 0
    doc = json.loads((factory_dir / "out/r.json").read_text())
    assert (factory_dir / "out/r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    H = _dense_hessian(factory_dir)
    assert abs(doc["hessian"]["top"]["eigenvalues"][0] - np.linalg.eigvalsh(H)[-1]) < 1e-8
    assert {"seed", "probes", "steps", "k"} <= set(doc["settings"]) and "torch" in doc["versions"]
    assert 0 <= doc["residual"]["ratio"] and doc["ggn"]["density"]["support"][0] > -1e-8  # G is PSD


def test_jax_factory(factory_dir):
    jax_curv = pytest.importorskip("specop.curvature.jax")
    if not hasattr(jax_curv, "HessianOperator"):
        pytest.skip("specop.curvature.jax has no HessianOperator yet")
    assert main(["top", "--model", "userjax:make", "--backend", "jax", "--k", "2", "--quiet",
                 "--output", "j.json"]) == 0
    doc = json.loads((factory_dir / "j.json").read_text())
    assert doc["model"]["backend"] == "jax" and len(doc["top"]["eigenvalues"]) == 2


@pytest.mark.parametrize("argv, fragment", [
    (["top", "--k", "zero"], "--k"),
    (["density", "--method", "lanczos"], "--method"),
    (["top", "--model", "nocolon"], "--model"),
    (["top", "--model", "no_such_module_xyz:f"], "cannot import"),
    (["top", "--model", "userfactory:missing"], "no callable"),
    (["top", "--model", "userfactory:wrong", "--backend", "torch"], "(model, loss_fn, data)"),
])
def test_bad_arguments_one_line_exit_2(factory_dir, capsys, argv, fragment):
    with pytest.raises(SystemExit) as exc_info:
        code = main([*argv, "--quiet"])
        raise SystemExit(code)
    assert exc_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0] and "Traceback" not in err[0]


def test_count_outliers_largest_relative_gap():
    assert count_outliers([10.0, 9.0, 8.0, 1.0, 0.9, 0.8]) == 3
    assert count_outliers([5.0, 1.0, 0.9, -2.0]) == 1


def _run(args, cwd):
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.Popen([sys.executable, "-m", "specop", *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_killed_run_resumes_to_identical_json(factory_dir):
    args = ["report", "--model", "userfactory:make", "--k", "3", "--probes", "4", "--steps", "12", "--quiet"]
    assert _run([*args, "--output", "plain.json"], factory_dir).wait(timeout=300) == 0
    ck = factory_dir / "ck"
    proc = _run([*args, "--output", "resumed.json", "--checkpoint", str(ck)], factory_dir)
    deadline = time.time() + 240
    while not (ck / "density-hessian.npz").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (factory_dir / "resumed.json").exists()  # killed before the end
    assert _run([*args, "--output", "resumed.json", "--checkpoint", str(ck)], factory_dir).wait(timeout=300) == 0
    assert (factory_dir / "resumed.json").read_text() == (factory_dir / "plain.json").read_text()


def test_checkpoint_with_other_settings_is_refused(factory_dir, capsys):
    base = ["top", "--model", "userfactory:make", "--k", "2", "--quiet", "--checkpoint", "ck2"]
    assert main(base) == 0
    assert main([*base[:4], "3", *base[5:]]) == 2
    assert "other settings (k)" in capsys.readouterr().err
