"""im2col and its adjoint col2im: a convolution as one matrix product.

An im2col matrix has one row per output pixel ``(n, i, j)`` and one column
per window entry ``(ki, kj, c)``, so that
``cols @ w.reshape(KH * KW * C_in, C_out)`` is the convolution. col2im
scatters such rows back onto an image, adding where windows overlap: the
input gradient of a conv, and the forward pass of a transposed conv.
"""
import functools

import numpy as np
from numba import njit

from .split import run_split


def _padded_hw(H, W, KH, KW, stride, pad, out_hw):
    """Size of the zero-padded image every window of the conv fits in."""
    (sh, sw), (pt, pl), (Ho, Wo) = stride, pad, out_hw
    return max(H + pt, (Ho - 1) * sh + KH), max(W + pl, (Wo - 1) * sw + KW)


def im2col_numpy(x, KH, KW, stride, pad, out_hw):
    """Unfold the windows of ``x`` into rows.

    Parameters
    ----------
    x : (N, H, W, C) array
    KH, KW : int, window size
    stride : (sh, sw)
    pad : (top, left) zero padding (bottom/right padding is implied by out_hw)
    out_hw : (Ho, Wo) number of window positions

    Returns
    -------
    cols : (N * Ho * Wo, KH * KW * C) array, columns ordered (ki, kj, c)
    """
    N, H, W, C = x.shape
    (sh, sw), (pt, pl), (Ho, Wo) = stride, pad, out_hw
    Hp, Wp = _padded_hw(H, W, KH, KW, stride, pad, out_hw)
    xp = np.zeros((N, Hp, Wp, C), dtype=x.dtype)             # (N, Hp, Wp, C)
    xp[:, pt:pt + H, pl:pl + W, :] = x
    cols = np.empty((N, Ho, Wo, KH, KW, C), dtype=x.dtype)   # (N, Ho, Wo, KH, KW, C)
    for ki in range(KH):
        for kj in range(KW):
            cols[:, :, :, ki, kj, :] = xp[:, ki:ki + sh * (Ho - 1) + 1:sh,
                                          kj:kj + sw * (Wo - 1) + 1:sw, :]
    return cols.reshape(N * Ho * Wo, KH * KW * C)            # (N*Ho*Wo, KH*KW*C)


def col2im_numpy(cols, x_shape, KH, KW, stride, pad, out_hw):
    """Adjoint of :func:`im2col_numpy`: scatter-add rows back into an image.

    Parameters
    ----------
    cols : (N * Ho * Wo, KH * KW * C) array
    x_shape : (N, H, W, C) shape of the image to rebuild

    Returns
    -------
    x : (N, H, W, C) array, each pixel the sum of every window entry that saw it
    """
    N, H, W, C = x_shape
    (sh, sw), (pt, pl), (Ho, Wo) = stride, pad, out_hw
    Hp, Wp = _padded_hw(H, W, KH, KW, stride, pad, out_hw)
    cols6 = cols.reshape(N, Ho, Wo, KH, KW, C)               # (N, Ho, Wo, KH, KW, C)
    xp = np.zeros((N, Hp, Wp, C), dtype=cols.dtype)          # (N, Hp, Wp, C)
    for ki in range(KH):
        for kj in range(KW):
            xp[:, ki:ki + sh * (Ho - 1) + 1:sh,
               kj:kj + sw * (Wo - 1) + 1:sw, :] += cols6[:, :, :, ki, kj, :]
    return np.ascontiguousarray(xp[:, pt:pt + H, pl:pl + W, :])  # (N, H, W, C)


@njit(cache=True, nogil=True)
def _im2col_nb(x, KH, KW, sh, sw, pt, pl, Ho, Wo, cols, lo, hi):
    N, H, W, C = x.shape
    for n in range(lo, hi):
        for i in range(Ho):
            for j in range(Wo):
                row = (n * Ho + i) * Wo + j
                for ki in range(KH):
                    hi = i * sh - pt + ki
                    for kj in range(KW):
                        wj = j * sw - pl + kj
                        base = (ki * KW + kj) * C
                        if hi >= 0 and hi < H and wj >= 0 and wj < W:
                            for c in range(C):
                                cols[row, base + c] = x[n, hi, wj, c]
                        else:
                            for c in range(C):
                                cols[row, base + c] = 0.0


