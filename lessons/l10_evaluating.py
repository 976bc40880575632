# %% [markdown]
# # Lesson 10 — Evaluating a VAE: nats, bits/dim, collapse, active units, kNN
#
# The training loss says how well the optimizer did on its own objective.
# To compare models, and to notice when a model has quietly stopped using
# its latent code, we need a few more numbers:
#
# 1. the **ELBO in nats** and in **bits per dimension**, the units
#    likelihood models are compared in;
# 2. the **KL per latent dimension** and the number of **active units**;
# 3. **kNN accuracy** on the latent means: how well the code separates the
#    classes it was never told about, against PCA of the same size.
#
# Along the way we make a VAE collapse on purpose, with one innocent-looking
# change: averaging the squared error over pixels instead of summing it.
#
# This lesson needs MNIST (`TINYVAE_DATA_DIR`). It trains the study's
# "highdim" model (16 latent dimensions) twice, briefly; `--full` trains
# longer on more data.
#
# Run it: `TINYVAE_DATA_DIR=... python -m lessons.l10_evaluating --out /tmp/l10`.

# %%
import pathlib
import sys

HERE = pathlib.Path(__file__).parent if "__file__" in globals() else pathlib.Path.cwd()
sys.path.insert(0, str(HERE.resolve().parent))    # the repository root: runs from any folder

import matplotlib.pyplot as plt
import numpy as np

from lessons._common import need_data, savefig, setup
from tinyvae import evaluate as ev
from tinyvae.data import load
from tinyvae.losses import kl_loss, kl_per_dim, sse_loss
from tinyvae.models import VAE
from tinyvae.optim import Adam
from tinyvae.train import encode_all, to_float

args = setup("l10_evaluating")
data_dir = need_data("mnist")
rng = np.random.default_rng(0)

x_train, y_train = load("mnist", "train", data_dir)       # (60000, 28, 28, 1) uint8
x_test, y_test = load("mnist", "test", data_dir)          # (10000, 28, 28, 1)
n_train, n_test, steps = (60000, 10000, 12000) if args.full else (4000, 500, 400)
tr = rng.choice(len(x_train), n_train, replace=False)
te = rng.choice(len(x_test), n_test, replace=False)
x_train, y_train, x_test, y_test = x_train[tr], y_train[tr], x_test[te], y_test[te]
D = 28 * 28                                               # pixels per image

# %% [markdown]
# ## 1. Sum or mean over pixels? Two runs
#
# The study's reconstruction term is the squared error **summed** over the
# 784 pixels (lesson 2). Many code bases take the **mean** over pixels
# instead (it is the default reduction of most MSE functions). That divides
# the reconstruction term by `D = 784` while the KL term stays as it was:
# the same as keeping the sum and setting `β = 784`. (Adam ignores the
# overall scale of the loss, lesson 7, so only this balance changes.) In
# the Gaussian-decoder reading of lesson 2 it means assuming pixel noise of
# variance `D/2 = 392` on pixels in [0, 1]: the images carry almost no
# information worth paying KL for, and the best the encoder can do is send
# nothing. That is **posterior collapse**: `q(z|x) = p(z)` for every `x`,
# and the decoder learns the mean image.
#
# One loop trains both, identical but for the reduction: batches of 10,
# lr 1e-3, 400 steps.

# %%
def fit(reduction, seed=0, lr=1e-3, batch=10):
    """Train "highdim" with the reconstruction term summed or averaged over pixels."""
    run_rng = np.random.default_rng(seed)
    model = VAE("highdim", (28, 28, 1), run_rng)
    opt = Adam(lr)
    kl_trace = []
    for _ in range(steps):
        x = to_float(x_train[run_rng.integers(0, n_train, batch)])         # (B, 28, 28, 1)
        eps = run_rng.standard_normal((batch, model.arch.latent), dtype=np.float32)
        xhat, mu, logvar = model.forward(x, eps)
        rec, dxhat = sse_loss(xhat, x)                    # summed over pixels
        if reduction == "mean":
            rec, dxhat = rec / D, dxhat / D               # averaged over pixels
        kl, dmu, dlogvar = kl_loss(mu, logvar)
        model.backward(dxhat, dmu, dlogvar)
        opt.step(model.params, model.grads)
        kl_trace.append(kl)
    return model, np.array(kl_trace)


