"""REPORT.md from the study's metrics: claims, results, likelihoods, differences from the paper, figures.

:func:`render` reads only the ``metrics.json`` structure that ``run_all.py``
writes (the verdicts come from :mod:`tinyvae.study.claims`)::

    {"study": {...}, "runs": {"simple_mnist": {"config": {...}, "seeds": {"0": {...}, ...},
                              "summary": {"knn_accuracy": {"mean", "sd", "n", "values"}, ...}}, ...},
     "comparisons": {...}, "claims": {...}}
"""
import math

import numpy as np

from ..data import CLASS_NAMES, PIXEL_SCALE
from ..evaluate import ACTIVE_THRESHOLD, DECODER_VARIANCE, bits_per_dim, gaussian_nll_const
from ..probes import VEHICLE_CLASSES
from ..threads import describe_blas
from .analysis import CLASSIFIER_DIMS
from .claims import T95

RUN_TITLES = {"simple_mnist": "simple / MNIST", "simple_cifar10": "simple / CIFAR-10",
              "highdim_cifar10": "highdim / CIFAR-10", "deep_cifar10": "deep / CIFAR-10",
              "deep_cifar10_beta1": "deep / CIFAR-10, beta 1", "simple_cifar10_beta0.5":
              "simple / CIFAR-10, beta 0.5", "simple_mnist_bernoulli": "simple / MNIST, Bernoulli"}
