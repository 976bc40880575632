# %% [markdown]
# # Lesson 8 — Assembling the VAE and training it on MNIST
#
# Every piece is now built and checked: conv, ReLU, max-pool, dense, the
# reparameterized sample, transposed conv with upsampling, sigmoid, squared
# error, KL, Adam. `tinyvae.models.VAE` stacks them into the study's
# "simple" model, with a **2-dimensional** latent space so that we can look
# at it directly.
#
# This lesson needs the real MNIST files: set `TINYVAE_DATA_DIR` (see
# `tinyvae/data.py` for the layout). By default it trains briefly on a
# subset (well under a minute); `--full` runs the study's protocol (all
# 60,000 images, batches of 50, 10 epochs, lr 1e-4: 12,000 steps, about 8
# minutes on one core; the study's own run took 495 s).
#
# **Your turn** (lesson 1 says how): `vae_backward`, the VAE's whole
# backward pass, from the layers' backward passes.
#
# Run it: `TINYVAE_DATA_DIR=... python -m lessons.l08_vae_mnist --out /tmp/l08`.

# %%
import pathlib
import sys

HERE = pathlib.Path(__file__).parent if "__file__" in globals() else pathlib.Path.cwd()
sys.path.insert(0, str(HERE.resolve().parent))    # the repository root: runs from any folder

import time
from statistics import NormalDist

import matplotlib.pyplot as plt
import numpy as np

from lessons._common import need_data, savefig, setup, to_float
from tinyvae.data import load
from tinyvae.gradcheck import rel_error
from tinyvae.layers import reparam_backward, reparam_forward
from tinyvae.losses import kl_loss, sse_loss
from tinyvae.models import VAE
from tinyvae.optim import Adam
from tinyvae.evaluate import encode_all

args = setup("l08_vae_mnist")
data_dir = need_data("mnist")
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. The model
#
# Encoder: `conv 32 → ReLU → pool → conv 64 → ReLU → pool → flatten →
# dense 256 → ReLU → dense 64 → ReLU`, then two heads, `mu` and `logvar`
# (2 numbers each). Decoder: the mirror image, ending in a sigmoid so that
# pixels land in (0, 1). The summary lists every layer with its output shape
# (the sizes of lesson 5) and parameter count.

# %%
model = VAE("simple", (28, 28, 1), rng)
print(model.summary())
n_params = sum(p.size for p in model.params.values())
assert n_params == sum(layer_p.size for layer_p in model.grads.values()) and n_params > 400_000

# %% [markdown]
# ## 2. The backward pass, written out
#
# The forward pass is the layers in a row, with one fork and one join:
#
# ```
# x ─ encoder ─ h ─┬─ mu_head ─────── mu ─────┬─ z = mu + σ ε ─ decoder ─ x̂ ─ SSE(x̂, x)
#                  └─ logvar_head ─ logvar ───┤
#                                   (mu, logvar) ─ β · KL
# ```
#
# The loss is `SSE(x̂, x) + β KL(mu, logvar)`. Backward, in reverse order:
#
# 1. `sse_loss` gives `dx̂`; the decoder's layers, last to first, turn it into `dz`;
# 2. the sample `z = mu + exp(½ logvar) ε` turns `dz` into `dmu_z = dz` and
#    `dlogvar_z = dz · ½ σ ε` (lesson 6);
# 3. `mu` reaches the loss **twice**, through the sample and through the KL,
#    so its gradient is the **sum** `dmu_z + β dmu_kl`; the same for `logvar`;
# 4. both heads read the same encoder output `h`, so `h`'s gradient is the
#    **sum** of what the two heads' backward passes return;
# 5. the encoder's layers, last to first, take it from there.
#
# Each layer object keeps its forward cache, and its `backward` fills its
# own `grads` dict (overwriting, never adding). `vae_backward` returns the
# loss terms as `VAE.loss` does.

