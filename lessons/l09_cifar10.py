# %% [markdown]
# # Lesson 9 — CIFAR-10, and why it is harder
#
# The same recipe, on 32x32 colour photographs of ten classes (airplanes,
# cars, birds, cats, ...). The study ran three models on it:
#
# | model   | encoder convs | dense layers    | latent | β   |
# |---------|---------------|-----------------|--------|-----|
# | simple  | 32, 64        | 256, 64         | 2      | 1   |
# | highdim | 32, 64        | 256, 64         | 16     | 1   |
# | deep    | 32, 128       | 1024, 256, 32   | 2      | 0.5 |
#
# This lesson needs the real CIFAR-10 archive (`TINYVAE_DATA_DIR`). It
# trains each model briefly on a small subset, side by side — enough to
# compare their cost and their first steps, not their end results
# (`--full` runs the study's protocol: all images, 10 epochs, lr 1e-4;
# hours on two cores).
#
# Run it: `TINYVAE_DATA_DIR=... python -m lessons.l09_cifar10 --out /tmp/l09`.

# %%
import pathlib
import sys

HERE = pathlib.Path(__file__).parent if "__file__" in globals() else pathlib.Path.cwd()
sys.path.insert(0, str(HERE.resolve().parent))    # the repository root: runs from any folder

import time

import matplotlib.pyplot as plt
import numpy as np

from lessons._common import need_data, savefig, setup
from tinyvae.bench import time_calls
from tinyvae.data import CLASS_NAMES, load
from tinyvae.models import ARCHS, VAE
from tinyvae.train import TrainConfig, encode_all, to_float, train

args = setup("l09_cifar10")
data_dir = need_data("cifar10")
rng = np.random.default_rng(0)
names = CLASS_NAMES["cifar10"]

# %% [markdown]
# ## 1. The data
#
# 50,000 training and 10,000 test images, `(32, 32, 3)` uint8: 3,072
# numbers per image against MNIST's 784. Most of the variation between
# photographs is not *what* is in them but lighting, colour, background,
# position and texture, and the squared error counts every one of those
# pixels. We keep a random subset (the study's seed-based subsets work the
# same way).

# %%
t0 = time.perf_counter()
x_train, y_train = load("cifar10", "train", data_dir)     # (50000, 32, 32, 3) uint8
x_test, y_test = load("cifar10", "test", data_dir)        # (10000, 32, 32, 3)
print(f"loaded {x_train.shape} and {x_test.shape} in {time.perf_counter() - t0:.1f} s")
n_train, n_test = (len(x_train), len(x_test)) if args.full else (600, 200)
tr = np.sort(rng.choice(len(x_train), n_train, replace=False))
te = np.sort(rng.choice(len(x_test), n_test, replace=False))
data = {"train": (x_train[tr], y_train[tr]), "test": (x_test[te], y_test[te])}
assert x_train.shape[1:] == (32, 32, 3) and x_train.dtype == np.uint8

fig, axes = plt.subplots(2, 8, figsize=(12, 3.4), layout="constrained")
for ax, img, label in zip(axes.ravel(), data["test"][0], data["test"][1]):
    ax.imshow(img)
    ax.set_title(names[label], fontsize=9)
    ax.axis("off")
savefig(fig, args.out, "l09_samples")

# %% [markdown]
# ## 2. Baselines: the mean image and PCA
#
# Before training anything, two yardsticks for the reconstruction error
# (SSE per image, pixels in [0, 1]):
#
# * predicting the **mean training image** for everything;
# * the best **linear** code of the same size as the latent: PCA. Project
#   the centred image onto the top `k` principal directions and back; by
#   the Eckart–Young theorem no `k`-dimensional linear code does better in
#   squared error. The directions are the top right-singular vectors of the
#   centred data matrix.
#
# On CIFAR-10 the first two directions are overall brightness and a colour
# or light-from-above gradient: they explain about 40% of the pixel
# variance, and 16 directions about 70%. A VAE with a 2-D latent has to
# beat PCA-2 to be worth its nonlinearity.

# %%
X = to_float(data["train"][0][:600]).reshape(-1, 32 * 32 * 3)   # (600, 3072): fit PCA on 600 images
mean = X.mean(axis=0)                                            # (3072,)
_, S, Vt = np.linalg.svd(X - mean, full_matrices=False)         # Vt: (600, 3072) directions
explained = S ** 2 / np.sum(S ** 2)
Xt = to_float(data["test"][0]).reshape(n_test, -1) - mean       # (n_test, 3072) centred test images
sse_mean = float(np.mean(np.sum(Xt ** 2, axis=1)))
pca_recon, sse_pca = {}, {}
for k in (2, 16):
    P = Vt[:k]                                                   # (k, 3072) orthonormal rows
    R = (Xt @ P.T) @ P                                           # (n_test, 3072) projection
    pca_recon[k] = (R + mean).reshape(n_test, 32, 32, 3)
    sse_pca[k] = float(np.mean(np.sum((Xt - R) ** 2, axis=1)))
    print(f"PCA-{k:<2d}: explains {explained[:k].sum():.0%} of the variance, test SSE {sse_pca[k]:.1f}")
print(f"mean image: test SSE {sse_mean:.1f}")
assert sse_pca[16] < sse_pca[2] < sse_mean

