"""Check your versions of a lesson's functions.

    python -m lessons.check l03                       # the lesson's own solutions
    python -m lessons.check l03 my_course/l03_conv2d.py
    python /path/to/lessons/check.py l03 FILE        # from any folder

Only the file's imports, literal constants (``LATENT = 8``) and ``def``s are
run, not the lesson around them.
Each ``# exercise`` function of the lesson gets that lesson's checks: the
shape and dtype of what it returns, its values against the package, and
backward passes against finite differences (float64, h = 1e-5, rel_error
below 1e-7, as in lesson 1). The verdict is printed per function, in plain
words; the exit status is 0 when all passed, 1 when one failed, 2 for bad
input.
"""
import argparse
import ast
import pathlib
import sys
import traceback

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:                         # `lessons` and `tinyvae` import from any folder
    sys.path.insert(0, str(ROOT))

import numpy as np                                    # noqa: E402

from lessons.exercises import find_lesson, marked_functions   # noqa: E402
from tinyvae.gradcheck import numerical_gradient, rel_error   # noqa: E402

TOL = 1e-7                                            # the gradient-check bar of lesson 1
CHECKS = {}                                           # "l01" -> {function name: check(fn, ns)}


class Wrong(Exception):
    """What is wrong with a function, in plain words."""


def checks(lesson, name):
    """Register ``check(fn, namespace)`` for the exercise ``name`` of ``lesson``."""
    def register(check):
        CHECKS.setdefault(lesson, {})[name] = check
        return check
    return register


# ---- comparisons that explain themselves -----------------------------------

def expect_shape(what, got, shape, hint=""):
    if not isinstance(got, np.ndarray):
        raise Wrong(f"{what} should be a NumPy array of shape {shape}, got {type(got).__name__}")
    if got.shape != tuple(shape):
        raise Wrong(f"{what} has shape {got.shape}, expected {tuple(shape)}{hint}")


def expect_values(what, got, want, tol=1e-10, hint=""):
    """``got`` equals ``want`` to ``tol`` (rel_error), with the worst entry named."""
    want = np.asarray(want)
    if np.ndim(want) == 0:
        got = float(np.asarray(got)) if np.ndim(got) == 0 else got
        if not isinstance(got, (float, int, np.floating)):
            raise Wrong(f"{what} should be a number, got {type(got).__name__} {np.shape(got)}")
        if not rel_error(got, want) <= tol:
            raise Wrong(f"{what} is {got:.8g}, expected {float(want):.8g}{hint}")
        return
    expect_shape(what, got, want.shape)
    if not np.all(np.isfinite(got)):
        raise Wrong(f"{what} has NaN or infinite entries")
    err = np.abs(got - want) / np.maximum(1e-8, np.abs(got) + np.abs(want))
    if err.max() > tol:
        i = np.unravel_index(np.argmax(err), err.shape)
        raise Wrong(f"{what} has wrong values (rel error {err.max():.1e}, should be below {tol:.0e}); "
                    f"e.g. at index {tuple(int(k) for k in i)} it is {got[i]:.6g}, expected {want[i]:.6g}{hint}")


def expect_gradient(what, got, f, x, wrt):
    """``got`` is the gradient of the scalar ``f()`` with respect to the array ``x``."""
    expect_shape(what, got, x.shape, f" (the shape of {wrt})")
    num = numerical_gradient(f, x)
    err = rel_error(got, num)
    if not err < TOL:
        e = np.abs(got - num) / np.maximum(1e-8, np.abs(got) + np.abs(num))
        i = np.unravel_index(np.argmax(e), e.shape)
        raise Wrong(f"{what} does not match finite differences: rel error {err:.1e} (should be below "
                    f"{TOL:.0e}); e.g. at index {tuple(int(k) for k in i)} it is {got[i]:.6g}, "
                    f"the finite difference says {num[i]:.6g}")


def as_tuple(what, got, n):
    if not isinstance(got, tuple) or len(got) != n:
        raise Wrong(f"{what} should return a tuple of {n}, got {type(got).__name__}"
                    f"{f' of {len(got)}' if isinstance(got, tuple) else ''}")
    return got


