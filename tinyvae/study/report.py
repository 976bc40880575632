"""REPORT.md from the study's metrics: the paper's claims judged by the numbers, tables, figures.

:func:`judge_claims` turns the measured numbers into a verdict for each of
the paper's four qualitative claims with the fixed criteria below;
:func:`render` writes the Markdown. Both read only the ``metrics.json``
structure that ``run_all.py`` writes::

    {"study": {...}, "runs": {"simple_mnist": {...}, ...},
     "comparisons": {...}, "claims": {...}}
"""
import math

import numpy as np

from ..data import CLASS_NAMES, PIXEL_SCALE
from ..evaluate import ACTIVE_THRESHOLD, DECODER_VARIANCE
from ..probes import VEHICLE_CLASSES

CLUSTER_ACCURACY = 0.8     # (a): kNN accuracy of the 2-D MNIST latent that counts as distinct clusters
SEPARATION_MARGIN = 0.05   # (b): accuracy gain over the majority rate that counts as a separation
Z = 2.0                    # a difference counts when it exceeds Z standard errors
RUN_TITLES = {"simple_mnist": "simple / MNIST", "simple_cifar10": "simple / CIFAR-10",
              "highdim_cifar10": "highdim / CIFAR-10", "deep_cifar10": "deep / CIFAR-10"}
FIGURE_CAPTIONS = {
    "fig1": "Figure 1. Example training images of MNIST and CIFAR-10, one column per class.",
    "fig2": "Figure 2. simple VAE on MNIST: latent means of the test images, coloured by class.",
    "fig3": "Figure 3. simple VAE on CIFAR-10: latent means of the test images by class (left) "
            "and vehicles vs animals (right).",
    "fig4": "Figure 4. deep VAE on CIFAR-10: latent means of the test images by class (left) "
            "and vehicles vs animals (right).",
    "fig5": "Figure 5. Per-batch training loss, reconstruction and KL of the four runs.",
    "fig6": "Figure 6. MNIST test images (top) and the simple VAE's reconstructions decode(mu).",
    "fig7": "Figure 7. CIFAR-10 test images (top) and the reconstructions decode(mu) of the "
            "simple, highdim and deep VAEs.",
    "fig8a": "Figure 8a. The simple/MNIST decoder on a grid of normal quantiles of the 2-D latent.",
    "fig8b": "Figure 8b. The simple/CIFAR-10 decoder on a grid of normal quantiles of the 2-D latent.",
    "fig8c": "Figure 8c. The deep/CIFAR-10 decoder on a grid of normal quantiles of the 2-D latent.",
    "fig9": "Figure 9. Samples from the prior, decode(z) with z ~ N(0, I), for every run.",
    "fig10": "Figure 10. Interpolations between the latent means of two test images.",
    "fig11": "Figure 11. Per-dimension KL and activity Var_x(mu_d) on the test set (active units).",
    "fig12": "Figure 12. Separability: kNN accuracy of latent means vs a PCA-of-pixels baseline of "
             "the same dimension, and vehicle-vs-animal accuracy vs the majority rate.",
}


# --------------------------------------------------------------------------
# numbers
# --------------------------------------------------------------------------

