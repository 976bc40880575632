"""The Adam update of one parameter array, in place, in one pass over memory."""
import numpy as np
from numba import njit

from .split import run_split


def adam_update_numpy(p, g, m, v, lr_t, beta1, beta2, eps):
    """In place: ``m, v`` moments, then ``p -= lr_t * m / (sqrt(v) + eps)``.

    p, g, m, v : arrays of one shape; ``lr_t`` the bias-corrected rate
    (see :mod:`tinyvae.optim`).
    """
    m *= beta1
    m += (1.0 - beta1) * g
    v *= beta2
    v += (1.0 - beta2) * (g * g)
    p -= lr_t * m / (np.sqrt(v) + eps)


@njit(cache=True, nogil=True, error_model="numpy")
def _adam_nb(p, g, m, v, lr_t, beta1, beta2, eps, lo, hi):
    # Slices (indices provably >= 0) and error_model="numpy" (no division
    # check) let LLVM vectorise the loop.
    one = p.dtype.type(1.0)               # constants in p's dtype: no float64 detour
    c1, c2 = one - beta1, one - beta2
    p, g, m, v = p[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi]
    for k in range(p.size):
        gk = g[k]
        mk = beta1 * m[k] + c1 * gk
        vk = beta2 * v[k] + c2 * gk * gk
        m[k] = mk
        v[k] = vk
        p[k] -= lr_t * mk / (np.sqrt(vk) + eps)


def adam_update_numba(p, g, m, v, lr_t, beta1, beta2, eps):
    """Numba version of :func:`adam_update_numpy`.

    Works on any memory layout: arrays that are not C-contiguous are updated
    through contiguous copies that are written back.
    """
    dt = p.dtype.type
    flat = [np.ascontiguousarray(a).reshape(-1) for a in (p, m, v)]
    run_split(_adam_nb, p.size, p.size, flat[0], np.ascontiguousarray(g).reshape(-1), flat[1],
              flat[2], dt(lr_t), dt(beta1), dt(beta2), dt(eps))
    for a, f in zip((p, m, v), flat):
        if not np.shares_memory(a, f):
            a[...] = f.reshape(a.shape)