# %% [markdown]
# ## 3. The three models
#
# Their summaries: "deep" has four times as many channels in its second
# conv and a 1,024-unit dense layer, hence by far the most parameters, and
# it weighs the KL by β = 0.5. "highdim" is "simple" with 16 latent
# dimensions instead of 2.

# %%
models = {name: VAE(name, (32, 32, 3), np.random.default_rng(0)) for name in ARCHS}
counts = {}
for name, m in models.items():
    counts[name] = sum(p.size for p in m.params.values())
    print(m.summary().splitlines()[0], f"— {counts[name]:,} parameters")
print("\n" + models["deep"].summary())
assert counts["deep"] > counts["highdim"] > counts["simple"]

# %% [markdown]
# ## 4. Short training, side by side
#
# The same subset, seed, batch size and number of steps for each model:
# batches of 10, lr 1e-3, five passes over 160 images (80 steps), with the
# package's test evaluation after each pass. Expect:
#
# * all three leave the grey start (a fresh decoder's sigmoid outputs 0.5
#   everywhere) and reach about the mean image within these few steps;
# * none comes near PCA-2 yet. The study trained for 10 epochs of 50,000
#   images, over 600 times as many images as seen here;
# * "deep" costs several times as much per step as the others (its
#   1,024-unit dense layers and 128-channel convs).
#
# What limits the VAE on CIFAR-10 even after full training is the loss:
# under a Gaussian decoder the best reconstruction from an uncertain code is
# the *average* of the images that code could stand for, and averaged
# photographs are blurry. With 2 latent numbers for 3,072 pixels of
# texture, blur is most of what is left.

# %%
x_te = to_float(data["test"][0])                          # (n_test, 32, 32, 3)
sse_grey = float(np.mean(np.sum((x_te - 0.5) ** 2, axis=(1, 2, 3))))
if args.full:
    cfgs = {name: TrainConfig(model=name, dataset="cifar10", epochs=10, lr=1e-4, seed=0) for name in ARCHS}
    short = data
else:
    cfgs = {name: TrainConfig(model=name, dataset="cifar10", epochs=5, batch_size=10, lr=1e-3, seed=0)
            for name in ARCHS}
    short = {"train": (data["train"][0][:160], data["train"][1][:160]), "test": data["test"]}
results, step_time = {}, {}
for name, cfg in cfgs.items():
    results[name] = train(cfg, data=short, progress=args.full)
    m = results[name].model
    eps = rng.standard_normal((10, m.arch.latent), dtype=np.float32)
    step_time[name] = min(time_calls(lambda: m.loss(x_te[:10], eps), 3))  # loss + backward, 10 images
    ep = results[name].epochs[-1]
    print(f"{name:8s} {step_time[name] * 1e3:6.0f} ms per step of 10 images; test rec {ep['rec']:7.1f}, kl {ep['kl']:5.2f}")
print(f"{'':8s} grey image {sse_grey:.1f}, mean image {sse_mean:.1f}, PCA-2 {sse_pca[2]:.1f}, "
      f"PCA-16 {sse_pca[16]:.1f}")
for name, r in results.items():
    assert r.epochs[-1]["rec"] < sse_grey, f"{name} did not improve on the grey start"
assert step_time["deep"] > step_time["simple"]

# %%
rows = {"test images": x_te[:8]}
for name, r in results.items():
    mu, _ = encode_all(r.model, data["test"][0][:8])      # (8, L)
    rows[name] = r.model.decode(mu)                       # (8, 32, 32, 3)
rows["PCA-2"], rows["PCA-16"] = pca_recon[2][:8], pca_recon[16][:8]
fig, axes = plt.subplots(len(rows), 8, figsize=(10, 1.35 * len(rows)), layout="constrained")
for r_axes, (label, imgs) in zip(axes, rows.items()):
    for ax, img in zip(r_axes, imgs):
        ax.imshow(np.clip(img, 0, 1))
        ax.set_xticks([])
        ax.set_yticks([])
    r_axes[0].set_ylabel(label, fontsize=9)
fig.suptitle(f"reconstructions from mu after {len(results['simple'].history['loss'])} steps, and PCA")
savefig(fig, args.out, "l09_reconstructions")

fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
for name, r in results.items():
    steps = len(r.history["loss"]) // len(r.epochs) * np.arange(len(r.epochs) + 1)
    ax.plot(steps, [sse_grey] + [e["rec"] for e in r.epochs], "o-", label=name)
for label, v, ls in (("grey", sse_grey, ":"), ("mean image", sse_mean, "--"), ("PCA-2", sse_pca[2], "-."),
                     ("PCA-16", sse_pca[16], "-.")):
    ax.axhline(v, color="gray", ls=ls, lw=1)
    ax.annotate(f" {label}", xy=(1, v), xycoords=("axes fraction", "data"), va="center", fontsize=8)
ax.set_xlabel("training step")
ax.set_ylabel(f"test squared error per image ({n_test} images)")
ax.set_title("CIFAR-10: the three VAEs' first steps vs baselines")
ax.legend(fontsize=8)
savefig(fig, args.out, "l09_training")

# %% [markdown]
# ## What to remember
#
# * CIFAR-10 images are 4 times larger and far more varied than MNIST digits;
#   most of their variance is not about the class;
# * always compare with the mean image and with PCA of the same size: a
#   linear code is a strong baseline for squared error;
# * a deeper model costs more per step and needs long training to show any
#   difference; squared error makes natural images blurry.
#
# Next: lesson 10, measuring a VAE properly.
