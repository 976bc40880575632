# %% [markdown]
# # Lesson 1 — The dense layer, backprop by hand, and the gradient check
#
# Every layer in tinyvae is a pair of pure functions:
#
# ```python
# out, cache = thing_forward(x, *params)
# dx, *dparams = thing_backward(dout, cache)
# ```
#
# `dout` is the gradient of some scalar loss `L` with respect to `out`; the
# backward pass turns it into the gradients with respect to the inputs and
# parameters (the chain rule, one layer at a time). We start with the
# simplest layer, the affine map
#
# $$\text{out}[n, m] = b[m] + \sum_d x[n, d]\, w[d, m], \qquad x: (N, D),\ w: (D, M),\ b: (M,)$$
#
# The plan of every lesson: **math → naive forward → hand-derived backward →
# check → the package's fast version.**
#
# Run it: `python -m lessons.l01_dense --out /tmp/l01`.
#
# **Your turn.** Every lesson marks the functions you should be able to write
# with a `# exercise` line. `python -m lessons.exercises l01` writes a copy of
# this lesson with their bodies replaced by `raise NotImplementedError`; fill
# them in, run the copy, and `python -m lessons.check l01 tinyvae-exercises/l01_dense.py`
# says, per function, whether it passed or what is wrong. Here: `dense_naive`
# and `dense_backward_naive`.

# %%
import pathlib
import sys

HERE = pathlib.Path(__file__).parent if "__file__" in globals() else pathlib.Path.cwd()
sys.path.insert(0, str(HERE.resolve().parent))    # the repository root: runs from any folder

import matplotlib.pyplot as plt
import numpy as np

from lessons._common import savefig, setup
from tinyvae.gradcheck import check_gradient, numerical_gradient, rel_error
from tinyvae.layers import dense_backward, dense_forward

args = setup("l01_dense")
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. The forward pass, as the formula says
#
# A loop that reads like the equation. It is slow, and it is the definition:
# the package's `dense_forward` (one matrix product) must agree with it to
# rounding, a relative error around 1e-16.

# %%
# exercise
def dense_naive(x, w, b):
    """out[n, m] = b[m] + sum_d x[n, d] * w[d, m], one entry at a time."""
    N, D = x.shape
    M = w.shape[1]
    out = np.zeros((N, M), dtype=x.dtype)           # (N, M)
    for n in range(N):
        for m in range(M):
            out[n, m] = b[m] + sum(x[n, d] * w[d, m] for d in range(D))
    return out


N, D, M = 4, 5, 3
x = rng.standard_normal((N, D))                     # (N, D) float64
w = rng.standard_normal((D, M))                     # (D, M)
b = rng.standard_normal(M)                          # (M,)

out, cache = dense_forward(x, w, b)                 # (N, M)
err = rel_error(out, dense_naive(x, w, b))
print(f"forward: package vs loop, rel error {err:.1e}  (expect ~1e-16)")
assert err < 1e-12

# %% [markdown]
# ## 2. The backward pass, derived
#
# Let `dout[n, m] = ∂L/∂out[n, m]`. Each `out[n, m]` depends on `x[n, d]`
# through `w[d, m]`, on `w[d, m]` through `x[n, d]`, and on `b[m]` with
# slope 1. The chain rule sums over every output an input touches:
#
# $$\frac{\partial L}{\partial x[n,d]} = \sum_m \text{dout}[n,m]\, w[d,m], \quad
#   \frac{\partial L}{\partial w[d,m]} = \sum_n x[n,d]\, \text{dout}[n,m], \quad
#   \frac{\partial L}{\partial b[m]} = \sum_n \text{dout}[n,m]$$
#
# that is `dx = dout @ w.T`, `dw = x.T @ dout`, `db = dout.sum(0)`. Note the
# shapes: each gradient has the shape of the thing it is the gradient of.
# Here are the sums as loops, then the package's three matrix lines.

# %%
# exercise
def dense_backward_naive(dout, x, w):
    """The three sums above, entry by entry: dx (N, D), dw (D, M), db (M,)."""
    N, D = x.shape
    M = w.shape[1]
    dx, dw, db = np.zeros((N, D)), np.zeros((D, M)), np.zeros(M)
    for n in range(N):
        for m in range(M):
            db[m] += dout[n, m]
            for d in range(D):
                dx[n, d] += dout[n, m] * w[d, m]
                dw[d, m] += x[n, d] * dout[n, m]
    return dx, dw, db


dout = rng.standard_normal((N, M))                  # (N, M), any upstream gradient
dx, dw, db = dense_backward(dout, cache)            # (N, D), (D, M), (M,)
for name, mine, naive in zip(("dx", "dw", "db"), (dx, dw, db), dense_backward_naive(dout, x, w)):
    print(f"backward {name}: package vs loop, rel error {rel_error(mine, naive):.1e}")
    assert rel_error(mine, naive) < 1e-12

