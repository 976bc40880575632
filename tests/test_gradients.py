"""Finite-difference gradient checks (float64) of every layer, both losses and a whole VAE.

Acceptance checks 1 and 2:

1. every layer's backward against centred differences (``h = 1e-5``) of
   ``sum(forward(...) * dout)``, for the input and every parameter, on at
   least five shapes per layer, relative error (``tinyvae.gradcheck.rel_error``)
   at most ``1e-7``; conv, transposed conv and max-pool under both kernel backends;
2. the loss of a whole small VAE against centred differences for ~20 sampled
   entries of every parameter tensor, relative error at most ``1e-6``.

How the data is drawn, so that ``1e-7`` holds without loosening anything.
``rel_error`` is the largest *elementwise* relative error, so an entry whose
true gradient is tiny only shows the float64 rounding noise of the scalar sum
(about ``1e-16 * |sum| / h``). Hence:

* upstream gradients and operands have magnitudes in ``[0.5, 1.5]``
  (:func:`bounded`); where a gradient is a *sum* of products (conv, transposed
  conv, dense, upsample) every operand tensor gets one sign for all its
  entries, so that no sum can cancel to almost nothing. Magnitudes still vary
  by a factor of three, so wrong indexing, a flipped kernel or a sign error
  shows up as an O(1) error (see the mutation tests at the end of section 1);
* ReLU inputs stay at least ``1e-2`` away from the kink, max-pool inputs are
  a shuffled ``arange`` scaled to steps of ``1e-2`` (no window has two values
  within ``h`` of each other);
* the whole-VAE check uses targets close to the model's reconstruction (small
  loss, so small rounding noise) and asserts the distance of every ReLU input
  from its kink and every max-pool winner from its runner-up, so that the chosen
  seed demonstrably avoids kinks and ties.

Run with ``-s`` to see a table of the largest relative error seen per layer.
"""
from collections import defaultdict

import numpy as np
import pytest

from tinyvae import layers as L
from tinyvae.gradcheck import check_gradient, numerical_gradient, numerical_gradient_array, rel_error
from tinyvae.losses import kl_loss, sse_loss
from tinyvae.models import VAE, Arch

H_STEP = 1e-5
TOL_LAYER = 1e-7
TOL_MODEL = 1e-6
BACKENDS = ("numpy", "numba")

MAX_ERR = defaultdict(float)   # "layer: d<param>" -> largest rel_error seen in this run


@pytest.fixture(scope="module", autouse=True)
def _error_table():
    """Print the largest relative error per layer/argument after the module (visible with -s)."""
    yield
    if MAX_ERR:
        width = max(map(len, MAX_ERR)) + 2
        lines = ["", f"{'gradient':<{width}}max rel_error"]
        lines += [f"{k:<{width}}{v:.2e}" for k, v in sorted(MAX_ERR.items())]
        print("\n".join(lines))


def record(key, err):
    MAX_ERR[key] = max(MAX_ERR[key], err)
    return err


def bounded(rng, shape, sign=None):
    """Entries with magnitude in [0.5, 1.5]: one common ``sign`` (+1/-1), or random signs."""
    mag = rng.uniform(0.5, 1.5, size=shape)
    if sign is None:
        return rng.choice([-1.0, 1.0], size=shape) * mag
    return sign * mag


def signs(rng, k):
    """``k`` random signs, one per operand tensor."""
    return [float(s) for s in rng.choice([-1.0, 1.0], size=k)]


def check_array_grads(key, forward, dout, pairs, tol=TOL_LAYER):
    """Compare each analytic gradient with the numerical gradient of ``sum(forward() * dout)``.

    pairs : {name: (array that forward() reads, analytic gradient)}
    """
    errors = {}
    for name, (arr, analytic) in pairs.items():
        assert analytic.shape == arr.shape, f"{key}: d{name} has shape {analytic.shape}, not {arr.shape}"
        assert analytic.dtype == np.float64, f"{key}: d{name} is {analytic.dtype}, not float64"
        num = numerical_gradient_array(forward, arr, dout, h=H_STEP)
        errors[name] = record(f"{key}: d{name}", rel_error(analytic, num))
    bad = {k: v for k, v in errors.items() if not v <= tol}
    assert not bad, f"{key}: relative errors above {tol:g}: {bad}"
    return errors


