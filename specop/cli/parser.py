"""The argument parser of the ``specop`` command (argparse).

Errors are one line (``specop: error: ...``) and exit code 2, like every usage error.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import NoReturn

__all__ = ["build_parser", "COMMANDS"]

COMMANDS = ("report", "top", "density", "trace")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one clear line instead of usage + message
        where = self.prog.split(" ", 1)[1] + ": " if " " in self.prog else ""
        print(f"specop: error: {where}{message}", file=sys.stderr)
        raise SystemExit(2)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _nonneg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


def _number(text: str, what: str, positive: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
    return value


def _tolerance(text: str) -> float:
    return _number(text, "a finite number >= 0", positive=False)


def _seconds(text: str) -> float:
    value = _number(text, "a number of seconds > 0 and <= 1e8", positive=True)
    if value > 1e8:  # beyond what datetime.timedelta and the process group take
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0 and <= 1e8, got {text}")
    return value


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", metavar="MOD:FACTORY",
                   help="user model factory 'package.module:factory' or 'file.py:factory'; torch: returns "
                        "(model, loss_fn, data); JAX: (loss_fn, params, data[, model_fn]). Default: the embedded "
                        "digits MLP (64-64-10 tanh, trained for --train-steps full-batch gradient descent steps)")
    g.add_argument("--backend", choices=("torch", "jax"), help="backend of --model (default: detected)")
    g.add_argument("--device", help="torch device for the model and data, e.g. cuda:0 (default: where they are)")
    g.add_argument("--dtype", choices=("float32", "float64"), help="operator precision (default: the model's)")
    g.add_argument("--distributed", action="store_true",
                   help="under torchrun (torch backend): initialise torch.distributed (NCCL for a CUDA "
                        "--device, which becomes cuda:LOCAL_RANK; gloo otherwise), give rank r of W the samples "
                        "r, r+W, ... of an (X, y) data set, all-reduce every product; rank 0 prints and writes "
                        "the outputs and the --checkpoint")
    g.add_argument("--timeout", type=_seconds, metavar="SECONDS",
                   help="with --distributed: seconds every collective may wait for the other ranks before the run "
                        "stops with an error, so a stuck or dead peer cannot hang the others (default 300)")
    g.add_argument("--train-steps", type=_nonneg,
                   help="full-batch gradient descent steps (lr 0.1) for the embedded digits model (default 300)")
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=_nonneg, default=0, help="seed of training, probes and start vectors (default 0)")
    g.add_argument("--output", metavar="PATH", help="JSON output; the PNG is written beside it with the same stem "
                                                     "(default ./specop-<command>.json)")
    g.add_argument("--checkpoint", metavar="DIR",
                   help="directory for finished work; a killed run restarted with the same command resumes "
                        "and writes the identical JSON")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    g.add_argument("--debug", action="store_true", help="show tracebacks on errors")


def _eig(p: argparse.ArgumentParser, k: int) -> None:
    g = p.add_argument_group("eigsh")
    g.add_argument("--k", type=_positive, default=k, help=f"number of eigenvalues (default {k})")
    g.add_argument("--which", choices=("LA", "SA", "LM", "BE"), default="LA", help="which end (default LA)")
    g.add_argument("--tol", type=_tolerance, default=1e-8, help="relative residual tolerance (default 1e-8)")


def _dens(p: argparse.ArgumentParser, probes: int, steps: int, methods: bool) -> None:
    g = p.add_argument_group("density")
    if methods:
        g.add_argument("--method", choices=("slq", "kpm"), default="slq", help="estimator (default slq)")
    g.add_argument("--probes", type=_positive, default=probes, help=f"random probe vectors (default {probes})")
    g.add_argument("--steps", type=_positive, default=steps,
                   help=f"Lanczos steps per probe (SLQ) or Chebyshev degree (KPM) (default {steps})")
    g.add_argument("--reorth", choices=("none", "selective", "full"),
                   help="Lanczos reorthogonalization of SLQ (default full)")


def _operator(p: argparse.ArgumentParser) -> None:
    p.add_argument("--operator", choices=("hessian", "ggn"), default="hessian",
                   help="which curvature matrix (default hessian)")


def build_parser() -> argparse.ArgumentParser:
    """The ``specop`` parser with its four subcommands (``report`` when none is given)."""
    parser = _Parser(prog="specop", description="Spectral analysis of the Hessian and Gauss-Newton matrices of a "
                     "model. With no subcommand: 'specop report' on the embedded digits MLP.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="{report,top,density,trace}")
    p = sub.add_parser("report", help="top-k Hessian eigenvalues, outliers, trace, negative mass, ||H - G||/||H||, "
                       "SLQ densities of H and G (table + PNG + JSON)")
    _common(p)
    _eig(p, 12)
    _dens(p, 4, 80, methods=False)
    p.set_defaults(method="slq")
    p = sub.add_parser("top", help="top-k eigenvalues with residuals (thick-restart eigsh)")
    _common(p)
    _operator(p)
    _eig(p, 10)
    p = sub.add_parser("density", help="spectral density by SLQ or KPM (PNG + JSON)")
    _common(p)
    _operator(p)
    _dens(p, 8, 80, methods=True)
    p = sub.add_parser("trace", help="stochastic trace estimate")
    _common(p)
    _operator(p)
    g = p.add_argument_group("trace")
    g.add_argument("--method", choices=("hutchinson", "hutch++", "slq"), default="hutch++",
                   help="estimator (default hutch++)")
    g.add_argument("--probes", type=_positive, default=30, help="probe vectors (default 30)")
    return parser