def distinct(rng, shape, gap=0.01):
    """Values all different, at least ``gap`` apart (no max-pool ties, no ReLU kinks within h)."""
    return (rng.permutation(int(np.prod(shape))) * gap - 0.3).reshape(shape)


# ---- lesson 1: the dense layer ---------------------------------------------

@checks("l01", "dense_naive")
def _(fn, ns):
    from tinyvae.layers import dense_forward
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 2)), rng.standard_normal(2)
    expect_values("out", fn(x, w, b), dense_forward(x, w, b)[0], hint=" (out[n, m] = b[m] + sum_d x[n, d] w[d, m])")


@checks("l01", "dense_backward_naive")
def _(fn, ns):
    from tinyvae.layers import dense_forward
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 2)), rng.standard_normal(2)
    dout = rng.standard_normal((3, 2))
    grads = as_tuple("dense_backward_naive", fn(dout, x, w), 3)
    f = lambda: float(np.sum(dense_forward(x, w, b)[0] * dout))   # noqa: E731
    for name, g, p in zip(("dx", "dw", "db"), grads, ("x", "w", "b")):
        expect_gradient(name, g, f, {"x": x, "w": w, "b": b}[p], p)


# ---- lesson 2: activations and the loss ------------------------------------

@checks("l02", "sigmoid")
def _(fn, ns):
    from tinyvae.layers import sigmoid_forward
    x = np.random.default_rng(2).standard_normal((3, 5))
    expect_values("sigmoid(x)", fn(x), sigmoid_forward(x)[0])
    big = np.array([-1e4, -100.0, 0.0, 100.0, 1e4], dtype=np.float32)
    try:
        with np.errstate(over="raise"):
            s = fn(big)
    except FloatingPointError:
        raise Wrong("exp overflows for large negative x (float32, x = -100): "
                    "compute exp(-|x|), which never exceeds 1") from None
    expect_values("sigmoid of [-1e4, -100, 0, 100, 1e4]", np.asarray(s, np.float64),
                  sigmoid_forward(big)[0].astype(np.float64), tol=1e-6)
    if s.dtype != np.float32:
        raise Wrong(f"a float32 input gave a {s.dtype} output; keep the input's dtype")


@checks("l02", "sse")
def _(fn, ns):
    from tinyvae.losses import sse_loss
    rng = np.random.default_rng(3)
    xhat, x = rng.random((3, 4, 4, 1)), rng.random((3, 4, 4, 1))
    loss, dxhat = as_tuple("sse", fn(xhat, x), 2)
    expect_values("the loss", loss, sse_loss(xhat, x)[0],
                  hint=" (sum over pixels of (x̂ - x)², then the mean over the batch)")
    expect_gradient("dxhat", dxhat, lambda: float(fn(xhat, x)[0]), xhat, "xhat")


# ---- lesson 3: convolution ---------------------------------------------------

@checks("l03", "conv2d_one_image")
def _(fn, ns):
    from tinyvae.layers import conv2d_forward
    rng = np.random.default_rng(4)
    x, w, b = rng.standard_normal((7, 6, 2)), rng.standard_normal((3, 3, 2, 4)), rng.standard_normal(4)
    for s in (1, 2):
        want = conv2d_forward(x[None], w, b, s)[0][0]
        expect_values(f"the output at stride {s}", fn(x, w, b, s), want,
                      hint=" (out[i, j, f] = b[f] + sum x[i*s + ki, j*s + kj, c] w[ki, kj, c, f])")


@checks("l03", "conv2d_one_image_backward")
def _(fn, ns):
    from tinyvae.layers import conv2d_forward
    rng = np.random.default_rng(5)
    x, w, b = rng.standard_normal((6, 5, 2)), rng.standard_normal((3, 3, 2, 3)), rng.standard_normal(3)
    for s in (1, 2):
        dout = rng.standard_normal(conv2d_forward(x[None], w, b, s)[0][0].shape)
        grads = as_tuple("conv2d_one_image_backward", fn(dout, x, w, s), 3)
        f = lambda: float(np.sum(conv2d_forward(x[None], w, b, s)[0][0] * dout))   # noqa: E731
        for name, g, p in zip(("dx", "dw", "db"), grads, (x, w, b)):
            try:
                expect_gradient(name, g, f, p, name[1:])
            except Wrong as e:
                raise Wrong(f"at stride {s}: {e}") from None