# ======================================================================================
# 1. layers
# ======================================================================================

# ---- dense ---------------------------------------------------------------------------

DENSE_SHAPES = [(2, 1, 3), (3, 5, 1), (4, 7, 3), (2, 3, 9), (5, 11, 4), (3, 6, 6)]   # (N, D, M)


@pytest.mark.parametrize("shape", DENSE_SHAPES, ids=lambda s: "N%d-D%d-M%d" % s)
def test_dense_gradients(shape):
    N, D, M = shape
    rng = np.random.default_rng(sum(shape) * 7 + N)
    sx, sw, sd = signs(rng, 3)
    x, w, b = bounded(rng, (N, D), sx), bounded(rng, (D, M), sw), bounded(rng, (M,))
    out, cache = L.dense_forward(x, w, b)
    assert out.shape == (N, M)
    dout = bounded(rng, out.shape, sd)
    dx, dw, db = L.dense_backward(dout, cache)
    check_array_grads("dense", lambda: L.dense_forward(x, w, b)[0], dout,
                      {"x": (x, dx), "w": (w, dw), "b": (b, db)})
    buf = np.full_like(w, np.nan)                    # dw= overwrites a given array, NaNs and all
    _, dw_in_place, _ = L.dense_backward(dout, cache, dw=buf)
    assert dw_in_place is buf
    np.testing.assert_array_equal(buf, dw)


# ---- elementwise and reshapes ---------------------------------------------------------

ELEMENTWISE_SHAPES = [(2, 5, 7, 1), (3, 3, 3, 3), (2, 9, 1, 3), (4, 6), (3, 5, 5, 1), (2, 1, 11, 3)]


def _shape_id(s):
    return "x".join(map(str, s))


@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES, ids=_shape_id)
def test_relu_gradients(shape):
    rng = np.random.default_rng(len(shape) * 100 + int(np.prod(shape)))
    # |x| in [1e-2, 2]: at least 1000 h away from the kink, both signs present
    x = rng.choice([-1.0, 1.0], size=shape) * rng.uniform(1e-2, 2.0, size=shape)
    out, cache = L.relu_forward(x)
    dout = bounded(rng, shape)
    dx = L.relu_backward(dout, cache)
    assert np.all(dx[x < 0] == 0)
    check_array_grads("relu", lambda: L.relu_forward(x)[0], dout, {"x": (x, dx)})


@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES, ids=_shape_id)
def test_sigmoid_gradients(shape):
    rng = np.random.default_rng(len(shape) * 200 + int(np.prod(shape)))
    x = rng.uniform(-4.0, 4.0, size=shape)
    out, cache = L.sigmoid_forward(x)
    dout = bounded(rng, shape)
    dx = L.sigmoid_backward(dout, cache)
    check_array_grads("sigmoid", lambda: L.sigmoid_forward(x)[0], dout, {"x": (x, dx)})


IMAGE_SHAPES = [(2, 5, 7, 1), (3, 3, 3, 3), (2, 9, 1, 3), (3, 5, 5, 1), (2, 1, 11, 3)]


@pytest.mark.parametrize("shape", IMAGE_SHAPES, ids=_shape_id)
def test_flatten_gradients(shape):
    rng = np.random.default_rng(300 + int(np.prod(shape)))
    x = bounded(rng, shape)
    out, cache = L.flatten_forward(x)
    assert out.shape == (shape[0], int(np.prod(shape[1:])))
    dout = bounded(rng, out.shape)
    dx = L.flatten_backward(dout, cache)
    check_array_grads("flatten", lambda: L.flatten_forward(x)[0], dout, {"x": (x, dx)})


