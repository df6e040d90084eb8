"""Every failure a user of the ``specop`` command can cause: one line, exit code 2, nothing left behind.

Each case runs ``specop.cli.main`` in this process and checks that stderr is exactly
one line starting ``specop: error:`` that names the cause, that the exit code is 2
(1 where the arguments are fine but the run cannot finish), that no exception escapes
(no traceback), and that the working directory holds exactly the files it held
before: no ``*.tmp``, no half-written output, no new checkpoint directory.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from specop.cli import main  # noqa: E402

FACTORIES = textwrap.dedent("""
    import torch

    def _base(n=32):
        gen = torch.Generator().manual_seed(0)
        X = torch.randn(n, 3, generator=gen, dtype=torch.float64)
        y = torch.randint(0, 2, (n,), generator=gen)
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
        return model, torch.nn.CrossEntropyLoss(), (X, y)

    SCALE = [1.0]  # a test changes the data between two runs

    def make():
        model, loss, (X, y) = _base()
        return model, loss, (SCALE[0] * X, y)

    def float_labels():
        model, loss, (X, y) = _base()
        return model, loss, (X, y.double())

    def float_labels_in_batches():
        model, loss, (X, y) = _base()
        return model, loss, [(X[:16], y[:16].double()), (X[16:], y[16:].double())]

    def negative_labels():
        model, loss, (X, y) = _base()
        y[3] = -2
        return model, loss, (X, y)

    def label_too_large():
        model, loss, (X, y) = _base()
        y[3] = 7
        return model, loss, (X, y)

    def nan_data():
        model, loss, (X, y) = _base()
        X[3, 1] = float("nan")
        return model, loss, (X, y)

    def inf_in_second_batch():
        model, loss, (X, y) = _base()
        X[20, 0] = float("inf")
        return model, loss, [(X[:16], y[:16]), (X[16:], y[16:])]

    def nan_parameters():
        model, loss, data = _base()
        with torch.no_grad():
            model[0].weight[0, 0] = float("nan")
        return model, loss, data

    def swapped_x_y():
        model, loss, (X, y) = _base()
        return model, loss, (y, X)

    def loss_model_data():
        model, loss, data = _base()
        return loss, model, data

    def data_model_loss():
        model, loss, data = _base()
        return data, model, loss

    def returns_none():
        model, loss, data = _base()

    def loss_raises():
        model, _, data = _base()
        def loss(out, y):
            raise ValueError("my loss is broken")
        return model, loss, data

    def exits():
        import sys
        sys.exit(3)

    def jax_values():
        import jax.numpy as jnp
        loss = lambda p, b: jnp.mean((b[0] @ p["w"] - b[1]) ** 2)
        return loss, {"w": jnp.ones(3)}, (jnp.ones((8, 3)), jnp.zeros(8))
