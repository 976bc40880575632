"""One trained run of the study, measured: its numbers, its baselines, its pictures.

``run_all.py`` trains every run (a model, a dataset, a KL weight and a
likelihood) with one or more seeds, computes :func:`baselines` once per
training set and calls :func:`analyze` on every run and seed;
:func:`summarize` turns the per-seed numbers into mean and SD over seeds.

The baselines need no training: a PCA of the training pixels with as many
components as the latent (for reconstruction and kNN separability), the
mean training image (for reconstruction) and, on MNIST, a pixel classifier
(kNN on a 50-component PCA) that says whether a reconstruction keeps its digit.
"""
from statistics import NormalDist

import numpy as np

from .. import evaluate as ev
from .. import probes as pr
from ..config import streams
from ..data import CLASS_NAMES
from ..evaluate import encode_all

CLASSIFIER_DIMS = 50             # PCA dims of the pixel classifier that judges MNIST reconstructions
CURVE_STEP = 4000                # the paper: MNIST's loss flattens after about this many batches
CURVE_WINDOW = 200               # batches averaged at the start, at CURVE_STEP and at the end
# (a) and (h): automobile, truck vs deer, dog
CAR_TRUCK = tuple(CLASS_NAMES["cifar10"].index(c) for c in ("automobile", "truck"))
DEER_DOG = tuple(CLASS_NAMES["cifar10"].index(c) for c in ("deer", "dog"))
INTERP_PAIRS = {"mnist": ((1, 7), (3, 8), (4, 9)), "cifar10": ((0, 2), (1, 7), (3, 5))}
INTERP_STEPS = 8
MANIFOLD_N = {"mnist": 20, "cifar10": 12}
N_PRIOR = 32


def baselines(data, dataset, latents, k, seed=0):
    """What a run's numbers are compared with, from the pixels alone.

    Parameters
    ----------
    data : {"train": (x, y), "test": (x, y)}, uint8 images
    latents : the latent sizes to match (a PCA of each size)
    k : neighbours of the kNN votes

    Returns
    -------
    dict: ``pca`` (fitted once), per latent size ``L`` ``pca{L}`` with
    ``train_z`` (N, L), ``test_z`` (M, L), ``rec_sse`` (M,) and ``pred`` (M,);
    ``mean_image_sse`` (M,); on MNIST ``classifier`` with its ``train_z`` and
    the prediction ``pred_orig`` (M,) on the test images themselves
    """
    (tr_x, tr_y), (te_x, te_y) = data["train"], data["test"]
    need = max(latents) if dataset != "mnist" else max(max(latents), CLASSIFIER_DIMS)
    pca = pr.pca_fit(tr_x, min(need, int(np.prod(tr_x.shape[1:]))), seed=seed)
    train_all, test_all = pr.pca_transform(pca, tr_x), pr.pca_transform(pca, te_x)   # (N, K), (M, K)
    out = {"pca": pca, "mean_image_sse": pr.mean_image_sse(tr_x, te_x)}
    for L in sorted(set(latents)):
        tz, sz = train_all[:, :L], test_all[:, :L]                                   # (N, L), (M, L)
        out[f"pca{L}"] = {"train_z": tz, "test_z": sz, "rec_sse": pr.pca_reconstruction_sse(pca, te_x, L),
                          "pred": pr.knn_predict(tz, tr_y, sz, k)}
    if dataset == "mnist":
        tz = train_all[:, :CLASSIFIER_DIMS]                                          # (N, 50)
        out["classifier"] = {"train_z": tz, "pred_orig": pr.knn_predict(tz, tr_y, test_all[:, :CLASSIFIER_DIMS], k)}
    return out


def classify_images(base, images, train_y, k):
    """The MNIST pixel classifier's labels for float images in [0, 1]: (M,)."""
    z = pr.pca_transform(base["pca"], images)[:, :CLASSIFIER_DIMS]                   # (M, 50)
    return pr.knn_predict(base["classifier"]["train_z"], train_y, z, k)


