# %% [markdown]
# # Lesson 2 — Activations and the squared-error loss
#
# A stack of dense layers is still one affine map; a nonlinearity between
# them is what makes depth worth having. The VAE uses two:
#
# * **ReLU**, `max(x, 0)`, after every hidden layer;
# * **sigmoid**, `1 / (1 + e^{-x})`, on the decoder's output, so pixels land in (0, 1).
#
# Both act entry by entry, so their backward pass is a product of `dout` with
# the derivative, entry by entry. Then the loss the whole network is trained
# on: squared error summed over pixels and averaged over the batch; and its
# Bernoulli alternative, the cross-entropy on logits.
#
# Run it: `python -m lessons.l02_activations_loss --out /tmp/l02`.
# Exercises (lesson 1 says how): `sigmoid` and `sse`.

# %%
import pathlib
import sys

HERE = pathlib.Path(__file__).parent if "__file__" in globals() else pathlib.Path.cwd()
sys.path.insert(0, str(HERE.resolve().parent))    # the repository root: runs from any folder

import matplotlib.pyplot as plt
import numpy as np

from lessons._common import savefig, setup
from tinyvae.gradcheck import check_gradient, numerical_gradient_array, rel_error
from tinyvae.layers import (dense_backward, dense_forward, relu_backward, relu_forward,
                            sigmoid_backward, sigmoid_forward)
from tinyvae.losses import bce_with_logits_loss, sse_loss

args = setup("l02_activations_loss")
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. ReLU
#
# `relu(x) = max(x, 0)` has slope 1 where `x > 0` and 0 where `x < 0`, so
# `dx = dout * (x > 0)`. At exactly 0 there is no derivative (a *kink*); the
# package picks 0 there. The cache keeps the output: `out > 0` is the same
# mask as `x > 0`.
#
# The gradient check needs inputs away from the kink (a step `h` across 0
# would change which branch is taken: lesson 4 shows such a check breaking),
# so we push the inputs at least 0.1 from 0. Expect a rel error below 1e-7
# (typically 1e-11: ReLU is linear on each side).

# %%
x = rng.standard_normal((4, 6))                           # (N, D)
x += 0.1 * np.sign(x)                                     # |x| >= 0.1: no kinks within h
out, cache = relu_forward(x)
dout = rng.standard_normal(out.shape)                     # (N, D)
dx = relu_backward(dout, cache)
dx_naive = np.array([[g if v > 0 else 0.0 for v, g in zip(rx, rg)] for rx, rg in zip(x, dout)])
num = numerical_gradient_array(lambda: relu_forward(x)[0], x, dout)
print(f"relu: backward vs the 'slope 1 or 0' loop {rel_error(dx, dx_naive):.1e}, "
      f"vs finite differences {rel_error(dx, num):.1e}  (expect < 1e-7)")
assert rel_error(dx, dx_naive) == 0 and rel_error(dx, num) < 1e-7

# %% [markdown]
# ## 2. Sigmoid, and computing it without overflow
#
# Derivative:
# $\sigma'(x) = \frac{e^{-x}}{(1 + e^{-x})^2} = \sigma(x)\,(1 - \sigma(x))$,
# so the backward pass needs only the *output*: `dx = dout * s * (1 - s)`.
# Its largest value is 1/4 (at 0) and it vanishes for large `|x|` — a
# saturated output unit learns slowly.
#
# The formula as written overflows: in float32 `exp(-x)` is infinite for
# `x < -88.7`. IEEE arithmetic still returns 0 (the true value is 4e-44),
# but the warning is a symptom: turn overflow into an error (as a careful
# test suite does) and it crashes. The package computes `e = exp(-|x|)`, which
# never exceeds 1, and picks `1/(1+e)` or `e/(1+e)` by the sign of `x`.

# %%
big = np.array([-100.0, -20.0, 0.0, 20.0, 100.0], dtype=np.float32)
try:
    with np.errstate(over="raise"):
        1 / (1 + np.exp(-big))                            # the formula as written
    overflowed = False
except FloatingPointError as e:
    overflowed = True
    print(f"naive sigmoid in float32 at x = -100: FloatingPointError ({e})")


# exercise
def sigmoid(x):
    """1 / (1 + exp(-x)) elementwise, without overflow; same shape and dtype as x."""
    e = np.exp(-np.abs(x))                                # in (0, 1]: never overflows
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


with np.errstate(over="raise"):
    s_big, _ = sigmoid_forward(big)                       # the package's: no overflow
    s_mine = sigmoid(big)                                 # ours: no overflow either
