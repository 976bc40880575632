"""The study's figures, drawn with matplotlib's object API (no pyplot).

Every function builds a :class:`matplotlib.figure.Figure` of its own, saves
it as a PNG to ``path`` with the Agg renderer and returns ``path``; nothing
touches pyplot's global state, so figures never pile up in memory and the
caller's backend is left alone.

Images are uint8 or floats in [0, 1], NHWC; one channel is drawn in gray.
"""
import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..checkpoint import atomic_write

DPI = 110
CLASS_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")   # tab10
RUN_COLORS = {"simple_mnist": "#1f77b4", "simple_cifar10": "#ff7f0e",
              "highdim_cifar10": "#2ca02c", "deep_cifar10": "#d62728"}
EXTRA_COLORS = CLASS_COLORS[4:]          # the tab10 colours the paper runs leave free
EXTRA_STYLES = ("--", ":", "-.")
GROUP_COLORS = ("#000000", "#b0b0b0")    # black and light grey: no class colour of tab10


def run_styles(runs):
    """{run name: (colour, line style)}: paper runs keep ``RUN_COLORS``, solid; other names, sorted,
    take ``EXTRA_COLORS`` dashed, then dotted, then dash-dotted (distinct for up to 18 of them)."""
    runs = list(runs)
    styles = {r: (RUN_COLORS[r], "-") for r in runs if r in RUN_COLORS}
    for i, r in enumerate(sorted(r for r in runs if r not in RUN_COLORS)):
        q, c = divmod(i, len(EXTRA_COLORS))
        styles[r] = (EXTRA_COLORS[c], EXTRA_STYLES[q % len(EXTRA_STYLES)])
    return styles


def run_label(run, sep=", "):
    """'deep_cifar10_beta1' -> 'deep / cifar10, beta1': model / dataset, then any variant after sep."""
    parts = run.split("_")
    return " / ".join(parts[:2]) + "".join(sep + p for p in parts[2:])