def finite_or_null(obj):
    """A JSON-ready copy: numpy scalars/arrays to Python, non-finite floats to None."""
    if isinstance(obj, dict):
        return {str(k): finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_null(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return finite_or_null(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    return obj


def flatten(obj, prefix=""):
    """``[(dotted key, leaf value)]`` of nested dicts and lists (list items as ``key[i]``)."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += flatten(v, f"{prefix}[{i}]")
    else:
        out.append((prefix, obj))
    return out


def fmt(v):
    """A number for a table: ints as they are, floats to about 4 significant digits."""
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != 0 and (abs(v) >= 1000 or abs(v) < 1e-3):
            return f"{v:.1f}" if abs(v) >= 1000 else f"{v:.3g}"
        return f"{v:.4g}"
    return str(v)


def _verdict(ok):
    return "supported" if ok else "not supported"


def judge_claims(summary):
    """The paper's claims (a)-(d), each with its measured numbers and a computed verdict.

    Parameters
    ----------
    summary : the metrics.json structure (needs ``runs`` and ``comparisons``)

    Returns
    -------
    {"a": {"id", "claim", "criterion", "evidence", "verdict", "numbers"}, "b": ..., "c": ..., "d": ...}
    """
    runs, comp = summary["runs"], summary["comparisons"]
    out = {}

    m = runs["simple_mnist"]
    acc, base, k = m["knn_accuracy"], m["pca_knn_accuracy"], m["knn_k"]
    out["a"] = {
        "claim": "MNIST digits form distinct clusters in the simple VAE's 2-D latent space",
        "criterion": f"kNN accuracy (k={k}) of the 2-D test latent means >= {CLUSTER_ACCURACY}",
        "evidence": f"kNN accuracy {acc:.3f} on {m['n_test']} test images (chance 0.1; a 2-D PCA of "
                    f"the pixels gets {base:.3f})",
        "verdict": _verdict(acc >= CLUSTER_ACCURACY),
        "numbers": {"knn_accuracy": acc, "pca_knn_accuracy": base},
    }

    va = runs["simple_cifar10"]["vehicle_animal"]
    gain = va["knn_accuracy"] - va["majority_rate"]
    others = ", ".join(f"{RUN_TITLES[r]} {runs[r]['vehicle_animal']['knn_accuracy']:.3f}"
                       for r in ("highdim_cifar10", "deep_cifar10"))
    out["b"] = {
        "claim": f"the simple VAE's CIFAR-10 latent space separates vehicles ({', '.join(VEHICLE_CLASSES)}) "
                 f"from animals",
        "criterion": f"vehicle-vs-animal kNN accuracy exceeds the majority rate by >= {SEPARATION_MARGIN} "
                     f"and by > {Z:g} standard errors",
        "evidence": f"kNN {va['knn_accuracy']:.3f}, linear probe {va['linear_accuracy']:.3f} vs majority "
                    f"rate {va['majority_rate']:.3f} (gain {gain:+.3f}, SE {va['se']:.3f}); "
                    f"kNN of the other CIFAR-10 runs: {others}",
        "verdict": _verdict(gain >= SEPARATION_MARGIN and gain > Z * va["se"]),
        "numbers": {"knn_accuracy": va["knn_accuracy"], "linear_accuracy": va["linear_accuracy"],
                    "majority_rate": va["majority_rate"], "gain": gain, "se": va["se"]},
    }

    c = comp["cifar10_rec_simple_minus_highdim"]
    s, h = runs["simple_cifar10"]["test_rec"], runs["highdim_cifar10"]["test_rec"]
    out["c"] = {
        "claim": "the 16-D highdim VAE reconstructs CIFAR-10 better than the 2-D simple VAE",
        "criterion": f"test reconstruction error (SSE per image) of highdim below simple by > {Z:g} "
                     f"standard errors of the paired per-image difference",
        "evidence": f"test rec highdim {h:.2f} vs simple {s:.2f} (simple - highdim = {c['diff']:+.2f}, "
                    f"SE {c['se']:.2f})",
        "verdict": _verdict(c["diff"] > Z * c["se"] and c["diff"] > 0),
        "numbers": {"test_rec_highdim": h, "test_rec_simple": s, **c},
    }

    d = comp["cifar10_knn_deep_minus_simple"]
    ds, ss = runs["deep_cifar10"]["knn_accuracy"], runs["simple_cifar10"]["knn_accuracy"]
    ok = d["diff"] > Z * d["se"] and d["diff"] > 0
    note = "" if ok or d["diff"] <= 0 else f"; the difference is positive but within {Z:g} SE"
    out["d"] = {
        "claim": "the deep VAE separates CIFAR-10 classes slightly better than the simple VAE",
        "criterion": f"10-class kNN accuracy of deep above simple by > {Z:g} standard errors of the "
                     f"paired difference",
        "evidence": f"kNN accuracy deep {ds:.3f} vs simple {ss:.3f} (difference {d['diff']:+.3f}, "
                    f"SE {d['se']:.3f}{note})",
        "verdict": _verdict(ok),
        "numbers": {"knn_deep": ds, "knn_simple": ss, **d},
    }
    for key, v in out.items():
        v["id"] = key
    return out


# --------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------

def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _duration(seconds):
    seconds = float(seconds or 0)
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min ({seconds:.0f} s)"
    return f"{seconds / 3600:.2f} h ({seconds:.0f} s)"


def results_table(runs):
    """The main per-run table (Markdown): one column per run."""
    names = list(runs)

    def row(label, get):
        vals = []
        for r in names:
            try:
                vals.append(fmt(get(runs[r])))
            except (KeyError, TypeError):
                vals.append("–")
        return [label] + vals

    rows = [
        row("latent dims / KL weight beta", lambda m: f"{m['latent']} / {fmt(m['beta'])}"),
        row("training / test images", lambda m: f"{m['n_train']} / {m['n_test']}"),
        row("epochs / steps", lambda m: f"{m['epochs']} / {m['steps']}"),
        row("training time (s)", lambda m: m["train_seconds"]),
        row("test loss (rec + beta KL)", lambda m: m["test_loss"]),
        row("test rec (SSE per image)", lambda m: m["test_rec"]),
        row("test KL (nats)", lambda m: m["test_kl"]),
        row("-ELBO (nats / image)", lambda m: m["nelbo_nats"]),
        row("-ELBO, dequantized (nats / image)", lambda m: m["nelbo_dequantized_nats"]),
        row("bits / dim (upper bound)", lambda m: m["bits_per_dim"]),
        row("kNN accuracy, 10 classes (latent means)", lambda m: m["knn_accuracy"]),
        row("kNN accuracy, PCA of pixels (same dims)", lambda m: m["pca_knn_accuracy"]),
        row("PCA explained variance", lambda m: m["pca_explained_variance_ratio"]),
        row("vehicle/animal kNN accuracy", lambda m: m["vehicle_animal"]["knn_accuracy"]),
        row("vehicle/animal linear accuracy", lambda m: m["vehicle_animal"]["linear_accuracy"]),
        row("vehicle/animal majority rate", lambda m: m["vehicle_animal"]["majority_rate"]),
        row(f"active units (Var(mu) > {ACTIVE_THRESHOLD:g})", lambda m: f"{m['active_units']} / {m['latent']}"),
        row("KL per dim (nats)", lambda m: ", ".join(fmt(v) for v in m["kl_per_dim"])),
    ]
    return _table(["metric"] + [RUN_TITLES.get(r, r) for r in names], rows)


def _jobs_text(st):
    jobs, threads = st.get("jobs", 1), st.get("threads")
    th = f"{threads} thread{'s' * (threads != 1)}" if threads else "all cores"
    if jobs > 1:
        return f"{jobs} runs at a time, each in its own process with {th} (`--jobs {jobs}`)"
    return f"one run after another in the study process, {th} (`--jobs 1`)"


def data_lines(data, runs):
    """The report's "Data" section: each dataset's files, their sha256, whether they are the
    official ones; and the digest of each run's training images (what its checkpoint records)."""
    if not data:
        return []
    official = {True: "the official files", False: "**not** the official files (another copy, e.g. a "
                "mirror or a rebuilt archive: the numbers may differ from the paper's data)",
                None: "official or not unknown (tensorflow-datasets, which holds the official "
                "checksums, is not installed)"}
    out = ["## Data", ""]
    for ds, d in data.items():
        out += [f"- {ds}: {official[d.get('official')]}; fingerprint `{d['fingerprint']}` "
                f"(`sha256sum` of the files below, then of that list)"]
        out += [f"  - `{rel}` sha256 `{digest}`" for rel, digest in d["files"].items()]
    out += [f"- {RUN_TITLES.get(r, r)} trained on images with sha256 `{m['train_images_sha256']}`"
            for r, m in runs.items() if m.get("train_images_sha256")]
    return out + [""]


def render(summary, figure_paths, explorer_paths=None):
    """The whole REPORT.md text.

    Parameters
    ----------
    summary : the metrics.json structure, with ``claims`` (see :func:`judge_claims`)
    figure_paths : {figure key: path relative to REPORT.md}, keys as in ``FIGURE_CAPTIONS``
    explorer_paths : {run name: path of its static explorer page relative to REPORT.md}
    """
    st, runs, claims = summary["study"], summary["runs"], summary["claims"]
    quick = st.get("preset") == "quick"
    any_run = next(iter(runs.values()))
    out = ["# tinyvae study: convolutional VAEs on MNIST and CIFAR-10", ""]
    if quick:
        out += ["> **Quick preset** (`run_all.py --quick`): every run trained for "
                f"{st['epochs']} epoch(s) on a small subset. These numbers exercise the pipeline; "
                "they are **not** the paper's protocol and the verdicts below say nothing about it. "
                "Run `python run_all.py` for the full study.", ""]
    elif st.get("preset") == "custom":
        out += ["> **Custom settings** (epochs or subset sizes overridden on the command line): "
                f"{st['epochs']} epoch(s); see the image counts below. Not the paper's protocol.", ""]
    subsets = ", ".join(f"{RUN_TITLES.get(r, r)}: {runs[r]['n_train']} train / "
                        f"{runs[r]['n_test']} test" for r in runs)
    out += [
        f"- Protocol: Adam, learning rate {fmt(st['lr'])}, batch {st['batch_size']}, "
        f"{st['epochs']} epoch(s), seed {st['seed']}; images {subsets}.",
        f"- Wall time of this invocation of the study: **{_duration(st['wall_seconds'])}**"
        + (" (resumed: runs finished earlier were not retrained)" if st.get("resumed") else "")
        + f"; training time summed over the four runs (from their checkpoints): "
          f"{_duration(st['train_seconds_total'])}.",
        f"- Training: {_jobs_text(st)}.",
        f"- Peak memory (max RSS) of the study process: {st['peak_rss_mib']:.0f} MiB"
        + (f"; of all its processes together (sampled while the runs trained side by side): "
           f"{st['peak_rss_all_mib']:.0f} MiB." if st.get("jobs", 1) > 1 and st.get("runs_trained_here")
           else "."),
        "",
    ]
    out += data_lines(st.get("data"), runs)
    out += [
        "## The paper's claims, checked",
        "",
        "Each verdict is computed from the numbers by the stated criterion "
        "(`tinyvae.study.report.judge_claims`); SE = standard error.",
        "",
    ]
    rows = [[f"({c['id']}) {c['claim']}", c["evidence"], c["criterion"], f"**{c['verdict']}**"]
            for c in claims.values()]
    out += [_table(["claim", "measured", "criterion", "verdict"], rows), ""]
    out += ["## Results", "", results_table(runs), ""]
    rec = summary["comparisons"]
    out += ["Paired comparisons on the same CIFAR-10 test images: "
            f"rec(simple) - rec(highdim) = {fmt(rec['cifar10_rec_simple_minus_highdim']['diff'])} "
            f"(SE {fmt(rec['cifar10_rec_simple_minus_highdim']['se'])}); "
            f"kNN acc(deep) - kNN acc(simple) = {fmt(rec['cifar10_knn_deep_minus_simple']['diff'])} "
            f"(SE {fmt(rec['cifar10_knn_deep_minus_simple']['se'])}).", ""]
    out += ["## Figures", ""]
    for key, caption in FIGURE_CAPTIONS.items():
        if key in figure_paths:
            out += [f"![{caption}]({figure_paths[key]})", "", f"*{caption}*", ""]
    if explorer_paths:
        out += ["## Latent explorers", "",
                "Self-contained pages (no server, no network): the test set's latent means by class; "
                "the pointer shows the decode of the nearest point of a fine grid; clicking two points "
                "shows the interpolation between them. `python -m tinyvae explore RUN_DIR` serves the "
                "same page live over a run's checkpoint.", ""]
        out += [f"- [{RUN_TITLES.get(r, r)}]({p})" for r, p in explorer_paths.items()] + [""]
    d_mnist = runs.get("simple_mnist", any_run)["n_dims"]
    over8 = sum(1 for m in runs.values() if m.get("bits_per_dim") is not None and m["bits_per_dim"] > 8)
    out += [
        "## Conventions",
        "",
        f"- **Reconstruction error** (`rec`): sum over pixels and channels of the squared error "
        f"between the image (pixels / {PIXEL_SCALE}) and the decoder output, per image, with one "
        f"reparameterized sample z (the training loss's term). The test numbers are each run's "
        f"evaluation after its last epoch. Reconstruction figures show decode(mu), the decoder at "
        f"the posterior mean.",
        f"- **Negative ELBO in nats**: squared error is the negative log-likelihood of a Gaussian "
        f"decoder with fixed variance {DECODER_VARIANCE:g}, so -log p(x|z) = SSE + (D/2) log(pi) "
        f"with D = H W C ({d_mnist} for MNIST, 3072 for CIFAR-10); constants are included. The KL "
        f"term has weight 1 for every run (the deep VAE was *trained* with beta = 0.5, but its ELBO "
        f"uses 1). One sample z per test image, the same noise as the run's test loss. This is a "
        f"density over x = pixels / {PIXEL_SCALE} in [0, 1]^D.",
        f"- **Bits per dimension**: with uniform dequantization y = (k + u) / {PIXEL_SCALE}, "
        f"u ~ U[0,1)^D of the 8-bit pixels k, Jensen's inequality gives "
        f"-log P(k) <= E_u[-log p(y)] + D log({PIXEL_SCALE}). For this Gaussian decoder E_u is exact: "
        f"E_u SSE = sum[(x - xhat)^2 + (x - xhat)/{PIXEL_SCALE} + 1/(3 * {PIXEL_SCALE}^2)] with "
        f"x = k / {PIXEL_SCALE}; the encoder sees x, which any q may. So "
        f"bpd = (-ELBO_dequantized + D log {PIXEL_SCALE}) / (D log 2) is an upper bound on the "
        f"code length of the discretized model, in bits per pixel channel; the only estimate in it "
        f"is the one-sample ELBO. The scaling is {PIXEL_SCALE}, as the model's inputs, not 256. "
        f"A fixed variance of 1/2 (standard deviation 0.71 on a [0, 1] pixel range) is very broad, "
        f"so this bound measures the likelihood the loss implies, not the visual quality of the "
        f"reconstructions; {over8} of the {len(runs)} runs' bounds are above 8 bits per dimension, "
        f"the cost of storing the raw bytes.",
        f"- **kNN accuracy**: the k = {st['knn_k']} nearest training latent means (Euclidean; "
        f"all training images of the run), majority vote, ties to the class of the nearest "
        f"neighbour; fitted on the training set's mu, evaluated on the test set's mu.",
        "- **PCA baseline**: PCA of the training pixels (pixels / 255, covariance eigenvectors) "
        "with as many components as the model has latent dims; the same kNN on the projections.",
        f"- **Vehicles vs animals**: vehicles = {', '.join(VEHICLE_CLASSES)}; animals = the other six "
        f"classes of CIFAR-10 ({', '.join(c for c in CLASS_NAMES['cifar10'] if c not in VEHICLE_CLASSES)}). "
        f"kNN as above on the binary label, and a linear probe (logistic regression by Newton's "
        f"method on standardized latents). The majority rate is the accuracy of always guessing "
        f"the training set's majority group (animals); its SE is sqrt(p(1-p)/n).",
        f"- **Active units** (Burda et al., 2016): dimension d is active when "
        f"Cov_x(E_q[z_d]) = Var over the test images of mu_d exceeds {ACTIVE_THRESHOLD:g}. "
        f"KL per dim is KL(q(z_d|x) || N(0,1)) averaged over the test images.",
        "",
        "## All numbers (metrics.json)",
        "",
    ]
    flat = [(k, v) for k, v in flatten({"study": st, "runs": runs, "comparisons": summary["comparisons"]})
            if isinstance(v, (int, float)) or v is None]
    out += [_table(["key", "value"], [(f"`{k}`", fmt(v)) for k, v in flat]), ""]
    return "\n".join(out)
