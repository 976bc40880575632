"""The gradient of a bias added to every row: a column sum."""
import numpy as np
from numba import njit


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
