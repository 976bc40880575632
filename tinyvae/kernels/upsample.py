"""col2im and im2col over a nearest-upsampled grid: upsampling fused into a transposed conv.

A transposed conv applied to a nearest-upsampled image ``u`` (``u[p] =
x[p // f]``) sees every input row ``f * f`` times. So the matrix product can
run on ``x`` itself, ``f * f`` times fewer rows, and the upsampling is folded
into the index arithmetic of col2im (forward) and im2col (backward).
Stride 1, 'valid' padding.
"""
import numpy as np
from numba import njit

from .split import run_split
from .unfold import col2im_numpy, im2col_numpy


def col2im_up_numpy(cols, out_shape, KH, KW, factor, in_hw):
    """col2im of ``cols`` repeated onto the ``factor``-upsampled grid.

    cols : (N * H * W, KH * KW * C), one row per *input* pixel
    out_shape : (N, f*H + KH - 1, f*W + KW - 1, C)

    Returns out : out_shape
    """
    N, H, W, f = out_shape[0], in_hw[0], in_hw[1], factor
    up = cols.reshape(N, H, 1, W, 1, -1)                               # (N, H, 1, W, 1, K)
    up = np.broadcast_to(up, (N, H, f, W, f, up.shape[-1])).reshape(N * H * f * W * f, -1)
    return col2im_numpy(up, out_shape, KH, KW, (1, 1), (0, 0), (f * H, f * W))


def im2col_up_numpy(dout, KH, KW, factor, in_hw):
    """Adjoint of :func:`col2im_up_numpy`: im2col of ``dout`` on the upsampled
    grid, each f x f block of rows summed into one row per input pixel.

    dout : (N, f*H + KH - 1, f*W + KW - 1, C)

    Returns cols : (N * H * W, KH * KW * C)
    """
    N, (H, W), f = dout.shape[0], in_hw, factor
    cols = im2col_numpy(dout, KH, KW, (1, 1), (0, 0), (f * H, f * W))  # (N*fH*fW, K)
    cols = cols.reshape(N, H, f, W, f, -1).sum(axis=(2, 4))            # (N, H, W, K)
    return cols.reshape(N * H * W, -1)


@njit(cache=True, nogil=True)
def _col2im_up_nb(cols, KH, KW, f, H, W, out, lo, hi):
    N, Ho, Wo, C = out.shape
    for n in range(lo, hi):
        out[n] = 0.0
        for iu in range(f * H):
            for ju in range(f * W):
                row = (n * H + iu // f) * W + ju // f
                for ki in range(KH):
                    for kj in range(KW):
                        base = (ki * KW + kj) * C
                        for c in range(C):
                            out[n, iu + ki, ju + kj, c] += cols[row, base + c]


@njit(cache=True, nogil=True)
def _im2col_up_nb(dout, KH, KW, f, H, W, cols, lo, hi):
    # Two passes per image: first the f x f box sums of dout at every offset,
    # then a plain stride-f im2col of those sums, so each box is added up once.
    N, Ho, Wo, C = dout.shape
    Hb, Wb = Ho - f + 1, Wo - f + 1
    box = np.empty((Hb, Wb, C), dout.dtype)                           # (Hb, Wb, C)
    for n in range(lo, hi):
        d = dout[n]                                                    # (Ho, Wo, C)
        for r in range(Hb):
            for s in range(Wb):
                bx = box[r, s]
                for c in range(C):
                    bx[c] = 0.0
                for a in range(f):
                    for b in range(f):
                        src = d[r + a, s + b]
                        for c in range(C):
                            bx[c] += src[c]
        for i in range(H):
            for j in range(W):
                crow = cols[(n * H + i) * W + j]                       # (KH*KW*C,)
                for ki in range(KH):
                    for kj in range(KW):
                        src = box[f * i + ki, f * j + kj]
                        base = (ki * KW + kj) * C
                        for c in range(C):
                            crow[base + c] = src[c]


def col2im_up_numba(cols, out_shape, KH, KW, factor, in_hw):
    """Numba version of :func:`col2im_up_numpy`."""
    out = np.empty(out_shape, dtype=cols.dtype)                        # (N, Ho, Wo, C)
    run_split(_col2im_up_nb, out_shape[0], out.size * KH * KW, np.ascontiguousarray(cols),
              KH, KW, factor, in_hw[0], in_hw[1], out)
    return out


def im2col_up_numba(dout, KH, KW, factor, in_hw):
    """Numba version of :func:`im2col_up_numpy`."""
    N, C = dout.shape[0], dout.shape[3]
    cols = np.empty((N * in_hw[0] * in_hw[1], KH * KW * C), dtype=dout.dtype)  # (N*H*W, K)
    run_split(_im2col_up_nb, N, cols.size * factor * factor, np.ascontiguousarray(dout),
              KH, KW, factor, in_hw[0], in_hw[1], cols)
    return cols
