"""The fused upsample + transposed conv equals the two layers in a row, and
its gradients check; the first conv's skipped input gradient changes nothing else."""
import numpy as np
import pytest

from tinyvae import kernels
from tinyvae import layers as L
from tinyvae.gradcheck import numerical_gradient_array, rel_error
from tinyvae.models import VAE, Arch

BACKENDS = ["numpy", "numba"]
SHAPES = [  # N, H, W, F (in), C (out), kernel, factor
    (2, 3, 4, 5, 3, 3, 2),
    (1, 2, 3, 2, 1, 3, 2),
    (3, 3, 3, 4, 2, 2, 3),
    (2, 5, 2, 1, 3, 3, 2),
    (2, 1, 1, 3, 2, 4, 2),
]


def _dout(rng, shape):
    """Upstream gradient bounded away from zero (keeps centred differences precise)."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.5, 1.5, size=shape)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_fused_equals_upsample_then_conv_transpose(backend, shape):
    N, H, W, F, C, k, f = shape
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal((N, H, W, F))
    w = rng.standard_normal((k, k, C, F))
    b = rng.standard_normal(C)
    out, cache = L.upsample_conv_transpose2d_forward(x, w, b, f, backend)
    up, _ = L.upsample_forward(x, f)
    ref, ref_cache = L.conv_transpose2d_forward(up, w, b, 1, "valid", backend)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)

    dout = rng.standard_normal(out.shape)
    dx, dw, db = L.upsample_conv_transpose2d_backward(dout, cache)
    dup, dw_ref, db_ref = L.conv_transpose2d_backward(dout, ref_cache)
    dx_ref = L.upsample_backward(dup, f)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, dw_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, db_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_fused_gradients(backend, shape):
    N, H, W, F, C, k, f = shape
    rng = np.random.default_rng(100 + sum(shape))
    x = rng.standard_normal((N, H, W, F))
    w = 0.3 * rng.standard_normal((k, k, C, F))  # small outputs: less cancellation in the differences
    b = rng.standard_normal(C)
    out, cache = L.upsample_conv_transpose2d_forward(x, w, b, f, backend)
    dout = _dout(rng, out.shape)
    dx, dw, db = L.upsample_conv_transpose2d_backward(dout, cache)
    fwd = lambda: L.upsample_conv_transpose2d_forward(x, w, b, f, backend)[0]  # noqa: E731
    assert rel_error(dx, numerical_gradient_array(fwd, x, dout)) < 1e-7
    assert rel_error(dw, numerical_gradient_array(fwd, w, dout)) < 1e-7
    assert rel_error(db, numerical_gradient_array(fwd, b, dout)) < 1e-7


@pytest.mark.parametrize("seed", range(20))
def test_up_kernels_numba_equal_numpy(seed):
    rng = np.random.default_rng(seed)
    N, H, W = rng.integers(1, 4), rng.integers(1, 7), rng.integers(1, 7)
    C, k, f = rng.integers(1, 6), rng.integers(1, 5), rng.integers(1, 4)
    for dtype, rtol in ((np.float32, 1e-5), (np.float64, 1e-12)):
        cols = rng.standard_normal((N * H * W, k * k * C)).astype(dtype)
        shape = (N, f * H + k - 1, f * W + k - 1, C)
        a = kernels.col2im_up(cols, shape, k, k, f, (H, W), backend="numba")
        b = kernels.col2im_up(cols, shape, k, k, f, (H, W), backend="numpy")
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * 10)
        dout = rng.standard_normal(shape).astype(dtype)
        a = kernels.im2col_up(dout, k, k, f, (H, W), backend="numba")
        b = kernels.im2col_up(dout, k, k, f, (H, W), backend="numpy")
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * 10)
        assert a.dtype == dtype


def test_first_conv_skips_only_the_input_gradient():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 5, 3))
    w = rng.standard_normal((3, 3, 3, 4))
    out, cache = L.conv2d_forward(x, w, np.zeros(4))
    dout = rng.standard_normal(out.shape)
    dx, dw, db = L.conv2d_backward(dout, cache)
    none, dw2, db2 = L.conv2d_backward(dout, cache, need_dx=False)
    assert none is None and dx.shape == x.shape
    np.testing.assert_array_equal(dw, dw2)
    np.testing.assert_array_equal(db, db2)


def test_model_uses_fused_layers_and_skips_first_dx():
    model = VAE(Arch("t", (3, 4), (5,), 2, 1.0), (12, 12, 1), np.random.default_rng(0))
    assert not model.encoder[0].need_dx and model.encoder[3].need_dx
    assert sum(isinstance(l, L.UpsampleConvTranspose2D) for l in model.decoder) == 2



def test_summary_shows_every_size_of_the_study_models():
    simple = VAE("simple", (28, 28, 1), np.random.default_rng(0)).summary()
    for shape in ["(26, 26, 32)", "(13, 13, 32)", "(11, 11, 64)", "(5, 5, 64)", "(1600,)",
                  "(10, 10, 64)", "(12, 12, 64)", "(24, 24, 64)", "(26, 26, 32)", "(28, 28, 1)"]:
        assert shape in simple, shape
    assert simple.splitlines()[-1].split()[-1] == "929,093"
    deep = VAE("deep", (32, 32, 3), np.random.default_rng(0)).summary()
    for shape in ["(6, 6, 128)", "(12, 12, 128)", "(14, 14, 128)", "(28, 28, 128)", "(30, 30, 32)"]:
        assert shape in deep, shape
    assert deep.splitlines()[-1].split()[-1] == "10,208,519"