# ---- lesson 4: max-pooling ---------------------------------------------------

@checks("l04", "maxpool_one_image")
def _(fn, ns):
    from tinyvae.layers import maxpool_forward
    x = distinct(np.random.default_rng(6), (7, 7, 2))              # odd: the last row and column drop
    out, where = as_tuple("maxpool_one_image", fn(x), 2)
    expect_values("the pooled output", out, maxpool_forward(x[None], 2)[0][0],
                  hint=" (7x7 pools to 3x3: the last row and column are dropped)")
    for (i, j, c), (r, q) in where.items():
        if x[r, q, c] != out[i, j, c]:
            raise Wrong(f"where[{i}, {j}, {c}] = ({r}, {q}), but x there is {x[r, q, c]:.3g}, "
                        f"not the window's max {out[i, j, c]:.3g}")


@checks("l04", "maxpool_one_image_backward")
def _(fn, ns):
    from tinyvae.layers import maxpool_forward
    x = distinct(np.random.default_rng(7), (7, 7, 2))
    dout = np.random.default_rng(8).standard_normal((3, 3, 2))
    try:
        _, where = ns["maxpool_one_image"](x)
    except Exception:
        raise Wrong("needs a working maxpool_one_image (for `where`); make that pass first") from None
    dx = fn(dout, where, x.shape)
    expect_gradient("dx", dx, lambda: float(np.sum(maxpool_forward(x[None], 2)[0][0] * dout)), x, "x")


# ---- lesson 5: the transposed convolution --------------------------------------

@checks("l05", "conv_transpose_one_image")
def _(fn, ns):
    from tinyvae.layers import conv_transpose2d_forward
    rng = np.random.default_rng(9)
    y, w = rng.standard_normal((4, 3, 5)), rng.standard_normal((3, 3, 2, 5))   # F = 5 -> C = 2
    for s in (1, 2):
        want = conv_transpose2d_forward(y[None], w, np.zeros(2), s)[0][0]
        expect_values(f"the output at stride {s}", fn(y, w, s), want,
                      hint=" (input pixel (i, j) adds w @ y[i, j] at (i*s + ki, j*s + kj))")


# ---- lesson 6: the reparameterization and the KL ---------------------------------

@checks("l06", "reparameterize")
def _(fn, ns):
    rng = np.random.default_rng(10)
    mu, logvar = rng.standard_normal((3, 2)), np.log(np.array([[4.0, 0.25]] * 3))
    eps = rng.standard_normal((200_000, 2))
    z = fn(np.zeros((200_000, 2)), np.broadcast_to(logvar[:1], (200_000, 2)), eps)
    expect_shape("z", z, (200_000, 2))
    std = z.std(axis=0)
    if np.allclose(std, [4.0, 0.25], rtol=0.02):
        raise Wrong("the samples' std is exp(logvar) = σ² (4 and 0.25), not σ (2 and 0.5): "
                    "the standard deviation is exp(0.5 * logvar)")
    if not np.allclose(std, [2.0, 0.5], rtol=0.02):
        raise Wrong(f"the samples' std is {std.round(3)}, expected [2, 0.5] for variances [4, 0.25]")
    e = rng.standard_normal((3, 2))
    expect_values("z", fn(mu, logvar, e), mu + np.exp(0.5 * logvar) * e)


@checks("l06", "reparam_grads")
def _(fn, ns):
    rng = np.random.default_rng(11)
    mu, logvar, eps, dz = (rng.standard_normal((3, 2)) for _ in range(4))
    grads = as_tuple("reparam_grads", fn(dz, logvar, eps), 2)
    f = lambda: float(np.sum((mu + np.exp(0.5 * logvar) * eps) * dz))   # noqa: E731
    expect_gradient("dmu", grads[0], f, mu, "mu")
    expect_gradient("dlogvar", grads[1], f, logvar, "logvar")


