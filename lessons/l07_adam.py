# %% [markdown]
# # Lesson 7 — Adam, from SGD and momentum; bias correction
#
# With gradients in hand, an optimizer turns them into steps. The study
# trains with Adam; we build it up from plain gradient descent on a problem
# small enough to draw: the ill-conditioned quadratic
#
# $$f(p) = \tfrac12\,(p_0^2 + 100\, p_1^2), \qquad \nabla f = (p_0,\ 100\, p_1)$$
#
# a long narrow valley, the shape that deep-network losses have in many
# directions at once. The curvatures differ by a factor of 100 (the
# *condition number*).
#
# Run it: `python -m lessons.l07_adam --out /tmp/l07`.
# Exercise (lesson 1 says how): `adam_step`.

# %%
import pathlib
import sys

HERE = pathlib.Path(__file__).parent if "__file__" in globals() else pathlib.Path.cwd()
sys.path.insert(0, str(HERE.resolve().parent))    # the repository root: runs from any folder

import matplotlib.pyplot as plt
import numpy as np

from lessons._common import savefig, setup
from tinyvae.optim import Adam

args = setup("l07_adam")
CURV = np.array([1.0, 100.0])                             # curvature of each coordinate
p0 = np.array([-4.0, 0.6])                                # start
T = 150                                                   # steps


def f(p):
    return 0.5 * float(np.sum(CURV * p * p))


def grad(p):
    return CURV * p


# %% [markdown]
# ## 1. Gradient descent and its speed limit
#
# `p ← p − lr ∇f`. Along a coordinate with curvature `a` the error is
# multiplied by `1 − lr·a` each step: stable only for `lr < 2 / a_max = 0.02`.
# At `lr = 0.019` the steep coordinate bounces across the valley while the
# flat one shrinks by only `1 − 0.019` a step; at `lr = 0.021` it diverges.
#
# ## 2. Momentum
#
# Keep a running sum of gradients, `v ← β v + ∇f`, and step along it:
# `p ← p − lr v`. Consistent directions (along the valley) accumulate,
# alternating ones (across it) cancel. Same code with `β = 0` is plain SGD.

# %%
def run_sgd(lr, momentum=0.0, steps=T):
    """Gradient descent with (heavy-ball) momentum; returns the path, (steps+1, 2)."""
    p, v = p0.copy(), np.zeros(2)
    path = [p.copy()]
    for _ in range(steps):
        v = momentum * v + grad(p)
        p = p - lr * v
        path.append(p.copy())
    return np.array(path)


# %% [markdown]
# ## 3. Adam
#
# Adam (Kingma & Ba, 2015) keeps two running averages per parameter, of the
# gradient (`m`, momentum) and of its square (`v`), and divides one by the
# root of the other: each coordinate's step is measured in units of its own
# typical gradient size, so steep and flat directions move at similar speed.
#
# ```
# m ← β₁ m + (1 − β₁) g          m̂ = m / (1 − β₁ᵗ)
# v ← β₂ v + (1 − β₂) g²         v̂ = v / (1 − β₂ᵗ)
# p ← p − lr · m̂ / (√v̂ + ε)
# ```
#
# **Bias correction.** `m` and `v` start at 0, so early on they are too
# small: after one step `m = (1 − β₁) g` and `v = (1 − β₂) g²`. Dividing by
# `1 − βᵗ` undoes exactly that shrinkage for a constant gradient. Without
# it the two errors do not cancel: the first step is
# `lr (1 − β₁)/√(1 − β₂) ≈ 3.16 lr`, and for a *constant* gradient the step
# stays several times too large for hundreds of steps (the right panel of
# the figure: up to 6.5 lr near step 10, still 1.26 lr at step 1000, since
# β₂ = 0.999 forgets slowly). With it, the first step is exactly `lr` in
# every coordinate.

# %%
# exercise
def adam_step(p, g, m, v, t, lr, beta1=0.9, beta2=0.999, eps=1e-8, correct=True):
    """One step of Algorithm 1 at step t = 1, 2, ...: returns the new p, m, v (fresh arrays)."""
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    m_hat, v_hat = (m / (1 - beta1 ** t), v / (1 - beta2 ** t)) if correct else (m, v)
    return p - lr * m_hat / (np.sqrt(v_hat) + eps), m, v


def run_adam(lr, beta1=0.9, beta2=0.999, eps=1e-8, correct=True, scale=1.0, steps=T):
    """Adam as in the paper's Algorithm 1, on ``scale * f``; returns the path."""
    p, m, v = p0.copy(), np.zeros(2), np.zeros(2)
    path = [p.copy()]
    for t in range(1, steps + 1):
        p, m, v = adam_step(p, scale * grad(p), m, v, t, lr, beta1, beta2, eps, correct)
        path.append(p.copy())
    return np.array(path)


paths = {
    "SGD lr 0.019": run_sgd(0.019),
    "SGD lr 0.021 (diverges)": run_sgd(0.021),
    "momentum 0.9, lr 0.01": run_sgd(0.01, momentum=0.9),
    "Adam lr 0.1": run_adam(0.1),
    "Adam lr 0.1, no bias correction": run_adam(0.1, correct=False),
}
losses = {name: np.array([f(p) for p in path]) for name, path in paths.items()}
print(f"f at the start {f(p0):.2f}")
print(f"{'':34s}{'step 10':>10s}{'step 50':>10s}{'step 150':>10s}")
for name, L in losses.items():
    print(f"{name:34s}{L[10]:10.2e}{L[50]:10.2e}{L[150]:10.2e}")
