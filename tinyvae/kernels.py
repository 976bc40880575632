"""Hot loops, twice: a numba fast path and a plain NumPy reference.

Every kernel here exists as ``name_numpy`` (vectorised NumPy, the reference)
and ``name_numba`` (``@njit(cache=True)``, the fast path). The public name
``name(..., backend=None)`` picks one:

* ``backend="numba"`` or ``backend="numpy"`` explicitly, or
* ``backend=None``: the environment variable ``TINYVAE_KERNELS`` (read at
  call time, default ``"numba"``).

Tests run both and compare them on random shapes. The layers in
:mod:`tinyvae.layers` are built on these kernels; the *naive* loop versions
that define what the kernels compute live in :mod:`tinyvae.reference`.

Layout is NHWC everywhere: images ``(N, H, W, C)``, conv weights
``(KH, KW, C_in, C_out)``. The numba kernels do not use numba's own
parallel loops: next to BLAS's threads, numba's thread pool made a training
step 2-3x *slower* on a 2-core machine (both pools spin while they wait).
Instead every kernel releases the GIL and works on a range of its outer
loop, and :func:`run_split` hands the ranges to a few plain threads (all
but the bias-gradient column sum, which takes a fraction of a millisecond
and whose order of additions is kept the same as NumPy's).

An im2col matrix has one row per output pixel ``(n, i, j)`` and one column
per ``(ki, kj, c)``, so that ``cols @ w.reshape(KH * KW * C_in, C_out)`` is
the convolution.
"""
import os
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from numba import njit

from .archs import BACKENDS
from .errors import ConfigError


def get_backend(backend=None):
    """Resolve ``backend`` (None -> ``$TINYVAE_KERNELS`` -> ``"numba"``)."""
    if backend is None:
        backend = os.environ.get("TINYVAE_KERNELS") or "numba"
    if backend not in BACKENDS:
        raise ConfigError(f"unknown kernel backend {backend!r}; accepted: {', '.join(BACKENDS)}")
    return backend

# --------------------------------------------------------------------------
# threads: every numba kernel releases the GIL and takes a [lo, hi) range of
# its outer loop, so a few Python threads can share the work
# --------------------------------------------------------------------------

MIN_WORK_PER_THREAD = 1 << 15
_pool, _pool_size = None, 0


def kernel_threads():
    """Threads the numba kernels use: numba's setting (see :mod:`tinyvae.threads`)."""
    return numba.get_num_threads()