@checks("l06", "kl_divergence")
def _(fn, ns):
    from tinyvae.losses import kl_loss
    rng = np.random.default_rng(12)
    mu, logvar = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    kl, dmu, dlogvar = as_tuple("kl_divergence", fn(mu, logvar), 3)
    expect_values("the KL", kl, kl_loss(mu, logvar)[0],
                  hint=" (0.5 (mu² + σ² - 1 - log σ²) summed over dims, averaged over the batch)")
    f = lambda: float(fn(mu, logvar)[0])                           # noqa: E731
    expect_gradient("dmu", dmu, f, mu, "mu")
    expect_gradient("dlogvar", dlogvar, f, logvar, "logvar")


# ---- lesson 7: Adam ---------------------------------------------------------------

@checks("l07", "adam_step")
def _(fn, ns):
    from tinyvae.optim import Adam
    rng = np.random.default_rng(13)
    curv = np.array([1.0, 100.0, 0.01])
    p = rng.standard_normal(3)
    m, v = np.zeros(3), np.zeros(3)
    first = as_tuple("adam_step", fn(p.copy(), curv * p, m.copy(), v.copy(), 1, 0.1, 0.9, 0.999, 0.0), 3)[0]
    step = np.abs(first - p)
    if np.allclose(step, 0.1 * 0.1 / np.sqrt(0.001)):
        raise Wrong(f"the first step is {step.round(4)}, 3.16 lr: the bias correction is missing "
                    "(divide m by 1 - beta1**t and v by 1 - beta2**t)")
    if not np.allclose(step, 0.1, rtol=1e-6):
        raise Wrong(f"the first step should be exactly lr = 0.1 in every coordinate, got {step.round(6)}")
    ref, opt = {"p": p.copy()}, Adam(lr=0.05, eps=0.0)
    for t in range(1, 31):
        opt.step(ref, {"p": curv * ref["p"]})
        p, m, v = fn(p, curv * p, m, v, t, 0.05, 0.9, 0.999, 0.0)
        expect_values(f"the parameters after step {t}", p, ref["p"], tol=1e-9)


# ---- lesson 8: the VAE's backward pass ----------------------------------------------

@checks("l08", "vae_backward")
def _(fn, ns):
    from tinyvae.models import VAE
    rng = np.random.default_rng(14)
    model = VAE("simple", (28, 28, 1), np.random.default_rng(1), dtype=np.float64)
    x, eps = rng.random((2, 28, 28, 1)), rng.standard_normal((2, 2))
    terms = fn(model, x, eps)
    if not isinstance(terms, dict) or not {"loss", "rec", "kl"} <= set(terms):
        raise Wrong(f"vae_backward should return a dict with loss, rec and kl, got {type(terms).__name__}")
    mine = {f"{n}.{k}": layer.grads[k].copy() for n, layer in model.named_layers() for k in layer.grads}
    want = model.loss(x, eps)
    for key in ("rec", "kl", "loss"):
        expect_values(f"the {key}", terms[key], want[key], tol=1e-9)
    for name, g in mine.items():
        expect_values(f"the gradient of {name}", g, model.grads[name], tol=1e-6,
                      hint=" (VAE.loss disagrees; the sums into mu, logvar and the encoder's output?)")
    h = 1e-7                                                       # directional check, lesson 8
    for name in ("enc0_conv2d.w", "mu_dense.w", "logvar_dense.b", "dec0_dense.w"):
        p, g = model.params[name], mine[name]
        d = g / np.linalg.norm(g)
        p += h * d
        lp = model.loss(x, eps, backward=False)["loss"]
        p -= 2 * h * d
        lm = model.loss(x, eps, backward=False)["loss"]
        p += h * d
        err = rel_error((lp - lm) / (2 * h), np.linalg.norm(g))
        if not err < 1e-5:
            raise Wrong(f"the gradient of {name} does not match a finite difference along it "
                        f"(rel error {err:.1e})")


# ---- lesson 9: the PCA baseline -----------------------------------------------------------

@checks("l09", "pca_reconstruct")
def _(fn, ns):
    rng = np.random.default_rng(15)
    X = rng.standard_normal((60, 4)) @ rng.standard_normal((4, 10)) + rng.standard_normal(10)  # (60, 10)
    Xt = rng.standard_normal((7, 4)) @ rng.standard_normal((4, 10))
    R = fn(X, Xt, 3)
    expect_shape("the reconstruction", R, Xt.shape)
    mean = X.mean(axis=0)
    _, _, vt = np.linalg.svd(X - mean, full_matrices=False)
    want = (Xt - mean) @ vt[:3].T @ vt[:3] + mean
    expect_values("the reconstruction", R, want, tol=1e-8,
                  hint=" (centre with the training mean, project on the top k directions, add the mean back)")


