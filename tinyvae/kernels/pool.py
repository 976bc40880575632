"""Max-pool over ``pool x pool`` windows with stride ``pool``, and its arg-max."""
import numpy as np
from numba import njit

from .split import run_split


def maxpool_forward_numpy(x, pool):
    """Max over ``pool x pool`` windows with stride ``pool``; odd sizes floor.

    Returns
    -------
    out : (N, Ho, Wo, C) with Ho = H // pool, Wo = W // pool
    arg : (N, Ho, Wo, C) int8, the flat index ``di * pool + dj`` of the
        maximum inside its window (first one on ties)
    """
    N, H, W, C = x.shape
    Ho, Wo = H // pool, W // pool
    win = x[:, :Ho * pool, :Wo * pool, :].reshape(N, Ho, pool, Wo, pool, C)
    win = win.transpose(0, 1, 3, 5, 2, 4).reshape(N, Ho, Wo, C, pool * pool)  # (N, Ho, Wo, C, p*p)
    arg = win.argmax(axis=-1)                                              # (N, Ho, Wo, C)
    out = np.take_along_axis(win, arg[..., None], axis=-1)[..., 0]         # (N, Ho, Wo, C)
    return out, arg.astype(np.int8)


def maxpool_backward_numpy(dout, arg, x_shape, pool):
    """Route each upstream gradient to its window's arg-max; (N, H, W, C)."""
    N, H, W, C = x_shape
    Ho, Wo = dout.shape[1], dout.shape[2]
    onehot = (np.arange(pool * pool) == arg[..., None].astype(np.int64))   # (N, Ho, Wo, C, p*p)
    dwin = onehot * dout[..., None]                                        # (N, Ho, Wo, C, p*p)
    dwin = dwin.reshape(N, Ho, Wo, C, pool, pool).transpose(0, 1, 4, 2, 5, 3)  # (N, Ho, p, Wo, p, C)
    dx = np.zeros(x_shape, dtype=dout.dtype)                               # (N, H, W, C)
    dx[:, :Ho * pool, :Wo * pool, :] = dwin.reshape(N, Ho * pool, Wo * pool, C)
    return dx


@njit(cache=True, nogil=True, error_model="numpy")
def _maxpool_fwd_nb(x, pool, out, arg, lo, hi):
    # The channel loop is innermost, so each comparison runs on a whole
    # vector of channels; a strict ">" keeps the first maximum on ties.
    N, Ho, Wo, C = out.shape
    for n in range(lo, hi):
        for i in range(Ho):
            for j in range(Wo):
                best, bk = out[n, i, j], arg[n, i, j]                  # (C,) twice
                if pool == 2:                                          # the study's pool: local
                    r0, r1 = x[n, 2 * i], x[n, 2 * i + 1]              # (W, C) twice
                    v0, v1, v2, v3 = r0[2 * j], r0[2 * j + 1], r1[2 * j], r1[2 * j + 1]  # (C,)
                    for c in range(C):                                 # scalars, stored once
                        b, k = v0[c], 0
                        if v1[c] > b:
                            b, k = v1[c], 1
                        if v2[c] > b:
                            b, k = v2[c], 2
                        if v3[c] > b:
                            b, k = v3[c], 3
                        best[c] = b
                        bk[c] = k
                    continue
                first = x[n, i * pool, j * pool]
                for c in range(C):
                    best[c] = first[c]
                    bk[c] = 0
                for di in range(pool):
                    for dj in range(pool):
                        v = x[n, i * pool + di, j * pool + dj]         # (C,)
                        k = di * pool + dj
                        for c in range(C):
                            if v[c] > best[c]:
                                best[c] = v[c]
                                bk[c] = k


@njit(cache=True, nogil=True)
def _maxpool_bwd_nb(dout, arg, pool, dx, lo, hi):
    # Every pixel of a window is written once: its window's gradient where
    # it was the arg-max, else zero. Rows and columns that no window covers
    # (odd sizes) are zeroed apart.
    N, Ho, Wo, C = dout.shape
    for n in range(lo, hi):
        for i in range(Ho):
            for j in range(Wo):
                g, k = dout[n, i, j], arg[n, i, j]                     # (C,) twice
                for di in range(pool):
                    for dj in range(pool):
                        dst = dx[n, i * pool + di, j * pool + dj]      # (C,)
                        here = di * pool + dj
                        for c in range(C):
                            dst[c] = g[c] if k[c] == here else 0.0
        dx[n, Ho * pool:] = 0.0
        dx[n, :, Wo * pool:] = 0.0


def maxpool_forward_numba(x, pool):
    """Numba version of :func:`maxpool_forward_numpy`."""
    N, H, W, C = x.shape
    out = np.empty((N, H // pool, W // pool, C), dtype=x.dtype)  # (N, Ho, Wo, C)
    arg = np.empty(out.shape, dtype=np.int8)                     # (N, Ho, Wo, C)
    run_split(_maxpool_fwd_nb, N, x.size, np.ascontiguousarray(x), pool, out, arg)
    return out, arg


def maxpool_backward_numba(dout, arg, x_shape, pool):
    """Numba version of :func:`maxpool_backward_numpy`."""
    dx = np.empty(x_shape, dtype=dout.dtype)                     # (N, H, W, C)
    run_split(_maxpool_bwd_nb, x_shape[0], dx.size, np.ascontiguousarray(dout), arg, pool, dx)
    return dx
