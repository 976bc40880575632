"""Forward values against definitions (acceptance check 3).

conv2d against ``reference.conv2d_naive`` *and* a window sum written out here;
transposed conv as the adjoint of conv and against ``reference.conv_transpose2d_naive``;
max-pool against ``reference.maxpool_naive`` and hand-made examples; upsampling;
the reparameterization's moments; closed-form KL against Monte Carlo; a sigmoid
that survives +-1000; the squared error against its definition.

Float64 comparisons use ``rtol=1e-12`` with an ``atol`` of ``1e-12`` times the
size of the terms summed (``sum |x| |w|``-style scale): an output that is a sum
of products can cancel to nearly zero, and then only an absolute bound on the
rounding error is meaningful.
"""
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from tinyvae import layers as L
from tinyvae import reference
from tinyvae.losses import kl_loss, kl_per_dim, sse_loss

BACKENDS = ("numpy", "numba")
RTOL = 1e-12

# (N, H, W, C, F, (KH, KW), stride, padding)
CONV_CASES = [
    (2, 7, 7, 1, 2, (3, 3), 1, "valid"),
    (3, 9, 6, 3, 4, (3, 3), 1, "same"),
    (2, 9, 9, 3, 3, (3, 3), 2, "valid"),
    (2, 7, 8, 1, 4, (3, 3), 2, "same"),
    (1, 5, 7, 3, 1, (1, 1), 1, "valid"),
    (2, 8, 5, 2, 3, (2, 2), 2, "same"),
    (2, 6, 9, 3, 2, (4, 4), 1, "same"),
    (2, 11, 7, 1, 2, (5, 5), 2, "valid"),
    (2, 7, 9, 3, 2, (2, 3), (1, 2), "same"),
    (4, 3, 3, 3, 5, (3, 3), 1, "valid"),
    (1, 12, 10, 5, 2, (4, 2), (2, 1), "same"),
]


def _conv_id(c):
    N, H, W, C, F, (KH, KW), s, p = c
    s = s if isinstance(s, int) else "%dx%d" % s
    return f"N{N}-{H}x{W}x{C}-F{F}-k{KH}x{KW}-s{s}-{p}"


def _atol(x, w):
    """Absolute rounding bound for sums of products of x and w entries."""
    KH, KW, C, F = w.shape
    return RTOL * KH * KW * max(C, F) * np.abs(x).max() * np.abs(w).max()


def tf_same_pads(H, K, s):
    """TensorFlow's 'same' rule, written independently of tinyvae.geometry."""
    Ho = (H + s - 1) // s
    total = max((Ho - 1) * s + K - H, 0)
    return Ho, total // 2


def window_sum(x, w, b, n, i, j, f, stride, padding):
    """One conv output entry as an explicit loop over its window (zero outside the image)."""
    _, H, W, C = x.shape
    KH, KW = w.shape[:2]
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    pt = tf_same_pads(H, KH, sh)[1] if padding == "same" else 0
    pl = tf_same_pads(W, KW, sw)[1] if padding == "same" else 0
    total = b[f]
    for ki in range(KH):
        for kj in range(KW):
            r, c = i * sh + ki - pt, j * sw + kj - pl
            if 0 <= r < H and 0 <= c < W:
                for ch in range(C):
                    total += x[n, r, c, ch] * w[ki, kj, ch, f]
    return total


