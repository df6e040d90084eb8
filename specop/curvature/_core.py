r"""The definition every curvature operator implements, shared by the torch and JAX adapters.

**The data-set loss.** A data set is a sequence of batches ``b``. The loss of batch ``b``
reports two numbers: a *sum* ``S_b(theta)`` of weighted per-term losses and a
*normalizer* ``Z_b`` that does not depend on ``theta``. The operators are the curvature of

.. math::

    L(\theta) = \frac{\sum_b S_b(\theta)}{\sum_b Z_b},

so a result never depends on how the data are split into batches (or over processes):

* a plain mean over the ``n_b`` terms of a batch: ``S_b = n_b * mean_b``, ``Z_b = n_b``;
* cross-entropy with class weights ``w`` and ``ignore_index``: ``S_b = sum_n w_{y_n} l_n``
  over the kept terms, ``Z_b = sum_n w_{y_n}`` (exactly the normalizer of torch's mean);
* a token mask ``m``: ``S_b = sum_t m_t l_t``, ``Z_b = sum_t m_t``;
* ``reduction="sum"``: no normalizer (``Z_b = None``); then ``L = sum_b S_b``, the curvature
  of the summed loss.

With ``L`` fixed, ``H = nabla^2 L``, ``G = sum_b J_b^T nabla^2_f S_b J_b / sum_b Z_b``, and the
Fishers average per-term outer products with the same weights and the same ``sum_b Z_b``.

A user loss may return ``(sum, normalizer)``; a loss that returns a scalar is read as the
mean over the batch's ``count`` terms (the adapter says what ``count`` is and documents it).

**Randomness.** Monte-Carlo draws for a term depend only on ``(seed, global sample index)``,
where the global index counts samples in data order over all batches and processes
(:func:`sample_offsets`), so a sampled operator is one fixed matrix for any batching.

This module is framework-free: it only adds, multiplies and divides the values the
adapters give it (torch tensors, jax arrays or Python floats).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["BatchLoss", "as_batch_loss", "Accumulator", "sample_offsets", "iterate"]


@dataclass(frozen=True)
class BatchLoss:
    """What one batch's loss reports: ``S_b`` and ``Z_b`` (``None`` for a summed loss).

    Attributes
    ----------
    total : scalar
        ``S_b(theta)``, a 0-d array of the framework (differentiable in ``theta``).
    normalizer : scalar or None
        ``Z_b``; independent of ``theta``. ``None``: the loss is a plain sum (no division).
    """

    total: Any
    normalizer: Any


def _is_scalar(x: Any) -> bool:
    if isinstance(x, numbers.Real) and not isinstance(x, bool):
        return True
    shape = getattr(x, "shape", None)
    return shape is not None and tuple(shape) == ()


def as_batch_loss(out: Any, count: Any, what: str = "loss_fn") -> BatchLoss:
    """Interpret a loss's return value: a scalar mean over ``count`` terms, or ``(sum, normalizer)``.

    Parameters
    ----------
    out : scalar or (scalar, scalar or None) or BatchLoss
        What the loss returned.
    count : int or scalar
        Terms a plain scalar is the mean over (e.g. the batch's samples).
    what : str
        Name used in error messages.

    Raises
    ------
    ValueError
        For anything else, naming the shape or type that was returned.
    """
    if isinstance(out, BatchLoss):
        return out
    if isinstance(out, tuple):
        if len(out) != 2 or not _is_scalar(out[0]) or not (out[1] is None or _is_scalar(out[1])):
            got = ", ".join(str(tuple(getattr(o, "shape", ()))) if hasattr(o, "shape") else type(o).__name__
                            for o in out)
            raise ValueError(f"{what}: expected a scalar mean or a (sum, normalizer) pair of scalars, "
                             f"got a tuple of {len(out)} ({got})")
        return BatchLoss(out[0], out[1])
    if not _is_scalar(out):
        shape = tuple(out.shape) if hasattr(out, "shape") else type(out).__name__
        raise ValueError(f"{what}: expected a scalar (the batch mean) or a (sum, normalizer) pair, got {shape}; "
                         "use reduction='mean' or 'sum', or return (loss.sum(), normalizer)")
    return BatchLoss(out * count, count)


class Accumulator:
    """Running ``sum_b X_b`` and ``sum_b Z_b`` over batches; :meth:`result` divides.

    ``X_b`` is the batch's contribution to the numerator (the curvature of ``S_b`` times
    the vectors, the gradient of ``S_b``, or ``S_b`` itself). Every batch must agree on
    whether there is a normalizer (a mix of summed and normalized losses is refused).
    """

    def __init__(self) -> None:
        self.total: Any = None
        self.normalizer: Any = None
        self.batches = 0
        self._summed: bool | None = None

    def add(self, value: Any, normalizer: Any) -> None:
        """Add one batch: ``value`` = its numerator part, ``normalizer`` = ``Z_b`` or None."""
        summed = normalizer is None
        if self._summed is not None and summed != self._summed:
            raise ValueError("loss_fn: some batches report a normalizer and others none (reduction='sum'); "
                             "a data-set loss needs one kind for every batch")
        self._summed = summed
        self.total = value if self.total is None else self.total + value
        if not summed:
            self.normalizer = normalizer if self.normalizer is None else self.normalizer + normalizer
        self.batches += 1

    def result(self, reduce: Callable[[Any, Any], tuple[Any, Any]] | None = None) -> Any:
        """``sum X_b / sum Z_b`` (``sum X_b`` for summed losses).

        ``reduce(total, normalizer) -> (total, normalizer)`` sums both over processes
        (data parallelism) before the division; ``normalizer`` is ``None`` for summed losses.
        """
        if self.batches == 0:
            raise ValueError("data: the data set is empty (no batches)")
        total, norm = self.total, self.normalizer
        if reduce is not None:
            total, norm = reduce(total, norm)
        if norm is None:
            return total
        if not _positive(norm):
            raise ValueError(f"loss_fn: the data set's normalizer sum_b Z_b is {float(norm)!r}, not positive "
                             "(every term ignored or zero-weighted?)")
        return total / norm


def _positive(x: Any) -> bool:
    try:
        return float(x) > 0
    except TypeError:  # a traced value (inside jit): the caller checks outside
        return True


def sample_offsets(counts: Iterable[int], start: int = 0) -> Iterator[int]:
    """Global index of the first sample of each batch, given the batches' sample counts.

    ``start`` is the number of samples held by lower ranks (data parallelism).
    """
    offset = start
    for c in counts:
        yield offset
        offset += int(c)


def iterate(data: Any, num_batches: int | None, is_batch: Callable[[Any], bool]) -> Callable[[], Iterator[Any]]:
    """A function returning a fresh iterator over the batches of ``data``, once per pass.

    Parameters
    ----------
    data : one batch, or a re-iterable of batches
        ``is_batch(data)`` tells a single batch from a collection (framework-specific).
    num_batches : int, optional
        Use only the first ``num_batches`` batches of every pass (required for an
        infinite re-iterable; a pass must see the same batches every time).
    is_batch : callable
        Whether ``data`` itself is one batch.

    Raises
    ------
    TypeError
        For a one-shot iterator (the operator reads the data once per product).
    """
    if num_batches is not None and (isinstance(num_batches, bool) or not isinstance(num_batches, int)
                                    or num_batches < 1):
        raise ValueError(f"num_batches: expected None or a positive int, got {num_batches!r}")
    if is_batch(data):
        return lambda: iter([data])
    if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise TypeError(f"data: expected a batch or a re-iterable of batches, got {type(data).__name__}")
    if iter(data) is data:
        raise TypeError("data: got a one-shot iterator; the operator reads the data once per product, so pass a "
                        "re-iterable collection (list, DataLoader, an object whose __iter__ starts over)")

    def passes() -> Iterator[Any]:
        for i, batch in enumerate(data):
            if num_batches is not None and i >= num_batches:
                return
            yield batch

    return passes
