# %% [markdown]
# # Lesson 6 — The reparameterization trick, the ELBO, and the closed-form KL
#
# A VAE's encoder does not output a code `z`; it outputs a Gaussian
# `q(z|x) = N(μ, diag σ²)` over codes, as two vectors: `mu` and `logvar =
# log σ²`. The decoder gets a *sample* from it. This lesson covers how to
# backpropagate through a sample, what the loss is (the ELBO), the KL term in
# closed form — and a bug that every gradient check misses.
#
# Run it: `python -m lessons.l06_reparam_kl --out /tmp/l06`.
# Exercises (lesson 1 says how): `reparameterize`, `reparam_grads` and `kl_divergence`.

# %%
import pathlib
import sys

HERE = pathlib.Path(__file__).parent if "__file__" in globals() else pathlib.Path.cwd()
sys.path.insert(0, str(HERE.resolve().parent))    # the repository root: runs from any folder

import matplotlib.pyplot as plt
import numpy as np

from lessons._common import savefig, setup
from tinyvae.gradcheck import check_gradient, rel_error
from tinyvae.layers import reparam_backward, reparam_forward
from tinyvae.losses import kl_loss, kl_per_dim

args = setup("l06_reparam_kl")
rng = np.random.default_rng(0)
n_mc = 400_000 if args.full else 100_000                  # Monte Carlo samples

# %% [markdown]
# ## 1. The reparameterization trick
#
# "Draw `z ~ N(μ, σ²)`" has no derivative with respect to `μ` or `σ`. Write
# the same draw as a deterministic function of the parameters and of noise
# that does not depend on them:
#
# $$z = \mu + \sigma \odot \varepsilon, \qquad \varepsilon \sim N(0, I), \qquad \sigma = e^{\frac12 \text{logvar}}$$
#
# Now `∂z/∂μ = 1` and `∂z/∂logvar = ½ σ ε`. The noise is drawn by the caller
# with its own `rng` and kept in the cache, so the layer stays a pure
# function and the finite-difference check holds `ε` fixed (expect < 1e-7).

# %%
# exercise
def reparameterize(mu, logvar, eps):
    """z = mu + sigma * eps with sigma = exp(logvar / 2): (N, L) three times -> (N, L)."""
    return mu + np.exp(0.5 * logvar) * eps


# exercise
def reparam_grads(dz, logvar, eps):
    """dz (N, L) -> dmu, dlogvar (N, L): dz/dmu = 1, dz/dlogvar = sigma * eps / 2."""
    return dz, dz * 0.5 * np.exp(0.5 * logvar) * eps


N, Ld = 4, 3
mu = rng.standard_normal((N, Ld))                         # (N, L)
logvar = rng.standard_normal((N, Ld))                     # (N, L)
eps = rng.standard_normal((N, Ld))                        # (N, L) drawn once, held fixed
z, cache = reparam_forward(mu, logvar, eps)               # (N, L)
dz = rng.standard_normal(z.shape)
dmu, dlogvar = reparam_backward(dz, cache)
assert rel_error(reparameterize(mu, logvar, eps), z) < 1e-15   # ours and the package's agree
assert max(rel_error(a, b) for a, b in zip(reparam_grads(dz, logvar, eps), (dmu, dlogvar))) < 1e-15
f = lambda: float(np.sum(reparam_forward(mu, logvar, eps)[0] * dz))   # noqa: E731
errs = [check_gradient(f, mu, dmu), check_gradient(f, logvar, dlogvar)]
print(f"reparam gradient check: dmu {errs[0]:.1e}, dlogvar {errs[1]:.1e}  (expect < 1e-7)")
assert max(errs) < 1e-7

# %% [markdown]
# What the trick buys: the average of these per-sample gradients is an
# unbiased estimate of the gradient of an *expectation*. For `f(z) = z²`,
# `E[z²] = μ² + σ²`, so `∂/∂μ = 2μ` and `∂/∂logvar = σ²`. Averaging the
# backward pass over many `ε` (with `dz = 2z`) recovers both to Monte Carlo
# accuracy (about 1% here).