""")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "fac.py").write_text(FACTORIES)
    (tmp_path / "broken_import.py").write_text("import torch\nundefined_name + 1\n")
    (tmp_path / "afile").write_text("not a directory")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else b"<dir>") for p in root.rglob("*")
            if "__pycache__" not in p.parts}


def _fails(capsys: pytest.CaptureFixture[str], root: Path, argv: list[str], *fragments: str, code: int = 2) -> str:
    """Run ``argv``; assert one error line holding ``fragments``, exit ``code``, and no file changed."""
    before = _files(root)
    capsys.readouterr()
    try:
        rc = main([*argv, "--quiet"])
    except SystemExit as exc:  # argparse
        rc = exc.code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == code, err
    assert len(lines) == 1 and lines[0].startswith("specop: error: "), err
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    assert _files(root) == before  # nothing created, nothing left behind, nothing changed
    return lines[0]


TOP = ["top", "--k", "2", "--checkpoint", "new-ck", "--output", "new-out/top.json"]


@pytest.mark.parametrize("factory, fragments", [
    ("float_labels", ["labels (data y) are float64", "integer class indices"]),
    ("float_labels_in_batches", ["labels (data batch 0 y)", "integer class indices"]),
    ("negative_labels", ["negative class indices", "-2"]),
    ("label_too_large", ["evaluating the loss on the data failed", "Target 7"]),
    ("nan_data", ["data X holds 1 NaN or Inf"]),
    ("inf_in_second_batch", ["data batch 1 X holds 1 NaN or Inf"]),
    ("nan_parameters", ["the loss is nan"]),
    ("swapped_x_y", ["evaluating the loss on the data failed"]),
    ("loss_model_data", ["returned (loss_fn, model, data)", "(model, loss_fn, data) in this order"]),
    ("data_model_loss", ["returned (data, model, loss_fn)", "(model, loss_fn, data) in this order"]),
    ("returns_none", ["returned None (a missing return statement?)"]),
    ("loss_raises", ["evaluating the loss on the data failed", "my loss is broken"]),
    ("exits", ["the factory raised SystemExit: 3"]),
])
def test_bad_factory_is_refused_before_any_work(workdir, capsys, factory, fragments):
    _fails(capsys, workdir, [*TOP, "--model", f"fac:{factory}"], f"--model fac:{factory}: ", *fragments)


@pytest.mark.parametrize("argv, fragments", [
    (["--model", "broken_import:make"], ["importing 'broken_import' raised NameError"]),
    (["--model", ":make"], ["expected 'package.module:factory'"]),
    (["--model", "fac:make", "--backend", "jax"], ["the factory returned torch values", "--backend torch"]),
    (["--model", "fac:jax_values", "--backend", "torch"], ["the factory returned jax values", "--backend jax"]),
    (["--model", "fac:jax_values", "--device", "cpu"], ["--device cpu: applies to the torch backend only"]),
    (["--model", "fac:make", "--k", "26"], ["--k 26: expected at most P - 1 = 25"]),
    (["--model", "fac:make", "--tol", "nan"], ["--tol", "finite"]),
    (["--model", "fac:make", "--tol", "inf"], ["--tol", "finite"]),
    (["--model", "fac:make", "--train-steps", "5"], ["--train-steps: applies to the embedded digits model only"]),
    (["--model", "fac:make", "--timeout", "5"], ["--timeout: bounds the collectives of --distributed"]),
    (["--model", "fac:make", "--device", "foo"], ["--device: expected a torch device", "'foo'"]),
    (["--model", "fac:make", "--device", "meta"], ["--device meta"]),
    (["--model", "fac:make", "--output", "afile/top.json"], ["afile is a file, not a directory"]),
    (["--model", "fac:make", "--output", "."], ["is a directory"]),
    (["--model", "fac:make", "--output", ""], ["--output: expected a file path"]),
    (["--model", "fac:make", "--checkpoint", "afile"], ["--checkpoint afile: is a file, not a directory"]),
])
def test_bad_option_is_refused_before_any_work(workdir, capsys, argv, fragments):
    if "jax_values" in argv[1]:
        pytest.importorskip("specop.curvature.jax")
    _fails(capsys, workdir, ["top", "--k", "2", *argv], *fragments)


@pytest.mark.parametrize("argv, fragments", [
    (["trace", "--method", "hutch++", "--probes", "2"], ["--probes 2: hutch++ needs at least 3 probes"]),
    (["density", "--method", "kpm", "--reorth", "full"], ["--reorth: applies to --method slq only"]),
    (["report", "--which", "SA"], ["--which SA", "specop top --which"]),
    (["report", "--output", "r.png"], ["must not end in .png"]),
    (["trace", "--method", "hutch++", "--probes", str(10**13)], ["hutch++ holds about", "GiB), more than"]),
    (["top", "--distributed", "--timeout", "1e300"], ["--timeout", "<= 1e8"]),
])
def test_option_combinations_that_cannot_work(workdir, capsys, argv, fragments):
    _fails(capsys, workdir, [*argv, "--model", "fac:make"], *fragments)


def test_out_of_memory_is_one_line_exit_1(workdir, capsys, monkeypatch):
    from specop.cli import jobs

    def no_memory(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you "
                           "tried to allocate 69333333264 bytes.\nError code 12")

    monkeypatch.setattr(jobs.specop, "trace", no_memory)
    _fails(capsys, workdir, ["trace", "--model", "fac:make", "--output", "t.json"], "out of memory", "--probes",
           code=1)


def test_cuda_device_without_a_gpu(workdir, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is available here")
    _fails(capsys, workdir, [*TOP, "--model", "fac:make", "--device", "cuda"], "--device cuda: no CUDA GPU")


def _unwritable_dir(tmp: Path) -> Path:
    """A directory this process cannot create files in (chmod, or a read-only file system for root)."""
    d = tmp / "readonly"
    d.mkdir()
    d.chmod(0o555)
    probe = d / "probe"
    try:
        probe.write_text("x")
    except OSError:
        return d
    probe.unlink()  # root ignores the mode bits: try a read-only file system
    if Path("/sys").is_dir() and _cannot_create_in(Path("/sys")):
        return Path("/sys")
    pytest.skip("no unwritable directory available to this user")


def _cannot_create_in(d: Path) -> bool:
    try:
        (d / ".specop-test").write_text("x")
    except OSError:
        return True
    (d / ".specop-test").unlink()
    return False


@pytest.mark.parametrize("option", ["--checkpoint", "--output"])
def test_unwritable_directory_is_refused_before_any_work(workdir, capsys, option):
    d = _unwritable_dir(workdir)
    target = str(d) if option == "--checkpoint" else str(d / "top.json")
    try:
        _fails(capsys, workdir, ["top", "--k", "2", "--model", "fac:make", option, target], f"{option} {target}:",
               "not writable" if option == "--checkpoint" else "cannot create files")
    finally:
        if d.is_relative_to(workdir):
            d.chmod(0o755)


# ----------------------------------------------------------------------------------- checkpoints

def _finished(workdir: Path, command: list[str]) -> Path:
    assert main([*command, "--model", "fac:make", "--quiet", "--checkpoint", "ck", "--output", "first.json"]) == 0
    return workdir / "ck"


REPORT = ["report", "--k", "2", "--probes", "2", "--steps", "6"]


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _nan_npz(path: Path) -> None:
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["a"] = np.full_like(arrays["a"], np.nan)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize("damage, file, fragments", [
    (_truncate, "settings.json", ["settings.json is unreadable (JSONDecodeError"]),
    (lambda p: p.write_text("[1, 2]"), "settings.json", ["settings.json is not a settings file"]),
    (_truncate, "eigsh-hessian.json", ["eigsh-hessian.json is unreadable (JSONDecodeError", "delete it"]),
    (lambda p: p.write_text("{}"), "eigsh-residual.json", ["eigsh-residual.json is unreadable ('eigenvalues'"]),
    (_truncate, "density-ggn.npz", ["density-ggn.npz is unreadable", "delete it to recompute that density"]),
    (_nan_npz, "density-hessian.npz", ["density-hessian.npz is unreadable (array 'a' holds NaN"]),
    (lambda p: p.unlink(), "settings.json", ["holds finished stages but no settings.json"]),
])
def test_damaged_checkpoint_is_refused_by_name(workdir, capsys, damage, file, fragments):
    ck = _finished(workdir, REPORT)
    damage(ck / file)
    _fails(capsys, workdir, [*REPORT, "--model", "fac:make", "--checkpoint", "ck", "--output", "second.json"],
           "--checkpoint: ", *fragments)


@pytest.mark.parametrize("command", [["top", "--k", "2"], ["density", "--probes", "2", "--steps", "5"],
                                     ["trace", "--method", "hutchinson", "--probes", "2"]])
def test_checkpoint_of_a_changed_factory_is_not_reused(workdir, capsys, monkeypatch, command):
    ck = _finished(workdir, command)
    import fac

    monkeypatch.setattr(fac, "SCALE", [1.5])  # same settings, other data: another Hessian
    msg = _fails(capsys, workdir, [*command, "--model", "fac:make", "--checkpoint", "ck", "--output", "second.json"],
                 f"--checkpoint: {ck.name} was written for another hessian operator", "delete ck")
    assert "model or data" in msg
    monkeypatch.setattr(fac, "SCALE", [1.0])  # the same factory again: resumed, identical JSON
    assert main([*command, "--model", "fac:make", "--quiet", "--checkpoint", "ck", "--output", "second.json"]) == 0
    assert (workdir / "second.json").read_text() == (workdir / "first.json").read_text()


def test_interrupt_keeps_finished_stages(workdir, capsys, monkeypatch):
    from specop.cli import jobs

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(jobs, "_density", interrupted)  # after the top-k stage of the report
    assert main([*REPORT, "--model", "fac:make", "--quiet", "--checkpoint", "ck", "--output", "r.json"]) == 130
    assert "finished work is kept in ck" in capsys.readouterr().err
    assert sorted(p.name for p in (workdir / "ck").iterdir()) == ["eigsh-hessian.json", "settings.json"]
    assert not (workdir / "r.json").exists() and not list(workdir.glob("*.tmp"))


# ----------------------------------------------------------------------------------- outputs

def test_outputs_are_all_or_nothing(tmp_path):
    from specop.cli.output import write_outputs

    def broken_plot(path: Path) -> None:
        path.write_bytes(b"\x89PNG half")
        raise RuntimeError("the plot failed")

    with pytest.raises(RuntimeError, match="the plot failed"):
        write_outputs(tmp_path / "new" / "dir" / "r.json", {"x": 1.0}, broken_plot)
    assert list(tmp_path.iterdir()) == []  # no JSON, no PNG, no *.tmp, no directories it created


def test_json_is_strict_and_one_probe_is_quiet(workdir, capsys):
    assert main(["density", "--model", "fac:make", "--probes", "1", "--steps", "1", "--quiet",
                 "--output", "d.json"]) == 0
    assert capsys.readouterr().err == ""  # one Ritz value: no warning from the plot

    def refuse(name: str) -> None:
        raise AssertionError(f"non-standard JSON constant {name}")

    doc = json.loads((workdir / "d.json").read_text(), parse_constant=refuse)
    assert doc["density"]["trace"]["std_error"] is None  # undefined for one probe: null, not NaN
    assert (workdir / "d.png").read_bytes()[:4] == b"\x89PNG"


def test_timeout_is_documented_in_help(capsys):
    with pytest.raises(SystemExit):
        main(["top", "--help"])
    assert "--timeout SECONDS" in capsys.readouterr().out


# ----------------------------------------------------------------------------------- options that were ignored

def test_top_of_the_smallest_eigenvalues_claims_no_outliers(workdir):
    assert main(["top", "--model", "fac:make", "--k", "2", "--which", "SA", "--quiet", "--output", "sa.json"]) == 0
    top = json.loads((workdir / "sa.json").read_text())["top"]
    assert "outliers" not in top and len(top["eigenvalues"]) == 2  # a gap among the smallest is no outlier


def test_dtype_reaches_the_jax_operators(workdir):
    pytest.importorskip("specop.curvature.jax")
    import jax.numpy as jnp

    (workdir / "jfac.py").write_text(textwrap.dedent("""
        import jax.numpy as jnp

        def make():
            X = jnp.linspace(-1.0, 1.0, 24, dtype=jnp.float64).reshape(8, 3)
            y = jnp.arange(16, dtype=jnp.float64).reshape(8, 2) / 16
            model_fn = lambda p, x: jnp.tanh(x @ p["w"])
            return (lambda out, t: jnp.mean((out - t) ** 2)), {"w": 0.3 * jnp.ones((3, 2))}, (X, y), model_fn
    """))
    assert jnp.ones(1, dtype=jnp.float64).dtype == jnp.float64  # x64 on (tests/conftest.py)
    assert main(["top", "--model", "jfac:make", "--k", "2", "--dtype", "float32", "--quiet", "--output", "j.json"]) == 0
    assert json.loads((workdir / "j.json").read_text())["model"]["dtype"] == "float32"