# %% [markdown]
# ## 3. The gradient check
#
# A derivation can be wrong in ways no loop reveals (both versions share the
# mistake). The independent test is a finite difference. Any layer becomes a
# scalar function with one trick: `L = sum(out * dout)` has `∂L/∂out = dout`
# exactly, so its gradient with respect to `x` is what `dense_backward(dout, ...)`
# returns. The centred difference
#
# $$\frac{\partial L}{\partial x_i} \approx \frac{L(x + h e_i) - L(x - h e_i)}{2h}$$
#
# has error `O(h²)` from truncation plus `O(ε·|L|/h)` from rounding (ε the
# machine epsilon). We compare with the *relative* error of each entry,
# `|a_i - b_i| / max(1e-8, |a_i| + |b_i|)`, and report the largest over the
# entries (`tinyvae.gradcheck.rel_error`; a ratio of two maxima would let a
# wrong small entry hide behind a large one): in float64 with `h = 1e-5` a correct
# backward gives **below 1e-7** (typically 1e-10); a wrong one gives 1e-2 to 1.
#
# First one entry by hand, then every entry with `tinyvae.gradcheck`.

# %%
def loss():
    return float(np.sum(dense_forward(x, w, b)[0] * dout))


h, i = 1e-5, (1, 2)
step = np.zeros_like(x)
step[i] = h                                         # h e_i: a step along entry i only
lp = float(np.sum(dense_forward(x + step, w, b)[0] * dout))   # L(x + h e_i)
lm = float(np.sum(dense_forward(x - step, w, b)[0] * dout))   # L(x - h e_i)
print(f"dL/dx{i}: centred difference {(lp - lm) / (2 * h):.10f}, backward {dx[i]:.10f}")

errs = {name: check_gradient(loss, p, g) for name, p, g in (("x", x, dx), ("w", w, dw), ("b", b, db))}
for name, e in errs.items():
    print(f"float64 check of d{name}: rel error {e:.1e}  (expect < 1e-7)")
assert max(errs.values()) < 1e-7

# %% [markdown]
# A wrong backward fails loudly. Divide by the batch size as if the loss
# were a mean over examples, `dw = x.T @ dout / N`, although `L` is a sum:
# every entry is off by the factor `1/N = 1/4`, and the check reports a rel
# error of `(1 - 1/4) / (1 + 1/4) = 0.6` — no doubt left.

# %%
wrong = check_gradient(loss, w, dw / N)
print(f"check of a wrong dw (divided by N): rel error {wrong:.2f}  (expect ~0.6)")
assert wrong > 0.1

# %% [markdown]
# ## 4. Why the check runs in float64
#
# Training runs in float32 (half the memory, twice the speed), but the
# check cannot: float32's ε is 1.2e-7, so with `h = 1e-5` the rounding term
# `ε/h ≈ 1e-2` swamps everything. The same correct code "fails" the check,
# with an error that jumps around with `h`. Below, a loss with curvature
# (`L = sum(out³)/3`, so `dout = out²`) shows both error terms: truncation
# falls with `h²` going left, rounding grows with `1/h`. float64 reaches
# 1e-10 near `h = 1e-5`; float32's best is around 1e-4 and most `h` are worse.

# %%
def check_at(dtype, h):
    """Rel error of dw for L = sum(out**3)/3 at step h, all arrays in ``dtype``."""
    xs, ws, bs = (a.astype(dtype) for a in (x, w, b))
    out_s, cache_s = dense_forward(xs, ws, bs)                  # (N, M)
    _, dws, _ = dense_backward(out_s ** 2, cache_s)             # dL/dout = out**2
    f = lambda: float(np.sum(dense_forward(xs, ws, bs)[0] ** 3)) / 3  # noqa: E731
    num = numerical_gradient(f, ws, h=h)                        # perturbs ws in its own dtype
    return rel_error(dws, num)


hs = np.logspace(-1, -9, 17)                                    # 1e-1 ... 1e-9
curves = {dt.__name__: np.array([check_at(dt, h) for h in hs]) for dt in (np.float64, np.float32)}
print("      h    float64    float32")
for h, e64, e32 in zip(hs, curves["float64"], curves["float32"]):
    print(f"{h:7.0e}  {e64:9.1e}  {e32:9.1e}")
e64_at, e32_at = check_at(np.float64, 1e-5), check_at(np.float32, 1e-5)
print(f"at h = 1e-5: float64 {e64_at:.1e} (passes), float32 {e32_at:.1e} (fails the 1e-7 bar)")
assert e64_at < 1e-7 < e32_at
assert curves["float32"].min() > 1e-7, "float32 should never reach float64's accuracy"

# %%
fig, ax = plt.subplots(figsize=(6, 4))
for name, c in curves.items():
    ax.loglog(hs, np.maximum(c, 1e-16), "o-", label=name)
ax.axhline(1e-7, color="gray", ls="--", lw=1, label="pass bar 1e-7")
ax.set_xlabel("finite-difference step h")
ax.set_ylabel("rel error, numerical vs backward")
ax.set_title("Gradient check of a dense layer: float64 vs float32")
ax.invert_xaxis()
ax.legend()
savefig(fig, args.out, "l01_gradcheck_vs_h")

# %% [markdown]
# ## What to remember
#
# * backward of `x @ w + b`: `dx = dout @ w.T`, `dw = x.T @ dout`, `db = dout.sum(0)`;
# * the `sum(out * dout)` trick turns any layer into a scalar to check;
# * check in float64 with `h ≈ 1e-5`; a correct layer gives < 1e-7, a float32
#   check says nothing.
#
# Next: lesson 2, activations and the squared-error loss.