# %%
m1, lv1 = np.full((n_mc, 1), 0.7), np.full((n_mc, 1), np.log(0.5))   # mu = 0.7, sigma^2 = 0.5
z, cache = reparam_forward(m1, lv1, rng.standard_normal((n_mc, 1)))  # (n_mc, 1)
g_mu, g_lv = (g.mean() for g in reparam_backward(2 * z, cache))
print(f"d E[z²]/dmu: reparam estimate {g_mu:.4f}, exact 2μ = {2 * 0.7:.4f}")
print(f"d E[z²]/dlogvar: reparam estimate {g_lv:.4f}, exact σ² = {0.5:.4f}")
assert abs(g_mu - 1.4) < 0.02 and abs(g_lv - 0.5) < 0.02

# %% [markdown]
# ## 2. The ELBO
#
# We want the likelihood `p(x) = ∫ p(x|z) p(z) dz`, with prior `p(z) = N(0, I)`.
# For any distribution `q(z|x)`, Jensen's inequality gives the *evidence
# lower bound*:
#
# $$\log p(x) = \log \mathbb{E}_{q}\Big[\frac{p(x|z)\,p(z)}{q(z|x)}\Big]
#   \ \ge\ \mathbb{E}_{q}[\log p(x|z)] - \mathrm{KL}\big(q(z|x)\,\|\,p(z)\big)$$
#
# The first term is the reconstruction: with the Gaussian decoder of lesson 2
# (`σ² = 1/2`), `-log p(x|z)` is the squared error plus a constant, and one
# sample `z` (reparameterized) estimates the expectation. The second term
# keeps the codes close to the prior. The study's loss, `SSE + β·KL`, is the
# negative ELBO up to that constant when `β = 1`.
#
# ## 3. The KL term in closed form
#
# For one dimension, with `q = N(μ, σ²)` and `p = N(0, 1)`:
#
# $$\mathrm{KL} = \mathbb{E}_q\big[\log q(z) - \log p(z)\big]
#  = \mathbb{E}_q\Big[-\tfrac12\log(2\pi\sigma^2) - \tfrac{(z-\mu)^2}{2\sigma^2} + \tfrac12\log 2\pi + \tfrac{z^2}{2}\Big]
#  = \tfrac12\big(\mu^2 + \sigma^2 - 1 - \log\sigma^2\big)$$
#
# using `E[(z-μ)²] = σ²` and `E[z²] = μ² + σ²`. Dimensions are independent,
# so the KL of the diagonal Gaussian is the sum over dimensions. It is zero
# exactly when `μ = 0, σ = 1`. The derivatives are `∂/∂μ = μ` and
# `∂/∂logvar = ½(σ² − 1)`.
#
# The definition is an expectation, so Monte Carlo checks the algebra:
# average `log q(z) − log p(z)` over samples `z ~ q`. The two must agree
# within a few standard errors.

# %%
def log_normal(z, mean, var):
    """log N(z; mean, var), elementwise."""
    return -0.5 * np.log(2 * np.pi * var) - (z - mean) ** 2 / (2 * var)