@pytest.mark.parametrize("shape", IMAGE_SHAPES, ids=_shape_id)
def test_reshape_gradients(shape):
    rng = np.random.default_rng(400 + int(np.prod(shape)))
    N, target = shape[0], shape[1:]
    x = bounded(rng, (N, int(np.prod(target))))
    out, cache = L.reshape_forward(x, target)
    assert out.shape == shape
    dout = bounded(rng, out.shape)
    dx = L.reshape_backward(dout, cache)
    check_array_grads("reshape", lambda: L.reshape_forward(x, target)[0], dout, {"x": (x, dx)})


# ---- convolution ------------------------------------------------------------------------

# (N, H, W, C, F, (KH, KW), stride, padding); odd sizes, 1 and 3 input channels, batch > 1
CONV_CASES = [
    (2, 7, 7, 1, 2, (3, 3), 1, "valid"),
    (3, 9, 6, 3, 2, (3, 3), 1, "same"),
    (2, 9, 9, 3, 3, (3, 3), 2, "valid"),
    (2, 7, 8, 1, 4, (3, 3), 2, "same"),
    (3, 5, 7, 3, 1, (1, 1), 1, "valid"),
    (2, 8, 5, 1, 3, (2, 2), 2, "same"),
    (2, 6, 9, 3, 2, (4, 4), 1, "same"),       # even kernel: asymmetric 'same' padding
    (2, 11, 7, 1, 2, (5, 5), 2, "valid"),     # stride does not divide H - K: last row unused
    (2, 7, 9, 3, 2, (2, 3), (1, 2), "same"),  # non-square kernel and stride
    (4, 3, 3, 3, 5, (3, 3), 1, "valid"),      # 1x1 output
]


def _conv_id(c):
    N, H, W, C, F, (KH, KW), s, p = c
    s = s if isinstance(s, int) else "%dx%d" % s
    return f"N{N}-{H}x{W}x{C}-F{F}-k{KH}x{KW}-s{s}-{p}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CONV_CASES, ids=_conv_id)
def test_conv2d_gradients(case, backend):
    N, H, W, C, F, (KH, KW), stride, padding = case
    rng = np.random.default_rng(CONV_CASES.index(case) + 1000)
    sx, sw, sd = signs(rng, 3)
    x, w, b = bounded(rng, (N, H, W, C), sx), bounded(rng, (KH, KW, C, F), sw), bounded(rng, (F,))
    fwd = lambda: L.conv2d_forward(x, w, b, stride, padding, backend)[0]
    out, cache = L.conv2d_forward(x, w, b, stride, padding, backend)
    dout = bounded(rng, out.shape, sd)
    dx, dw, db = L.conv2d_backward(dout, cache)
    check_array_grads(f"conv2d[{backend}]", fwd, dout, {"x": (x, dx), "w": (w, dw), "b": (b, db)})


# (N, H, W, F_in, C_out, K, stride, padding, out_hw); x : (N, H, W, F), w : (K, K, C, F)
CONVT_CASES = [
    (2, 4, 5, 2, 1, 3, 1, "valid", None),     # -> 6x7
    (2, 5, 3, 1, 3, 3, 1, "same", None),      # -> 5x3
    (2, 3, 4, 2, 3, 3, 2, "valid", None),     # -> 7x9
    (3, 4, 3, 3, 1, 3, 2, "same", None),      # -> 8x6
    (2, 4, 3, 2, 2, 3, 2, "same", (7, 5)),    # odd stride-2 'same' output via out_hw
    (2, 3, 3, 1, 2, 2, 2, "valid", None),     # -> 6x6
    (2, 5, 4, 3, 2, 4, 1, "same", None),      # even kernel
    (2, 3, 4, 2, 1, 3, 2, "valid", (8, 10)),  # stride-2 'valid' with the extra row/col
    (2, 4, 4, 3, 3, 1, 1, "valid", None),     # 1x1 kernel
]