runs = {reduction: fit(reduction) for reduction in ("sum", "mean")}
for reduction, (_, trace) in runs.items():
    print(f"{reduction:4s} reduction: KL over the last 50 steps {trace[-50:].mean():.4f} nats")

# %% [markdown]
# ## 2. KL per dimension and active units
#
# The KL term splits over latent dimensions (lesson 6), and its batch
# average per dimension says how many nats each dimension carries about
# the input. A dimension whose KL is ~0 has `q(z_d|x) = N(0, 1)` for every
# image: the decoder cannot learn anything from it.
#
# **Active units** (Burda et al., 2016) count the dimensions whose posterior
# mean actually moves with the input: `A_d = Var_x(E_q[z_d | x]) = Var_x(mu_d)`,
# active when above 0.01 (`tinyvae.evaluate.active_units`; we compute it
# by hand first and check the two agree). Expect: the summed model uses most of its 16
# dimensions (a little each, after so short a run); the averaged model has
# **0 active units and a KL of ~0 in every dimension**.

# %%
stats = {}
for reduction, (model, _) in runs.items():
    mu, logvar = encode_all(model, x_test)                # (n_test, 16) twice
    mu_tr, _ = encode_all(model, x_train[:2000])          # reference set for kNN
    A = mu.var(axis=0)                                    # (16,) activity of each unit
    stats[reduction] = dict(model=model, mu=mu, logvar=logvar, mu_tr=mu_tr, activity=A,
                            kl_dim=kl_per_dim(mu, logvar), active=int(np.sum(A > 0.01)))
    # (float32 rounding can make a KL of 0 come out as -1e-8; it is shown as 0)
    s = stats[reduction]
    print(f"{reduction:4s}: active units {s['active']:2d} of 16, KL per dim (nats) "
          f"{np.array2string(np.maximum(s['kl_dim'], 0), precision=3, suppress_small=True, max_line_width=200)}")
for s in stats.values():                                  # the package's versions agree
    assert s["active"] == ev.active_units(s["mu"])
    assert np.allclose(s["kl_dim"], ev.kl_per_dim(s["mu"], s["logvar"]), atol=1e-5)
assert stats["mean"]["active"] == 0 and stats["mean"]["kl_dim"].sum() < 0.01
assert stats["sum"]["active"] >= 2 and stats["sum"]["kl_dim"].sum() > 0.3

# %% [markdown]
# ## 3. The ELBO in nats, and bits per dimension
#
# With the Gaussian decoder `p(x|z) = N(x; x̂(z), σ² I)`, σ² = 1/2 (the one the
# summed squared error implies), the negative ELBO of one image is
#
# $$-\text{ELBO} = \mathbb{E}_q\big[\text{SSE}(x, \hat x(z))\big] + \tfrac{D}{2}\log \pi + \mathrm{KL}(q(z|x)\,\|\,p(z))$$
#
# in nats, estimated with one sample `z` per image. Two conversions make it
# comparable with other models:
#
# * **bits per dimension**: divide by `D ln 2`;
# * **8-bit pixels**: the data are integers `k` in 0..255, not reals. Add
#   uniform noise, `y = (k + u)/255`, and Jensen's inequality gives
#   `−log P(k) ≤ E_u[−log p(y)] + D log 255`. For the squared error,
#   `E_u` is exact: `E_u (x̂ − y)² = (x̂ − x)² − (x̂ − x)/255 + 1/(3·255²)`.
#
# A model that puts uniform probability on the 256 values scores exactly
# 8 bits/dim. Expect the VAEs here to score *above* 8: a Gaussian with
# variance 1/2 on pixels in [0, 1] is a very flat density. The squared-error
# VAE is a good encoder and a poor density model; bits/dim makes that
# visible. (Fitting the decoder variance instead, `σ² = SSE / D`, takes
# most of a bit per dimension off; we print that too.)