# %%
# exercise
def vae_backward(model, x, eps):
    """Forward and backward pass of a batch; every layer's gradient left in its ``grads``.

    x : (N, H, W, C) floats in [0, 1]; eps : (N, L) standard normal.
    Returns {"loss": rec + beta * kl, "rec": rec, "kl": kl}, like VAE.loss.
    """
    beta = model.arch.beta
    h = x
    for layer in model.encoder:
        h = layer.forward(h)                              # ... -> (N, D)
    mu, logvar = model.mu_head.forward(h), model.logvar_head.forward(h)   # (N, L) twice
    z, sample_cache = reparam_forward(mu, logvar, eps)    # (N, L)
    xhat = z
    for layer in model.decoder:
        xhat = layer.forward(xhat)                        # ... -> (N, H, W, C)
    rec, dxhat = sse_loss(xhat, x)                        # dxhat: (N, H, W, C)
    kl, dmu_kl, dlogvar_kl = kl_loss(mu, logvar)          # (N, L) twice
    dz = dxhat
    for layer in reversed(model.decoder):
        dz = layer.backward(dz)                           # ... -> (N, L)
    dmu_z, dlogvar_z = reparam_backward(dz, sample_cache) # (N, L) twice
    dh = model.mu_head.backward(dmu_z + beta * dmu_kl)    # (N, D): mu's two paths summed
    dh += model.logvar_head.backward(dlogvar_z + beta * dlogvar_kl)   # both heads read h
    for layer in reversed(model.encoder):
        dh = layer.backward(dh)                           # the first conv returns no dx
    return {"loss": rec + beta * kl, "rec": rec, "kl": kl}


def layer_grads(model):
    """Every layer's current gradients, keyed like ``model.params``."""
    return {f"{name}.{k}": layer.grads[k] for name, layer in model.named_layers() for k in layer.grads}


# %% [markdown]
# ### Two checks: against the package, and against finite differences
#
# `VAE.loss` is the package's version of the same pass. On a float64 copy of
# the model, with two random images and fixed noise `ε`, the loss terms and
# every gradient must agree with ours to rounding.
#
# That only says both are the same. The independent check is a finite
# difference, and checking a whole network entry by entry is harder than
# checking a layer. There are ~100,000 ReLUs between input and loss, and at
# initialization the decoder's activations are tiny (around 1e-3), so a
# step of `h = 1e-5` on a bias that shifts a whole channel pushes some of
# them across their kink (lesson 4): the finite difference is then wrong,
# not the code. Two remedies:
#
# * check a **directional derivative**: perturb a whole array along
#   `d = g / |g|` (`g` its gradient) and compare `(L(p + hd) − L(p − hd)) / 2h`
#   with `<g, d> = |g|`, the largest signal any direction gives;
# * use a **smaller `h`**: float64 can afford `h = 1e-7`, where crossing a kink
#   becomes rare.
#
# With `h = 1e-5` a few arrays show errors of 1e-4 or worse; with
# `h = 1e-7` every array is below 1e-5 (most near 1e-7: rounding in a loss
# of ~70 limits what a smaller `h` can show). A real bug would not go away
# as `h` shrinks.

# %%
check = VAE("simple", (28, 28, 1), np.random.default_rng(1), dtype=np.float64)
x2 = rng.random((2, 28, 28, 1))                           # (2, 28, 28, 1) float64
eps2 = rng.standard_normal((2, 2))                        # (2, L) held fixed
ours = vae_backward(check, x2, eps2)
our_grads = {k: g.copy() for k, g in layer_grads(check).items()}
theirs = check.loss(x2, eps2)                             # fills check.grads
worst_pkg = max(rel_error(our_grads[k], check.grads[k]) for k in check.grads)
print(f"vae_backward vs VAE.loss: loss {ours['loss']:.6f} vs {theirs['loss']:.6f}; "
      f"worst gradient rel error {worst_pkg:.1e}")
assert abs(ours["loss"] - theirs["loss"]) < 1e-9 and worst_pkg < 1e-8


def directional_error(name, h):
    """rel error of the finite difference of the loss along d = grad / |grad| of one array."""
    p, g = check.params[name], our_grads[name]
    d = g / np.linalg.norm(g)                             # shaped like p
    p += h * d
    lp = check.loss(x2, eps2, backward=False)["loss"]
    p -= 2 * h * d
    lm = check.loss(x2, eps2, backward=False)["loss"]
    p += h * d                                            # restore
    return rel_error((lp - lm) / (2 * h), np.sum(g * d))


print(f"{'parameter':34s} {'h = 1e-5':>9s} {'h = 1e-7':>9s}")
worst = 0.0
for name in check.params:
    coarse, fine = directional_error(name, 1e-5), directional_error(name, 1e-7)
    worst = max(worst, fine)
    print(f"{name:34s} {coarse:9.1e} {fine:9.1e}")
print(f"worst at h = 1e-7: {worst:.1e}  (expect < 1e-5; a wrong backward gives 1e-2 to 1)")
assert worst < 1e-5

