"""The numba fast path against the NumPy reference (acceptance check 4).

Every kernel (im2col, col2im, max-pool forward with its arg-max, max-pool
backward, ReLU forward and backward, the bias add and the bias gradient's
column sum, the fused Adam update) and the layers built on them (conv2d and
conv_transpose2d, forward and backward) run with ``backend="numba"`` and
``backend="numpy"`` on 24 random configurations drawn with a seeded rng, in
float32 and float64. At the end, the study's four models train 20 steps
with each backend and must follow the same loss trajectory.

Tolerances. Kernels that only *move* or pick numbers (im2col, max-pool,
ReLU), the bias add (one addition per element) and the column sum (it adds in NumPy's order) must agree bit for bit, so they are compared with
``assert_array_equal``. Kernels that *add* (col2im, the conv layers, Adam)
are compared with ``rtol = 1e-5`` (float32) / ``1e-12`` (float64) plus an
``atol = rtol * (number of terms) * (largest term)``: the two backends add the
same terms in different orders, so their difference is bounded by the rounding
of the terms, not of the result; an output that cancels to almost zero would
otherwise need an arbitrarily large relative tolerance.
"""
import subprocess
import sys
from collections import namedtuple

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from tinyvae import kernels
from tinyvae.kernels import unfold
from tinyvae import layers as L
from tinyvae.errors import ConfigError
from tinyvae.bench import PAIRS, StepRunner
from tinyvae.geometry import conv_geometry

RTOL = {np.float32: 1e-5, np.float64: 1e-12}
DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["f32", "f64"]

Cfg = namedtuple("Cfg", "i N H W C F KH KW sh sw padding")


def draw_configs(seed=20240601, n=24):
    """``n`` conv configurations: batch 1-4, H/W 3-12, C/F 1-5, kernel 1-4, stride 1-2,
    'valid'/'same'. The first four fix (padding, stride) so every combination occurs."""
    rng = np.random.default_rng(seed)
    forced = [("valid", 1), ("valid", 2), ("same", 1), ("same", 2)]
    cfgs = []
    while len(cfgs) < n:
        N, H, W = int(rng.integers(1, 5)), int(rng.integers(3, 13)), int(rng.integers(3, 13))
        C, F = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        KH, KW = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        sh, sw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        padding = str(rng.choice(["valid", "same"]))
        if len(cfgs) < len(forced):
            padding, sh = forced[len(cfgs)]
            sw = sh
        if padding == "valid" and (KH > H or KW > W):
            continue
        cfgs.append(Cfg(len(cfgs), N, H, W, C, F, KH, KW, sh, sw, padding))
    return cfgs


CONFIGS = draw_configs()


def cfg_id(c):
    return f"{c.i:02d}-N{c.N}-{c.H}x{c.W}x{c.C}-F{c.F}-k{c.KH}x{c.KW}-s{c.sh}x{c.sw}-{c.padding}"


def test_configs_cover_the_ranges():
    cs = CONFIGS
    assert len(cs) >= 20
    assert {(c.padding, c.sh, c.sw) for c in cs} >= {("valid", 1, 1), ("valid", 2, 2), ("same", 1, 1), ("same", 2, 2)}
    assert any(c.H % 2 for c in cs) and any(c.W % 2 for c in cs) and any(c.H % 2 == 0 for c in cs)
    assert {c.KH for c in cs} | {c.KW for c in cs} == {1, 2, 3, 4}
    assert {c.N for c in cs} == {1, 2, 3, 4}
    assert min(c.C for c in cs) == 1 and max(c.C for c in cs) == 5
    assert all(3 <= c.H <= 12 and 3 <= c.W <= 12 and 1 <= c.F <= 5 for c in cs)


def geometry(c):
    """(out_hw, pad, stride) of the conv of configuration ``c``."""
    return conv_geometry((c.H, c.W), (c.KH, c.KW), (c.sh, c.sw), c.padding)


def data(c, dtype, salt):
    rng = np.random.default_rng([c.i, salt, np.dtype(dtype).itemsize])
    return lambda *shape: rng.standard_normal(shape).astype(dtype)


def maybe_strided(a, c):
    """Every third configuration hands the kernels a non-contiguous (Fortran-ordered) copy."""
    return np.asfortranarray(a) if c.i % 3 == 2 else a