print("package sigmoid:", s_big, s_big.dtype, "; ours equal:", np.array_equal(s_mine, s_big))
assert overflowed and np.all(np.isfinite(s_big)) and s_big.dtype == np.float32
assert np.array_equal(s_mine, s_big) and s_mine.dtype == np.float32

x = rng.standard_normal((4, 6))                           # (N, D)
s, cache = sigmoid_forward(x)
assert rel_error(s, 1 / (1 + np.exp(-x))) < 1e-15        # same values where the formula is safe
dout = rng.standard_normal(s.shape)
dx = sigmoid_backward(dout, cache)
err = rel_error(dx, numerical_gradient_array(lambda: sigmoid_forward(x)[0], x, dout))
print(f"sigmoid: backward vs finite differences {err:.1e}  (expect < 1e-7)")
assert err < 1e-7

# %% [markdown]
# The two activations and their derivatives; the dots are finite
# differences, the lines what the backward functions return for `dout = 1`.

# %%
grid = np.linspace(-5, 5, 401)
pts = np.linspace(-4.75, 4.75, 20)                        # kept off the ReLU kink at 0
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
for ax, (name, fwd, bwd) in zip(axes, (("relu", relu_forward, relu_backward),
                                       ("sigmoid", sigmoid_forward, sigmoid_backward))):
    y, c = fwd(grid)
    ax.plot(grid, y, label=name)
    ax.plot(grid, bwd(np.ones_like(grid), c), label=f"d {name} / dx (backward)")
    fd = (fwd(pts + 1e-5)[0] - fwd(pts - 1e-5)[0]) / 2e-5
    ax.plot(pts, fd, "k.", label="finite difference")
    ax.set_title(name)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
savefig(fig, args.out, "l02_activations")

# %% [markdown]
# ## 3. The squared-error loss
#
# For a batch of `N` images `x` and reconstructions `x̂` (shape `(N, H, W, C)`),
#
# $$L = \frac{1}{N} \sum_n \sum_{i,j,c} (\hat x[n,i,j,c] - x[n,i,j,c])^2,
#   \qquad \frac{\partial L}{\partial \hat x} = \frac{2}{N}(\hat x - x).$$
#
# *Summed* over pixels, *averaged* over the batch. (The study's code took the
# mean over pixels; tinyvae sums on purpose, and lesson 10 shows what the
# mean does to a VAE.) Why a sum: with a Gaussian decoder `p(x|z) = N(x; x̂, σ² I)`,
# `-log p = Σ (x - x̂)² / (2σ²) + (D/2) log(2πσ²)`, and with `σ² = 1/2` that
# is exactly the squared error plus the constant `(D/2) log π`. So the SSE is
# a negative log-likelihood in nats, up to a constant; a per-pixel *mean*
# would be a different model (lesson 10 shows what it does to a VAE).

# %%
# exercise
def sse(xhat, x):
    """Squared error summed over pixels, averaged over the batch: loss (float), dxhat like xhat."""
    N = x.shape[0]
    diff = xhat - x                                       # (N, H, W, C)
    return float(np.sum(diff * diff)) / N, 2.0 * diff / N


N, H, W, C = 3, 4, 4, 1
xt = rng.random((N, H, W, C))                             # targets in [0, 1)
xhat = rng.random((N, H, W, C))                           # reconstructions
loss, dxhat = sse_loss(xhat, xt)
mine, dmine = sse(xhat, xt)
assert abs(mine - loss) < 1e-12 and rel_error(dmine, dxhat) < 1e-12
loss_loop = sum(float((xhat[n] - xt[n]).ravel() @ (xhat[n] - xt[n]).ravel()) for n in range(N)) / N
err = check_gradient(lambda: sse_loss(xhat, xt)[0], xhat, dxhat)
print(f"sse: {loss:.6f} (loop over images {loss_loop:.6f}); gradient check {err:.1e}  (expect < 1e-7)")
assert abs(loss - loss_loop) < 1e-12 and err < 1e-7

D = H * W * C
nll = np.mean([-np.sum(-0.5 * np.log(2 * np.pi * 0.5) - (xt[n] - xhat[n]) ** 2 / (2 * 0.5))
               for n in range(N)])                        # Gaussian -log p, sigma^2 = 1/2
print(f"Gaussian -log p(x | x̂) with σ² = 1/2: {nll:.6f} = sse + (D/2) log π = "
      f"{loss + D / 2 * np.log(np.pi):.6f}")
assert abs(nll - (loss + D / 2 * np.log(np.pi))) < 1e-10