def _convt_id(c):
    N, H, W, F, C, K, s, p, o = c
    return f"N{N}-{H}x{W}x{F}-C{C}-k{K}-s{s}-{p}" + (f"-out{o[0]}x{o[1]}" if o else "")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CONVT_CASES, ids=_convt_id)
def test_conv_transpose2d_gradients(case, backend):
    N, H, W, F, C, K, stride, padding, out_hw = case
    rng = np.random.default_rng(CONVT_CASES.index(case) + 2000)
    sx, sw, sd = signs(rng, 3)
    x, w, b = bounded(rng, (N, H, W, F), sx), bounded(rng, (K, K, C, F), sw), bounded(rng, (C,))
    fwd = lambda: L.conv_transpose2d_forward(x, w, b, stride, padding, backend, out_hw)[0]
    out, cache = L.conv_transpose2d_forward(x, w, b, stride, padding, backend, out_hw)
    if out_hw is not None:
        assert out.shape[1:3] == out_hw
    dout = bounded(rng, out.shape, sd)
    dx, dw, db = L.conv_transpose2d_backward(dout, cache)
    check_array_grads(f"conv_transpose2d[{backend}]", fwd, dout,
                      {"x": (x, dx), "w": (w, dw), "b": (b, db)})


# the decoder's fused nearest-upsample + transposed conv (stride 1, 'valid')
# (N, H, W, F_in, C_out, K, factor)
UPCONVT_CASES = [(2, 3, 4, 2, 3, 3, 2), (2, 1, 1, 3, 2, 3, 2), (3, 2, 3, 1, 1, 3, 2),
                 (2, 3, 3, 2, 2, 2, 3), (2, 5, 2, 3, 1, 4, 2)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", UPCONVT_CASES, ids=lambda c: "N%d-%dx%dx%d-C%d-k%d-f%d" % c)
def test_upsample_conv_transpose2d_gradients(case, backend):
    N, H, W, F, C, K, f = case
    rng = np.random.default_rng(UPCONVT_CASES.index(case) + 2500)
    sx, sw, sd = signs(rng, 3)
    x, w, b = bounded(rng, (N, H, W, F), sx), bounded(rng, (K, K, C, F), sw), bounded(rng, (C,))
    fwd = lambda: L.upsample_conv_transpose2d_forward(x, w, b, f, backend)[0]
    out, cache = L.upsample_conv_transpose2d_forward(x, w, b, f, backend)
    assert out.shape == (N, f * H + K - 1, f * W + K - 1, C)
    dout = bounded(rng, out.shape, sd)
    dx, dw, db = L.upsample_conv_transpose2d_backward(dout, cache)
    check_array_grads(f"upsample_conv_transpose2d[{backend}]", fwd, dout,
                      {"x": (x, dx), "w": (w, dw), "b": (b, db)})


# ---- pooling and upsampling -----------------------------------------------------------------

POOL_CASES = [(2, 13, 13, 1, 2), (3, 7, 5, 3, 2), (2, 6, 9, 3, 2), (2, 4, 4, 1, 2),
              (2, 9, 11, 3, 3), (2, 5, 5, 2, 2)]                               # (N, H, W, C, pool)


def tie_free(rng, shape, step=1e-2):
    """A shuffled arange times ``step``, centred on 0: all entries differ by >= step >> h."""
    n = int(np.prod(shape))
    return ((rng.permutation(n) - n / 2) * step).reshape(shape)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: "N%d-%dx%dx%d-pool%d" % c)
