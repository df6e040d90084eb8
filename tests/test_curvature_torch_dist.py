"""Data-parallel curvature operators: 2 gloo processes on 127.0.0.1 equal one process on the union.

The test spawns this file as a script (``python tests/test_curvature_torch_dist.py
SCENARIO RANK PORT OUT``) for each rank; every subprocess is bounded by a timeout, so a
broken collective fails the test instead of hanging it.
"""

from __future__ import annotations

import datetime
import functools
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

REPO = Path(__file__).resolve().parents[1]
N, SPLIT, WORLD = 13, 7, 2  # rank 0 holds samples [0, 7), rank 1 holds [7, 13)
COLLECTIVE_TIMEOUT = 10.0  # seconds
STUCK_TIMEOUT = 3.0  # seconds
TIMEOUT = 90  # seconds per subprocess


def _problem(scenario: str = "equal"):
    sys.path.insert(0, str(REPO))
    from tests import _torch_models as tm
    from tests import _torch_zoo as zoo

    if scenario == "masked":  # per-token tags, padded: the ranks hold different numbers of valid tokens
        model = zoo.Tagger("gru", seed=4)
        X, pad = zoo.tokens(N, 4, 5, seed=6, min_len=1)
        pad[SPLIT:] = False  # rank 1's sequences are unpadded, rank 0's are not
        y = torch.randint(0, 3, (N, 4), generator=zoo.seeded(7)).masked_fill(pad, -100)
        return model, torch.nn.CrossEntropyLoss(weight=zoo.W3, label_smoothing=0.1), X, y
    model = tm.bn_model(seed=4)  # BatchNorm in eval mode: running stats, identical on all ranks
    X, y = tm.classification(N, 3, 3, seed=5)
    return model, torch.nn.CrossEntropyLoss(), X, y


def _operators():
    from specop.curvature.torch import FisherOperator, GGNOperator, HessianOperator

    return {
        "hessian": HessianOperator,
        "ggn": GGNOperator,
        "fisher-mc": functools.partial(FisherOperator, kind="mc", mc_samples=3, seed=11),
        "fisher-emp": functools.partial(FisherOperator, kind="empirical"),
    }


def _results(data, model, loss_fn, **kw):
    import specop

    out = {}
    for name, make in _operators().items():
        op = make(model, loss_fn, data, **kw)
        V = specop.random.probes(op.shape[0], 3, seed=0, like=op)
        out[name] = {"matmat": op @ V, "matvec": op @ V[:, 1], "gradient": op.gradient(), "loss": op.loss()}
    return out


def _worker(scenario: str, rank: int, port: int, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=COLLECTIVE_TIMEOUT))
    model, loss_fn, X, y = _problem(scenario)
    lo, hi = (0, SPLIT) if rank == 0 else (SPLIT, N)
    shard = DataLoader(TensorDataset(X[lo:hi], y[lo:hi]), batch_size=3)  # uneven batches on both ranks
    if scenario in ("equal", "masked"):
        res = _results(shard, model, loss_fn, timeout=COLLECTIVE_TIMEOUT)
        import specop
        from specop.curvature.torch import HessianOperator

        # one in-memory batch per rank: the gradient graph is cached; the second product takes the shortcut
        C = HessianOperator(model, loss_fn, (X[lo:hi], y[lo:hi]), timeout=COLLECTIVE_TIMEOUT)
        V = specop.random.probes(C.shape[0], 3, seed=0, like=C)
        res["hessian-cached"] = {"first": C @ V, "second": C @ V}
        H = HessianOperator(model, loss_fn, shard, timeout=COLLECTIVE_TIMEOUT)
        try:  # rank-dependent vectors are a user error that must be caught
            H @ torch.full((H.shape[0],), float(rank + 1), dtype=torch.float64)
            res["mismatch"] = "no error"
        except ValueError as exc:
            res["mismatch"] = str(exc)
        torch.save(res, out)
        dist.destroy_process_group()
    else:  # "dead": the peer exits; "stuck": the peer stays alive but never joins the collective
        from specop.curvature.torch import GGNOperator

        timeout = COLLECTIVE_TIMEOUT if scenario == "dead" else STUCK_TIMEOUT
        G = GGNOperator(model, loss_fn, shard, timeout=timeout)
        v = torch.ones(G.shape[0], dtype=torch.float64)
        G @ v  # both alive: works
        if rank == 1:
            while scenario == "stuck" and not Path(out.replace("r1.pt", "r0.pt")).exists():
                time.sleep(0.1)
            os._exit(3)  # the peer dies (or, stuck, leaves once rank 0 has given up)
        start = time.monotonic()
        try:
            G @ v
            msg = "no error"
        except RuntimeError as exc:
            msg = f"RAISED {exc}"
        torch.save({"elapsed": time.monotonic() - start, "message": msg}, out)
        os._exit(0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(scenario: str, tmp_path: Path) -> list[subprocess.CompletedProcess]:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, __file__, scenario, str(r), str(port), str(tmp_path / f"r{r}.pt")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in range(WORLD)]
    done = []
    try:
        for p in procs:
            stdout, _ = p.communicate(timeout=TIMEOUT)
            done.append(subprocess.CompletedProcess(p.args, p.returncode, stdout))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return done


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


@pytest.mark.parametrize("scenario", ["equal", "masked"])
def test_two_gloo_processes_equal_one_process_on_the_union(tmp_path, scenario):
    # masked: class weights, label smoothing and ignore_index with different valid counts on the ranks;
    # the normalizers are summed over the ranks with the numerators, so the result is one process's
    procs = _run(scenario, tmp_path)
    for r, p in enumerate(procs):
        assert p.returncode == 0, f"rank {r} failed:\n{p.stdout}"
    model, loss_fn, X, y = _problem(scenario)
    single = _results((X, y), model, loss_fn)
    for r in range(WORLD):
        got = torch.load(tmp_path / f"r{r}.pt")
        assert "differ between processes" in got.pop("mismatch")
        for key, value in got.pop("hessian-cached").items():
            assert _rel(value, single["hessian"]["matmat"]) < 1e-12, (r, "hessian-cached", key)
        for name, ref in single.items():
            for key, value in ref.items():
                assert _rel(got[name][key], value) < 1e-12, (r, name, key)


@pytest.mark.parametrize("scenario, limit", [("dead", COLLECTIVE_TIMEOUT), ("stuck", STUCK_TIMEOUT)])
def test_dead_or_stuck_peer_raises_within_the_timeout(tmp_path, scenario, limit):
    procs = _run(scenario, tmp_path)
    assert procs[1].returncode == 3, procs[1].stdout
    assert procs[0].returncode == 0, procs[0].stdout
    got = torch.load(tmp_path / "r0.pt")
    assert got["message"].startswith("RAISED"), got
    assert "GGNOperator product" in got["message"]
    assert got["elapsed"] < limit + 5.0, got


if __name__ == "__main__":
    _worker(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
else:  # pytest import: skip where torch.distributed has no gloo
    import torch.distributed as _dist

    if not (_dist.is_available() and _dist.is_gloo_available()):
        pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)