# %%
def negative_elbo(model, images, rng):
    """Per image: dequantized -ELBO in nats (σ² = 1/2), its SSE and KL terms."""
    x = to_float(images)                                  # (N, 28, 28, 1)
    mu, logvar = model.encode(x)                          # (N, L) twice
    z = mu + np.exp(0.5 * logvar) * rng.standard_normal(mu.shape)
    a = (model.decode(z) - x).reshape(len(x), -1)         # (N, D) x̂ - x
    sse_deq = np.sum(a * a - a / 255 + 1 / (3 * 255 ** 2), axis=1)   # E_u of the SSE, (N,)
    kl = 0.5 * np.sum(mu * mu + np.exp(logvar) - 1 - logvar, axis=1)  # (N,)
    return sse_deq + D / 2 * np.log(np.pi) + kl, sse_deq, kl


print(f"{'':5s}{'-ELBO nats':>11s}{'SSE':>8s}{'KL':>7s}{'bits/dim':>10s}{'bits/dim, σ² fitted':>21s}")
for reduction, s in stats.items():
    nelbo, sse, kl = (v.mean() for v in negative_elbo(s["model"], x_test, np.random.default_rng(1)))
    var = sse / D                                         # best shared decoder variance
    nelbo_fit = D / 2 * (1 + np.log(2 * np.pi * var)) + kl
    s.update(nelbo=nelbo, bpd=(nelbo + D * np.log(255)) / (D * np.log(2)))
    print(f"{reduction:5s}{nelbo:11.1f}{sse:8.1f}{kl:7.2f}{s['bpd']:10.3f}"
          f"{(nelbo_fit + D * np.log(255)) / (D * np.log(2)):21.3f}")
assert stats["sum"]["nelbo"] < stats["mean"]["nelbo"]
assert stats["sum"]["bpd"] > 8                            # the flat Gaussian decoder

# %% [markdown]
# `tinyvae.evaluate` computes the same numbers (in float64, batch by batch,
# with its own noise draws), so they agree to Monte Carlo accuracy: within a
# nat or so per image.

# %%
terms = ev.negative_elbo_terms(stats["sum"]["model"], x_test, seed=1)
pkg_nelbo = float(terms["nelbo_dequantized"].mean())
print(f"tinyvae.evaluate, summed model: -ELBO {pkg_nelbo:.1f} nats, "
      f"{ev.bits_per_dim(pkg_nelbo, D):.3f} bits/dim (ours: {stats['sum']['nelbo']:.1f}, "
      f"{stats['sum']['bpd']:.3f})")
assert abs(pkg_nelbo - stats["sum"]["nelbo"]) < 2.0

# %% [markdown]
# ## 4. kNN separability, against PCA
#
# Labels were never used in training. Does the code still group images by
# class? Classify each test image by a majority vote of its `k = 5` nearest
# training images (Euclidean distance between codes), and compare with the
# same classifier on PCA codes of the same size (fit on the training
# images' pixels, lesson 9) and on the raw pixels. Chance is 10%. Our loop
# below is the idea; `tinyvae.evaluate.knn_accuracy` is the same with
# memory-bounded chunks and ties broken by the nearest neighbour, and
# `pca_knn_baseline` does the PCA side.
#
# Expect the summed VAE's 16 numbers to separate the digits well above
# chance but, after 400 steps, below PCA-16 (a strong linear baseline);
# the collapsed VAE to sit near chance, since its codes are noise around 0.

# %%
def knn_accuracy(ref, ref_labels, query, query_labels, k=5):
    """Fraction of queries whose k nearest refs (Euclidean) vote for the right class."""
    d2 = (query ** 2).sum(1)[:, None] - 2 * query @ ref.T + (ref ** 2).sum(1)[None, :]  # (Q, R)
    nearest = np.argpartition(d2, k, axis=1)[:, :k]      # (Q, k) indices, unordered
    votes = ref_labels[nearest]                           # (Q, k)
    pred = np.array([np.bincount(v, minlength=10).argmax() for v in votes])
    return float(np.mean(pred == query_labels))