def decode_mean_sse(model, mu, images, batch_size=200):
    """Per-image squared error of the reconstruction decode(mu) on the pixels / 255 range: (M,)."""
    out = np.empty(len(mu))
    for i in range(0, len(mu), batch_size):
        xhat = model.decode(mu[i:i + batch_size]).astype(np.float64)                 # (B, H, W, C)
        diff = (xhat - images[i:i + batch_size] / 255.0).reshape(len(xhat), -1)      # (B, D)
        out[i:i + batch_size] = np.einsum("nd,nd->n", diff, diff)
    return out


def iwae_numbers(model, images, k, seed):
    """ELBO (k = 1) and IWAE bound (k samples) on ``images`` and their gap, with standard errors."""
    log_lik = ev.decoder_log_likelihood(model)
    x = images.astype(model.dtype) / 255.0                                          # (M, H, W, C)
    per = {}
    for name, kk in (("elbo_k1", 1), ("log_px", k)):
        rng = np.random.default_rng([seed, kk])
        per[name] = np.concatenate([ev.importance_weighted_log_px(model.encode, log_lik, x[i:i + 100], kk, rng)
                                    for i in range(0, len(x), 100)])                 # (M,)
    gap = per["log_px"] - per["elbo_k1"]                                             # (M,)
    se = lambda a: float(a.std(ddof=1) / np.sqrt(len(a))) if len(a) > 1 else float("nan")
    return {"k": int(k), "n_images": int(len(x)), "log_px": float(per["log_px"].mean()),
            "log_px_se": se(per["log_px"]), "elbo_k1": float(per["elbo_k1"].mean()),
            "elbo_k1_se": se(per["elbo_k1"]), "gap": float(gap.mean()), "gap_se": se(gap)}


def nll_floor(likelihood, images):
    """The least -log p(x|z) the decoder can reach on ``images``, mean nats per image.

    Gaussian with variance 1/2: ``(D/2) log(pi)`` (a perfect reconstruction).
    Bernoulli on grey levels x: each pixel's binary entropy ``-x log x - (1-x) log(1-x)``.
    """
    d = int(np.prod(images.shape[1:]))
    if likelihood == "gaussian":
        return float(ev.gaussian_nll_const(d))
    total = 0.0
    for i in range(0, len(images), 1000):
        x = images[i:i + 1000].astype(np.float64).reshape(-1) / 255.0               # (B * D,)
        inner = (x > 0) & (x < 1)
        xi = x[inner]
        total += float(-np.sum(xi * np.log(xi) + (1 - xi) * np.log1p(-xi)))
    return total / len(images)