def test_maxpool_gradients(case, backend):
    N, H, W, C, pool = case
    rng = np.random.default_rng(POOL_CASES.index(case) + 3000)
    x = tie_free(rng, (N, H, W, C))
    out, cache = L.maxpool_forward(x, pool, backend)
    assert out.shape == (N, H // pool, W // pool, C)
    dout = bounded(rng, out.shape)
    dx = L.maxpool_backward(dout, cache)
    assert np.count_nonzero(dx) == out.size            # one winner per window
    check_array_grads(f"maxpool[{backend}]", lambda: L.maxpool_forward(x, pool, backend)[0], dout,
                      {"x": (x, dx)})


UPSAMPLE_CASES = [(2, 3, 5, 1, 2), (3, 1, 1, 3, 2), (2, 4, 3, 3, 3), (2, 5, 5, 1, 2), (4, 2, 7, 2, 2)]


@pytest.mark.parametrize("case", UPSAMPLE_CASES, ids=lambda c: "N%d-%dx%dx%d-f%d" % c)
def test_upsample_gradients(case):
    N, H, W, C, f = case
    rng = np.random.default_rng(UPSAMPLE_CASES.index(case) + 4000)
    x = bounded(rng, (N, H, W, C))
    out, cache = L.upsample_forward(x, f)
    assert out.shape == (N, H * f, W * f, C)
    dout = bounded(rng, out.shape, signs(rng, 1)[0])   # dx sums f*f of these: one sign
    dx = L.upsample_backward(dout, cache)
    check_array_grads("upsample", lambda: L.upsample_forward(x, f)[0], dout, {"x": (x, dx)})


# ---- reparameterization and losses --------------------------------------------------------

LATENT_SHAPES = [(2, 1), (3, 2), (4, 5), (2, 16), (7, 3)]   # (N, L)


@pytest.mark.parametrize("shape", LATENT_SHAPES, ids=lambda s: "N%d-L%d" % s)
def test_reparam_gradients(shape):
    rng = np.random.default_rng(5000 + shape[0] * 17 + shape[1])
    mu = bounded(rng, shape)
    logvar = rng.uniform(-2.0, 2.0, size=shape)
    eps = bounded(rng, shape)                          # frozen noise, |eps| >= 0.5
    z, cache = L.reparam_forward(mu, logvar, eps)
    dz = bounded(rng, shape)
    dmu, dlogvar = L.reparam_backward(dz, cache)
    check_array_grads("reparam", lambda: L.reparam_forward(mu, logvar, eps)[0], dz,
                      {"mu": (mu, dmu), "logvar": (logvar, dlogvar)})


def check_scalar_grads(key, f, pairs, tol=TOL_LAYER):
    for name, (arr, analytic) in pairs.items():
        assert analytic.shape == arr.shape
        err = record(f"{key}: d{name}", rel_error(analytic, numerical_gradient(f, arr, h=H_STEP)))
        assert err <= tol, f"{key}: d{name} relative error {err:.3e} > {tol:g}"


@pytest.mark.parametrize("shape", IMAGE_SHAPES, ids=_shape_id)
def test_sse_loss_gradient(shape):
    rng = np.random.default_rng(6000 + int(np.prod(shape)))
    x = rng.uniform(0.0, 1.0, size=shape)
    xhat = x + 0.3 * bounded(rng, shape)               # |xhat - x| >= 0.15
    loss, dxhat = sse_loss(xhat, x)
    check_scalar_grads("sse_loss", lambda: sse_loss(xhat, x)[0], {"xhat": (xhat, dxhat)})


@pytest.mark.parametrize("shape", LATENT_SHAPES, ids=lambda s: "N%d-L%d" % s)
def test_kl_loss_gradients(shape):
    rng = np.random.default_rng(7000 + shape[0] * 17 + shape[1])
    mu = bounded(rng, shape)
    logvar = rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.3, 2.0, size=shape)  # exp(lv) - 1 != 0
    loss, dmu, dlogvar = kl_loss(mu, logvar)
    check_scalar_grads("kl_loss", lambda: kl_loss(mu, logvar)[0],
                       {"mu": (mu, dmu), "logvar": (logvar, dlogvar)})