# %% [markdown]
# ## 3. The training loop
#
# Ten lines: each epoch a fresh order of the images, batches of `B`, pixels
# / 255, a fresh `ε` per batch, our backward pass, one Adam step on every
# parameter. (`tinyvae.train.train` is this loop plus test evaluation,
# checkpoints and resuming.)

# %%
def fit(model, images, epochs, batch, lr, rng):
    """Train ``model`` on uint8 ``images`` with Adam; the loss terms of every step."""
    opt, history = Adam(lr), []
    for _ in range(epochs):
        order = rng.permutation(len(images))              # a fresh order each epoch
        for i in range(0, len(images) - batch + 1, batch):
            x = to_float(images[order[i:i + batch]])      # (B, 28, 28, 1) float32
            eps = rng.standard_normal((batch, model.arch.latent), dtype=np.float32)
            history.append(vae_backward(model, x, eps))
            opt.step(model.params, layer_grads(model))    # updates the arrays in place
    return {k: np.array([h[k] for h in history]) for k in ("loss", "rec", "kl")}


def test_terms(model, images, seed=1, batch=200):
    """Mean loss terms over uint8 ``images`` (one ε per image, no gradients)."""
    rng_t, sums = np.random.default_rng(seed), np.zeros(3)
    for i in range(0, len(images), batch):
        x = to_float(images[i:i + batch])
        eps = rng_t.standard_normal((len(x), model.arch.latent), dtype=np.float32)
        t = model.loss(x, eps, backward=False)
        sums += len(x) * np.array([t["loss"], t["rec"], t["kl"]])
    return dict(zip(("loss", "rec", "kl"), sums / len(images)))


x_train, y_train = load("mnist", "train", data_dir)       # (60000, 28, 28, 1) uint8
x_test, y_test = load("mnist", "test", data_dir)          # (10000, 28, 28, 1)

# %% [markdown]
# **First, overfit one batch.** Before a real run, train on a single batch
# of 10 images for 300 steps. The network has 929,000 parameters for 10
# images: a correct model and backward pass must fit them better than their
# own mean image does, which means the codes tell the ten apart (the noise
# in `z` and the KL's pull keep the error from reaching 0 quickly). If the
# loss does not fall that far, something is broken, and a 10-image run says
# so in seconds instead of minutes.

# %%
tiny = VAE("simple", (28, 28, 1), np.random.default_rng(2))
one_batch = x_train[:10]
t0 = time.perf_counter()
h_tiny = fit(tiny, one_batch, epochs=300, batch=10, lr=1e-3, rng=np.random.default_rng(3))
mean_sse_10 = float(np.sum((to_float(one_batch) - to_float(one_batch).mean(0)) ** 2) / 10)
print(f"one batch, 300 steps ({time.perf_counter() - t0:.1f} s): rec {h_tiny['rec'][0]:.1f} -> "
      f"{h_tiny['rec'][-10:].mean():.1f} (the batch's own mean image: {mean_sse_10:.1f})")
assert h_tiny["rec"][-10:].mean() < 0.75 * mean_sse_10 and h_tiny["loss"][-10:].mean() < 0.3 * h_tiny["loss"][0]

# %% [markdown]
# **Then the real run.** The study used batches of 50 and lr 1e-4 for 10
# epochs (`--full`). For a quick run we want many updates per second
# instead: batches of 10 and lr 5e-4, one pass over 8,000 images (800
# steps). Expect the loss to fall from about 140 in the first batches to
# about 45; a test reconstruction error around 45, below the 52.6 of always
# predicting the mean image; and a KL of about 2 nats — two latent numbers
# cannot carry much more. (The study's full run reaches rec 32.5 and KL
# 4.6, `docs/results/metrics.json`.) Too large a step is not just slower:
# with batches of 50 and lr 4e-3 this model stops using its code
# altogether, KL 0 — a posterior collapse, lesson 10.

# %%
if args.full:
    train_idx, test_idx, epochs, batch, lr = np.arange(60000), np.arange(10000), 10, 50, 1e-4
else:
    train_idx = np.sort(rng.choice(60000, 8000, replace=False))
    test_idx = np.sort(rng.choice(10000, 1000, replace=False))
    epochs, batch, lr = 1, 10, 5e-4