@njit(cache=True, nogil=True)
def _col2im_nb(cols, KH, KW, sh, sw, pt, pl, Ho, Wo, x, lo, hi):
    # each pixel receives its terms in the order of (i, j, ki, kj)
    N, H, W, C = x.shape
    for n in range(lo, hi):
        x[n] = 0.0
        for i in range(Ho):
            for j in range(Wo):
                row = (n * Ho + i) * Wo + j
                for ki in range(KH):
                    hi = i * sh - pt + ki
                    if hi < 0 or hi >= H:
                        continue
                    for kj in range(KW):
                        wj = j * sw - pl + kj
                        if wj < 0 or wj >= W:
                            continue
                        base = (ki * KW + kj) * C
                        for c in range(C):
                            x[n, hi, wj, c] += cols[row, base + c]


# Few channels, stride 1, no padding (the first conv and the last transposed
# conv): the KW taps of kernel row ki for output pixel (i, j) are the KW*C
# consecutive numbers of x's row i + ki from column j on, so whole runs are
# copied (or added), in the same order as the loops above. The kernels are
# compiled once per (KW, C), so that the run's length (9 numbers for a 3x3
# kernel on 3 channels) is a constant to the compiler, which unrolls the copy.
SMALL_C = 8


@functools.lru_cache(maxsize=None)
def _runs_kernels(KW, C):
    """``(im2col, col2im)`` copying runs of ``KW * C`` numbers, compiled for this ``(KW, C)``."""
    run = KW * C

    @njit(cache=True, nogil=True, error_model="numpy")
    def im2col(x, KH, Ho, Wo, cols, lo, hi):
        W = x.shape[2]
        xs, cs = x[lo:hi], cols[lo * Ho * Wo:hi * Ho * Wo]   # slices: indices from 0 up
        for n in range(hi - lo):
            for i in range(Ho):
                for ki in range(KH):
                    src = xs[n, i + ki].reshape(W * C)                 # (W*C,)
                    for j in range(Wo):
                        dst = cs[(n * Ho + i) * Wo + j]                # (KH*KW*C,)
                        for m in range(run):
                            dst[ki * run + m] = src[j * C + m]

    @njit(cache=True, nogil=True, error_model="numpy")
    def col2im(cols, KH, Ho, Wo, x, lo, hi):
        W = x.shape[2]
        xs, cs = x[lo:hi], cols[lo * Ho * Wo:hi * Ho * Wo]
        for n in range(hi - lo):
            xs[n] = 0.0
            for i in range(Ho):
                for ki in range(KH):
                    dst = xs[n, i + ki].reshape(W * C)                 # (W*C,)
                    for j in range(Wo):
                        src = cs[(n * Ho + i) * Wo + j]                # (KH*KW*C,)
                        for m in range(run):
                            dst[j * C + m] += src[ki * run + m]

    return im2col, col2im


def _runs_apply(shape, KH, KW, stride, pad, out_hw):
    """Whether the run-copying kernels fit: few channels, stride 1, no padding, 'valid' sizes."""
    N, H, W, C = shape
    return (C < SMALL_C and tuple(stride) == (1, 1) and tuple(pad) == (0, 0)
            and (H, W) == (out_hw[0] + KH - 1, out_hw[1] + KW - 1))


def im2col_numba(x, KH, KW, stride, pad, out_hw):
    """Numba version of :func:`im2col_numpy` (same arguments, same result bit for bit)."""
    N, H, W, C = x.shape
    Ho, Wo = out_hw
    x = np.ascontiguousarray(x)
    cols = np.empty((N * Ho * Wo, KH * KW * C), dtype=x.dtype)  # (N*Ho*Wo, KH*KW*C)
    if _runs_apply(x.shape, KH, KW, stride, pad, out_hw):
        run_split(_runs_kernels(KW, C)[0], N, cols.size, x, KH, Ho, Wo, cols)
    else:
        run_split(_im2col_nb, N, cols.size, x, KH, KW, stride[0], stride[1], pad[0], pad[1], Ho, Wo, cols)
    return cols


def col2im_numba(cols, x_shape, KH, KW, stride, pad, out_hw):
    """Numba version of :func:`col2im_numpy` (same arguments; the same sums in another order)."""
    Ho, Wo = out_hw
    x = np.empty(x_shape, dtype=cols.dtype)                  # (N, H, W, C)
    cols = np.ascontiguousarray(cols)
    if _runs_apply(x_shape, KH, KW, stride, pad, out_hw):
        run_split(_runs_kernels(KW, x_shape[3])[1], x_shape[0], cols.size, cols, KH, Ho, Wo, x)
    else:
        run_split(_col2im_nb, x_shape[0], cols.size, cols, KH, KW,
                  stride[0], stride[1], pad[0], pad[1], Ho, Wo, x)
    return x