# ---- the checks can fail ----------------------------------------------------------------------

def _conv_setup(backend="numpy"):
    rng = np.random.default_rng(99)
    sx, sw, sd = signs(rng, 3)
    x, w, b = bounded(rng, (2, 7, 6, 3), sx), bounded(rng, (3, 3, 3, 2), sw), bounded(rng, (2,))
    out, cache = L.conv2d_forward(x, w, b, 2, "same", backend)
    dout = bounded(rng, out.shape, sd)
    return x, w, b, dout, cache


def test_layer_check_resolves_a_one_in_a_million_error():
    """A single entry of dw off by a relative 1e-6 exceeds the 1e-7 tolerance."""
    x, w, b, dout, cache = _conv_setup()
    dx, dw, db = L.conv2d_backward(dout, cache)
    fwd = lambda: L.conv2d_forward(x, w, b, 2, "same", "numpy")[0]
    bad = dw.copy()
    bad[1, 2, 0, 1] *= 1 + 1e-6
    with pytest.raises(AssertionError, match="relative errors above"):
        check_array_grads("mutant", fwd, dout, {"w": (w, bad)})
    check_array_grads("mutant-control", fwd, dout, {"w": (w, dw)})  # the unmutated one passes
    for key in ("mutant: dw", "mutant-control: dw"):                  # keep them out of the table
        MAX_ERR.pop(key, None)


@pytest.mark.parametrize("mutant", ["flipped-kernel", "swapped-xy", "pool-wrong-winner", "sign"])
def test_layer_check_catches_plausible_bugs(mutant):
    """Typical backward bugs give O(1) relative errors with the bounded data used above."""
    x, w, b, dout, cache = _conv_setup()
    dx, dw, db = L.conv2d_backward(dout, cache)
    if mutant == "flipped-kernel":          # convolution instead of cross-correlation
        x_shape, cols, _, stride, pad, out_hw, backend = cache
        dx_bad, _, _ = L.conv2d_backward(dout, (x_shape, cols, w[::-1, ::-1], stride, pad,
                                                out_hw, backend))
        arr, analytic = x, dx_bad
        fwd = lambda: L.conv2d_forward(x, w, b, 2, "same", "numpy")[0]
    elif mutant == "swapped-xy":            # kernel rows and columns mixed up
        arr, analytic = w, dw.transpose(1, 0, 2, 3)
        fwd = lambda: L.conv2d_forward(x, w, b, 2, "same", "numpy")[0]
    elif mutant == "pool-wrong-winner":     # gradient to the window's minimum
        rng = np.random.default_rng(5)
        xp = tie_free(rng, (2, 6, 6, 1))
        out, _ = L.maxpool_forward(xp, 2, "numpy")
        dp = bounded(rng, out.shape)
        _, (arg_of_min, _, _, _) = L.maxpool_forward(-xp, 2, "numpy")
        wrong_cache = (arg_of_min, xp.shape, 2, "numpy")
        arr, analytic = xp, L.maxpool_backward(dp, wrong_cache)
        fwd, dout = (lambda: L.maxpool_forward(xp, 2, "numpy")[0]), dp
    else:                                   # sign error in db
        arr, analytic = b, -db
        fwd = lambda: L.conv2d_forward(x, w, b, 2, "same", "numpy")[0]
    num = numerical_gradient_array(fwd, arr, dout, h=H_STEP)
    assert rel_error(analytic, num) > 1e-2


# ======================================================================================
# 2. a whole small VAE
# ======================================================================================

TINY = Arch("tiny", convs=(3, 4), dense=(6,), latent=2, beta=0.7)
VAE_IMAGE = (12, 12, 3)          # 12 -> 10 -> 5 -> 3 -> 1, decoded 1 -> 2 -> 4 -> 8 -> 10 -> 12
VAE_SEED = 4                     # see test_vae_gradcheck_inputs_avoid_kinks_and_ties
KINK_MARGIN = 5e-5               # smallest |ReLU input| and max-pool winner gap we accept