# the floor of the Gaussian decoder's bits/dim: a perfect reconstruction, -log p(x|z) = (D/2) log(pi)
BPD_FLOOR = float(bits_per_dim(gaussian_nll_const(1), 1))
FIGURE_CAPTIONS = {
    "fig1": "Figure 1. Example training images of MNIST and CIFAR-10, one column per class.",
    "fig2": "Figure 2. simple VAE on MNIST: latent means of the test images, coloured by class.",
    "fig3": "Figure 3. simple VAE on CIFAR-10: latent means of the test images by class (left) "
            "and vehicles vs animals in other colours (right); axes clipped where the figure says so.",
    "fig4": "Figure 4. deep VAE on CIFAR-10: latent means of the test images by class (left) "
            "and vehicles vs animals in other colours (right); axes clipped where the figure says so.",
    "fig5": "Figure 5. Per-batch training loss, reconstruction and KL of every run, and the loss per "
            "pixel dimension so MNIST (784) and CIFAR-10 (3072) compare.",
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
             "the same dimension, and vehicle-vs-animal accuracy vs PCA and the majority rate "
             "(error bars: SD over seeds).",
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
    for r, v in runs.items():
        digests = sorted({m["train_images_sha256"] for m in v["seeds"].values() if m.get("train_images_sha256")})
        if digests:
            out.append(f"- {title(r)} trained on images with sha256 " + ", ".join(f"`{d}`" for d in digests)
                       + (" (one per seed: subsets differ)" if len(digests) > 1 else ""))
    return out + [""]




def title(run):
    return RUN_TITLES.get(run, run)


def ms(run, key, digits=None, sign=1):
    """A table cell: "mean ± SD" over seeds of ``sign * run["summary"][key]`` (the mean alone for one seed)."""
    st = run["summary"].get(key)
    if not st or st["mean"] is None:
        return "–"
    st = dict(st, mean=sign * st["mean"])
    if st["n"] == 1 or st["sd"] is None:
        return fmt(st["mean"]) if digits is None else f"{st['mean']:.{digits}f}"
    if digits is None:
        return f"{fmt(st['mean'])} ± {fmt(st['sd'])}"
    return f"{st['mean']:.{digits}f} ± {st['sd']:.{digits}f}"


def _first(run):
    return next(iter(run["seeds"].values()))


RESULT_ROWS = [
    ("training time (s)", "train_seconds", 0),
    ("test loss (rec + beta KL)", "test_loss", 2),
    ("test rec (one z sample; SSE or cross-entropy)", "test_rec", 2),
    ("test KL (nats)", "test_kl", 2),
    ("SSE of decode(mu) per image", "rec_sse_mu", 2),
    ("  baseline: PCA of the pixels, same dims", "pca_rec_sse", 2),
    ("  baseline: the mean training image", "mean_image_rec_sse", 2),
    ("kNN accuracy, 10 classes (latent means)", "knn_accuracy", 3),
    ("  baseline: PCA of the pixels, same dims", "pca_knn_accuracy", 3),
    ("PCA explained variance", "pca_explained_variance_ratio", 3),
    ("vehicle/animal kNN accuracy", "vehicle_animal.knn_accuracy", 3),
    ("  baseline: PCA of the pixels, same dims", "vehicle_animal.pca_knn_accuracy", 3),
    ("vehicle/animal linear probe", "vehicle_animal.linear_accuracy", 3),
    ("vehicle/animal majority rate", "vehicle_animal.majority_rate", 3),
    ("car+truck vs deer+dog kNN accuracy", "car_truck_deer_dog.knn_accuracy", 3),
    ("  baseline: PCA of the pixels, same dims", "car_truck_deer_dog.pca_knn_accuracy", 3),
    ("MNIST digit kept by decode(mu)", "reconstruction_class.kept", 3),
    ("  baseline: by PCA reconstructions", "reconstruction_class.pca_kept", 3),
    ("  ceiling: the originals", "reconstruction_class.originals", 3),
    (f"active units (Var(mu) > {ACTIVE_THRESHOLD:g})", "active_units", None),
]


def results_table(runs):
    """The main per-run table (Markdown): one column per run, mean ± SD over seeds."""
    rows = [["latent dims / KL weight / decoder"] + [f"{_first(v)['latent']} / {fmt(_first(v)['beta'])} / "
                                                      f"{_first(v)['likelihood']}" for v in runs.values()],
            ["seeds"] + [", ".join(v["seeds"]) for v in runs.values()],
            ["training / test images"] + [f"{_first(v)['n_train']} / {_first(v)['n_test']}" for v in runs.values()],
            ["epochs / steps"] + [f"{_first(v)['epochs']} / {_first(v)['steps']}" for v in runs.values()]]
    rows += [[label] + [ms(v, key, digits) for v in runs.values()] for label, key, digits in RESULT_ROWS
             if any(key in v["summary"] for v in runs.values())]
    return _table(["metric"] + [title(r) for r in runs], rows)


def likelihood_table(runs, st):
    """ELBO, IWAE bound and their gap per run."""
    rows = []
    for r, v in runs.items():
        f = _first(v)
        rows.append([title(r), f["likelihood"], ms(v, "nll_floor_nats", 1), ms(v, "nelbo_nats", 1),
                     ms(v, "iwae.elbo_k1", 1, -1),
                     ms(v, "iwae.log_px", 1, -1), f"{f['iwae']['log_px_se']:.1f}", ms(v, "iwae.gap", 2),
                     ms(v, "bits_per_dim", 3) if f["likelihood"] == "gaussian" else "n/a"])
    return _table(["run", "decoder", "floor of -log p(x \\| z) (nats)", "-ELBO, all test images (nats)",
                   f"-ELBO (k = 1), first {st['iwae_images']} images",
                   f"IWAE bound on -log p(x) (k = {st['iwae_k']}), same images",
                   "its SE over the images (first seed)", "gap (how much tighter)",
                   "bits / dim (upper bound)"], rows)


def claims_table(claims):
    rows = [[f"({c['id']}) {c['claim']}", c.get("criterion", ""), c.get("baseline", ""), c["evidence"],
             str(c.get("seeds", "")), f"**{c['verdict']}**"] for c in claims.values()]
    return _table(["claim", "criterion", "compared with", "measured (mean ± SD over seeds)", "seeds",
                   "verdict"], rows)


def differences_lines(data):
    """What this study does differently from the paper, and why (``data``: the study's provenance)."""
    return [
        "## Differences from the paper",
        "",
        "- **Loss reduction.** The paper's reconstruction loss is a per-pixel *mean* squared error; "
        "tinyvae *sums* it over the pixels of each image (then averages over the batch). With a mean, the "
        "KL term weighs as much as 784 (MNIST) or 3072 (CIFAR-10) times more against the reconstruction "
        "and the latent collapses towards the prior (lesson 10 shows it); the sum is the Gaussian "
        "log-likelihood with variance 1/2 that an ELBO needs.",
        "- **The decoder** is inferred, not stated: the paper describes it only as the encoder's "
        "mirror (\"two conv and two flat layers\"). tinyvae's: dense layers in reverse, a dense layer "
        "to the last conv's volume, then 2x upsampling + 3x3 transposed convs in reverse, and a last "
        "3x3 transposed conv to the image channels with a Sigmoid (Gaussian) or logits (Bernoulli).",
        "- **Encoder heads.** mu and log-variance come from two dense heads on the last dense layer; "
        "the sample is z = mu + exp(logvar / 2) * eps.",
        "- **Data.** The copies used here are listed under Data with their sha256; a dataset whose "
        "digests differ from the ones tensorflow-datasets registers is marked *not official*"
        + ("." if all(d.get("official") for d in (data or {}).values()) else
           ", as " + " and ".join(ds for ds, d in (data or {}).items() if not d.get("official"))
           + " here. The CIFAR-10 archive in this project's shared data, for one, is rebuilt from a JPEG "
             "(quality 75) mirror in another image order: its pixels vary less than the official ones, "
             "which lowers squared errors and changes the PCA numbers; the paper used the official files."),
        "- **Evaluation the paper does not have:** the baselines, several seeds, the ELBO and IWAE "
        "bound, the KL-weight ablation and the Bernoulli decoder (`--extra-runs`).",
        "",
    ]


def render(summary, figure_paths, explorer_paths=None):
    """The whole REPORT.md text.

    Parameters
    ----------
    summary : the metrics.json structure, with ``claims`` (see :func:`tinyvae.study.claims.judge_claims`)
    figure_paths : {figure key: path relative to REPORT.md}, keys as in ``FIGURE_CAPTIONS``
    explorer_paths : {run name: path of its static explorer page relative to REPORT.md}
    """
    st, runs, claims = summary["study"], summary["runs"], summary["claims"]
    n_seeds = len(st["seeds"])
    out = ["# tinyvae study: convolutional VAEs on MNIST and CIFAR-10", ""]
    if st.get("preset") == "quick":
        out += ["> **Quick preset** (`run_all.py --quick`): every run trained for "
                f"{st['epochs']} epoch(s) on a small subset. These numbers exercise the pipeline; "
                "they are **not** the paper's protocol and the verdicts below say nothing about it. "
                "Run `python run_all.py` for the full study.", ""]
    elif st.get("preset") == "custom":
        out += ["> **Custom settings** (epochs or subset sizes overridden on the command line): "
                f"{st['epochs']} epoch(s); see the image counts below. Not the paper's protocol.", ""]
    out += [
        f"- Protocol: Adam, learning rate {fmt(st['lr'])}, batch {st['batch_size']}, {st['epochs']} "
        f"epoch(s); seeds {', '.join(map(str, st['seeds']))}; {len(runs)} runs: "
        + "; ".join(f"{title(r)} ({_first(v)['n_train']} train / {_first(v)['n_test']} test images)"
                    for r, v in runs.items()) + ".",
        f"- Wall time of this invocation of the study: **{_duration(st['wall_seconds'])}**"
        + (" (resumed: runs finished earlier were not retrained)" if st.get("resumed") else "")
        + f"; training time summed over all runs and seeds (from their checkpoints): "
          f"{_duration(st['train_seconds_total'])}.",
        f"- Training: {_jobs_text(st)}."
        + (f" NumPy's BLAS: {describe_blas(st['blas'])}; its kernel sets the speed and the last "
           f"digits of every matrix product." if st.get("blas") else ""),
        f"- Peak memory (max RSS) of the study process: {st['peak_rss_mib']:.0f} MiB"
        + (f"; of all its processes together (sampled while the runs trained side by side): "
           f"{st['peak_rss_all_mib']:.0f} MiB." if st.get("jobs", 1) > 1 and st.get("runs_trained_here")
           else "."),
        "",
    ]
    out += data_lines(st.get("data"), runs)
    spread = (f"With {n_seeds} seeds a difference counts when its one-sided 95% Student-t bound over the "
              f"seeds (t = {T95.get(n_seeds - 1, 1.645):.2f}) excludes zero: the spread between training "
              f"seeds decides, not the test set's sampling error." if n_seeds > 1 else
              "With one seed the spread between training seeds is unknown: a difference counts beyond 2 "
              "test-sampling standard errors, and every verdict says so. Run with `--seeds 3`.")
    out += ["## The paper's claims, checked", "",
            "Each verdict is computed from the numbers by the stated criterion "
            "(`tinyvae.study.claims`), against the stated baseline. " + spread, "",
            claims_table(claims), "",
            "## Results", "", f"Mean ± SD over {n_seeds} seeds." if n_seeds > 1 else "One seed.", "",
            results_table(runs), ""]
    out += ["## Likelihood: ELBO and IWAE bound", "",
            f"Per test image, in nats, on x = pixels / {PIXEL_SCALE} (the density the training loss implies). "
            f"The IWAE bound (Burda et al., 2016) averages k importance weights p(x, z_j) / q(z_j | x) inside "
            f"the log (log-mean-exp in float64) on the first {st['iwae_images']} test images; k = 1 is the "
            f"ELBO with the KL sampled. The gap is how much tighter k = {st['iwae_k']} is.",
            f"For the Gaussian decoder with variance 1/2, -log p(x|z) >= (D/2) log(pi), so no such model can "
            f"go below {BPD_FLOOR:.2f} bits per dimension ((1/2) ln(pi) + ln {PIXEL_SCALE}, over ln 2): the "
            f"bits/dim column measures how close each run is to that floor, not image quality. The Bernoulli "
            f"decoder's cross-entropy on grey levels is not a density on continuous pixels (no bits/dim) and "
            f"cannot go below the test images' own binary entropy (its floor column): its nats are not "
            f"comparable with the Gaussian rows, nor with the about 90 nats that Bernoulli VAEs reach on "
            f"*binarized* MNIST (e.g. pythae's benchmarks), whose floor is 0.", "",
            likelihood_table(runs, st), ""]
    out += differences_lines(st.get("data"))
    out += ["## Figures", "",
            "Pictures show each run's first seed; Figure 12 shows every seed." if n_seeds > 1 else "", ""]
    for key, caption in FIGURE_CAPTIONS.items():
        if key in figure_paths:
            out += [f"![{caption}]({figure_paths[key]})", "", f"*{caption}*", ""]
    if explorer_paths:
        out += ["## Latent explorers", "",
                "Self-contained pages (no server, no network): the test set's latent means by class; "
                "the pointer shows the decode of the nearest point of a fine grid; clicking two points "
                "shows the interpolation between them. `python -m tinyvae explore RUN_DIR` serves the "
                "same page live over a run's checkpoint.", ""]
        out += [f"- [{title(r)}]({p})" for r, p in explorer_paths.items()] + [""]
    out += conventions(st)
    return "\n".join(out)


def conventions(st):
    """The report's definitions of every number."""
    return [
        "## Conventions",
        "",
        f"- **Reconstruction error**: `test rec` is the training loss's term on the test set, one "
        f"reparameterized sample z per image (squared error summed over pixels / {PIXEL_SCALE}, or the "
        f"Bernoulli cross-entropy). `SSE of decode(mu)` is the squared error of the reconstruction at the "
        f"posterior mean, the picture the figures show, compared with the rank-L PCA reconstruction "
        f"(L = latent dims) and the mean training image.",
        f"- **Negative ELBO in nats**: Gaussian decoder with fixed variance {DECODER_VARIANCE:g}: "
        f"-log p(x|z) = SSE + (D/2) log(pi) with D = H W C (784 for MNIST, 3072 for CIFAR-10); constants "
        f"included. KL weight 1 for every run (whatever beta it was trained with). One sample z per test "
        f"image, the same noise as the run's test loss.",
        f"- **Bits per dimension** (Gaussian): with uniform dequantization y = (k + u) / {PIXEL_SCALE}, "
        f"Jensen's inequality gives -log P(k) <= E_u[-log p(y)] + D log({PIXEL_SCALE}); E_u is exact in "
        f"closed form for this decoder, so bpd = (-ELBO_dequantized + D log {PIXEL_SCALE}) / (D log 2) "
        f"bounds the code length of the 8-bit pixels.",
        f"- **kNN accuracy**: the k = {st['knn_k']} nearest training latent means (Euclidean), majority "
        f"vote, ties to the class of the nearest neighbour; per-class recall for claim (a).",
        "- **PCA baseline**: PCA of the training pixels (pixels / 255) with as many components as the "
        "model has latent dims; the same kNN on the projections, and the rank-L reconstruction.",
        f"- **Vehicles vs animals**: vehicles = {', '.join(VEHICLE_CLASSES)}; animals = the other six classes "
        f"({', '.join(c for c in CLASS_NAMES['cifar10'] if c not in VEHICLE_CLASSES)}). kNN on the binary "
        f"label, a linear probe (logistic regression by Newton's method on standardized latents), and the "
        f"majority rate (always guessing the training set's majority group). Car+truck vs deer+dog: the "
        f"same kNN on the test images of those four classes.",
        f"- **Digit kept**: a pixel classifier (kNN, k = {st['knn_k']}, on a {CLASSIFIER_DIMS}-D PCA of the "
        f"MNIST training images) labels decode(mu); the rate it matches the true digit, next to the rate "
        f"on the original images.",
        f"- **Active units** (Burda et al., 2016): dimension d is active when Var over the test images of "
        f"mu_d exceeds {ACTIVE_THRESHOLD:g}.",
        "- **Seeds**: each seed sets the initial weights, the batch order, the noise and any subsets. "
        "SD is the standard deviation over seeds (ddof 1); every number of every seed is in metrics.json.",
    ]