assert losses["SGD lr 0.021 (diverges)"][-1] > f(p0)
for name in ("momentum 0.9, lr 0.01", "Adam lr 0.1"):
    assert losses[name][-1] < losses["SGD lr 0.019"][-1] / 100, name

steps_c = np.abs(paths["Adam lr 0.1"][1] - p0)
steps_u = np.abs(paths["Adam lr 0.1, no bias correction"][1] - p0)
print(f"first Adam step per coordinate: with bias correction {steps_c} (= lr), "
      f"without {steps_u.round(4)} (= lr·0.1/√0.001 ≈ 3.16 lr)")
assert np.allclose(steps_c, 0.1, rtol=1e-6) and np.allclose(steps_u, 0.1 * 0.1 / np.sqrt(0.001), rtol=1e-6)

# %% [markdown]
# On this quadratic the missing correction does little harm to the result
# (the table: 2.2e-6 against 2.0e-6 after 150 steps, and ahead at step 10).
# The gradient here is far from constant, and a bowl forgives large early
# steps. What the correction guarantees is the *size* of the early steps,
# which matters where a step of 3–6 lr is too large: a learning rate tuned
# close to what the problem tolerates, or the first updates of a network.

# %% [markdown]
# ## 4. Scale invariance
#
# Multiply the loss by 1000. Gradient descent's steps grow 1000-fold: at
# `lr = 0.019`, which converged above, it now diverges within a few steps
# (printed below). Adam's steps do not move at all (exactly so with `ε = 0`):
# `m̂/√v̂` does not change when `g` is scaled.
# So with Adam, the *overall* scale of a loss is irrelevant — only the
# relative weight of its terms matters. Lesson 10 returns to this: a
# per-pixel mean instead of a sum is not a rescaling of the whole loss but a
# change of the balance between reconstruction and KL.

# %%
sgd_scaled = run_sgd(0.019 * 1000, steps=10)             # SGD on 1000·f: lr·1000 ∇f per step
print(f"SGD lr 0.019 on 1000·f: f after 10 steps {f(sgd_scaled[-1]):.1e} (it started at {f(p0):.0f})")
assert f(sgd_scaled[-1]) > 1e6 * f(p0)
same = np.abs(run_adam(0.1, eps=0.0, scale=1000.0) - run_adam(0.1, eps=0.0)).max()
print(f"Adam on 1000·f vs on f: paths differ by {same:.1e}")
assert same < 1e-12

# %% [markdown]
# ## 5. The package's Adam
#
# `tinyvae.optim.Adam` uses the paper's "efficient" ordering (as Keras
# does): fold both corrections into the learning rate,
# `lr_t = lr √(1 − β₂ᵗ) / (1 − β₁ᵗ)`, and update `p ← p − lr_t m / (√v + ε)`
# with one fused kernel over each array. With `ε = 0` this is algebraically
# Algorithm 1; with `ε > 0` the ε sits outside the correction (a tiny
# difference). Its state is keyed by parameter name, so it drives a whole
# model's `params` / `grads` dicts in place.

# %%
params = {"p": p0.copy()}
opt = Adam(lr=0.1, eps=0.0)
package_path = [p0.copy()]
for _ in range(T):
    opt.step(params, {"p": grad(params["p"])})             # updates params["p"] in place
    package_path.append(params["p"].copy())
diff = np.abs(np.array(package_path) - run_adam(0.1, eps=0.0)).max()
print(f"package Adam (eps = 0) vs Algorithm 1: largest difference over {T} steps {diff:.1e}")
assert diff < 1e-10

# %%
colors = dict(zip(paths, ("C0", "C3", "C1", "C2", "C4")))
fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
ax = axes[0]
g0, g1 = np.meshgrid(np.linspace(-4.5, 1.5, 200), np.linspace(-1, 1, 200))
ax.contour(g0, g1, 0.5 * (CURV[0] * g0 ** 2 + CURV[1] * g1 ** 2), levels=np.geomspace(0.01, 60, 12),
           colors="lightgray", linewidths=0.8)
for name in ("SGD lr 0.019", "momentum 0.9, lr 0.01", "Adam lr 0.1"):
    ax.plot(*paths[name][:60].T, ".-", ms=3, lw=1, color=colors[name], label=name)
ax.plot(0, 0, "k*", ms=10)
ax.set_xlim(-4.5, 1.5)
ax.set_ylim(-1, 1)
ax.set_title("first 60 steps on ½(p₀² + 100 p₁²)")
ax.legend(fontsize=8, loc="lower right")
ax = axes[1]
for name, L in losses.items():
    ax.semilogy(L, color=colors[name], label=name)
ax.set_ylim(1e-8, 1e3)
ax.set_xlabel("step")
ax.set_ylabel("f(p)")
ax.set_title("loss")
ax.legend(fontsize=8)
ax = axes[2]
t = np.arange(1, 5001)
ax.semilogx(t, (1 - 0.9 ** t) / np.sqrt(1 - 0.999 ** t), label="no bias correction")
ax.semilogx(t, np.ones_like(t, dtype=float), label="with bias correction")
ax.set_xlabel("step t")
ax.set_ylabel("step / lr for a constant gradient")
ax.set_title("why Adam corrects its averages")
ax.legend(fontsize=8)
savefig(fig, args.out, "l07_optimizers")

# %% [markdown]
# ## What to remember
#
# * gradient descent's learning rate is capped by the steepest direction;
# * momentum averages gradients; Adam also divides by their running RMS, so
#   every coordinate moves at its own scale and the loss's overall scale
#   does not matter;
# * bias correction makes the first steps the size you asked for;
# * the package's Adam is Algorithm 1 in Keras' ordering.
#
# Next: lesson 8, assembling and training the VAE on MNIST.
