"""specop's mirror of :mod:`scipy.sparse`: only :mod:`specop.sparse.linalg`, the scipy drop-in."""

from specop.sparse import linalg

__all__ = ["linalg"]