params = pytest.mark.parametrize
by_cfg = params("c", CONFIGS, ids=cfg_id)
by_dtype = params("dtype", DTYPES, ids=DTYPE_IDS)


# ------------------------------------------------------------------------------ im2col / col2im

@by_dtype
@by_cfg
def test_im2col(c, dtype):
    out_hw, pad, stride = geometry(c)
    x = maybe_strided(data(c, dtype, 1)(c.N, c.H, c.W, c.C), c)
    fast = kernels.im2col(x, c.KH, c.KW, stride, pad, out_hw, backend="numba")
    ref = kernels.im2col(x, c.KH, c.KW, stride, pad, out_hw, backend="numpy")
    assert fast.shape == ref.shape == (c.N * out_hw[0] * out_hw[1], c.KH * c.KW * c.C)
    assert fast.dtype == ref.dtype == dtype
    assert_array_equal(fast, ref)                   # pure copies: bit for bit


@by_dtype
@by_cfg
def test_col2im(c, dtype):
    out_hw, pad, stride = geometry(c)
    cols = maybe_strided(data(c, dtype, 2)(c.N * out_hw[0] * out_hw[1], c.KH * c.KW * c.C), c)
    shape = (c.N, c.H, c.W, c.C)
    fast = kernels.col2im(cols, shape, c.KH, c.KW, stride, pad, out_hw, backend="numba")
    ref = kernels.col2im(cols, shape, c.KH, c.KW, stride, pad, out_hw, backend="numpy")
    assert fast.shape == ref.shape == shape and fast.dtype == ref.dtype == dtype
    rtol = RTOL[dtype]
    assert_allclose(fast, ref, rtol=rtol, atol=rtol * c.KH * c.KW * np.abs(cols).max())


@pytest.mark.parametrize("C", [1, 3, unfold.SMALL_C - 1, unfold.SMALL_C, 12])
def test_both_valid_stride1_paths_agree(C):
    """'valid' stride 1 takes the run-copying kernels below SMALL_C channels and the
    per-tap loops from it on: both equal the reference there, and each other bit for bit."""
    rng = np.random.default_rng(C)
    x = rng.standard_normal((2, 7, 6, C)).astype(np.float32)
    out_hw = (5, 3)                                        # 3x4 kernel
    assert unfold._runs_apply(x.shape, 3, 4, (1, 1), (0, 0), out_hw) == (C < unfold.SMALL_C)
    cols = kernels.im2col(x, 3, 4, (1, 1), (0, 0), out_hw, backend="numba")
    assert_array_equal(cols, kernels.im2col(x, 3, 4, (1, 1), (0, 0), out_hw, backend="numpy"))
    loops = np.empty_like(cols)
    unfold._im2col_nb(x, 3, 4, 1, 1, 0, 0, 5, 3, loops, 0, 2)
    assert_array_equal(cols, loops)
    dcols = rng.standard_normal(cols.shape).astype(np.float32)
    dx = kernels.col2im(dcols, x.shape, 3, 4, (1, 1), (0, 0), out_hw, backend="numba")
    ref = kernels.col2im(dcols, x.shape, 3, 4, (1, 1), (0, 0), out_hw, backend="numpy")
    assert_allclose(dx, ref, rtol=1e-5, atol=1e-5 * 12 * np.abs(dcols).max())
    loops = np.empty_like(dx)
    unfold._col2im_nb(dcols, 3, 4, 1, 1, 0, 0, 5, 3, loops, 0, 2)
    assert_array_equal(dx.view(np.uint32), loops.view(np.uint32))   # same order of additions


# ------------------------------------------------------------------------------ max-pool

def pool_of(c):
    return 3 if c.i % 4 == 3 else 2                  # H, W >= 3 always fit