def make_tiny_vae(backend, seed=VAE_SEED, n=3):
    """float64 VAE with non-zero biases, frozen eps, and targets close to the reconstruction.

    Targets ``x = xhat + 0.05 * noise`` keep the squared error (about 1) and with it the
    rounding noise of the scalar loss small next to the gradients.
    """
    rng = np.random.default_rng(seed)
    model = VAE(TINY, VAE_IMAGE, rng, dtype=np.float64, backend=backend)
    for name, p in model.params.items():
        if name.endswith(".b"):
            p[...] = rng.uniform(-0.1, 0.1, p.shape)
    x0 = rng.uniform(0.0, 1.0, (n,) + VAE_IMAGE)
    eps = rng.standard_normal((n, TINY.latent))
    xhat, _, _ = model.forward(x0, eps)
    x = xhat + 0.05 * rng.standard_normal(xhat.shape)
    return model, x, eps, rng


def kink_margins(model, x, eps):
    """Smallest |input| of any ReLU, and smallest gap between a max-pool window's winner and
    runner-up (windows whose winner is > 0; all-zero windows pass no gradient anyway)."""
    relu, gap = np.inf, np.inf

    def run(layers, h):
        nonlocal relu, gap
        for layer in layers:
            if isinstance(layer, L.ReLU):
                relu = min(relu, float(np.abs(h).min()))
            if isinstance(layer, L.MaxPool2D):
                N, H, W, C = h.shape
                p = layer.pool
                win = h[:, :H // p * p, :W // p * p].reshape(N, H // p, p, W // p, p, C)
                win = np.sort(win.transpose(0, 1, 3, 5, 2, 4).reshape(N, H // p, W // p, C, p * p), -1)
                live = win[..., -1] > 0
                if live.any():
                    gap = min(gap, float((win[..., -1] - win[..., -2])[live].min()))
            h = layer.forward(h)
        return h

    h = run(model.encoder, x)
    mu, logvar = model.mu_head.forward(h), model.logvar_head.forward(h)
    run(model.decoder, L.reparam_forward(mu, logvar, eps)[0])
    return relu, gap


def test_vae_gradcheck_inputs_avoid_kinks_and_ties():
    """The seed is chosen so that no ReLU input or max-pool choice is within reach of h."""
    model, x, eps, _ = make_tiny_vae("numpy")
    relu, gap = kink_margins(model, x, eps)
    assert relu > KINK_MARGIN and gap > KINK_MARGIN, (relu, gap)


def vae_sampled_errors(model, x, eps, rng, n_samples=20):
    """rel_error of every parameter tensor on ``n_samples`` entries drawn with ``rng``."""
    model.loss(x, eps)                                             # fills model.grads
    grads = {k: v.copy() for k, v in model.grads.items()}
    f = lambda: model.loss(x, eps, backward=False)["loss"]
    errors = {}
    for name, p in model.params.items():
        before = p.copy()
        errors[name] = check_gradient(f, p, grads[name], h=H_STEP, n_samples=n_samples, rng=rng)
        np.testing.assert_array_equal(p, before)                  # perturbations were undone
    return errors, grads


@pytest.mark.parametrize("backend", BACKENDS)
def test_vae_loss_gradients(backend):
    model, x, eps, rng = make_tiny_vae(backend)
    assert model.dtype == np.float64
    assert len(model.params) == 20                                # 2 conv + 5 dense + 3 convT, w and b
    errors, _ = vae_sampled_errors(model, x, eps, rng)
    for name, err in errors.items():
        record(f"VAE[{backend}] {name}", err)
    bad = {k: v for k, v in errors.items() if not v <= TOL_MODEL}
    assert not bad, f"relative errors above {TOL_MODEL:g}: {bad}"


def test_vae_check_catches_a_one_percent_error():
    """Scaling one gradient tensor by 1.01 (or dropping the KL gradient) fails the check."""
    model, x, eps, rng = make_tiny_vae("numpy")
    model.loss(x, eps)
    f = lambda: model.loss(x, eps, backward=False)["loss"]
    names = list(model.params)
    for name in (names[0], "logvar_dense.b", names[-2]):    # first conv w, a head, last convT w
        err = check_gradient(f, model.params[name], 1.01 * model.grads[name], h=H_STEP,
                             n_samples=20, rng=np.random.default_rng(0))
        assert err > TOL_MODEL, name
    # a plausible bug: the backward pass forgets the KL term (beta = 0 there only)
    model.loss(x, eps, beta=0.0)
    grads = {k: v.copy() for k, v in model.grads.items()}
    err = check_gradient(f, model.params["mu_dense.b"], grads["mu_dense.b"], h=H_STEP)
    assert err > TOL_MODEL


def test_vae_grads_are_assigned_not_accumulated():
    model, x, eps, _ = make_tiny_vae("numpy")
    model.loss(x, eps)
    first = {k: v.copy() for k, v in model.grads.items()}
    model.loss(x, eps)
    for k in first:
        np.testing.assert_array_equal(model.grads[k], first[k], err_msg=k)


def test_layers_write_into_the_grads_arrays_they_hold():
    """The grads contract: a backward pass writes into the arrays the layers hold, so the
    model's grads dict keeps pointing at them and no step replaces one."""
    model, x, eps, _ = make_tiny_vae("numpy")
    held = {f"{name}.{k}": g for name, layer in model.named_layers() for k, g in layer.grads.items()}
    assert held.keys() == model.grads.keys()
    for _ in range(2):
        model.loss(x, eps)
        for k, g in held.items():
            assert model.grads[k] is g, k
            assert np.any(g != 0), k                   # written, not left at its zeros


@pytest.mark.parametrize("which", ["conv2d", "conv_transpose2d", "upsample_conv_transpose2d"])
def test_weight_gradient_out_buffer(which):
    """``dw=`` gets the very weight gradient the function returns without it, NaNs overwritten."""
    rng = np.random.default_rng(11)
    w = rng.standard_normal((3, 3, 2, 4))
    if which == "conv2d":
        x, b = rng.standard_normal((2, 7, 6, 2)), rng.standard_normal(4)
        out, cache = L.conv2d_forward(x, w, b)
        backward = L.conv2d_backward
    elif which == "conv_transpose2d":
        x, b = rng.standard_normal((2, 5, 4, 4)), rng.standard_normal(2)
        out, cache = L.conv_transpose2d_forward(x, w, b)
        backward = L.conv_transpose2d_backward
    else:
        x, b = rng.standard_normal((2, 3, 4, 4)), rng.standard_normal(2)
        out, cache = L.upsample_conv_transpose2d_forward(x, w, b, 2)
        backward = L.upsample_conv_transpose2d_backward
    dout = rng.standard_normal(out.shape)
    dx, dw, db = backward(dout, cache)
    buf = np.full_like(w, np.nan)
    dx2, dw2, db2 = backward(dout, cache, dw=buf)
    assert dw2 is buf
    np.testing.assert_array_equal(buf, dw)
    np.testing.assert_array_equal(dx2, dx)
    np.testing.assert_array_equal(db2, db)
    with pytest.raises(ValueError, match="C-contiguous"):
        backward(dout, cache, dw=np.asfortranarray(buf))


def test_numerical_gradient_perturbs_non_contiguous_arrays():
    from tinyvae.gradcheck import numerical_gradient
    base = np.arange(12.0).reshape(3, 4)
    view = base[:, :2]                                 # not contiguous: reshape(-1) would copy
    g = numerical_gradient(lambda: float(np.sum(view ** 2)), view)
    np.testing.assert_allclose(g, 2 * view, rtol=1e-8)
