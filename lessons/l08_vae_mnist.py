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
# 60,000 images, 10 epochs, lr 1e-4; about half an hour).
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

from lessons._common import need_data, savefig, setup
from tinyvae.gradcheck import rel_error
from tinyvae.models import VAE
from tinyvae.train import TrainConfig, encode_all, to_float, train

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
# ## 2. One gradient check for the whole network
#
# The model's backward pass is the layers' backward passes chained in
# reverse, plus the two paths into `mu` and `logvar` (through the sample and
# through the KL). We check it on a float64 copy of the model with two
# random images and fixed noise `ε`.
#
# Checking a whole network entry by entry is harder than checking a layer.
# There are ~100,000 ReLUs between input and loss, and at initialization the
# decoder's activations are tiny (around 1e-3), so a step of `h = 1e-5` on a
# bias that shifts a whole channel pushes some of them across their kink
# (lesson 4): the finite difference is then wrong, not the code. Two
# remedies:
#
# * check a **directional derivative**: perturb a whole array along
#   `d = g / |g|` (`g` its gradient) and compare `(L(p + hd) − L(p − hd)) / 2h`
#   with `<g, d> = |g|`, the largest signal any direction gives;
# * use a **smaller `h`**: float64 can afford `h = 1e-7`, where crossing a kink
#   becomes rare.
#
# With `h = 1e-5` a few arrays show errors of 1e-4 or worse; with
# `h = 1e-7` every array is below 1e-5 (most near 1e-7: rounding in a loss
# of ~180 limits what a smaller `h` can show). A real bug would not go away
# as `h` shrinks.

# %%
check = VAE("simple", (28, 28, 1), np.random.default_rng(1), dtype=np.float64)
x2 = rng.random((2, 28, 28, 1))                           # (2, 28, 28, 1) float64
eps2 = rng.standard_normal((2, 2))                        # (2, L) held fixed
check.loss(x2, eps2)                                      # fills check.grads


def directional_error(name, h):
    """rel error of the finite difference of the loss along d = grad / |grad| of one array."""
    p, g = check.params[name], check.grads[name]
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
# ## 3. Training
#
# `tinyvae.train.train` runs the loop: shuffle, batches, pixels / 255, a
# fresh `ε` per batch, `loss = SSE + β·KL` (β = 1 here), Adam. The study used
# batches of 50 and lr 1e-4 for 10 epochs (`--full`). For a quick run we
# want many updates per second instead: batches of 10 and lr 5e-4, one pass
# over 8,000 images (800 steps). Expect the loss to fall from about 140 in
# the first batches to about 45; a test reconstruction error around 43,
# below the 52.7 of always predicting the mean image; and a KL of about 3
# nats — two latent numbers cannot carry much more. (Too large a step is
# not just slower: with batches of 50 and lr 4e-3 this model stops using
# its code altogether, KL 0 — a posterior collapse, lesson 10.)

# %%
if args.full:
    cfg = TrainConfig(model="simple", dataset="mnist", epochs=10, lr=1e-4, seed=0)
else:
    cfg = TrainConfig(model="simple", dataset="mnist", epochs=1, batch_size=10, lr=5e-4, seed=0,
                      train_subset=8000, test_subset=1000)
t0 = time.perf_counter()
result = train(cfg, data_dir=data_dir, progress=args.full)
seconds = time.perf_counter() - t0
hist, test = result.history, result.epochs[-1]
x_test, y_test = result.data["test"]                      # uint8 (N, 28, 28, 1), labels (N,)
x_train = result.data["train"][0]
print(f"trained {len(hist['loss'])} steps in {seconds:.1f} s")
print(f"first 20 batches: loss {hist['loss'][:20].mean():.1f};  last 20: loss "
      f"{hist['loss'][-20:].mean():.1f} (rec {hist['rec'][-20:].mean():.1f}, kl {hist['kl'][-20:].mean():.2f})")
print(f"test ({len(x_test)} images): loss {test['loss']:.2f}, rec {test['rec']:.2f}, kl {test['kl']:.2f}")

