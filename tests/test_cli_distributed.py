"""``specop --distributed`` under torchrun: 2 gloo processes on 127.0.0.1 equal one process.

Each test runs ``python -m torch.distributed.run --standalone --nproc_per_node=2 -m specop
...`` in a subprocess bounded by a timeout (a broken collective fails the test instead of
hanging it) and compares the JSON of rank 0 with ``python -m specop`` on the same
arguments: the numbers agree to ~1e-10 relative (float64; only the summation order of
the all-reduce differs), integers and flags exactly.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch.distributed")

from specop.cli import main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 180  # seconds per torchrun (a run takes ~5-15 s)
RTOL = 1e-10

# 61 samples: rank 0 holds 31, rank 1 holds 30 (uneven shards).
FACTORY = textwrap.dedent("""
    import torch

    def make():
        gen = torch.Generator().manual_seed(0)
        X = torch.randn(61, 5, generator=gen, dtype=torch.float64)
        y = torch.randint(0, 3, (61,), generator=gen)
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)).double()
        return model, torch.nn.CrossEntropyLoss(), (X, y)
""")


# A peer that is alive but stuck: rank 1 sleeps in its factory, or in its 11th pass over the data
# (inside the eigsh products), far longer than the --timeout of the test.
STUCK = textwrap.dedent("""
    import os
    import time

    from distfactory import make

    def sleeps_in_factory():
        if os.environ["RANK"] == "1":
            time.sleep(600)
        return make()

    class _Stalls:
        def __init__(self, batches):
            self.batches, self.passes = batches, 0

        def __iter__(self):
            self.passes += 1
            if os.environ["RANK"] == "1" and self.passes > 10:
                time.sleep(600)
            return iter(self.batches)

    def sleeps_in_a_product():
        model, loss, (X, y) = make()
        return model, loss, _Stalls([(X[:20], y[:20]), (X[20:], y[20:])])
""")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "distfactory.py").write_text(FACTORY)
    (tmp_path / "stuckfactory.py").write_text(STUCK)
    return tmp_path


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT")}
    path = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return {**env, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "MPLBACKEND": "Agg"}


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "specop", *args, "--distributed", "--quiet"]
    try:
        return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as exc:  # subprocess.run kills the launcher; its workers follow it
        pytest.fail(f"torchrun did not finish within {TIMEOUT} s:\n{exc.stdout}\n{exc.stderr}")


def _single(args: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The same command in this process, without ``--distributed``."""
    monkeypatch.chdir(cwd)
    assert main([*args, "--quiet"]) == 0
    return json.loads((cwd / args[args.index("--output") + 1]).read_text())


def _assert_close(got: Any, ref: Any, path: str, scale: float | None = None) -> None:
    """Numbers within ``RTOL`` of the scale of their list (or of ``scale``), the rest exactly."""
    assert type(got) is type(ref), (path, got, ref)
    if isinstance(ref, dict):
        assert sorted(got) == sorted(ref), path
        for k in ref:
            sub = scale
            if k == "residual_norms":  # round-off noise: relative to the eigenvalues
                sub = max(abs(w) for w in _eigenvalues(ref))
            _assert_close(got[k], ref[k], f"{path}.{k}", sub)
    elif isinstance(ref, list) and ref and not isinstance(ref[0], str):
        a, b = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
        assert a.shape == b.shape, path
        tol = RTOL * (scale if scale is not None else max(float(np.nanmax(np.abs(b))), 1e-300))
        np.testing.assert_allclose(a, b, rtol=0, atol=tol, err_msg=path)
    elif isinstance(ref, float):
        tol = RTOL * (scale if scale is not None else abs(ref))
        assert got == ref or abs(got - ref) <= tol or (np.isnan(got) and np.isnan(ref)), (path, got, ref)
    else:
        assert got == ref, (path, got, ref)


def _eigenvalues(d: dict[str, Any]) -> list[float]:
    """The eigenvalues beside a ``residual_norms`` entry (their scale bounds its round-off)."""
    return d.get("eigenvalues") or [1.0]


def _compare(dist_doc: dict[str, Any], single_doc: dict[str, Any]) -> None:
    settings = dist_doc.pop("settings")
    ref_settings = single_doc.pop("settings")
    assert settings.pop("distributed") is True and ref_settings.pop("distributed") is False
    assert settings.pop("world_size") == 2 and "world_size" not in ref_settings
    assert settings == ref_settings
    dist_doc.pop("versions")
    single_doc.pop("versions")
    _assert_close(dist_doc, single_doc, "doc")