@by_dtype
@by_cfg
def test_maxpool_forward(c, dtype):
    pool = pool_of(c)
    x = maybe_strided(data(c, dtype, 3)(c.N, c.H, c.W, c.C), c)
    out_f, arg_f = kernels.maxpool_forward(x, pool, backend="numba")
    out_r, arg_r = kernels.maxpool_forward(x, pool, backend="numpy")
    assert out_f.shape == out_r.shape == (c.N, c.H // pool, c.W // pool, c.C)
    assert out_f.dtype == out_r.dtype == dtype
    assert arg_f.dtype == arg_r.dtype == np.int8
    assert_array_equal(out_f, out_r)
    assert_array_equal(arg_f, arg_r)


@by_cfg
def test_maxpool_forward_ties_pick_the_first(c):
    """Integer data full of ties: both backends report the first maximum of each window."""
    pool = pool_of(c)
    rng = np.random.default_rng(c.i)
    x = rng.integers(0, 3, size=(c.N, c.H, c.W, c.C)).astype(np.float32)
    out_f, arg_f = kernels.maxpool_forward(x, pool, backend="numba")
    out_r, arg_r = kernels.maxpool_forward(x, pool, backend="numpy")
    assert_array_equal(out_f, out_r)
    assert_array_equal(arg_f, arg_r)
    # first-in-window, checked directly on one window
    win = x[0, :pool, :pool, 0].reshape(-1)
    assert arg_f[0, 0, 0, 0] == int(np.flatnonzero(win == win.max())[0])


@by_dtype
@by_cfg
def test_maxpool_backward(c, dtype):
    pool = pool_of(c)
    x = data(c, dtype, 4)(c.N, c.H, c.W, c.C)
    out, arg = kernels.maxpool_forward(x, pool, backend="numpy")
    dout = maybe_strided(data(c, dtype, 5)(*out.shape), c)
    fast = kernels.maxpool_backward(dout, arg, x.shape, pool, backend="numba")
    ref = kernels.maxpool_backward(dout, arg, x.shape, pool, backend="numpy")
    assert fast.shape == ref.shape == x.shape and fast.dtype == ref.dtype == dtype
    assert_array_equal(fast, ref)                   # a scatter: bit for bit
    assert np.count_nonzero(fast) == out.size


# ------------------------------------------------------------------------------ ReLU

def bits(a):
    """The raw bits of a float array: equal bits means equal signed zeros and NaNs too."""
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


@by_dtype
@by_cfg
def test_relu_forward_and_backward_bit_for_bit(c, dtype):
    """Elementwise, no sums: the numba kernels equal NumPy's maximum and mask product bit
    for bit, signed zeros, NaNs and infinities included."""
    rng = np.random.default_rng(200 + c.i)
    special = np.array([0.0, -0.0, np.nan, -np.nan, np.inf, -np.inf, 1e-30, -1e-30])
    x = rng.standard_normal((c.N, c.H, c.W, c.C)).astype(dtype)
    dout = rng.standard_normal(x.shape).astype(dtype)
    x.reshape(-1)[:8] = special[:min(8, x.size)]
    dout.reshape(-1)[-8:] = special[::-1][-min(8, x.size):]
    x, dout = maybe_strided(x, c), maybe_strided(dout, c)
    out_f = kernels.relu(x, backend="numba")
    out_r = kernels.relu(x, backend="numpy")
    assert out_f.dtype == out_r.dtype == dtype
    assert_array_equal(bits(np.ascontiguousarray(out_f)), bits(np.ascontiguousarray(out_r)))
    with np.errstate(invalid="ignore"):                       # inf * 0 is NaN in both
        dx_f = kernels.relu_grad(dout, out_r, backend="numba")
        dx_r = kernels.relu_grad(dout, out_r, backend="numpy")
    assert dx_f.dtype == dx_r.dtype == dtype
    assert_array_equal(bits(np.ascontiguousarray(dx_f)), bits(np.ascontiguousarray(dx_r)))


# ------------------------------------------------------------------------------ bias add

@by_dtype
@by_cfg
def test_bias_add_bit_for_bit(c, dtype):
    """One addition per element: the numba kernel (split across threads on the big
    case) equals NumPy's broadcast ``a += b`` bit for bit, in place, in both layouts,
    on images (N, H, W, C) and on rows (R, C)."""
    rng = np.random.default_rng(300 + c.i)
    for shape in ((c.N, c.H, c.W, c.C), (c.N * c.H * c.W * 7, 32), (50, 30, 30, 32)):
        a = maybe_strided(rng.standard_normal(shape).astype(dtype), c)
        b = rng.standard_normal(shape[-1]).astype(dtype)
        fast, ref = a.copy(order="K"), a.copy(order="K")
        assert kernels.bias_add(fast, b, backend="numba") is None      # in place
        kernels.bias_add(ref, b, backend="numpy")
        assert_array_equal(bits(np.ascontiguousarray(fast)), bits(np.ascontiguousarray(ref)))
        assert_array_equal(ref, a + b)


# ------------------------------------------------------------------------------ bias gradients

@by_dtype
@by_cfg
def test_bias_grad(c, dtype):
    """A column sum: the numba kernel adds rows in NumPy's order, so bit for bit.
    The configurations' 1-5 channels plus a conv-sized 32 and 128 columns."""
    rng = np.random.default_rng(100 + c.i)
    for cols in (c.C, 32, 128):
        dout2 = maybe_strided(rng.standard_normal((c.N * c.H * c.W * 7, cols)).astype(dtype), c)
        fast = kernels.bias_grad(dout2, backend="numba")
        ref = kernels.bias_grad(dout2, backend="numpy")
        assert fast.shape == ref.shape == (cols,) and fast.dtype == ref.dtype == dtype
        assert_array_equal(fast, ref)
        assert_allclose(ref, dout2.astype(np.float64).sum(axis=0), rtol=RTOL[dtype],
                        atol=RTOL[dtype] * dout2.shape[0] * np.abs(dout2).max())


# ------------------------------------------------------------------------------ Adam

ADAM_CASES = list(range(24))


def adam_case(k, dtype):
    rng = np.random.default_rng([k, np.dtype(dtype).itemsize, 7])
    ndim = int(rng.integers(1, 5))
    shape = tuple(int(s) for s in rng.integers(1, 7, size=ndim))
    p = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    m = (0.1 * rng.standard_normal(shape)).astype(dtype)
    v = rng.uniform(0.01, 1.0, shape).astype(dtype)
    hyper = dict(lr_t=float(rng.uniform(1e-4, 0.1)), beta1=float(rng.choice([0.0, 0.5, 0.9, 0.99])),
                 beta2=float(rng.choice([0.9, 0.99, 0.999, 0.9999])),
                 eps=float(rng.choice([0.0, 1e-8, 1e-7, 1e-3])))
    return p, g, m, v, hyper


def adam_both(p, g, m, v, hyper):
    out = {}
    for backend in ("numba", "numpy"):
        pp, mm, vv = p.copy(order="K"), m.copy(order="K"), v.copy(order="K")
        kernels.adam_update(pp, g, mm, vv, hyper["lr_t"], hyper["beta1"], hyper["beta2"], hyper["eps"],
                            backend=backend)
        out[backend] = (pp, mm, vv)
    return out


def assert_adam_close(out, p, g, m, v, hyper, dtype):
    rtol = RTOL[dtype]
    (pf, mf, vf), (pr, mr, vr) = out["numba"], out["numpy"]
    # m mixes m and g, p mixes p and a step of size <= lr_t * |m| / sqrt(v): scale atol by those
    step = hyper["lr_t"] * np.abs(mr).max() / np.sqrt(vr.min())
    assert_allclose(mf, mr, rtol=rtol, atol=rtol * (np.abs(m).max() + np.abs(g).max()))
    assert_allclose(vf, vr, rtol=rtol, atol=rtol * (v.max() + (g * g).max()))
    assert_allclose(pf, pr, rtol=rtol, atol=rtol * (np.abs(p).max() + step))
    assert pf.dtype == pr.dtype == dtype


@by_dtype
@params("k", ADAM_CASES, ids=lambda k: f"adam{k:02d}")
def test_adam_update(k, dtype):
    p, g, m, v, hyper = adam_case(k, dtype)
    out = adam_both(p, g, m, v, hyper)
    assert not np.array_equal(out["numpy"][0], p)   # the update did something
    assert_adam_close(out, p, g, m, v, hyper, dtype)


@by_dtype
def test_adam_update_non_contiguous(dtype):
    """Transposed (Fortran-ordered) parameters and moments are updated in place by both backends,
    as by the NumPy reference."""
    rng = np.random.default_rng(5)
    p, g, m = (rng.standard_normal((4, 5)).astype(dtype).T for _ in range(3))
    v = rng.uniform(0.01, 1.0, (4, 5)).astype(dtype).T
    assert not p.flags.c_contiguous
    hyper = dict(lr_t=0.01, beta1=0.9, beta2=0.999, eps=1e-7)
    out = adam_both(p, g, m, v, hyper)
    for backend, (pp, mm, _) in out.items():
        assert not np.array_equal(pp, p), f"{backend}: parameter not updated"
        assert not np.array_equal(mm, m), f"{backend}: first moment not updated"
    assert_adam_close(out, p, g, m, v, hyper, dtype)


# ------------------------------------------------------------------------------ layers

def conv_atol(rtol, n_terms, a, b):
    return rtol * n_terms * np.abs(a).max() * np.abs(b).max()


@by_dtype
@by_cfg
def test_conv2d_layer_backends_agree(c, dtype):
    rnd = data(c, dtype, 6)
    x, w, b = rnd(c.N, c.H, c.W, c.C), rnd(c.KH, c.KW, c.C, c.F), rnd(c.F)
    stride = (c.sh, c.sw)
    res = {}
    for backend in ("numba", "numpy"):
        out, cache = L.conv2d_forward(x, w, b, stride, c.padding, backend)
        dout = data(c, dtype, 7)(*out.shape)
        res[backend] = (out,) + L.conv2d_backward(dout, cache)
    rtol = RTOL[dtype]
    out_f, dx_f, dw_f, db_f = res["numba"]
    out_r, dx_r, dw_r, db_r = res["numpy"]
    n_out = out_r.shape[0] * out_r.shape[1] * out_r.shape[2]
    assert_allclose(out_f, out_r, rtol=rtol, atol=conv_atol(rtol, c.KH * c.KW * c.C, x, w) + rtol * np.abs(b).max())
    assert_allclose(dx_f, dx_r, rtol=rtol, atol=conv_atol(rtol, c.KH * c.KW * c.F, dout, w))
    assert_allclose(dw_f, dw_r, rtol=rtol, atol=conv_atol(rtol, n_out, x, dout))
    assert_allclose(db_f, db_r, rtol=rtol, atol=rtol * n_out * np.abs(dout).max())
    for a in res["numba"]:
        assert a.dtype == dtype


@by_dtype
@by_cfg
def test_conv_transpose2d_layer_backends_agree(c, dtype):
    """The transposed conv maps the conv's output size back to its input size (out_hw)."""
    (Ho, Wo), _, _ = geometry(c)
    rnd = data(c, dtype, 8)
    x, w, b = rnd(c.N, Ho, Wo, c.F), rnd(c.KH, c.KW, c.C, c.F), rnd(c.C)
    stride = (c.sh, c.sw)
    res = {}
    for backend in ("numba", "numpy"):
        out, cache = L.conv_transpose2d_forward(x, w, b, stride, c.padding, backend, out_hw=(c.H, c.W))
        assert out.shape == (c.N, c.H, c.W, c.C)
        dout = data(c, dtype, 9)(*out.shape)
        res[backend] = (out,) + L.conv_transpose2d_backward(dout, cache)
    rtol = RTOL[dtype]
    out_f, dx_f, dw_f, db_f = res["numba"]
    out_r, dx_r, dw_r, db_r = res["numpy"]
    n_in = c.N * Ho * Wo
    assert_allclose(out_f, out_r, rtol=rtol,
                    atol=conv_atol(rtol, c.KH * c.KW * c.F, x, w) + rtol * np.abs(b).max())
    assert_allclose(dx_f, dx_r, rtol=rtol, atol=conv_atol(rtol, c.KH * c.KW * c.C, dout, w))
    assert_allclose(dw_f, dw_r, rtol=rtol, atol=conv_atol(rtol, n_in, x, dout))
    assert_allclose(db_f, db_r, rtol=rtol, atol=rtol * dout[..., 0].size * np.abs(dout).max())
    for a in res["numba"]:
        assert a.dtype == dtype


# ------------------------------------------------------------------------------ backend choice

def test_default_backend_is_numba(monkeypatch):
    monkeypatch.delenv("TINYVAE_KERNELS", raising=False)
    assert kernels.get_backend() == "numba"
    assert kernels.get_backend(None) == "numba"


def test_env_var_selects_numpy(monkeypatch):
    monkeypatch.setenv("TINYVAE_KERNELS", "numpy")
    assert kernels.get_backend() == "numpy"
    assert kernels.get_backend("numba") == "numba"          # an explicit argument wins


def test_env_var_is_honoured_by_the_dispatch(monkeypatch):
    """backend=None reads $TINYVAE_KERNELS at call time, in the kernels and in the layers."""
    def boom(*args, **kwargs):
        raise RuntimeError("numba path taken")

    monkeypatch.setitem(kernels.KERNELS, "im2col", (boom, kernels.im2col_numpy))
    x = np.ones((1, 4, 4, 1))
    w = np.ones((3, 3, 1, 1))
    monkeypatch.setenv("TINYVAE_KERNELS", "numpy")
    out, _ = L.conv2d_forward(x, w, np.zeros(1))             # backend=None -> numpy path
    assert_array_equal(out, np.full((1, 2, 2, 1), 9.0))
    monkeypatch.setenv("TINYVAE_KERNELS", "numba")
    with pytest.raises(RuntimeError, match="numba path taken"):
        L.conv2d_forward(x, w, np.zeros(1))
    monkeypatch.delenv("TINYVAE_KERNELS")
    with pytest.raises(RuntimeError, match="numba path taken"):
        kernels.im2col(x, 3, 3, (1, 1), (0, 0), (2, 2))


@params("name", ["cuda", "NUMPY", "numba "])
def test_unknown_backend_raises(monkeypatch, name):
    monkeypatch.setenv("TINYVAE_KERNELS", name)
    with pytest.raises(ConfigError, match="unknown kernel backend"):
        kernels.get_backend()
    with pytest.raises(ConfigError):
        kernels.maxpool_forward(np.zeros((1, 2, 2, 1)), 2)
    monkeypatch.delenv("TINYVAE_KERNELS")
    with pytest.raises(ConfigError):
        kernels.get_backend(name)


# ------------------------------------------------------------------------------ imports go down

def modules_after(code):
    """The modules loaded in a fresh interpreter after running ``code``."""
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_kernels_and_layers_import_nothing_above_them():
    """kernels import nothing of tinyvae but its errors (and the package's numba cache
    set-up, which runs first on any import); layers add only geometry. In
    particular no data module, so no network or archive module (numba alone loads
    ``socket``, through importlib.metadata and email.utils: that one is allowed)."""
    kernels_mods = {m for m in modules_after("import tinyvae.kernels") if m.startswith("tinyvae")}
    assert kernels_mods <= {"tinyvae", "tinyvae._numba_cache", "tinyvae.errors"} | {m for m in kernels_mods
                                                            if m.startswith("tinyvae.kernels")}
    loaded = modules_after("import tinyvae.layers")
    tv = {m for m in loaded if m.startswith("tinyvae")}
    assert tv - kernels_mods <= {"tinyvae.geometry", "tinyvae.layers"} | {
        m for m in tv if m.startswith("tinyvae.layers.")}
    numba_alone = modules_after("import numba, numpy")
    network = {"socket", "urllib.request", "http.client", "tarfile", "gzip", "ssl"}
    assert (loaded & network) <= numba_alone, (loaded & network) - numba_alone
    assert not loaded & {"urllib.request", "http.client", "tarfile"}


# ------------------------------------------------------------------------------ whole models

@pytest.mark.slow
@pytest.mark.parametrize("arch, dataset", PAIRS, ids=lambda v: v)
def test_fast_path_and_reference_train_alike(arch, dataset):
    """The study's four models, float32, batch 50, Adam at the study's rate: 20 training
    steps with the numba kernels and with the NumPy reference give the same loss
    trajectory (rtol 1e-4). One fixed batch, so the loss falls and the comparison is
    not of a model that stands still. (Weights are not compared: Adam moves every weight
    by about lr per step whatever its gradient's size, so where a gradient is near zero
    the two backends' rounding can flip a step's sign.)"""
    losses = {}
    for backend in ("numba", "numpy"):
        r = StepRunner(arch, dataset, batch=50, backend=backend, seed=2024)  # model, Adam(1e-4), x, eps
        losses[backend] = []
        for _ in range(20):
            losses[backend].append(r.model.loss(r.x, r.eps)["loss"])
            r.opt.step(r.model.params, r.model.grads)
    fast, ref = np.array(losses["numba"]), np.array(losses["numpy"])
    assert ref[0] - ref[-1] > 1e-3 * ref[0]           # it trained: moved 10x the tolerance
    assert_allclose(fast, ref, rtol=1e-4)