x_tr, x_te, y_te = x_train[train_idx], x_test[test_idx], y_test[test_idx]
model = VAE("simple", (28, 28, 1), np.random.default_rng(0))
t0 = time.perf_counter()
hist = fit(model, x_tr, epochs, batch, lr, np.random.default_rng(4))
seconds = time.perf_counter() - t0
test = test_terms(model, x_te)
print(f"trained {len(hist['loss'])} steps in {seconds:.1f} s ({1e3 * seconds / len(hist['loss']):.1f} ms per step)")
print(f"first 20 batches: loss {hist['loss'][:20].mean():.1f};  last 20: loss "
      f"{hist['loss'][-20:].mean():.1f} (rec {hist['rec'][-20:].mean():.1f}, kl {hist['kl'][-20:].mean():.2f})")
print(f"test ({len(x_te)} images): loss {test['loss']:.2f}, rec {test['rec']:.2f}, kl {test['kl']:.2f}")

# the simplest baseline: predict the mean training image for every test image
mean_img = to_float(x_tr).mean(axis=0)                    # (28, 28, 1)
baseline = float(np.mean(np.sum((to_float(x_te) - mean_img) ** 2, axis=(1, 2, 3))))
print(f"squared error of always predicting the mean image: {baseline:.2f}")
assert hist["loss"][-20:].mean() < 0.5 * hist["loss"][:20].mean()
assert test["rec"] < baseline and test["kl"] > 1.0

# %% [markdown]
# The loss per batch (it is noisy: small batches, one sample of
# `z` each, so we plot a running mean) and reconstructions of test images
# (decoded from their means `mu`).

# %%
mu, logvar = encode_all(model, x_te)                      # (N, 2) twice
recon = model.decode(mu[:10])                             # (10, 28, 28, 1)
fig, axes = plt.subplots(1, 2, figsize=(12, 3.6), layout="constrained",
                         gridspec_kw={"width_ratios": [1.2, 1]})
ax = axes[0]
k = 10
for key in ("loss", "rec", "kl"):
    smooth = np.convolve(hist[key], np.ones(k) / k, mode="valid")
    ax.plot(np.arange(len(smooth)) + k - 1, smooth, label=f"{key} (mean of {k} batches)")
ax.set_yscale("log")
ax.set_xlabel(f"step (batch of {batch})")
ax.set_title("training loss = rec + KL")
ax.legend(fontsize=8)
ax = axes[1]
strip = np.concatenate([np.concatenate(list(to_float(x_te[:10])[..., 0]), axis=1),
                        np.concatenate(list(recon[..., 0]), axis=1)])          # (56, 280)
ax.imshow(strip, cmap="gray", vmin=0, vmax=1)
ax.set_title("test images (top) and reconstructions from mu (bottom)")
ax.axis("off")
savefig(fig, args.out, "l08_training")

# %% [markdown]
# ## 4. What the first layer learned
#
# The first conv layer's 32 filters are 3x3 patches the network matches
# against every window of the image (lesson 3), like the Sobel filter
# there. They start as uniform noise (Glorot). Look at them honestly: after
# the 800 quick steps they have moved only about a seventh of their
# initial size (printed below) and still look mostly like noise: the
# layers nearest the loss change first, and a small learning rate moves a
# 3x3 filter slowly. `--full` trains 15 times as many steps; draw them
# again then.