# the simplest baseline: predict the mean training image for every test image
mean_img = to_float(x_train).mean(axis=0)                 # (28, 28, 1)
baseline = float(np.mean(np.sum((to_float(x_test) - mean_img) ** 2, axis=(1, 2, 3))))
print(f"squared error of always predicting the mean image: {baseline:.2f}")
assert hist["loss"][-20:].mean() < 0.5 * hist["loss"][:20].mean()
assert test["rec"] < baseline and test["kl"] > 1.0

# %% [markdown]
# The loss per batch (it is noisy: 50 images, one sample of `z` each) and
# reconstructions of test images (decoded from their means `mu`).

# %%
mu, logvar = encode_all(result.model, x_test)             # (N, 2) twice
recon = result.model.decode(mu[:10])                      # (10, 28, 28, 1)
fig, axes = plt.subplots(1, 2, figsize=(12, 3.6), layout="constrained",
                         gridspec_kw={"width_ratios": [1.2, 1]})
ax = axes[0]
k = 10
for key in ("loss", "rec", "kl"):
    smooth = np.convolve(hist[key], np.ones(k) / k, mode="valid")
    ax.plot(np.arange(len(smooth)) + k - 1, smooth, label=f"{key} (mean of {k} batches)")
ax.set_yscale("log")
ax.set_xlabel(f"step (batch of {cfg.batch_size})")
ax.set_title("training loss = rec + KL")
ax.legend(fontsize=8)
ax = axes[1]
strip = np.concatenate([np.concatenate(list(to_float(x_test[:10])[..., 0]), axis=1),
                        np.concatenate(list(recon[..., 0]), axis=1)])          # (56, 280)
ax.imshow(strip, cmap="gray", vmin=0, vmax=1)
ax.set_title("test images (top) and reconstructions from mu (bottom)")
ax.axis("off")
savefig(fig, args.out, "l08_training")

# %% [markdown]
# ## 4. The latent space
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
sc = ax.scatter(mu[:, 0], mu[:, 1], c=y_test, cmap="tab10", s=6, vmin=-0.5, vmax=9.5)
fig.colorbar(sc, ax=ax, ticks=range(10), label="digit")
ax.set_xlabel("mu[0]")
ax.set_ylabel("mu[1]")
ax.set_title(f"test images' latent means ({len(mu)} images)")
savefig(fig, args.out, "l08_latent_scatter")
print(f"latent means: mean {mu.mean(axis=0).round(2)}, std {mu.std(axis=0).round(2)}")

# %% [markdown]
# ## 5. The 2-D manifold
#
# Because the latent space is 2-D we can decode a whole grid of codes. The
# grid is taken at evenly spaced *quantiles* of the prior (so each cell
# covers equal prior mass), and each code is decoded into an image: the
# model's map of handwriting, one shape morphing smoothly into the next
# (after the short run: mostly 0s, 1s and 9s; the full run adds the rest).

# %%
n = 15
q = np.linspace(0.05, 0.95, n)
zq = np.array([NormalDist().inv_cdf(p) for p in q])     # (n,) standard-normal quantiles
grid = np.array([[a, b] for b in zq[::-1] for a in zq])   # (n*n, 2), top row = largest z[1]
imgs = result.model.decode(grid)[..., 0]                  # (n*n, 28, 28)
canvas = imgs.reshape(n, n, 28, 28).transpose(0, 2, 1, 3).reshape(n * 28, n * 28)
fig, ax = plt.subplots(figsize=(7, 7))
ax.imshow(canvas, cmap="gray", vmin=0, vmax=1)
ax.set_title(f"decoded grid of z, prior quantiles {q[0]:.2f}..{q[-1]:.2f}")
ax.axis("off")
savefig(fig, args.out, "l08_manifold")
spread = float(imgs.std(axis=0).mean())                  # pixel std across the grid
print(f"decoded grid: mean pixel std across the {n * n} codes {spread:.3f} (0 would be one image repeated)")
assert spread > 0.02

# %% [markdown]
# ## What to remember
#
# * the VAE is the checked layers in a row; one float64 check covers all of them;
# * a short run already beats the mean image and clusters digits it never
#   saw labels for;
# * a 2-D latent can be looked at directly: scatter the means, decode a grid.
#
# Next: lesson 9, CIFAR-10 — where the same recipe struggles.