# exercise
def kl_divergence(mu, logvar):
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over dims, averaged over the batch; and dmu, dlogvar."""
    N = mu.shape[0]
    var = np.exp(logvar)                                  # (N, L)
    kl = 0.5 * float(np.sum(mu * mu + var - 1.0 - logvar)) / N
    return kl, mu / N, 0.5 * (var - 1.0) / N


closed, dmu_kl, dlogvar_kl = kl_loss(mu, logvar)          # summed over dims, mean over batch
mine = kl_divergence(mu, logvar)
assert abs(mine[0] - closed) < 1e-12 and rel_error(mine[1], dmu_kl) < 1e-12 and rel_error(mine[2], dlogvar_kl) < 1e-12
assert abs(closed - kl_per_dim(mu, logvar).sum()) < 1e-12
var = np.exp(logvar)
zs = mu + np.sqrt(var) * rng.standard_normal((n_mc, N, Ld))          # (n_mc, N, L) z ~ q
terms = (log_normal(zs, mu, var) - log_normal(zs, 0.0, 1.0)).sum(axis=2).mean(axis=1)  # (n_mc,)
mc, se = terms.mean(), terms.std() / np.sqrt(n_mc)
print(f"KL: closed form {closed:.4f}, Monte Carlo {mc:.4f} ± {se:.4f} ({n_mc:,} samples)")
assert abs(mc - closed) < 5 * se

errs = [check_gradient(lambda: kl_loss(mu, logvar)[0], mu, dmu_kl),
        check_gradient(lambda: kl_loss(mu, logvar)[0], logvar, dlogvar_kl)]
print(f"kl_loss gradient check: dmu {errs[0]:.1e}, dlogvar {errs[1]:.1e}  (expect < 1e-7)")
assert max(errs) < 1e-7

# %% [markdown]
# ## 4. Log-variance, not standard deviation: the classic bug
#
# The encoder's second head is *unconstrained*, so it cannot be `σ` (which
# must be positive); `log σ²` can be any real number. The standard deviation
# is then `exp(½ logvar)`. The classic bug is to write `std = exp(logvar)`.
# Watch what catches it — and what does not:
#
# * the **gradient check passes**: the buggy forward and its (equally buggy)
#   backward `∂z/∂logvar = exp(logvar) ε` are consistent with each other;
# * nothing crashes and training runs;
# * but the samples have the wrong spread: std `σ²` instead of `σ` (4 instead
#   of 2 for `σ = 2`, 0.25 instead of 0.5 for `σ = 0.5`), while the KL term
#   still assumes variance `σ²`. The ELBO being optimized is not the one
#   being computed.
#
# Gradient checks verify derivatives, not meaning. To test a sampler, test
# the distribution it samples: its moments.

# %%
logvar_b = np.log(np.array([[4.0, 0.25]]))               # (1, 2): sigma = 2 and 0.5
mu_b = np.zeros((1, 2))
eps_b = rng.standard_normal((1, 2))
dz_b = rng.standard_normal((1, 2))
std_bug = np.exp(logvar_b)                               # BUG: the variance used as the std
dlogvar_bug = dz_b * std_bug * eps_b                     # its consistent (buggy) backward
bug_check = check_gradient(lambda: float(np.sum((mu_b + np.exp(logvar_b) * eps_b) * dz_b)),
                           logvar_b, dlogvar_bug)
print(f"gradient check of the buggy sampler: {bug_check:.1e}  (passes!)")
assert bug_check < 1e-7

E = rng.standard_normal((n_mc, 2))                       # (n_mc, 2)
good = reparam_forward(np.zeros((n_mc, 2)), np.broadcast_to(logvar_b, (n_mc, 2)), E)[0]
bad = mu_b + np.exp(logvar_b) * E                        # the bug, same noise
print(f"target std            : {np.exp(0.5 * logvar_b).ravel()}")
print(f"package samples, std  : {good.std(axis=0).round(3)}")
print(f"buggy samples, std    : {bad.std(axis=0).round(3)}  (σ² instead of σ)")
assert rel_error(good.std(axis=0), [2.0, 0.5]) < 0.01
assert rel_error(bad.std(axis=0), [4.0, 0.25]) < 0.01

# the ELBO is no longer consistent: the KL the loss computes is not the KL of the samples
kl_said = kl_per_dim(mu_b, logvar_b)                     # (2,) what the loss reports
kl_bad = (log_normal(bad, 0, np.exp(2 * logvar_b)) - log_normal(bad, 0, 1)).mean(axis=0)
print(f"KL per dim the loss reports {kl_said.round(3)}, KL of what the buggy sampler draws "
      f"{kl_bad.round(3)}")
assert np.all(np.abs(kl_bad - kl_said) > 0.1)

# %% [markdown]
# ## 5. What the ELBO leaves out: log p(x) = ELBO + KL(q(z|x) || p(z|x))
#
# The inequality of section 2 has an exact form. Write
# `p(x|z) p(z) = p(z|x) p(x)` inside the ELBO:
#
# $$\text{ELBO}(q) = \mathbb{E}_q\Big[\log \frac{p(z|x)\,p(x)}{q(z|x)}\Big]
#   = \log p(x) - \mathrm{KL}\big(q(z|x)\,\|\,p(z|x)\big)$$
#
# so the gap between the ELBO and `log p(x)` is exactly how far `q` is from
# the true posterior, and the ELBO equals `log p(x)` only when `q` *is* the
# posterior. A model small enough to do by hand shows it: one latent
# number, `p(z) = N(0, 1)`, `p(x|z) = N(w z + b, s²)`. Then
# `p(x) = N(b, w² + s²)`, the posterior is `N(m, v)` with
# `v = 1 / (1 + w²/s²)` and `m = v w (x − b) / s²`, and every term has a
# closed form. We move `q = N(μ, σ²)` around and check the identity to
# rounding; at `q = p(z|x)` the gap closes. (Lesson 10 measures the same
# gap for a trained VAE, where `log p(x)` has no closed form, with an
# importance-weighted estimate.)

# %%
w_lin, b_lin, s_lin, x_obs = 1.5, 0.2, 0.5, 1.3           # the model and one observation
log_px = log_normal(x_obs, b_lin, w_lin ** 2 + s_lin ** 2)
v_post = 1 / (1 + w_lin ** 2 / s_lin ** 2)
m_post = v_post * w_lin * (x_obs - b_lin) / s_lin ** 2


def elbo_1d(m, var):
    """E_q log p(x|z) - KL(q || p(z)) for q = N(m, var), in closed form."""
    rec = -0.5 * np.log(2 * np.pi * s_lin ** 2) - ((x_obs - w_lin * m - b_lin) ** 2 + w_lin ** 2 * var) / (2 * s_lin ** 2)
    return rec - 0.5 * (m * m + var - 1 - np.log(var))


def kl_to_posterior(m, var):
    """KL(N(m, var) || N(m_post, v_post))."""
    return 0.5 * (np.log(v_post / var) + (var + (m - m_post) ** 2) / v_post - 1)


print(f"log p(x) = {log_px:.6f}; posterior N({m_post:.4f}, {v_post:.4f})")
print("      q           ELBO    KL(q || p(z|x))   ELBO + KL")
for m, var in ((0.0, 1.0), (0.5, 0.3), (m_post, 2 * v_post), (m_post, v_post)):
    e, k = elbo_1d(m, var), kl_to_posterior(m, var)
    print(f"N({m:.3f}, {var:.3f})  {e:9.5f}  {k:12.5f}  {e + k:12.6f}")
    assert abs(e + k - log_px) < 1e-12
assert abs(elbo_1d(m_post, v_post) - log_px) < 1e-12     # q = the posterior: no gap
ms = np.linspace(m_post - 1.5, m_post + 1.5, 121)
elbo_curve = elbo_1d(ms, v_post)                          # q's mean moved, its variance the posterior's

# %%
fig, axes = plt.subplots(1, 3, figsize=(16, 3.8), layout="constrained")
grid = np.linspace(-12, 12, 600)
ax = axes[0]
ax.hist(good[:, 0], bins=120, density=True, alpha=0.5, label="package: std = exp(½ logvar)")
ax.hist(bad[:, 0], bins=120, density=True, alpha=0.5, label="bug: std = exp(logvar)")
ax.plot(grid, np.exp(log_normal(grid, 0, 4.0)), "k", lw=1.5, label="target N(0, σ² = 4)")
ax.set_xlim(-12, 12)
ax.set_title("samples of z for logvar = log 4")
ax.legend(fontsize=8)
ax = axes[1]
counts = np.unique(np.geomspace(10, n_mc, 40).astype(int))
running = np.cumsum(terms) / np.arange(1, n_mc + 1)
ax.semilogx(counts, running[counts - 1], label="Monte Carlo mean of log q − log p")
ax.axhline(closed, color="k", ls="--", label="closed form ½(μ² + σ² − 1 − log σ²)")
ax.set_xlabel("samples")
ax.set_ylabel("KL (nats, summed over dims)")
ax.set_title("the closed-form KL, checked by sampling")
ax.legend(fontsize=8)
ax = axes[2]
ax.plot(ms, np.full_like(ms, log_px), "k--", label="log p(x)")
ax.plot(ms, elbo_curve, label="ELBO(q), q = N(μ, v_post)")
ax.fill_between(ms, elbo_curve, log_px, alpha=0.2, label="gap = KL(q || p(z|x))")
ax.axvline(m_post, color="gray", ls=":", lw=1)
ax.set_xlabel("μ, the mean of q")
ax.set_ylabel("nats")
ax.set_title("log p(x) = ELBO + KL(q || posterior)")
ax.legend(fontsize=8)
savefig(fig, args.out, "l06_reparam_and_kl")

# %% [markdown]
# ## What to remember
#
# * `z = μ + exp(½ logvar) ε`, with `ε` drawn outside the layer;
# * loss = reconstruction (a Gaussian NLL up to a constant) + KL = −ELBO + const;
# * `KL = ½ Σ (μ² + σ² − 1 − log σ²)`; check closed forms against sampling;
# * `log p(x) = ELBO + KL(q(z|x) || p(z|x))`: the ELBO is tight only when `q`
#   is the true posterior;
# * a gradient check cannot catch a wrong *model*; check sample statistics.
#
# Next: lesson 7, the optimizer.