# ----------------------------------------------------------------------------- conv2d

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CONV_CASES, ids=_conv_id)
def test_conv2d_equals_definition(case, backend):
    N, H, W, C, F, (KH, KW), stride, padding = case
    rng = np.random.default_rng(CONV_CASES.index(case))
    x = rng.standard_normal((N, H, W, C))
    w = rng.standard_normal((KH, KW, C, F))
    b = rng.standard_normal(F)
    out, _ = L.conv2d_forward(x, w, b, stride, padding, backend)
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    if padding == "valid":
        Ho, Wo = (H - KH) // sh + 1, (W - KW) // sw + 1
    else:
        Ho, Wo = tf_same_pads(H, KH, sh)[0], tf_same_pads(W, KW, sw)[0]
    assert out.shape == (N, Ho, Wo, F)
    assert out.dtype == np.float64
    assert_allclose(out, reference.conv2d_naive(x, w, b, stride, padding), rtol=RTOL, atol=_atol(x, w))
    # an independent window sum at a few entries, corners included
    picks = [(0, 0, 0, 0), (N - 1, Ho - 1, Wo - 1, F - 1)]
    picks += [tuple(int(rng.integers(d)) for d in (N, Ho, Wo, F)) for _ in range(6)]
    for n, i, j, f in picks:
        assert_allclose(out[n, i, j, f], window_sum(x, w, b, n, i, j, f, stride, padding),
                        rtol=RTOL, atol=_atol(x, w), err_msg=str((n, i, j, f)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv2d_hand_example(backend):
    """4x4 ramp, 2x2 kernel [[1, 2], [3, 4]], bias 0.5: every entry worked out by hand."""
    x = np.arange(16, dtype=np.float64).reshape(1, 4, 4, 1)
    w = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(2, 2, 1, 1)
    b = np.array([0.5])
    out, _ = L.conv2d_forward(x, w, b, 1, "valid", backend)
    # out[i, j] = x[i,j] + 2 x[i,j+1] + 3 x[i+1,j] + 4 x[i+1,j+1] + 0.5 with x[i,j] = 4i + j
    #           = 10 * (4i + j) + 2 + 12 + 4 * 5 + 0.5 = 40 i + 10 j + 34.5
    expect = np.array([[40 * i + 10 * j + 34.5 for j in range(3)] for i in range(3)])
    assert_array_equal(out[0, :, :, 0], expect)
    # stride 2, 'same' on 4x4 with a 2x2 kernel: no padding needed, windows at 0 and 2
    out, _ = L.conv2d_forward(x, w, b, 2, "same", backend)
    assert_array_equal(out[0, :, :, 0], expect[::2, ::2])
    # 'same' stride 1: one row/col of zeros at the bottom/right (smaller half on top)
    out, _ = L.conv2d_forward(x, w, b, 1, "same", backend)
    assert out.shape == (1, 4, 4, 1)
    assert_array_equal(out[0, :3, :3, 0], expect)
    assert out[0, 3, 3, 0] == 15 * 1 + 0.5


# ----------------------------------------------------------------------- transposed conv

# (N, Hx, Wx, C, F, K, stride, padding): conv (Hx, Wx, C) -> (Ho, Wo, F); convT maps back
ADJOINT_CASES = [
    (2, 7, 7, 1, 2, 3, 1, "valid"),
    (2, 6, 5, 3, 2, 3, 1, "same"),
    (2, 9, 7, 2, 3, 3, 2, "valid"),
    (2, 8, 10, 2, 3, 3, 2, "valid"),   # stride does not divide H - K: out_hw needed
    (2, 9, 7, 3, 1, 3, 2, "same"),     # odd stride-2 'same': out_hw needed
    (3, 8, 8, 1, 4, 3, 2, "same"),
    (2, 7, 6, 2, 2, 4, 2, "same"),
    (1, 5, 5, 4, 3, 2, 1, "same"),
    (2, 10, 9, 3, 2, 5, 3, "valid"),
    (2, 6, 6, 2, 2, 1, 2, "valid"),
]


def _adj_id(c):
    return "N%d-%dx%dx%d-F%d-k%d-s%d-%s" % c


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", ADJOINT_CASES, ids=_adj_id)
def test_conv_transpose_is_adjoint_of_conv(case, backend):
    """<conv(x), y> == <x, convT(y)> with the same w and zero bias."""
    N, H, W, C, F, K, stride, padding = case
    rng = np.random.default_rng(100 + ADJOINT_CASES.index(case))
    x = rng.standard_normal((N, H, W, C))
    w = rng.standard_normal((K, K, C, F))
    cx, _ = L.conv2d_forward(x, w, np.zeros(F), stride, padding, backend)
    y = rng.standard_normal(cx.shape)
    ty, _ = L.conv_transpose2d_forward(y, w, np.zeros(C), stride, padding, backend, out_hw=(H, W))
    assert ty.shape == x.shape
    lhs, rhs = np.sum(cx * y), np.sum(x * ty)
    scale = np.sum(np.abs(cx * y)) + np.sum(np.abs(x * ty))
    assert abs(lhs - rhs) <= 1e-12 * scale, (lhs, rhs)
    # and a different w is *not* adjoint (the identity is not vacuous)
    ty2, _ = L.conv_transpose2d_forward(y, w[::-1, ::-1] + 0.1, np.zeros(C), stride, padding,
                                        backend, out_hw=(H, W))
    assert abs(lhs - np.sum(x * ty2)) > 1e-6 * scale


# (N, H, W, F, C, K, stride, padding, out_hw)
CONVT_CASES = [
    (2, 4, 5, 2, 1, 3, 1, "valid", None),
    (2, 5, 3, 1, 3, 3, 1, "same", None),
    (2, 3, 4, 2, 3, 3, 2, "valid", None),
    (3, 4, 3, 3, 1, 3, 2, "same", None),
    (2, 4, 3, 2, 2, 3, 2, "same", (7, 5)),
    (2, 3, 3, 1, 2, 2, 2, "valid", None),
    (2, 5, 4, 3, 2, 4, 1, "same", None),
    (2, 3, 4, 2, 1, 3, 2, "valid", (8, 10)),
    (1, 4, 4, 3, 3, 1, 1, "valid", None),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CONVT_CASES, ids=lambda c: "N%d-%dx%dx%d-C%d-k%d-s%d-%s-%s" % c)
def test_conv_transpose2d_equals_definition(case, backend):
    N, H, W, F, C, K, stride, padding, out_hw = case
    rng = np.random.default_rng(200 + CONVT_CASES.index(case))
    x = rng.standard_normal((N, H, W, F))
    w = rng.standard_normal((K, K, C, F))
    b = rng.standard_normal(C)
    out, _ = L.conv_transpose2d_forward(x, w, b, stride, padding, backend, out_hw)
    expect = reference.conv_transpose2d_naive(x, w, b, stride, padding, out_hw)
    if out_hw is None:
        out_hw = ((H - 1) * stride + K, (W - 1) * stride + K) if padding == "valid" else (H * stride, W * stride)
    assert out.shape == expect.shape == (N,) + tuple(out_hw) + (C,)
    assert_allclose(out, expect, rtol=RTOL, atol=_atol(x, w))


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv_transpose2d_hand_example(backend):
    """A single pixel paints the kernel; two pixels at stride 2 with a 3x3 kernel overlap by one column."""
    w = np.arange(1.0, 10.0).reshape(3, 3, 1, 1)
    x = np.zeros((1, 1, 2, 1))
    x[0, 0, 0, 0], x[0, 0, 1, 0] = 1.0, 10.0
    out, _ = L.conv_transpose2d_forward(x, w, np.zeros(1), 2, "valid", backend)
    assert out.shape == (1, 3, 5, 1)
    k = w[:, :, 0, 0]
    expect = np.zeros((3, 5))
    expect[:, 0:3] += k
    expect[:, 2:5] += 10 * k
    assert_array_equal(out[0, :, :, 0], expect)


# ------------------------------------------------------------------------ pooling

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(2, 13, 13, 1), (3, 7, 5, 3), (2, 6, 9, 3), (1, 3, 3, 4), (2, 9, 11, 2)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("pool", [2, 3])
def test_maxpool_equals_definition(shape, pool, backend):
    rng = np.random.default_rng(int(np.prod(shape)) + pool)
    x = rng.standard_normal(shape)
    out, _ = L.maxpool_forward(x, pool, backend)
    assert out.shape == (shape[0], shape[1] // pool, shape[2] // pool, shape[3])
    assert_array_equal(out, reference.maxpool_naive(x, pool))


@pytest.mark.parametrize("backend", BACKENDS)
def test_maxpool_hand_example_and_flooring(backend):
    x = np.array([[1, 5, 2, 0],
                  [3, 4, 8, 7],
                  [-1, -2, 0, 6],
                  [-3, -4, 9, 1]], dtype=np.float64).reshape(1, 4, 4, 1)
    out, cache = L.maxpool_forward(x, 2, backend)
    assert_array_equal(out[0, :, :, 0], [[5, 8], [-1, 9]])
    dx = L.maxpool_backward(np.ones_like(out), cache)
    assert_array_equal(dx[0, :, :, 0], [[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 1, 0]])
    # 13 -> 6: the last row and column are dropped, however large they are
    x = np.zeros((1, 13, 13, 2))
    x[0, 12, :, :] = 100.0
    x[0, :, 12, :] = 100.0
    x[0, 3, 5, 1] = 7.0
    out, cache = L.maxpool_forward(x, 2, backend)
    assert out.shape == (1, 6, 6, 2)
    expect = np.zeros((1, 6, 6, 2))
    expect[0, 1, 2, 1] = 7.0
    assert_array_equal(out, expect)
    dx = L.maxpool_backward(np.ones_like(out), cache)
    assert np.all(dx[0, 12] == 0) and np.all(dx[0, :, 12] == 0)


# ------------------------------------------------------------------------ upsampling

@pytest.mark.parametrize("factor", [2, 3])
@pytest.mark.parametrize("shape", [(2, 3, 5, 1), (1, 1, 1, 3), (3, 4, 2, 2)], ids=lambda s: "x".join(map(str, s)))
def test_upsample(shape, factor):
    rng = np.random.default_rng(int(np.prod(shape)) * factor)
    x = rng.standard_normal(shape)
    out, _ = L.upsample_forward(x, factor)
    N, H, W, C = shape
    assert out.shape == (N, H * factor, W * factor, C)
    for i in range(H * factor):
        for j in range(W * factor):
            assert_array_equal(out[:, i, j, :], x[:, i // factor, j // factor, :])
    assert_array_equal(out, np.repeat(np.repeat(x, factor, axis=1), factor, axis=2))


def test_upsample_hand_example():
    x = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 2, 1)
    out, _ = L.upsample_forward(x, 2)
    assert_array_equal(out[0, :, :, 0], [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])


# ------------------------------------------------------------------------ reparameterization

def test_reparam_moments():
    """Over many eps, z = mu + exp(0.5 logvar) eps has mean mu and std exp(0.5 logvar)."""
    rng = np.random.default_rng(7)
    S = 200_000
    mu = np.array([-1.5, 0.0, 0.3, 2.0, 10.0])
    logvar = np.array([-3.0, -0.5, 0.0, 1.0, 2.5])
    eps = rng.standard_normal((S, mu.size))
    z, _ = L.reparam_forward(np.broadcast_to(mu, eps.shape), np.broadcast_to(logvar, eps.shape), eps)
    std = np.exp(0.5 * logvar)
    assert_allclose(z.std(axis=0), std, rtol=0.02)
    assert np.all(np.abs(z.mean(axis=0) - mu) < 5 * std / np.sqrt(S))   # 5 standard errors
    # logvar is the log *variance*: std = exp(0.5 logvar), not exp(logvar)
    assert np.all(np.abs(z.std(axis=0) - np.exp(logvar))[logvar != 0] > 0.05 * std[logvar != 0])


def test_kl_closed_form_equals_monte_carlo():
    """kl_loss equals the mean over z ~ q (drawn by reparam_forward) of log q(z) - log p(z)."""
    rng = np.random.default_rng(11)
    N, Ld, S = 3, 4, 200_000
    mu = rng.uniform(-1.5, 1.5, (N, Ld))
    logvar = rng.uniform(-1.5, 1.0, (N, Ld))
    eps = rng.standard_normal((S, N, Ld))
    z, _ = L.reparam_forward(mu, logvar, eps)                       # (S, N, L)
    log2pi = np.log(2 * np.pi)
    log_q = np.sum(-0.5 * (log2pi + logvar + (z - mu) ** 2 / np.exp(logvar)), axis=-1)  # (S, N)
    log_p = np.sum(-0.5 * (log2pi + z ** 2), axis=-1)                                   # (S, N)
    mc = np.mean(log_q - log_p)                  # mean over samples and over the batch
    kl, _, _ = kl_loss(mu, logvar)
    assert kl > 1.0                              # not a near-zero KL that any estimate matches
    assert abs(kl - mc) <= 0.02 * kl, (kl, mc)
    assert_allclose(kl_per_dim(mu, logvar).sum(), kl, rtol=1e-12)


# ------------------------------------------------------------------------ sigmoid, sse

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_is_stable_for_large_inputs(dtype):
    x = np.array([-1000.0, -100.0, -30.0, -1.0, 0.0, 1.0, 30.0, 100.0, 1000.0], dtype=dtype)
    # overflow, 0/0 and division by zero raise; underflow of exp(-1000) to 0 is exact
    # enough and NumPy ignores it by default, so it stays ignored here
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        out, cache = L.sigmoid_forward(x)
        dx = L.sigmoid_backward(np.ones_like(x), cache)
    assert out.dtype == dtype and dx.dtype == dtype
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(dx))
    assert out[0] == 0.0 and out[-1] == 1.0 and out[4] == 0.5
    assert np.all((out >= 0) & (out <= 1)) and np.all(np.diff(out) >= 0)
    mid = np.abs(x) <= 30
    expect = 1.0 / (1.0 + np.exp(-x[mid].astype(np.float64)))
    assert_allclose(out[mid], expect, rtol=1e-6 if dtype == np.float32 else 1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_equals_its_two_branch_definition_bit_for_bit(dtype):
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((4, 9, 8, 3)) * 6).astype(dtype)       # random signs
    x.flat[:7] = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, -1e-30]
    e = np.exp(-np.abs(x))
    with np.errstate(invalid="ignore"):
        want = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(dtype)
        out, _ = L.sigmoid_forward(x)
    assert out.dtype == dtype and out.shape == x.shape
    assert_array_equal(out, want)                                    # NaN where x is NaN, on both sides
    assert out.flat[2] == 1.0 and out.flat[3] == 0.0 and np.isnan(out.flat[4])


def test_sse_loss_equals_definition():
    rng = np.random.default_rng(3)
    N = 3
    x = rng.uniform(0, 1, (N, 5, 4, 2))
    xhat = rng.uniform(0, 1, x.shape)
    loss, dxhat = sse_loss(xhat, x)
    by_hand = sum(float((xhat[n, i, j, c] - x[n, i, j, c]) ** 2)
                  for n in range(N) for i in range(5) for j in range(4) for c in range(2)) / N
    assert_allclose(loss, by_hand, rtol=1e-12)
    assert_allclose(dxhat, 2.0 * (xhat - x) / N, rtol=1e-15)
    loss32, d32 = sse_loss(xhat.astype(np.float32), x.astype(np.float32))
    assert d32.dtype == np.float32
    assert_allclose(loss32, by_hand, rtol=1e-5)