def curve_numbers(loss, n_dims, step=CURVE_STEP, window=CURVE_WINDOW):
    """How a per-batch training loss flattens: the share of its drop after ``step`` and its end level.

    ``drop_after_step`` = (L(step) - L(end)) / (L(start) - L(end)) with each L the mean
    over ``window`` batches; None when the run is too short. ``final_loss_per_dim``
    = L(end) / ``n_dims``.
    """
    loss = np.asarray(loss, dtype=np.float64)
    end = loss[-window:].mean()
    out = {"final_loss_per_dim": float(end / n_dims), "drop_after_step": None, "step": step}
    if len(loss) >= step + window:
        start, mid = loss[:window].mean(), loss[step - window // 2:step + window // 2].mean()
        out["drop_after_step"] = float((mid - end) / (start - end)) if start != end else None
    return out


def analyze(result, cfg, data, base, k, iwae_k, iwae_n, pictures=False):
    """Every number of one trained run (one seed), and the per-image arrays to compare runs.

    Parameters
    ----------
    result : :class:`tinyvae.train.Result` (its model, metrics, history)
    cfg : its TrainConfig; data : its {"train", "test"} images; base : :func:`baselines` of that data
    iwae_k, iwae_n : importance samples and test images of the IWAE bound
    pictures : also return the arrays of the figures (reconstructions, samples, ...)

    Returns
    -------
    (metrics dict, arrays dict)
    """
    model = result.model
    latent, beta = model.arch.latent, model.beta
    (tr_x, tr_y), (te_x, te_y) = data["train"], data["test"]
    d = int(np.prod(model.image_shape))
    terms = ev.negative_elbo_terms(model, te_x, streams(cfg.seed)[3])        # (M,) arrays
    test_mu, test_logvar = terms["mu"], terms["logvar"]                     # (M, L) twice
    train_mu, _ = encode_all(model, tr_x)                                   # (N, L)
    nb = pr.knn_neighbors(train_mu, test_mu, k)                             # (M, k)
    pred = pr.knn_predict(train_mu, tr_y, test_mu, k, neighbors=nb)         # (M,)
    pb = base[f"pca{latent}"]
    sse_mu = decode_mean_sse(model, test_mu, te_x)                          # (M,)
    activity = ev.unit_activity(test_mu)                                    # (L,)
    nelbo_dq = float(terms["nelbo_dequantized"].mean())
    m = dict(result.metrics)
    m.update({
        "latent": latent, "beta": beta, "likelihood": model.likelihood, "train_seconds": m.pop("seconds"),
        "knn_k": k, "knn_accuracy": float(np.mean(pred == te_y)),
        "pca_knn_accuracy": float(np.mean(pb["pred"] == te_y)),
        "pca_explained_variance_ratio": float(np.sum(base["pca"].explained_variance[:latent])
                                              / base["pca"].total_variance),
        "per_class_recall": pr.per_class_recall(pred, te_y).tolist(),
        "pca_per_class_recall": pr.per_class_recall(pb["pred"], te_y).tolist(),
        "top_confusions": pr.top_confusions(pred, te_y),
        "rec_sse_mu": float(sse_mu.mean()), "pca_rec_sse": float(pb["rec_sse"].mean()),
        "mean_image_rec_sse": float(base["mean_image_sse"].mean()),
        "active_units": int(np.sum(activity > ev.ACTIVE_THRESHOLD)),
        "unit_activity": activity.tolist(),
        "kl_per_dim": ev.kl_per_dim(test_mu, test_logvar).tolist(),
        "elbo_rec_sse": float(terms["sse"].mean()), "elbo_rec_nll": float(terms["rec_nll"].mean()),
        "elbo_kl": float(terms["kl"].mean()),
        "nelbo_nats": float(terms["nelbo"].mean()),
        "nelbo_dequantized_nats": nelbo_dq if np.isfinite(nelbo_dq) else None,
        "bits_per_dim": float(ev.bits_per_dim(nelbo_dq, d)) if np.isfinite(nelbo_dq) else None,
        "n_dims": d,
        "nll_floor_nats": nll_floor(model.likelihood, te_x),
        "iwae": iwae_numbers(model, te_x[:iwae_n], iwae_k, cfg.seed),
        "curve": curve_numbers(result.history["loss"], d),
    })
    m.pop("config", None)
    if cfg.dataset == "cifar10":
        va = pr.vehicle_animal_separability(train_mu, tr_y, test_mu, te_y, k, neighbors=nb)
        va["pca_knn_accuracy"] = pr.knn_accuracy(pb["train_z"], pr.vehicle_labels(tr_y), pb["test_z"],
                                                 pr.vehicle_labels(te_y), k)
        m["vehicle_animal"] = va
        ctd = pr.group_separability(train_mu, tr_y, test_mu, te_y, CAR_TRUCK, DEER_DOG, k)
        ctd["pca_knn_accuracy"] = pr.group_separability(pb["train_z"], tr_y, pb["test_z"], te_y,
                                                        CAR_TRUCK, DEER_DOG, k)["knn_accuracy"]
        m["car_truck_deer_dog"] = ctd
    if "classifier" in base:                                # MNIST: do reconstructions keep their digit?
        rec = np.concatenate([model.decode(test_mu[i:i + 500]) for i in range(0, len(te_x), 500)])
        rec_pred = classify_images(base, rec.astype(np.float64), tr_y, k)      # (M,)
        pca_rec = base["pca"].mean + pb["test_z"] @ base["pca"].components[:, :latent].T   # (M, D)
        pca_pred = classify_images(base, pca_rec, tr_y, k)                     # (M,)
        m["reconstruction_class"] = {
            "kept": float(np.mean(rec_pred == te_y)), "pca_kept": float(np.mean(pca_pred == te_y)),
            "originals": float(np.mean(base["classifier"]["pred_orig"] == te_y)),
            "top_confusions": pr.top_confusions(rec_pred, te_y)}
        del rec, pca_rec
    arrays = {"history": result.history, "labels": te_y, "knn_correct": pred == te_y, "sse_mu": sse_mu,
              "mu": test_mu if latent == 2 else None}
    if pictures:
        arrays.update(picture_arrays(model, cfg, te_x, te_y, test_mu))
    return m, arrays


def first_of_class(labels, classes):
    """Index of the first item of each class in ``classes``: (len(classes),) int."""
    labels = np.asarray(labels)
    out = []
    for c in classes:
        idx = np.flatnonzero(labels == c)
        out.append(int(idx[0]) if len(idx) else 0)
    return np.asarray(out)


def normal_grid(n):
    """n evenly spaced normal quantiles (i + 1/2) / n and their values Phi^-1: two (n,) arrays."""
    q = (np.arange(n) + 0.5) / n
    return q, np.array([NormalDist().inv_cdf(p) for p in q])


def picture_arrays(model, cfg, te_x, te_y, test_mu):
    """The figures' arrays: reconstructions, prior samples, interpolations, the 2-D manifold."""
    latent = model.arch.latent
    rng = np.random.default_rng([cfg.seed, 7])
    out = {}
    idx = first_of_class(te_y, range(10))
    out["recon_orig"] = te_x[idx]                                           # (10, H, W, C)
    out["recon"] = model.decode(test_mu[idx])                               # (10, H, W, C)
    out["prior"] = model.decode(rng.standard_normal((N_PRIOR, latent)))     # (P, H, W, C)
    interps = []
    for a, b in INTERP_PAIRS[cfg.dataset]:
        ia, ib = first_of_class(te_y, (a, b))
        t = np.linspace(0.0, 1.0, INTERP_STEPS)[:, None]                    # (S, 1)
        zs = test_mu[ia] + t * (test_mu[ib] - test_mu[ia])                  # (S, L)
        dec = model.decode(zs)                                              # (S, H, W, C)
        ends = [te_x[ia:ia + 1].astype(np.float32) / 255, te_x[ib:ib + 1].astype(np.float32) / 255]
        interps.append(np.concatenate([ends[0], dec, ends[1]]))             # (S + 2, H, W, C)
    out["interp"] = np.stack(interps)                                       # (P, S + 2, H, W, C)
    if latent == 2:
        q, v = normal_grid(MANIFOLD_N[cfg.dataset])
        z1, z2 = np.meshgrid(v, v[::-1])                                    # top row: largest z2
        out["manifold"] = (model.decode(np.stack([z1.ravel(), z2.ravel()], axis=1)), q, v)
    return out


# --------------------------------------------------------------------------
# over seeds
# --------------------------------------------------------------------------

def flatten(obj, prefix=""):
    """``[(dotted key, leaf value)]`` of nested dicts and lists (list items as ``key[i]``)."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out += flatten(v, f"{prefix}[{i}]")
    else:
        out.append((prefix, obj))
    return out


def seed_stats(values):
    """Mean, SD (ddof 1; None for one seed) and count of one number over seeds."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if len(v) == 0:
        return {"mean": None, "sd": None, "n": 0, "values": []}
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else None,
            "n": int(len(v)), "values": v.tolist()}


NOT_SUMMARIZED = ("epoch_test", "lr_history", "runtime_history", "top_confusions",
                  "reconstruction_class.top_confusions")


def summarize(per_seed):
    """{seed: metrics} -> {dotted key: :func:`seed_stats`} for every numeric leaf
    (except the histories and confusion lists)."""
    keys = {}
    for m in per_seed.values():
        for key, v in flatten(m):
            if key.split("[")[0] in NOT_SUMMARIZED:
                continue
            if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
                keys.setdefault(key, []).append(float(v))
    return {key: seed_stats(vals) for key, vals in keys.items()}
