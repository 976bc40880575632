"""A bias added to every channel vector, in place, and its gradient, a column sum."""
import numpy as np
from numba import njit

from .split import run_split


def bias_add_numpy(a, b):
    """In place: ``b`` added to every channel vector of ``a``.

    a : (..., C), e.g. (N, H, W, C) or (rows, C); b : (C,)
    """
    a += b


@njit(cache=True, nogil=True, error_model="numpy")
def _bias_add_nb(a2, b, lo, hi):
    a2 = a2[lo:hi]                        # a slice: indices from 0 up, so the loop vectorises
    for r in range(a2.shape[0]):
        for c in range(b.size):
            a2[r, c] += b[c]


def bias_add_numba(a, b):
    """Numba version of :func:`bias_add_numpy`, bit for bit. Arrays that are
    not C-contiguous are left to NumPy."""
    if not (a.flags.c_contiguous and b.flags.c_contiguous and a.dtype == b.dtype
            and a.ndim >= 1 and a.shape[-1] == b.size):
        return bias_add_numpy(a, b)
    a2 = a.reshape(-1, b.size)            # (rows, C): a view, since a is C-contiguous
    run_split(_bias_add_nb, a2.shape[0], a2.size, a2, b)


def bias_grad_numpy(dout2):
    """The gradient of a bias added to every row: ``dout2`` summed over its rows.

    dout2 : (R, C) -> db : (C,)
    """
    return dout2.sum(axis=0)                                           # (C,)


@njit(cache=True, nogil=True)
def _colsum_nb(a, out):
    # a fresh local accumulator (it overlaps nothing) lets the channel loop vectorise
    acc = np.zeros(a.shape[1], a.dtype)                                # (C,)
    for r in range(a.shape[0]):
        row = a[r]
        for c in range(acc.size):
            acc[c] += row[c]
    out[:] = acc


def bias_grad_numba(dout2):
    """Numba version of :func:`bias_grad_numpy`, bit for bit: it adds the rows
    in order, as NumPy does for C-contiguous rows of two or more columns (a
    single column or a column-major array NumPy sums pairwise: left to NumPy)."""
    if dout2.shape[1] == 1 or not dout2.flags.c_contiguous:
        return dout2.sum(axis=0)                                       # (C,)
    db = np.empty(dout2.shape[1], dtype=dout2.dtype)                   # (C,)
    _colsum_nb(dout2, db)
    return db