# %%
w_learned = model.params["enc0_conv2d.w"][:, :, 0, :]     # (3, 3, 32)
w_init = VAE("simple", (28, 28, 1), np.random.default_rng(0)).params["enc0_conv2d.w"][:, :, 0, :]
change = float(np.linalg.norm(w_learned - w_init) / np.linalg.norm(w_init))
print(f"first-layer filters moved by {change:.0%} of their initial norm")
fig, axes = plt.subplots(2, 16, figsize=(12, 1.9), layout="constrained")
for f in range(32):
    ax = axes[f // 16, f % 16]
    filt = w_learned[:, :, f]
    lim = np.abs(filt).max()
    ax.imshow(filt, cmap="RdBu", vmin=-lim, vmax=lim)
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle(f"the 32 learned 3x3 filters of the first conv layer (red < 0 < blue), after {len(hist['loss'])} steps")
savefig(fig, args.out, "l08_filters")

# %% [markdown]
# ## 5. The latent space
#
# Each test image's mean code `mu` is a point in the plane, coloured by its
# label — which training never saw. The encoder puts similar images near
# each other because the decoder has to reconstruct them from those two
# numbers: after this short run the 0s and the 1s already have regions of
# their own while the other digits still overlap in the middle (`--full`
# separates more of them). The KL term pulls everything toward the prior
# `N(0, I)`, so the points fill a disc of radius about 2 to 3.

# %%
fig, ax = plt.subplots(figsize=(6.5, 5.5))
sc = ax.scatter(mu[:, 0], mu[:, 1], c=y_te, cmap="tab10", s=6, vmin=-0.5, vmax=9.5)
fig.colorbar(sc, ax=ax, ticks=range(10), label="digit")
ax.set_xlabel("mu[0]")
ax.set_ylabel("mu[1]")
ax.set_title(f"test images' latent means ({len(mu)} images)")
savefig(fig, args.out, "l08_latent_scatter")
print(f"latent means: mean {mu.mean(axis=0).round(2)}, std {mu.std(axis=0).round(2)}")

# %% [markdown]
# ## 6. The 2-D manifold, samples from the prior, and an interpolation
#
# Because the latent space is 2-D we can decode a whole grid of codes. The
# grid is taken at evenly spaced *quantiles* of the prior (so each cell
# covers equal prior mass), and each code is decoded into an image: the
# model's map of handwriting, one shape morphing smoothly into the next
# (after the short run: mostly 0s, 1s and 9s; the full run adds the rest).
#
# A VAE is also a generative model: draw `z ~ N(0, I)` and decode it. And
# the straight line between two test images' codes decodes into a gradual
# change from one digit to the other.

# %%
n = 15
q = np.linspace(0.05, 0.95, n)
zq = np.array([NormalDist().inv_cdf(p) for p in q])     # (n,) standard-normal quantiles
grid = np.array([[a, b] for b in zq[::-1] for a in zq])   # (n*n, 2), top row = largest z[1]
imgs = model.decode(grid)[..., 0]                         # (n*n, 28, 28)
canvas = imgs.reshape(n, n, 28, 28).transpose(0, 2, 1, 3).reshape(n * 28, n * 28)
fig, ax = plt.subplots(figsize=(7, 7))
ax.imshow(canvas, cmap="gray", vmin=0, vmax=1)
ax.set_title(f"decoded grid of z, prior quantiles {q[0]:.2f}..{q[-1]:.2f}")
ax.axis("off")
savefig(fig, args.out, "l08_manifold")
spread = float(imgs.std(axis=0).mean())                  # pixel std across the grid
print(f"decoded grid: mean pixel std across the {n * n} codes {spread:.3f} (0 would be one image repeated)")
assert spread > 0.02

samples = model.decode(np.random.default_rng(5).standard_normal((16, 2)).astype(np.float32))[..., 0]  # (16, 28, 28)
a, b = np.flatnonzero(y_te == 0)[0], np.flatnonzero(y_te == 1)[0]      # a 0 and a 1
ts = np.linspace(0, 1, 10)[:, None]                       # (10, 1)
path = model.decode(((1 - ts) * mu[a] + ts * mu[b]).astype(np.float32))[..., 0]   # (10, 28, 28)
fig, axes = plt.subplots(2, 1, figsize=(10, 2.8), layout="constrained")
axes[0].imshow(np.concatenate(list(samples), axis=1), cmap="gray", vmin=0, vmax=1)
axes[0].set_title("16 samples: z ~ N(0, I), decoded")
axes[1].imshow(np.concatenate([to_float(x_te[a])[..., 0], *path, to_float(x_te[b])[..., 0]], axis=1),
               cmap="gray", vmin=0, vmax=1)
axes[1].set_title("a test 0 (left), the decoded line from its mu to a test 1's mu, the 1 (right)")
for ax in axes:
    ax.axis("off")
savefig(fig, args.out, "l08_samples_interpolation")
assert float(np.abs(path[0] - path[-1]).mean()) > 0.05   # the two ends differ

# %% [markdown]
# ## What to remember
#
# * the VAE's backward pass is the layers' backward passes in reverse, with
#   two sums: `mu` and `logvar` get the gradient through the sample *plus*
#   the KL's, and the encoder output gets both heads' gradients;
# * check it against a trusted version and against finite differences
#   (directional, small `h`, in float64);
# * overfit one batch before a real run;
# * a short run already beats the mean image and clusters digits it never
#   saw labels for; a 2-D latent can be looked at directly.
#
# Next: lesson 9, CIFAR-10 — where the same recipe struggles.
