"""Naive loop definitions: what conv, transposed conv and max-pool *mean*.

These are slow on purpose. They follow the textbook formulas one output
entry at a time, so that the fast kernels in :mod:`tinyvae.kernels` and the
layers in :mod:`tinyvae.layers` can be tested against them and the lessons
can show them. Layout is NHWC; conv weights are ``(KH, KW, C_in, C_out)``.
"""
import numpy as np

from .geometry import conv_geometry, conv_transpose_geometry


def conv2d_naive(x, w, b, stride=1, padding="valid"):
    """Cross-correlation by its definition.

    ``out[n, i, j, f] = b[f] + sum_{ki, kj, c} xpad[n, i*s + ki, j*s + kj, c] * w[ki, kj, c, f]``

    Parameters
    ----------
    x : (N, H, W, C)
    w : (KH, KW, C, F)
    b : (F,)

    Returns
    -------
    out : (N, Ho, Wo, F)
    """
    N, H, W, C = x.shape
    KH, KW, _, F = w.shape
    (Ho, Wo), (pt, pl), (sh, sw) = conv_geometry((H, W), (KH, KW), stride, padding)
    xp = np.zeros((N, H + KH + sh, W + KW + sw, C), dtype=x.dtype)  # roomy zero padding
    xp[:, pt:pt + H, pl:pl + W, :] = x
    out = np.empty((N, Ho, Wo, F), dtype=x.dtype)                    # (N, Ho, Wo, F)
    for n in range(N):
        for i in range(Ho):
            for j in range(Wo):
                window = xp[n, i * sh:i * sh + KH, j * sw:j * sw + KW, :]  # (KH, KW, C)
                for f in range(F):
                    out[n, i, j, f] = np.sum(window * w[:, :, :, f]) + b[f]
    return out


def conv_transpose2d_naive(x, w, b, stride=1, padding="valid", out_hw=None):
    """Transposed convolution by its definition: every input pixel paints a
    weighted copy of the kernel onto the output.

    ``out[n, i*s + ki - pt, j*s + kj - pl, c] += x[n, i, j, f] * w[ki, kj, c, f]``

    Parameters
    ----------
    x : (N, H, W, F)
    w : (KH, KW, C, F)  -- the same array a conv from C to F channels uses
    b : (C,)

    Returns
    -------
    out : (N, Ho, Wo, C); 'valid' stride 1 grows H and W by KH-1 and KW-1
    """
    N, H, W, F = x.shape
    KH, KW, C, _ = w.shape
    (Ho, Wo), (pt, pl), (sh, sw) = conv_transpose_geometry((H, W), (KH, KW), stride, padding, out_hw)
    big = np.zeros((N, Ho + KH + sh + pt, Wo + KW + sw + pl, C), dtype=x.dtype)
    for n in range(N):
        for i in range(H):
            for j in range(W):
                for f in range(F):
                    big[n, i * sh:i * sh + KH, j * sw:j * sw + KW, :] += x[n, i, j, f] * w[:, :, :, f]
    return big[:, pt:pt + Ho, pl:pl + Wo, :] + b                     # (N, Ho, Wo, C)


def maxpool_naive(x, pool=2):
    """Max over non-overlapping ``pool x pool`` windows; leftover rows/cols dropped."""
    N, H, W, C = x.shape
    Ho, Wo = H // pool, W // pool
    out = np.empty((N, Ho, Wo, C), dtype=x.dtype)                    # (N, Ho, Wo, C)
    for n in range(N):
        for i in range(Ho):
            for j in range(Wo):
                for c in range(C):
                    out[n, i, j, c] = x[n, i * pool:(i + 1) * pool, j * pool:(j + 1) * pool, c].max()
    return out