def _new(width, height):
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path):
    """Write ``fig`` to ``path`` atomically: a failed write (a full disk) leaves the old file or none."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fmt = os.path.splitext(path)[1][1:] or "png"
    atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=DPI, bbox_inches="tight", facecolor="white"),
                 binary=True)
    fig.clf()
    return path


def _to_float(images):
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0          # (N, H, W, C)
    return np.clip(images.astype(np.float32), 0.0, 1.0)


def image_grid(images, ncol, pad=2, pad_value=1.0):
    """Tile images into one picture, row by row.

    images : (N, H, W, C) uint8 or float in [0, 1]; ncol : images per row

    Returns
    -------
    (rows * (H + pad) + pad, ncol * (W + pad) + pad, C) float32 in [0, 1]
    """
    x = _to_float(images)                                  # (N, H, W, C)
    n, h, w, c = x.shape
    nrow = -(-n // ncol)
    out = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), pad_value, np.float32)
    for i in range(n):
        r, q = divmod(i, ncol)
        out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + q * (w + pad):pad + q * (w + pad) + w] = x[i]
    return out


def _show(ax, grid):
    if grid.shape[2] == 1:
        ax.imshow(grid[:, :, 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(grid, interpolation="nearest")


def _cell_centers(n, size, pad=2):
    return [pad + i * (size + pad) + size / 2 - 0.5 for i in range(n)]


def _label_grid(ax, grid_shape, h, w, col_labels=None, row_labels=None, pad=2, top=True,
                fontsize=9):
    nrow = (grid_shape[0] - pad) // (h + pad)
    ncol = (grid_shape[1] - pad) // (w + pad)
    if col_labels is not None:
        ax.set_xticks(_cell_centers(ncol, w, pad))
        ax.set_xticklabels(col_labels, fontsize=fontsize)
        if top:
            ax.xaxis.tick_top()
    else:
        ax.set_xticks([])
    if row_labels is not None:
        ax.set_yticks(_cell_centers(nrow, h, pad))
        ax.set_yticklabels(row_labels, fontsize=9)
    else:
        ax.set_yticks([])
    ax.tick_params(length=0)
    for s in ax.spines.values():
        s.set_visible(False)


def _examples_by_class(images, labels, n_classes, per_class):
    """``per_class`` images of each class: returns (per_class * n_classes, H, W, C), row r = r-th example."""
    by_class = [np.flatnonzero(np.asarray(labels) == c) for c in range(n_classes)]
    return images[np.asarray([i[r % len(i)] if len(i) else 0 for r in range(per_class) for i in by_class])]


def train_examples(datasets, path, per_class=3):
    """Figure 1: ``per_class`` training images of every class of each dataset, columns named by class.

    datasets : {title: (images (N, H, W, C) uint8, labels (N,), class_names)}
    """
    fig = _new(11, 0.4 + 1.25 * per_class * len(datasets))
    axes = fig.subplots(len(datasets), 1, squeeze=False)[:, 0]
    for ax, (title, (images, labels, names)) in zip(axes, datasets.items()):
        ex = _examples_by_class(images, labels, len(names), per_class)   # (P*C, H, W, C)
        grid = image_grid(ex, len(names))
        _show(ax, grid)
        _label_grid(ax, grid.shape, ex.shape[1], ex.shape[2], list(names), fontsize=10)
        ax.set_title(title, fontsize=12, pad=22, fontweight="bold")
    fig.suptitle("Example training images, one column per class", fontsize=12, y=1.02)
    fig.tight_layout()
    return _save(fig, path)


def clip_limits(points, pct=0.5, margin=0.08):
    """Axis limits holding the central points, and how many points fall outside them.

    points : (N, 2)

    Returns
    -------
    lo, hi : (2,) the ``pct`` and ``100 - pct`` percentiles, widened by ``margin`` of their range
    n_out : int, the points with a coordinate outside ``[lo, hi]`` (not drawn)
    """
    p = np.asarray(points, dtype=np.float64)                        # (N, 2)
    lo, hi = np.percentile(p, [pct, 100 - pct], axis=0)             # (2,), (2,)
    pad = margin * (hi - lo + 1e-9)                                 # (2,)
    lo, hi = lo - pad, hi + pad
    return lo, hi, int(np.sum(np.any((p < lo) | (p > hi), axis=1)))


def latent_scatter(mu, labels, class_names, title, path, highlight=None,
                   highlight_title="the same points, vehicles vs animals"):
    """Figures 2-4: test-set latent means (2-D) coloured by class, class names in the legend.

    mu : (N, 2); labels : (N,); highlight : optional {group name: class indices}, at most two
    groups, drawn as a second panel in black and grey (no class colour) with the classes merged.
    Axes span the 0.5-99.5 percentiles; a note in each panel counts the points left outside.
    """
    mu = np.asarray(mu, dtype=np.float64)                  # (N, 2)
    labels = np.asarray(labels)
    if highlight is not None and len(highlight) > len(GROUP_COLORS):
        raise ValueError(f"highlight takes at most {len(GROUP_COLORS)} groups, got {len(highlight)}")
    panels = 1 if highlight is None else 2
    fig = _new(7.2 * panels, 6)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    lo, hi, n_out = clip_limits(mu)
    size = 3 if len(mu) > 3000 else 8
    order = np.random.default_rng(0).permutation(len(mu))  # no class drawn wholly on top
    ax = axes[0]
    colors = np.array(CLASS_COLORS)[labels[order] % 10]
    ax.scatter(mu[order, 0], mu[order, 1], c=colors, s=size, alpha=0.6, linewidths=0, rasterized=True)
    for c, name in enumerate(class_names):
        ax.scatter([], [], c=CLASS_COLORS[c % 10], s=30, label=f"{c}: {name}" if name != str(c) else name)
    ax.legend(title="class", loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9, frameon=False)
    ax.set_title(title, fontsize=11)
    if highlight is not None:
        ax = axes[1]
        g = np.full(len(labels), -1)                       # (N,) group index, -1: in no group
        for i, classes in enumerate(highlight.values()):
            g[np.isin(labels, classes)] = i
        keep = order[g[order] >= 0]
        ax.scatter(mu[keep, 0], mu[keep, 1], c=np.array(GROUP_COLORS)[g[keep]], s=size, alpha=0.6,
                   linewidths=0, rasterized=True)
        for i, (name, classes) in enumerate(highlight.items()):
            ax.scatter([], [], c=GROUP_COLORS[i], s=30,
                       label=f"{name} ({', '.join(class_names[c] for c in classes)})")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), fontsize=9, frameon=False)
        ax.set_title(highlight_title, fontsize=11)
    for ax in axes:
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_xlabel("latent dim 1 (mean $\\mu_1$)")
        ax.set_ylabel("latent dim 2 (mean $\\mu_2$)")
        ax.grid(alpha=0.3)
        if n_out:
            ax.text(0.99, 0.01, f"axes clipped: {n_out} of {len(mu)} points outside", transform=ax.transAxes, ha="right", va="bottom", fontsize=8,
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8})
    fig.tight_layout()
    return _save(fig, path)


def _smooth(y, window):
    if window <= 1 or len(y) < window:
        return np.arange(len(y)), y
    c = np.cumsum(np.insert(np.asarray(y, dtype=np.float64), 0, 0.0))
    return np.arange(window - 1, len(y)), (c[window:] - c[:-window]) / window


def training_curves(histories, path, betas=None, n_dims=None):
    """Figure 5: per-batch training loss, reconstruction and KL of every run on one canvas.

    histories : {run name: {"loss": (S,), "rec": (S,), "kl": (S,)}}, S may differ by run
    betas : {run name: beta} shown in the legend
    n_dims : {run name: D values per image}; adds a row with loss / D and rec / D, so that
    MNIST (D = 784) and CIFAR-10 (D = 3072) compare per pixel dimension
    """
    if n_dims is not None and set(histories) - set(n_dims):
        raise ValueError(f"n_dims has no D for run(s) {', '.join(sorted(set(histories) - set(n_dims)))}")
    rows = 1 if n_dims is None else 2
    fig = _new(15, 4.6 * rows)
    axes = fig.subplots(rows, 3, squeeze=False)            # (rows, 3)
    styles = run_styles(histories)
    labels = {r: run_label(r) + (f" ($\\beta$={betas[r]:g})" if betas and r in betas else "")
              + (f", D={n_dims[r]}" if n_dims is not None else "") for r in histories}
    longest = max(len(h["loss"]) for h in histories.values())
    window = max(1, longest // 60)
    panels = [(axes[0, 0], "loss", False, "training loss (rec + $\\beta$ KL)"),
              (axes[0, 1], "rec", False, "reconstruction (squared error; Bernoulli: cross-entropy)"),
              (axes[0, 2], "kl", False, "KL divergence (nats)")]
    if rows == 2:
        panels += [(axes[1, 0], "loss", True, "training loss per pixel dimension (loss / D)"),
                   (axes[1, 1], "rec", True, "reconstruction per pixel dimension (rec / D)")]
    for ax, key, per_dim, title in panels:
        for run, h in histories.items():
            color, ls = styles[run]
            y = np.asarray(h[key], dtype=np.float64) / (n_dims[run] if per_dim else 1)   # (S,)
            ax.plot(np.arange(len(y)), y, color=color, alpha=0.2, lw=0.6)
            ax.plot(*_smooth(y, window), color=color, ls=ls, lw=1.6, label=labels[run])
        ax.set_yscale("log")
        ax.set_xlabel("training step (batch of 50)")
        ax.set_ylabel(key + (" per image / D" if per_dim else " per image"))
        ax.set_title(title, fontsize=11)
        ax.grid(alpha=0.3, which="both")
    if rows == 2:                                          # the legend fills the free bottom-right slot
        axes[1, 2].axis("off")
        axes[1, 2].legend(*axes[0, 0].get_legend_handles_labels(), loc="center", fontsize=9, frameon=False)
    else:
        axes[0, 0].legend(fontsize=9)
    fig.suptitle("Per-batch training curves" + (
        f" (faint: every batch; bold: moving average over {window} batches)" if window > 1 else ""),
        fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def reconstructions(originals, recons, path, col_labels=None, title=None):
    """Figures 6-7: test images (top row) above each model's reconstruction of them.

    originals : (N, H, W, C); recons : {model name: (N, H, W, C)}; col_labels : N class names
    """
    rows = [originals] + list(recons.values())
    stack = np.concatenate([_to_float(r) for r in rows])   # (R * N, H, W, C)
    n = len(originals)
    grid = image_grid(stack, n)
    fig = _new(max(6, 0.75 * n + 1.5), 0.8 * len(rows) + 1.2)
    ax = fig.subplots()
    _show(ax, grid)
    _label_grid(ax, grid.shape, stack.shape[1], stack.shape[2], col_labels,
                ["test image"] + [f"{k}" for k in recons])
    if title:
        ax.set_title(title, fontsize=11, pad=40 if col_labels is not None else 6)
    fig.tight_layout()
    return _save(fig, path)


def manifold(decoded, quantiles, values, path, title):
    """2-D latent manifold: decodings of a grid of latent points.

    decoded : (n * n, H, W, C), row-major with row i at ``z2 = values[n - 1 - i]``
    (top = large z2) and column j at ``z1 = values[j]``; quantiles, values : (n,)
    """
    n = len(values)
    grid = image_grid(decoded, n, pad=1)
    fig = _new(8, 8.4)
    ax = fig.subplots()
    _show(ax, grid)
    h, w = decoded.shape[1], decoded.shape[2]
    every = max(1, n // 8)
    cx = _cell_centers(n, w, 1)
    cy = _cell_centers(n, h, 1)
    ax.set_xticks(cx[::every])
    ax.set_xticklabels([f"{v:.2f}" for v in values[::every]], fontsize=8)
    ax.set_yticks(cy[::every])
    ax.set_yticklabels([f"{v:.2f}" for v in values[::-1][::every]], fontsize=8)
    ax.set_xlabel(f"$z_1$ (normal quantiles {quantiles[0]:.3f} ... {quantiles[-1]:.3f})")
    ax.set_ylabel("$z_2$")
    ax.set_title(title, fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def sample_panels(samples, path, title, ncol=8):
    """Prior samples: one panel per run. samples : {run name: (N, H, W, C)}"""
    k = len(samples)
    rows = -(-len(next(iter(samples.values()))) // ncol)
    fig = _new(3.6 * k, 3.6 * rows / ncol + 0.9)
    axes = fig.subplots(1, k, squeeze=False)[0]
    for ax, (run, s) in zip(axes, samples.items()):
        _show(ax, image_grid(s, ncol, pad=1))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(run_label(run), fontsize=10)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def interpolations(interps, path, title):
    """Latent interpolations: per run, rows of ``[image A, decodings along the line, image B]``.

    interps : {run name: (P, S, H, W, C)} where the first and last of the S
    columns are the two test images and the others decode
    ``mu_A + t (mu_B - mu_A)`` for t evenly spaced in [0, 1]
    """
    k = len(interps)
    fig = _new(9, 0.8 + sum(9 * v.shape[0] / v.shape[1] + 0.15 for v in interps.values()))
    axes = fig.subplots(k, 1, squeeze=False)[:, 0]
    for ax, (run, v) in zip(axes, interps.items()):
        p, s = v.shape[:2]
        grid = image_grid(v.reshape((p * s,) + v.shape[2:]), s, pad=1)
        _show(ax, grid)
        labels = ["image A"] + [f"t={t:.2f}" for t in np.linspace(0, 1, s - 2)] + ["image B"]
        _label_grid(ax, grid.shape, v.shape[2], v.shape[3], labels if ax is axes[0] else None,
                    None, pad=1)
        ax.set_ylabel(run_label(run), fontsize=10)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def kl_and_activity(kl, activity, threshold, path):
    """Per-dimension KL (top) and activity ``Var_x(mu_d)`` (bottom, log scale) of every run.

    kl, activity : {run name: (L,)}; threshold : the active-unit threshold drawn as a line
    """
    if set(kl) != set(activity):
        raise ValueError(f"kl and activity name different runs: {sorted(kl)} vs {sorted(activity)}")
    k = len(kl)
    widths = [max(2, len(v)) for v in kl.values()]
    fig = _new(3.0 + 0.45 * sum(widths), 6)
    axes = fig.subplots(2, k, squeeze=False, gridspec_kw={"width_ratios": widths})
    styles = run_styles(kl)
    for j, run in enumerate(kl):
        dims = np.arange(1, len(kl[run]) + 1)
        color = styles[run][0]
        a = axes[0, j]
        a.bar(dims, kl[run], color=color)
        a.set_title(run_label(run, "\n"), fontsize=10)
        a.set_xticks(dims)
        a.set_xlabel("latent dim")
        b = axes[1, j]
        act = np.maximum(np.asarray(activity[run], dtype=np.float64), 1e-8)
        b.bar(dims, act, color=[color if v > threshold else "#bbbbbb" for v in act])
        b.axhline(threshold, color="black", ls="--", lw=1)
        b.set_yscale("log")
        b.set_xticks(dims)
        b.set_xlabel("latent dim")
        n_active = int(np.sum(act > threshold))
        b.set_title(f"{n_active}/{len(act)} active", fontsize=10)
        if j == 0:
            a.set_ylabel("KL per dim (nats)")
            b.set_ylabel("Var$_x$($\\mu_d$)")
    fig.suptitle(f"Per-dimension KL and activity on the test set (dashed: active-unit threshold "
                 f"{threshold:g}; grey bars: inactive)", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def mean_sd(pairs):
    """Bar heights and error bars from (mean, sd) pairs; an sd of None or nan draws no error bar.

    pairs : K pairs (mean, sd)

    Returns
    -------
    means : (K,); yerr : (K,) with 0 where sd is missing, or None when no sd is finite
    """
    means = np.array([m for m, _ in pairs], dtype=np.float64)                        # (K,)
    sd = np.array([np.nan if s is None else s for _, s in pairs], dtype=np.float64)  # (K,)
    finite = np.isfinite(sd)
    return means, (np.where(finite, sd, 0.0) if finite.any() else None)


def separability(ten_class, binary, path, k, n_seeds=1):
    """Figure 12: 10-class kNN accuracy (latent vs PCA of pixels) and vehicle-vs-animal accuracy.

    ten_class : {run: {"latent": (mean, sd), "pca": (mean, sd), "dims": latent dims}}
    binary : {run: {"latent": (mean, sd), "pca": (mean, sd), "linear": (mean, sd), "majority": rate}}
    Accuracies are means over ``n_seeds`` training seeds; a finite sd (None or nan with one seed)
    draws a ± sd error bar. Either dict may hold any runs, or none.
    """
    fig = _new(max(12, 3 + 1.25 * (len(ten_class) + len(binary))), 5)
    a, b = fig.subplots(1, 2, gridspec_kw={"width_ratios": [max(2, len(ten_class)), max(2, len(binary))]})
    knn = [("latent", "#4c72b0", f"kNN (k={k}) on VAE latent means"),
           ("pca", "#aaaaaa", "kNN on PCA of pixels, same dims")]
    panels = ((a, ten_class, knn, f"10 classes: kNN accuracy (k={k})"),
              (b, binary, knn + [("linear", "#dd8452", "linear probe on latent means")],
               "vehicles vs animals (CIFAR-10)"))
    for ax, runs, series, title in panels:
        x = np.arange(len(runs))
        w = 0.8 / len(series)
        for i, (key, color, label) in enumerate(series):
            means, yerr = mean_sd([v[key] for v in runs.values()])        # (R,), (R,) or None
            xi = x + (i - (len(series) - 1) / 2) * w                     # (R,)
            ax.bar(xi, means, width=w, color=color, label=label, yerr=yerr, capsize=3,
                   error_kw={"lw": 1})
            for xj, m, top in zip(xi, means, means + (0 if yerr is None else yerr)):
                ax.text(xj, top + 0.01, f"{m:.3f}", ha="center", fontsize=7)
        ax.set_xticks(x)
        ax.set_title(title, fontsize=11)
        if not runs:
            ax.text(0.5, 0.5, "no runs", transform=ax.transAxes, ha="center", color="#777777")
    a.axhline(0.1, color="black", ls="--", lw=1, label="chance (0.1)")
    a.set_xticklabels([run_label(r, "\n") + f"\n({v['dims']}-D)" for r, v in ten_class.items()], fontsize=9)
    for xi, v in zip(range(len(binary)), binary.values()):
        b.plot([xi - 0.45, xi + 0.45], [v["majority"]] * 2, color="black", ls="--", lw=1,
               label="majority rate" if xi == 0 else None)
    b.set_xticklabels([run_label(r, "\n") for r in binary], fontsize=9)
    for ax in (a, b):
        ax.set_ylim(0, 1.3)
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8, loc="upper center", ncol=2)
    note = "one seed: no error bars" if n_seeds == 1 else f"mean of {n_seeds} seeds, error bars ± SD"
    fig.suptitle(f"Separability of the test set ({note})", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)