# ---- lesson 10: evaluation -------------------------------------------------------------

@checks("l10", "knn_accuracy")
def _(fn, ns):
    from tinyvae.probes import knn_accuracy
    rng = np.random.default_rng(16)
    centers = rng.standard_normal((4, 3)) * 3
    y_ref, y_q = rng.integers(0, 4, 300), rng.integers(0, 4, 80)
    ref = centers[y_ref] + rng.standard_normal((300, 3))
    query = centers[y_q] + rng.standard_normal((80, 3))
    got = fn(ref, y_ref, query, y_q, k=1)                          # k = 1: no vote ties
    expect_values("the accuracy with k = 1", got, knn_accuracy(ref, y_ref, query, y_q, k=1))
    got5 = fn(ref, y_ref, query, y_q, k=5)
    if abs(got5 - knn_accuracy(ref, y_ref, query, y_q, k=5)) > 0.05:
        raise Wrong(f"the accuracy with k = 5 is {got5:.3f}, tinyvae.evaluate says "
                    f"{knn_accuracy(ref, y_ref, query, y_q, k=5):.3f}")


@checks("l10", "negative_elbo")
def _(fn, ns):
    from tinyvae.evaluate import negative_elbo_terms
    from tinyvae.models import VAE
    rng = np.random.default_rng(17)
    model = VAE("simple", (28, 28, 1), rng, dtype=np.float64)
    images = rng.integers(0, 256, (20, 28, 28, 1), dtype=np.uint8)
    want = negative_elbo_terms(model, images, seed=5)             # the same noise: one draw of (20, 2)
    got = as_tuple("negative_elbo", fn(model, images, np.random.default_rng(5)), 3)
    for what, g, key in zip(("-ELBO", "SSE", "KL"), got, ("nelbo_dequantized", "sse_dequantized", "kl")):
        expect_values(f"the {what} per image", np.asarray(g, np.float64), want[key], tol=1e-6)


# ---- lesson 11: the capstone -------------------------------------------------------------

# The targets of lesson 11 for beta = 1 (the lesson prints and asserts these same numbers)
L11_TARGETS = {"rec_plus_kl": 40.0, "active_units": 6, "knn_below_pca": 0.02}
_MNIST = {}


def _mnist(data_dir):
    if data_dir not in _MNIST:
        from tinyvae.data import load
        _MNIST[data_dir] = (load("mnist", "train", data_dir), load("mnist", "test", data_dir))
    return _MNIST[data_dir]


def capstone_run(fns, beta, data_dir, seed=0, steps=1500):
    """Lesson 11's protocol with the functions ``fns`` (build, fit, loss_and_grads, encode, decode).

    Trains on 6,000 MNIST training images (1,500 steps, batches of 32, lr 1e-3)
    and measures on 1,000 test images: ``rec`` and ``kl`` (KL weight 1),
    ``active`` units, ``knn`` accuracy of mu (2,000 training codes as the
    reference) and ``pca_knn`` (PCA with 8 components, the same kNN);
    ``originals`` and ``recon``: 10 test images and their reconstructions from mu.
    """
    from tinyvae import evaluate as ev
    from tinyvae import probes as pr
    from tinyvae.data import to_float
    (x_train, y_train), (x_test, y_test) = _mnist(str(data_dir))
    rng = np.random.default_rng(seed)
    tr = rng.choice(len(x_train), 6000, replace=False)
    te = rng.choice(len(x_test), 1000, replace=False)
    net = fns["build"](np.random.default_rng(seed + 1))
    fns["fit"](net, x_train[tr], beta, steps, 32, 1e-3, np.random.default_rng(seed + 2))
    x = to_float(x_test[te])                                          # (1000, 28, 28, 1)
    mu, logvar = fns["encode"](net, x)                                # (1000, L) twice
    mu_ref, _ = fns["encode"](net, to_float(x_train[tr[:2000]]))
    eps = np.random.default_rng(seed + 3).standard_normal(mu.shape).astype(mu.dtype)
    xhat = fns["decode"](net, mu + np.exp(0.5 * logvar) * eps)
    rec = float(np.mean(np.sum((xhat - x) ** 2, axis=(1, 2, 3))))
    kl = float(np.mean(0.5 * np.sum(mu * mu + np.exp(logvar) - 1 - logvar, axis=1)))
    pca = pr.pca_knn_baseline(x_train[tr[:2000]], y_train[tr[:2000]], x_test[te], y_test[te], n_components=8)
    return {"rec": rec, "kl": kl, "active": ev.active_units(mu),
            "knn": pr.knn_accuracy(mu_ref, y_train[tr[:2000]], mu, y_test[te]), "pca_knn": pca["accuracy"],
            "originals": x[:10], "recon": fns["decode"](net, mu[:10])}