y_ref = y_train[:2000]
pix_ref = to_float(x_train[:2000]).reshape(2000, D)       # (2000, 784)
pix_test = to_float(x_test).reshape(n_test, D)            # (n_test, 784)
acc = {"raw pixels (784)": knn_accuracy(pix_ref, y_ref, pix_test, y_test)}
pkg_raw = ev.knn_accuracy(pix_ref, y_ref, pix_test, y_test)   # breaks vote ties by distance
print(f"kNN on raw pixels: ours {acc['raw pixels (784)']:.1%}, tinyvae.evaluate {pkg_raw:.1%}")
assert abs(acc["raw pixels (784)"] - pkg_raw) <= 0.02
for k in (2, 16):                                         # PCA fitted on the 2,000 reference images
    base = ev.pca_knn_baseline(x_train[:2000], y_ref, x_test, y_test, n_components=k)
    acc[f"PCA-{k}"] = base["accuracy"]
for reduction, s in stats.items():
    acc[f"VAE-16, {reduction}"] = ev.knn_accuracy(s["mu_tr"], y_ref, s["mu"], y_test)
for name, a in acc.items():
    print(f"kNN (k = 5) on {name:18s} {a:6.1%}")
assert acc["VAE-16, sum"] > 0.3 and acc["VAE-16, mean"] < acc["VAE-16, sum"]
assert acc["raw pixels (784)"] > 0.85

# %%
fig, axes = plt.subplots(2, 2, figsize=(12, 8), layout="constrained")
ax = axes[0, 0]
width = 0.4
for i, (reduction, s) in enumerate(stats.items()):
    ax.bar(np.arange(16) + (i - 0.5) * width, s["kl_dim"], width,
           label=f"{reduction} over pixels: {s['active']} active units")
ax.set_xlabel("latent dimension")
ax.set_ylabel("KL (nats), test average")
ax.set_title("KL per latent dimension")
ax.legend(fontsize=8)
ax = axes[0, 1]
for reduction, (_, trace) in runs.items():
    ax.semilogy(np.maximum(trace, 1e-6), label=f"{reduction} over pixels")
ax.set_xlabel("step")
ax.set_ylabel("KL per image, nats (floored at 1e-6)")
ax.set_title("the averaged model's KL goes to 0: posterior collapse")
ax.legend(fontsize=8)
ax = axes[1, 0]
ax.barh(list(acc), list(acc.values()), color=["gray", "C2", "C2", "C0", "C1"])
ax.axvline(0.1, color="k", ls=":", lw=1)
ax.text(0.1, -0.6, " chance", fontsize=8)
ax.set_xlim(0, 1)
ax.set_xlabel("kNN test accuracy (k = 5)")
ax.set_title("class separability of the codes")
ax = axes[1, 1]
strip = [to_float(x_test[:10])]
for reduction, s in stats.items():
    strip.append(s["model"].decode(s["mu"][:10]))
rows = [np.concatenate(list(r[..., 0]), axis=1) for r in strip]   # each (28, 280)
ax.imshow(np.concatenate(rows), cmap="gray", vmin=0, vmax=1)
ax.set_yticks([14, 42, 70], ["test", "sum", "mean"])
ax.set_xticks([])
ax.set_title("reconstructions from mu: the collapsed model draws one image")
savefig(fig, args.out, "l10_evaluation")

# %% [markdown]
# ## What to remember
#
# * report the negative ELBO in nats (and bits/dim, 8-bit with
#   dequantization); with a fixed σ² = 1/2 Gaussian decoder it is a loose
#   density estimate;
# * averaging the reconstruction over pixels is `β = D`: the KL wins and the
#   posterior collapses — KL per dim ~0, **0 active units**, reconstructions
#   all the mean image, kNN at chance. Watch the KL per dimension, not just the loss;
# * compare codes with kNN against PCA of the same size before claiming a
#   VAE has learned structure.