def run_split(kernel, total, work, *args):
    """Run ``kernel(*args, lo, hi)`` over ``range(total)``, split across
    :func:`kernel_threads` threads when ``work`` (elements touched) is large
    enough to pay for it. Chunks are disjoint, so results do not depend on
    the thread count."""
    global _pool, _pool_size
    t = min(kernel_threads(), total, max(1, work // MIN_WORK_PER_THREAD))
    if t <= 1:
        kernel(*args, 0, total)
        return
    if _pool_size < t - 1:                               # helper threads, made once
        _pool_size = max(t - 1, numba.config.NUMBA_NUM_THREADS - 1)
        _pool = ThreadPoolExecutor(max_workers=_pool_size, thread_name_prefix="tinyvae")
    bounds = [total * i // t for i in range(t + 1)]
    futures = [_pool.submit(kernel, *args, lo, hi) for lo, hi in zip(bounds[1:-1], bounds[2:])]
    kernel(*args, bounds[0], bounds[1])                  # this thread takes the first chunk
    for f in futures:
        f.result()



# --------------------------------------------------------------------------
# im2col / col2im
# --------------------------------------------------------------------------

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
    Hp = max(H + pt, (Ho - 1) * sh + KH)                     # padded height
    Wp = max(W + pl, (Wo - 1) * sw + KW)                     # padded width
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
    Hp = max(H + pt, (Ho - 1) * sh + KH)
    Wp = max(W + pl, (Wo - 1) * sw + KW)
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
# copied (or added). With C = 1 or 3 that is 1.4-2.8x faster than the loops
# above; with many channels the loops above vectorise over C and are faster.
SMALL_C = 8


@njit(cache=True, nogil=True, error_model="numpy")
def _im2col_s1_nb(x, KH, KW, Ho, Wo, cols, lo, hi):
    N, H, W, C = x.shape
    run = KW * C
    xs, cs = x[lo:hi], cols[lo * Ho * Wo:hi * Ho * Wo]   # slices: indices from 0 up
    for n in range(hi - lo):
        for i in range(Ho):
            for ki in range(KH):
                src = xs[n, i + ki].reshape(W * C)                     # (W*C,)
                for j in range(Wo):
                    dst = cs[(n * Ho + i) * Wo + j]                    # (KH*KW*C,)
                    for m in range(run):
                        dst[ki * run + m] = src[j * C + m]


@njit(cache=True, nogil=True, error_model="numpy")
def _col2im_s1_nb(cols, KH, KW, Ho, Wo, x, lo, hi):
    # each pixel receives its terms in the order of (i, j, ki, kj), as in _col2im_nb
    N, H, W, C = x.shape
    run = KW * C
    xs, cs = x[lo:hi], cols[lo * Ho * Wo:hi * Ho * Wo]
    for n in range(hi - lo):
        xs[n] = 0.0
        for i in range(Ho):
            for ki in range(KH):
                dst = xs[n, i + ki].reshape(W * C)                     # (W*C,)
                for j in range(Wo):
                    src = cs[(n * Ho + i) * Wo + j]                    # (KH*KW*C,)
                    for m in range(run):
                        dst[j * C + m] += src[ki * run + m]


def _runs_apply(shape, KH, KW, stride, pad, out_hw):
    """Whether the run-copying kernels fit: few channels, stride 1, no padding, 'valid' sizes."""
    N, H, W, C = shape
    return (C < SMALL_C and tuple(stride) == (1, 1) and tuple(pad) == (0, 0)
            and (H, W) == (out_hw[0] + KH - 1, out_hw[1] + KW - 1))


def im2col_numba(x, KH, KW, stride, pad, out_hw):
    """Numba version of :func:`im2col_numpy` (same arguments and result)."""
    N, H, W, C = x.shape
    Ho, Wo = out_hw
    x = np.ascontiguousarray(x)
    cols = np.empty((N * Ho * Wo, KH * KW * C), dtype=x.dtype)  # (N*Ho*Wo, KH*KW*C)
    if _runs_apply(x.shape, KH, KW, stride, pad, out_hw):
        run_split(_im2col_s1_nb, N, cols.size, x, KH, KW, Ho, Wo, cols)
    else:
        run_split(_im2col_nb, N, cols.size, x, KH, KW, stride[0], stride[1], pad[0], pad[1], Ho, Wo, cols)
    return cols


def col2im_numba(cols, x_shape, KH, KW, stride, pad, out_hw):
    """Numba version of :func:`col2im_numpy` (same arguments and result)."""
    Ho, Wo = out_hw
    x = np.empty(x_shape, dtype=cols.dtype)                  # (N, H, W, C)
    cols = np.ascontiguousarray(cols)
    if _runs_apply(x_shape, KH, KW, stride, pad, out_hw):
        run_split(_col2im_s1_nb, x_shape[0], cols.size, cols, KH, KW, Ho, Wo, x)
    else:
        run_split(_col2im_nb, x_shape[0], cols.size, cols, KH, KW,
                  stride[0], stride[1], pad[0], pad[1], Ho, Wo, x)
    return x


def im2col(x, KH, KW, stride, pad, out_hw, backend=None):
    """Dispatch to :func:`im2col_numba` or :func:`im2col_numpy`."""
    if get_backend(backend) == "numba":
        return im2col_numba(x, KH, KW, stride, pad, out_hw)
    return im2col_numpy(x, KH, KW, stride, pad, out_hw)


def col2im(cols, x_shape, KH, KW, stride, pad, out_hw, backend=None):
    """Dispatch to :func:`col2im_numba` or :func:`col2im_numpy`."""
    if get_backend(backend) == "numba":
        return col2im_numba(cols, x_shape, KH, KW, stride, pad, out_hw)
    return col2im_numpy(cols, x_shape, KH, KW, stride, pad, out_hw)


# --------------------------------------------------------------------------
# im2col / col2im over a nearest-upsampled grid (fused upsample + convT)
# --------------------------------------------------------------------------
#
# A transposed conv applied to a nearest-upsampled image u (u[p] = x[p // f])
# sees every input row f*f times. So the matrix product can run on x itself,
# f*f times fewer rows, and the upsampling is folded into the index arithmetic
# of col2im (forward) and im2col (backward). Stride 1, 'valid' padding.

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
    # then a plain stride-f im2col of those sums. Each box is added up once
    # instead of once per tap that sees it, in the same order (a, b) as the
    # one-pass loop, so the result is the same bit for bit.
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


def col2im_up(cols, out_shape, KH, KW, factor, in_hw, backend=None):
    """Dispatch to the numba or NumPy upsampling col2im."""
    if get_backend(backend) == "numba":
        return col2im_up_numba(cols, out_shape, KH, KW, factor, in_hw)
    return col2im_up_numpy(cols, out_shape, KH, KW, factor, in_hw)


def im2col_up(dout, KH, KW, factor, in_hw, backend=None):
    """Dispatch to the numba or NumPy block-summing im2col."""
    if get_backend(backend) == "numba":
        return im2col_up_numba(dout, KH, KW, factor, in_hw)
    return im2col_up_numpy(dout, KH, KW, factor, in_hw)


# --------------------------------------------------------------------------
# ReLU
# --------------------------------------------------------------------------

def relu_forward_numpy(x):
    """``max(x, 0)`` elementwise (NaN stays NaN); any shape."""
    return np.maximum(x, 0)                                            # same shape as x


def relu_backward_numpy(dout, out):
    """``dout`` where the ReLU's output ``out`` was positive, else 0."""
    return dout * (out > 0)                                            # same shape as dout


@njit(cache=True, nogil=True)
def _relu_fwd_nb(x, out, lo, hi):
    zero = x.dtype.type(0.0)
    x, out = x[lo:hi], out[lo:hi]
    for k in range(x.size):
        v = x[k]
        out[k] = v if (v > zero or v != v) else zero                   # np.maximum's rule: NaN wins


@njit(cache=True, nogil=True)
def _relu_bwd_nb(dout, out, dx, lo, hi):
    zero, one = dx.dtype.type(0.0), dx.dtype.type(1.0)
    dout, out, dx = dout[lo:hi], out[lo:hi], dx[lo:hi]
    for k in range(dx.size):
        dx[k] = dout[k] * (one if out[k] > zero else zero)             # as NumPy's dout * (out > 0)


def relu_forward_numba(x):
    """Numba version of :func:`relu_forward_numpy`, bit for bit (signed zeros and NaNs too)."""
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)                                             # same shape as x
    run_split(_relu_fwd_nb, x.size, x.size, x.reshape(-1), out.reshape(-1))
    return out


def relu_backward_numba(dout, out):
    """Numba version of :func:`relu_backward_numpy`, bit for bit."""
    dout, out = np.ascontiguousarray(dout), np.ascontiguousarray(out)
    dx = np.empty_like(dout)                                           # same shape as dout
    run_split(_relu_bwd_nb, dx.size, dx.size, dout.reshape(-1), out.reshape(-1), dx.reshape(-1))
    return dx


def relu_forward(x, backend=None):
    """Dispatch to the numba or NumPy ReLU."""
    if get_backend(backend) == "numba":
        return relu_forward_numba(x)
    return relu_forward_numpy(x)


def relu_backward(dout, out, backend=None):
    """Dispatch to the numba or NumPy ReLU backward."""
    if get_backend(backend) == "numba":
        return relu_backward_numba(dout, out)
    return relu_backward_numpy(dout, out)


# --------------------------------------------------------------------------
# bias: added to every row, and its gradient (column sums)
# --------------------------------------------------------------------------

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
    """Numba version of :func:`bias_add_numpy`: the same sums, about 3x faster
    than NumPy's broadcast add on a conv's output (one short inner loop per row).
    Arrays that are not C-contiguous are left to NumPy."""
    if not (a.flags.c_contiguous and b.flags.c_contiguous and a.dtype == b.dtype
            and a.ndim >= 1 and a.shape[-1] == b.size):
        return bias_add_numpy(a, b)
    a2 = a.reshape(-1, b.size)            # (rows, C): a view, since a is C-contiguous
    run_split(_bias_add_nb, a2.shape[0], a2.size, a2, b)


def bias_add(a, b, backend=None):
    """Dispatch to the numba or NumPy in-place bias add."""
    if get_backend(backend) == "numba":
        return bias_add_numba(a, b)
    return bias_add_numpy(a, b)


def bias_grad_numpy(dout2):
    """The gradient of a bias added to every row: ``dout2`` summed over its rows.

    dout2 : (R, C) -> db : (C,)
    """
    return dout2.sum(axis=0)                                           # (C,)


@njit(cache=True, nogil=True)
def _colsum_nb(a, out):
    # A fresh local accumulator, which LLVM knows overlaps nothing, lets the
    # channel loop vectorise; accumulating into ``out`` kept it scalar.
    acc = np.zeros(a.shape[1], a.dtype)                                # (C,)
    for r in range(a.shape[0]):
        row = a[r]
        for c in range(acc.size):
            acc[c] += row[c]
    out[:] = acc


def bias_grad_numba(dout2):
    """Numba version of :func:`bias_grad_numpy`, 4x faster on a conv's output.

    It adds the rows in order, as NumPy does for C-contiguous rows of two
    or more columns, so the result is NumPy's bit for bit. A single column
    or a column-major array NumPy sums pairwise instead; those are left to NumPy.
    """
    if dout2.shape[1] == 1 or not dout2.flags.c_contiguous:
        return dout2.sum(axis=0)                                       # (C,)
    db = np.empty(dout2.shape[1], dtype=dout2.dtype)                   # (C,)
    _colsum_nb(dout2, db)
    return db


def bias_grad(dout2, backend=None):
    """Dispatch to the numba or NumPy column sum."""
    if get_backend(backend) == "numba":
        return bias_grad_numba(dout2)
    return bias_grad_numpy(dout2)


# --------------------------------------------------------------------------
# max-pool with its arg-max
# --------------------------------------------------------------------------

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


@njit(cache=True, nogil=True)
def _maxpool_fwd_nb(x, pool, out, arg, lo, hi):
    # The channel loop is innermost, so each comparison runs on a whole
    # vector of channels; a strict ">" keeps the first maximum on ties.
    N, Ho, Wo, C = out.shape
    for n in range(lo, hi):
        for i in range(Ho):
            for j in range(Wo):
                best, bk = out[n, i, j], arg[n, i, j]                  # (C,) twice
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


def maxpool_forward(x, pool, backend=None):
    """Dispatch to the numba or NumPy max-pool forward."""
    if get_backend(backend) == "numba":
        return maxpool_forward_numba(x, pool)
    return maxpool_forward_numpy(x, pool)


def maxpool_backward(dout, arg, x_shape, pool, backend=None):
    """Dispatch to the numba or NumPy max-pool backward."""
    if get_backend(backend) == "numba":
        return maxpool_backward_numba(dout, arg, x_shape, pool)
    return maxpool_backward_numpy(dout, arg, x_shape, pool)


# --------------------------------------------------------------------------
# Adam update, fused
# --------------------------------------------------------------------------

def adam_update_numpy(p, g, m, v, lr_t, beta1, beta2, eps):
    """In place: ``m, v`` moments, then ``p -= lr_t * m / (sqrt(v) + eps)``."""
    m *= beta1
    m += (1.0 - beta1) * g
    v *= beta2
    v += (1.0 - beta2) * (g * g)
    p -= lr_t * m / (np.sqrt(v) + eps)


@njit(cache=True, nogil=True, error_model="numpy")
def _adam_nb(p, g, m, v, lr_t, beta1, beta2, eps, lo, hi):
    # The slices make every index of the loop provably >= 0, and error_model="numpy"
    # drops the division-by-zero check: together they let LLVM vectorise the loop
    # (3.4x faster, bit for bit the same; a negative index or a raising division
    # each kept it scalar).
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
    """Numba version of :func:`adam_update_numpy` (one pass over memory).

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


def adam_update(p, g, m, v, lr_t, beta1, beta2, eps, backend=None):
    """Dispatch to the numba or NumPy in-place Adam update."""
    if get_backend(backend) == "numba":
        return adam_update_numba(p, g, m, v, lr_t, beta1, beta2, eps)
    return adam_update_numpy(p, g, m, v, lr_t, beta1, beta2, eps)