def _tiny_net(ns, dtype):
    try:
        return ns["build"](np.random.default_rng(1), dtype=dtype)
    except Exception:
        raise Wrong("needs a working build (with a dtype argument); make that pass first") from None


@checks("l11", "build")
def _(fn, ns):
    net = fn(np.random.default_rng(0))
    if not isinstance(net, dict) or not {"encoder", "mu", "logvar", "decoder"} <= set(net):
        raise Wrong("build should return a dict with encoder, mu, logvar and decoder")
    mu, logvar = ns["encode"](net, np.zeros((2, 28, 28, 1), np.float32))
    expect_shape("mu", mu, (2, 8), " (the latent has 8 dimensions)")
    expect_shape("logvar", logvar, (2, 8))
    xhat = ns["decode"](net, mu)
    expect_shape("the decoded images", xhat, (2, 28, 28, 1))
    if not (np.all(xhat > 0) and np.all(xhat < 1)):
        raise Wrong("decoded pixels should lie in (0, 1): end the decoder with a Sigmoid")
    if _tiny_net(ns, np.float64)["mu"].params["w"].dtype != np.float64:
        raise Wrong("build(rng, dtype=np.float64) should give float64 parameters (for gradient checks)")


@checks("l11", "loss_and_grads")
def _(fn, ns):
    from tinyvae.losses import kl_loss, sse_loss
    net = _tiny_net(ns, np.float64)
    rng = np.random.default_rng(2)
    x, eps, beta = rng.random((3, 28, 28, 1)), rng.standard_normal((3, 8)), 2.0
    mu, logvar = ns["encode"](net, x)
    want_rec = sse_loss(ns["decode"](net, mu + np.exp(0.5 * logvar) * eps), x)[0]
    want_kl = kl_loss(mu, logvar)[0]
    terms = fn(net, x, eps, beta)
    if not isinstance(terms, dict) or not {"loss", "rec", "kl"} <= set(terms):
        raise Wrong("loss_and_grads should return a dict with loss, rec and kl")
    expect_values("rec", terms["rec"], want_rec)
    expect_values("kl", terms["kl"], want_kl)
    expect_values("loss", terms["loss"], want_rec + beta * want_kl, hint=" (rec + beta * kl)")
    params, grads = ns["parameters"](net)
    grads = {k: g.copy() for k, g in grads.items()}
    for name, p in params.items():
        g = grads[name]
        if not np.any(g):
            raise Wrong(f"the gradient of {name} is all zeros")
        d = g / np.linalg.norm(g)
        p += 1e-7 * d
        lp = fn(net, x, eps, beta)["loss"]
        p -= 2e-7 * d
        lm = fn(net, x, eps, beta)["loss"]
        p += 1e-7 * d
        err = rel_error((lp - lm) / 2e-7, np.linalg.norm(g))
        if not err < 1e-5:
            raise Wrong(f"the gradient of {name} does not match a finite difference along it (rel error {err:.1e})")