def _outputs(cwd: Path) -> list[str]:
    return sorted(p.name for p in cwd.iterdir() if p.suffix in (".json", ".png", ".tmp"))


def test_top_on_a_factory_equals_one_process(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["top", "--model", "distfactory.py:make", "--k", "4", "--output", "dist.json"]
    proc = _torchrun(args, workdir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("lambda_1") == 1  # one table: rank 0 prints
    assert _outputs(workdir) == ["dist.json"]  # rank 0 writes, rank 1 nothing
    doc = json.loads((workdir / "dist.json").read_text())
    ref = _single(["top", "--model", "distfactory.py:make", "--k", "4", "--output", "one.json"], workdir, monkeypatch)
    assert doc["model"]["num_params"] == 57 and doc["top"]["converged"]
    _compare(doc, ref)


def test_report_with_checkpoint_equals_one_process_and_resumes(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["report", "--model", "distfactory.py:make", "--k", "3", "--probes", "3", "--steps", "12",
            "--output", "dist.json", "--checkpoint", "ck"]
    proc = _torchrun(args, workdir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _outputs(workdir) == ["dist.json", "dist.png"]
    # rank 0 alone writes the checkpoint (rank 1 works on private copies, removed at exit)
    assert sorted(p.name for p in (workdir / "ck").iterdir()) == [
        "density-ggn.npz", "density-hessian.npz", "eigsh-hessian.json", "eigsh-residual.json", "settings.json"]
    first = (workdir / "dist.json").read_text()
    proc = _torchrun([*args[:-4], "--output", "again.json", "--checkpoint", "ck"], workdir)  # resume: all stored
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (workdir / "again.json").read_text() == first
    ref = _single([*args[:-4], "--output", "one.json"], workdir, monkeypatch)
    _compare(json.loads(first), ref)


def test_density_kpm_on_the_digits_model_equals_one_process(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["density", "--method", "kpm", "--train-steps", "5", "--probes", "2", "--steps", "10",
            "--output", "dist.json"]
    proc = _torchrun(args, workdir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _outputs(workdir) == ["dist.json", "dist.png"]
    doc = json.loads((workdir / "dist.json").read_text())
    ref = _single([*args[:-2], "--output", "one.json"], workdir, monkeypatch)
    assert doc["model"]["num_samples"] == 1797
    _compare(doc, ref)


def test_checkpoint_of_other_settings_is_refused_on_every_rank(workdir: Path) -> None:
    (workdir / "ck").mkdir()
    (workdir / "ck" / "settings.json").write_text(json.dumps({"seed": 99}))
    proc = _torchrun(["top", "--model", "distfactory.py:make", "--k", "2", "--output", "x.json",
                      "--checkpoint", "ck"], workdir)
    assert proc.returncode != 0
    assert proc.stderr.count("specop: error: --checkpoint") == 2, proc.stderr  # both ranks exit, none hangs
    assert _outputs(workdir) == []


def test_distributed_without_torchrun_is_one_line_exit_2(workdir: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(workdir)
    assert main(["top", "--model", "distfactory.py:make", "--distributed", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("specop: error: --distributed needs torchrun"), err
    assert "torchrun --nproc_per_node" in err and not (workdir / "specop-top.json").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("where", ["sleeps_in_factory", "sleeps_in_a_product"])
def test_a_stuck_peer_stops_the_others_within_the_timeout(workdir: Path, where: str) -> None:
    """Two ranks spawned directly (torchrun would kill the sleeper as soon as rank 0 fails)."""
    env = {**_env(), "PYTHONPATH": os.pathsep.join([str(workdir), _env()["PYTHONPATH"]]), "WORLD_SIZE": "2",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    cmd = [sys.executable, "-m", "specop", "top", "--model", f"stuckfactory:{where}", "--k", "3", "--quiet",
           "--distributed", "--timeout", "5", "--output", "out.json"]
    ranks = [subprocess.Popen(cmd, cwd=workdir, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for r in (0, 1)]
    try:
        _, err = ranks[0].communicate(timeout=120)  # the sleeper sleeps 600 s: a hang fails here
    except subprocess.TimeoutExpired:
        pytest.fail("rank 0 still waits for its stuck peer after 120 s (--timeout 5)")
    finally:
        for p in ranks:
            p.kill()
            p.wait()
    lines = err.strip().splitlines()
    assert ranks[0].returncode == 1, err
    assert len(lines) == 1 and lines[0].startswith("specop: error: --distributed (rank 0 of 2): "), err
    assert "a peer did not answer within --timeout 5 s" in lines[0] and "Traceback" not in err
    assert _outputs(workdir) == []  # no JSON, no *.tmp
