"""ReLU and its gradient, elementwise in one pass over memory."""
import numpy as np
from numba import njit

from .split import run_split


def relu_numpy(x):
    """``max(x, 0)`` elementwise (NaN stays NaN); any shape."""
    return np.maximum(x, 0)                                            # same shape as x


def relu_grad_numpy(dout, out):
    """``dout`` where the ReLU's output ``out`` was positive, else 0."""
    return dout * (out > 0)                                            # same shape as dout


@njit(cache=True, nogil=True)
def _relu_nb(x, out, lo, hi):
    zero = x.dtype.type(0.0)
    x, out = x[lo:hi], out[lo:hi]
    for k in range(x.size):
        v = x[k]
        out[k] = v if (v > zero or v != v) else zero                   # np.maximum's rule: NaN wins


@njit(cache=True, nogil=True)
def _relu_grad_nb(dout, out, dx, lo, hi):
    zero, one = dx.dtype.type(0.0), dx.dtype.type(1.0)
    dout, out, dx = dout[lo:hi], out[lo:hi], dx[lo:hi]
    for k in range(dx.size):
        dx[k] = dout[k] * (one if out[k] > zero else zero)             # as NumPy's dout * (out > 0)


def relu_numba(x):
    """Numba version of :func:`relu_numpy`, bit for bit (signed zeros and NaNs too)."""
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)                                             # same shape as x
    run_split(_relu_nb, x.size, x.size, x.reshape(-1), out.reshape(-1))
    return out


def relu_grad_numba(dout, out):
    """Numba version of :func:`relu_grad_numpy`, bit for bit."""
    dout, out = np.ascontiguousarray(dout), np.ascontiguousarray(out)
    dx = np.empty_like(dout)                                           # same shape as dout
    run_split(_relu_grad_nb, dx.size, dx.size, dout.reshape(-1), out.reshape(-1), dx.reshape(-1))
    return dx