@checks("l11", "fit")
def _(fn, ns):
    from lessons._common import find_data
    data_dir = find_data("mnist")
    if data_dir is None:
        raise Wrong("the targets need MNIST: set TINYVAE_DATA_DIR to a folder holding mnist/")
    r = capstone_run(dict(ns, fit=fn), 1.0, data_dir)
    got = (f"SSE + KL {r['rec'] + r['kl']:.1f}, active units {r['active']}, "
           f"kNN {r['knn']:.3f} vs PCA-8 {r['pca_knn']:.3f}")
    if not r["rec"] + r["kl"] <= L11_TARGETS["rec_plus_kl"]:
        raise Wrong(f"SSE + KL should be at most {L11_TARGETS['rec_plus_kl']}; got {got}")
    if not r["active"] >= L11_TARGETS["active_units"]:
        raise Wrong(f"at least {L11_TARGETS['active_units']} active units expected; got {got}")
    if not r["knn"] >= r["pca_knn"] - L11_TARGETS["knn_below_pca"]:
        raise Wrong(f"the codes' kNN accuracy should be at least PCA-8's minus "
                    f"{L11_TARGETS['knn_below_pca']}; got {got}")
    print(f"    (targets reached: {got})")


# ---- the runner ---------------------------------------------------------------------------

def _is_literal(node):
    try:
        ast.literal_eval(node)
        return True
    except ValueError:
        return False


def load_functions(path):
    """Run only the imports, literal constants and top-level defs of ``path``; the namespace they fill.

    A ``def`` that cannot be run alone (a default argument naming one of the
    lesson's variables) is left out; ``ns["__errors__"]`` says why.
    """
    source = pathlib.Path(path).read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    ns = {"__name__": "lesson_under_check", "__file__": str(path), "__errors__": {}}
    for node in tree.body:
        if isinstance(node, ast.Assign) and _is_literal(node.value):   # constants such as LATENT = 8
            exec(compile(ast.Module(body=[node], type_ignores=[]), str(path), "exec"), ns)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            exec(compile(ast.Module(body=[node], type_ignores=[]), str(path), "exec"), ns)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            try:
                exec(compile(ast.Module(body=[node], type_ignores=[]), str(path), "exec"), ns)
            except Exception as e:                                # e.g. def f(steps=T)
                ns["__errors__"][node.name] = f"its def line fails on its own: {type(e).__name__}: {e}"
    return ns


def run_check(check, fn, ns, path):
    """None when ``fn`` passes ``check``; otherwise what is wrong, in words."""
    try:
        check(fn, ns)
    except Wrong as e:
        return str(e)
    except NotImplementedError:
        return "not written yet (it still raises NotImplementedError)"
    except Exception as e:                                        # the learner's code crashed
        frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == str(path)]
        where = f" at line {frames[-1].lineno} of {path}: {frames[-1].line}" if frames else ""
        return f"raised {type(e).__name__}: {e}{where}"
    return None


def check_file(lesson, path=None, out=sys.stdout):
    """Check ``path`` (default: the lesson itself); {function name: None or what is wrong}."""
    lesson_path = find_lesson(lesson)
    key = lesson_path.stem.split("_")[0]
    path = pathlib.Path(path) if path else lesson_path
    names = [f.name for f in marked_functions(lesson_path.read_text(encoding="utf-8"))]
    ns = load_functions(path)
    results = {}
    for name in names:
        fn = ns.get(name)
        if name in ns["__errors__"]:
            results[name] = ns["__errors__"][name]
        elif fn is None:
            results[name] = f"{path.name} has no function {name}"
        elif name not in CHECKS.get(key, {}):
            results[name] = "the checker has no check for it"
        else:
            results[name] = run_check(CHECKS[key][name], fn, ns, path)
        print(f"  {name}: {'passed' if results[name] is None else 'FAILED — ' + results[name]}", file=out)
    return results


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m lessons.check", description=__doc__.split("\n\n")[0])
    p.add_argument("lesson", help="which lesson's checks, e.g. l03")
    p.add_argument("file", nargs="?", help="your file (default: the lesson itself, the solutions)")
    p.add_argument("--threads", type=int, default=1, help="numba and BLAS threads (default 1, as the lessons)")
    args = p.parse_args(argv)
    from tinyvae.threads import set_threads
    set_threads(max(1, args.threads))
    try:
        path = args.file or find_lesson(args.lesson)
        print(f"checking {path} against lesson {args.lesson}'s checks")
        results = check_file(args.lesson, args.file)
    except (ValueError, OSError, SyntaxError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    failed = [n for n, r in results.items() if r is not None]
    print(f"{len(results) - len(failed)} of {len(results)} passed" if results else "this lesson has no exercises")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