# %% [markdown]
# ## 4. Chaining: dense → sigmoid → squared error
#
# Backprop is these pieces composed in reverse: the loss hands `dx̂` to the
# sigmoid, the sigmoid hands `dh` to the dense layer. One gradient check on
# the weights at the bottom tests all three backward passes at once (expect
# below 1e-7).

# %%
z = rng.standard_normal((N, 2))                           # (N, 2) a tiny "latent code"
w = rng.standard_normal((2, D))                           # (2, D)
b = np.zeros(D)                                           # (D,)


def chain_loss():
    h, _ = dense_forward(z, w, b)                         # (N, D)
    s, _ = sigmoid_forward(h)                             # (N, D)
    return sse_loss(s.reshape(N, H, W, C), xt)[0]


h, dense_cache = dense_forward(z, w, b)                   # (N, D)
s, sig_cache = sigmoid_forward(h)                         # (N, D)
loss, ds = sse_loss(s.reshape(N, H, W, C), xt)            # ds: (N, H, W, C)
dh = sigmoid_backward(ds.reshape(N, D), sig_cache)        # (N, D)
dz, dw, db = dense_backward(dh, dense_cache)              # (N, 2), (2, D), (D,)
errs = [check_gradient(chain_loss, p, g) for p, g in ((w, dw), (b, db), (z, dz))]
print(f"dense -> sigmoid -> sse, gradient check of dw, db, dz: {', '.join(f'{e:.1e}' for e in errs)}")
assert max(errs) < 1e-7

# %% [markdown]
# ## 5. The Bernoulli alternative: cross-entropy on logits
#
# Most VAE tutorials use a **Bernoulli** decoder instead: each pixel is a coin
# with probability `p = sigmoid(h)`, and `-log p(x|z)` is the binary
# cross-entropy `-Σ [x log p + (1 - x) log(1 - p)]`. Written on the logits `h`
# it is `Σ [softplus(h) - x h]`, with `softplus(h) = max(h, 0) + log(1 + e^{-|h|})`:
# no log of 0, no overflow. Fusing sigmoid and loss also fuses their
# gradients: `dh = (p - x) / N`, with no `s(1 - s)` factor. So the Bernoulli
# decoder has no final Sigmoid layer and outputs logits:
# `tinyvae.losses.bce_with_logits_loss`, `VAE(..., likelihood="bernoulli")`,
# `python -m tinyvae train --likelihood bernoulli` (lesson 10 compares the two).

# %%
logits = h.reshape(N, H, W, C)                            # section 4's dense output, as logits
xb = (rng.random((N, H, W, C)) < 0.5).astype(float)       # binary targets (grey levels work too)
bce, dlogits = bce_with_logits_loss(logits, xb)
p, p_cache = sigmoid_forward(logits)                      # (N, H, W, C)
textbook = -np.sum(xb * np.log(p) + (1 - xb) * np.log(1 - p)) / N
dp = -(xb / p - (1 - xb) / (1 - p)) / N                   # d textbook / dp
err = check_gradient(lambda: bce_with_logits_loss(logits, xb)[0], logits, dlogits)
print(f"bce: {bce:.6f} (textbook {textbook:.6f}); (p - x) / N vs through the sigmoid "
      f"{rel_error(dlogits, sigmoid_backward(dp, p_cache)):.1e}; gradient check {err:.1e}")
assert abs(bce - textbook) < 1e-12 * textbook and err < 1e-7
assert rel_error(dlogits, sigmoid_backward(dp, p_cache)) < 1e-10

far = np.full((1, 1, 1, 1), 40.0)                         # a confident logit, target 0
with np.errstate(divide="ignore"):
    naive = float(-np.log(1 - sigmoid_forward(far)[0]).sum())   # sigmoid(40) rounds to 1.0
print(f"logit 40, x = 0: -log(1 - sigmoid) = {naive}, softplus form "
      f"{bce_with_logits_loss(far, np.zeros_like(far))[0]}")
assert naive == np.inf and bce_with_logits_loss(far, np.zeros_like(far))[0] == 40.0

# %% [markdown]
# ## What to remember
#
# * elementwise layers: `dx = dout * f'(x)`; ReLU's is a mask, sigmoid's is `s(1 - s)`;
# * keep gradient-check inputs off kinks;
# * compute `exp` where it cannot overflow;
# * the VAE's reconstruction term is a sum over pixels (a Gaussian NLL up to a
#   constant) averaged over the batch, with gradient `2 (x̂ - x) / N`;
# * a Bernoulli decoder outputs logits: cross-entropy `softplus(h) - x h` per
#   pixel, gradient `(p - x) / N`, exact at any logit.
#
# Next: lesson 3, the convolution.
