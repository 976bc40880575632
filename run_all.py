#!/usr/bin/env python
"""Run the whole study: the paper's four VAEs, every figure, metrics.json and REPORT.md.

    python run_all.py                  # the paper's protocol (10 epochs, all data): about 25 min on 2 cores
    python run_all.py --quick          # 1 epoch on small subsets: about 20 s on 2 cores
    python run_all.py --resume         # continue unfinished runs, skip finished ones

Runs, each trained with :func:`tinyvae.train.train` (Adam lr 1e-4, batch 50)
into ``OUT/runs/<model>_<dataset>/``: simple/MNIST, simple/CIFAR-10,
highdim/CIFAR-10, deep/CIFAR-10. By default as many runs train side by side
as there are cores, each in its own process on one thread
(:mod:`tinyvae.study.parallel`), longest first; ``--jobs 1`` trains them one after
another in this process. Then every run is evaluated on its test set
(latent means, kNN separability against a PCA-of-pixels baseline, active units,
per-dimension KL, negative ELBO in nats and bits per dimension), the figures are
drawn into ``OUT/figures/`` and ``OUT/metrics.json`` and ``OUT/REPORT.md`` written.

Errors print one line and exit with status 2; Ctrl-C during training saves
the run's checkpoint and exits with 130 (continue with ``--resume``).
"""
import argparse
import json
import math
import os
import resource
import signal
import sys
import time
from dataclasses import asdict
from statistics import NormalDist

import numpy as np

from tinyvae import checkpoint as ckpt
from tinyvae import evaluate as ev
from tinyvae import explore
from tinyvae import probes as pr
from tinyvae.study import figures, report
from tinyvae.cli import add_train_args, check_backend, positive_int
from tinyvae.threads import cores, free_cores, thread_limit
from tinyvae.data import CLASS_NAMES, IMAGE_SHAPES, SPLIT_SIZES, file_digests, fingerprint, load
from tinyvae.download import ensure, is_official
from tinyvae.errors import ConfigError, Interrupted, TinyVAEError
from tinyvae.bench import step_flops
from tinyvae.models import VAE, get_arch
from tinyvae.study.parallel import planned_steps, train_parallel
from tinyvae.evaluate import encode_all
from tinyvae.runs import CHECKPOINT, METRICS, check_out_dir, lock, printable
from tinyvae.config import TrainConfig, select_subsets, streams
from tinyvae.train import train

RUNS = (("simple", "mnist"), ("simple", "cifar10"), ("highdim", "cifar10"), ("deep", "cifar10"))
DATASETS = ("mnist", "cifar10")
QUICK = {"epochs": 1,
         "train_subset": {"mnist": 2000, "cifar10": 1000},
         "test_subset": {"mnist": 1000, "cifar10": 500}}
# test-image pairs for the interpolation figure, by class (MNIST digits; CIFAR: airplane->bird,
# automobile->horse, cat->dog)
INTERP_PAIRS = {"mnist": ((1, 7), (3, 8), (4, 9)), "cifar10": ((0, 2), (1, 7), (3, 5))}
INTERP_STEPS = 8
MANIFOLD_N = {"mnist": 20, "cifar10": 12}
N_PRIOR = 32

FIGURES = {
    "fig1": "fig1_train_examples.png",
    "fig2": "fig2_latent_simple_mnist.png",
    "fig3": "fig3_latent_simple_cifar10.png",
    "fig4": "fig4_latent_deep_cifar10.png",
    "fig5": "fig5_training_curves.png",
    "fig6": "fig6_reconstructions_mnist.png",
    "fig7": "fig7_reconstructions_cifar10.png",
    "fig8a": "fig8a_manifold_simple_mnist.png",
    "fig8b": "fig8b_manifold_simple_cifar10.png",
    "fig8c": "fig8c_manifold_deep_cifar10.png",
    "fig9": "fig9_prior_samples.png",
    "fig10": "fig10_interpolations.png",
    "fig11": "fig11_kl_per_dim.png",
    "fig12": "fig12_separability.png",
}


_T0 = time.perf_counter()


def say(msg):
    """A progress line on stdout, with the seconds since the start."""
    print(printable(f"[run_all {time.perf_counter() - _T0:6.1f}s] {msg}"), flush=True)


def run_name(model, dataset):
    return f"{model}_{dataset}"


def build_parser():
    p = argparse.ArgumentParser(
        prog="python run_all.py",
        description="Run the study: train simple/MNIST, simple/CIFAR-10, highdim/CIFAR-10 and "
                    "deep/CIFAR-10 with the paper's protocol (Adam lr 1e-4, batch 50, 10 epochs), "
                    "then write every figure, metrics.json and REPORT.md into --out.",
        epilog="Errors print one message and exit with status 2. Ctrl-C saves the current run's "
               "checkpoint; continue with --resume.")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke preset: {QUICK['epochs']} epoch on {QUICK['train_subset']['mnist']} MNIST / "
                        f"{QUICK['train_subset']['cifar10']} CIFAR-10 training images and "
                        f"{QUICK['test_subset']['mnist']} / {QUICK['test_subset']['cifar10']} test "
                        f"images (about 20 s on 2 cores); the default is the full protocol")
    p.add_argument("--out", default="results", help="output folder (default results)")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="override the number of epochs (default 10, or 1 with --quick)")
    p.add_argument("--train-subset", type=positive_int, default=None,
                   help="train every run on this many images chosen with the seed "
                        "(default all, or the --quick sizes)")
    p.add_argument("--test-subset", type=positive_int, default=None,
                   help="evaluate on this many test images (default all, or the --quick sizes)")
    p.add_argument("--knn-k", type=positive_int, default=pr.KNN_K,
                   help=f"neighbours in the kNN separability test (default {pr.KNN_K})")
    p.add_argument("--jobs", type=positive_int, default=None,
                   help=f"train this many runs side by side, each in its own process (default: one per "
                        f"free core, from the load average, at most {len(RUNS)}; here now "
                        f"{default_jobs()}); 1 trains them one after another in this process")
    add_train_args(p, threads_help="numba and BLAS threads of each training process and of the "
                                    "evaluation (default: the free cores shared out over --jobs, at "
                                    "least 1)")
    return p


def default_jobs():
    """One run per free core (:func:`tinyvae.threads.free_cores`), at most one per run."""
    return max(1, min(len(RUNS), free_cores()))


def run_cost(cfg):
    """Multiply-adds to train ``cfg``, to start the longest runs first."""
    model = VAE(cfg.model, IMAGE_SHAPES[cfg.dataset], np.random.default_rng(0), np.float32)
    return step_flops(model, cfg.batch_size)[0] * planned_steps(cfg)


def configs(args):
    """One TrainConfig per run, from the flags."""
    out = {}
    for model, dataset in RUNS:
        epochs = args.epochs or (QUICK["epochs"] if args.quick else 10)
        tr = args.train_subset or (QUICK["train_subset"][dataset] if args.quick else None)
        te = args.test_subset or (QUICK["test_subset"][dataset] if args.quick else None)
        out[run_name(model, dataset)] = TrainConfig(model=model, dataset=dataset, epochs=epochs,
                                                    seed=args.seed, train_subset=tr,
                                                    test_subset=te).validate()
    return out


def check_settings(args, runs):
    """Raise ConfigError for settings the evaluation would reject only after all training."""
    for r, cfg in runs.items():
        n_train = min(cfg.train_subset or math.inf, SPLIT_SIZES[cfg.dataset]["train"])
        n_test = min(cfg.test_subset or math.inf, SPLIT_SIZES[cfg.dataset]["test"])
        if n_train < cfg.batch_size:
            raise ConfigError(f"--train-subset {n_train} is smaller than a batch ({cfg.batch_size} images)")
        if args.knn_k > n_train:
            raise ConfigError(f"--knn-k {args.knn_k} is more than the {n_train} training images of {r}; "
                              f"accepted: 1..{n_train}")
        if n_test < 2:
            raise ConfigError(f"--test-subset {n_test}: the paired comparisons need at least 2 test images")


def data_provenance(data_dir):
    """For each dataset: the files' sha256 (:func:`tinyvae.data.file_digests`), their
    :func:`tinyvae.data.fingerprint` and whether they are the official files."""
    return {ds: {"fingerprint": fingerprint(ds, data_dir), "files": file_digests(ds, data_dir),
                 "official": is_official(ds, data_dir)} for ds in DATASETS}


def preset_name(args):
    """"quick", "full" (the paper's protocol) or "custom" (any size or epoch override)."""
    if args.epochs or args.train_subset or args.test_subset:
        return "custom"
    return "quick" if args.quick else "full"


def finished_before(run_dir, cfg):
    """True if ``run_dir`` holds a run that completed ``cfg.epochs`` (judged from its metrics.json)."""
    try:
        with open(os.path.join(run_dir, METRICS)) as f:
            m = json.load(f)
        return os.path.exists(os.path.join(run_dir, CHECKPOINT)) and int(m.get("epochs", 0)) >= cfg.epochs
    except (OSError, ValueError, TypeError):
        return False


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


def analyze(result, cfg, data, pca, k, seed):
    """Every number and picture array of one trained run.

    Returns (metrics dict, arrays dict). Arrays hold only small things for the figures
    and the paired comparisons (per-image errors, per-image kNN correctness).
    """
    model, arch = result.model, get_arch(cfg.model)
    (tr_x, tr_y), (te_x, te_y) = data["train"], data["test"]
    d = int(np.prod(model.image_shape))
    _, _, _, eval_seed = streams(cfg.seed)
    terms = ev.negative_elbo_terms(model, te_x, eval_seed)                 # (M,) arrays
    test_mu, test_logvar = terms["mu"], terms["logvar"]                    # (M, L) twice
    train_mu, _ = encode_all(model, tr_x)                                  # (N, L)
    nb = pr.knn_neighbors(train_mu, test_mu, k)                            # (M, k)
    pred = pr.knn_predict(train_mu, tr_y, test_mu, k, neighbors=nb)        # (M,)
    base = pr.pca_knn_baseline(tr_x, tr_y, te_x, te_y, arch.latent, k, pca=pca)
    nelbo = float(terms["nelbo"].mean())
    nelbo_dq = float(terms["nelbo_dequantized"].mean())
    activity = ev.unit_activity(test_mu)                                   # (L,)
    m = dict(result.metrics)
    m.update({
        "latent": arch.latent, "beta": arch.beta, "train_seconds": m.pop("seconds"),
        "knn_k": k, "knn_accuracy": float(np.mean(pred == te_y)),
        "pca_knn_accuracy": base["accuracy"],
        "pca_explained_variance_ratio": base["explained_variance_ratio"],
        "active_units": int(np.sum(activity > ev.ACTIVE_THRESHOLD)),
        "unit_activity": activity.tolist(),
        "kl_per_dim": ev.kl_per_dim(test_mu, test_logvar).tolist(),
        "elbo_rec_sse": float(terms["sse"].mean()),
        "elbo_kl": float(terms["kl"].mean()),
        "nelbo_nats": nelbo,
        "nelbo_dequantized_nats": nelbo_dq,
        "bits_per_dim": float(ev.bits_per_dim(nelbo_dq, d)),
        "n_dims": d,
    })
    m.pop("config", None)
    if cfg.dataset == "cifar10":
        m["vehicle_animal"] = pr.vehicle_animal_separability(train_mu, tr_y, test_mu, te_y, k, neighbors=nb)

    rng = np.random.default_rng([seed, 7])
    arrays = {"history": result.history, "labels": te_y, "knn_correct": (pred == te_y),
              "sse": terms["sse"], "mu": test_mu if arch.latent == 2 else None}
    idx = first_of_class(te_y, range(10))
    arrays["recon_orig"] = te_x[idx]                                       # (10, H, W, C)
    arrays["recon"] = model.decode(test_mu[idx])                           # (10, H, W, C)
    arrays["prior"] = model.decode(rng.standard_normal((N_PRIOR, arch.latent)))  # (P, H, W, C)
    interps = []
    for a, b in INTERP_PAIRS[cfg.dataset]:
        ia, ib = first_of_class(te_y, (a, b))
        t = np.linspace(0.0, 1.0, INTERP_STEPS)[:, None]                   # (S, 1)
        zs = test_mu[ia] + t * (test_mu[ib] - test_mu[ia])                 # (S, L)
        dec = model.decode(zs)                                             # (S, H, W, C)
        ends = [te_x[ia:ia + 1].astype(np.float32) / 255, te_x[ib:ib + 1].astype(np.float32) / 255]
        interps.append(np.concatenate([ends[0], dec, ends[1]]))            # (S + 2, H, W, C)
    arrays["interp"] = np.stack(interps)                                   # (P, S + 2, H, W, C)
    if arch.latent == 2:
        q, v = normal_grid(MANIFOLD_N[cfg.dataset])
        z1, z2 = np.meshgrid(v, v[::-1])                                   # top row: largest z2
        arrays["manifold"] = (model.decode(np.stack([z1.ravel(), z2.ravel()], axis=1)), q, v)
    return m, arrays


def draw_figures(fig_dir, full, runs, arrays, metrics):
    """Every figure into ``fig_dir``; returns {key: path}."""
    def path(key):
        say(f"figure {FIGURES[key]}")
        return os.path.join(fig_dir, FIGURES[key])

    names = CLASS_NAMES
    vehicles = [names["cifar10"].index(c) for c in pr.VEHICLE_CLASSES]
    animals = [i for i in range(10) if i not in vehicles]
    figures.train_examples({"MNIST": (*full["mnist"]["train"], names["mnist"]),
                            "CIFAR-10": (*full["cifar10"]["train"], names["cifar10"])}, path("fig1"))
    for key, run in (("fig2", "simple_mnist"), ("fig3", "simple_cifar10"), ("fig4", "deep_cifar10")):
        ds = runs[run].dataset
        a = arrays[run]
        figures.latent_scatter(
            a["mu"], a["labels"], names[ds],
            f"{runs[run].model} VAE on {'MNIST' if ds == 'mnist' else 'CIFAR-10'}: latent means of "
            f"{len(a['labels'])} test images\n(kNN accuracy {metrics[run]['knn_accuracy']:.3f}, "
            f"k={metrics[run]['knn_k']})",
            path(key), highlight=None if ds == "mnist" else {"vehicles": vehicles, "animals": animals},
            highlight_title=None if ds == "mnist" else
            f"the same points, vehicles vs animals\n(kNN accuracy "
            f"{metrics[run]['vehicle_animal']['knn_accuracy']:.3f}, majority rate "
            f"{metrics[run]['vehicle_animal']['majority_rate']:.3f})")
    figures.training_curves({r: a["history"] for r, a in arrays.items()}, path("fig5"),
                            {r: get_arch(runs[r].model).beta for r in runs})
    a = arrays["simple_mnist"]
    figures.reconstructions(a["recon_orig"], {"simple VAE": a["recon"]}, path("fig6"),
                            list(names["mnist"]),
                            "MNIST test images and their reconstructions decode(mu)")
    figures.reconstructions(arrays["simple_cifar10"]["recon_orig"], {f"{r.split('_')[0]} VAE": arrays[r]["recon"]
                                        for r in ("simple_cifar10", "highdim_cifar10", "deep_cifar10")},
                            path("fig7"), list(names["cifar10"]),
                            "CIFAR-10 test images and their reconstructions decode(mu)")
    for key, run in (("fig8a", "simple_mnist"), ("fig8b", "simple_cifar10"), ("fig8c", "deep_cifar10")):
        dec, q, v = arrays[run]["manifold"]
        figures.manifold(dec, q, v, path(key),
                         f"{run.replace('_', ' / ')}: decoder outputs on a {len(v)}x{len(v)} grid of "
                         f"normal quantiles")
    figures.sample_panels({r: a["prior"] for r, a in arrays.items()}, path("fig9"),
                          "Samples from the prior: decode(z), z ~ N(0, I)")
    figures.interpolations({r: a["interp"] for r, a in arrays.items()}, path("fig10"),
                           "Latent interpolations between test images: decode(mu_A + t (mu_B - mu_A))")
    figures.kl_and_activity({r: np.asarray(metrics[r]["kl_per_dim"]) for r in runs},
                            {r: np.asarray(metrics[r]["unit_activity"]) for r in runs},
                            ev.ACTIVE_THRESHOLD, path("fig11"))
    k = metrics["simple_mnist"]["knn_k"]
    figures.separability(
        {r: (metrics[r]["knn_accuracy"], metrics[r]["pca_knn_accuracy"], metrics[r]["latent"]) for r in runs},
        {r: (metrics[r]["vehicle_animal"]["knn_accuracy"], metrics[r]["vehicle_animal"]["linear_accuracy"],
             metrics[r]["vehicle_animal"]["majority_rate"]) for r in runs if "vehicle_animal" in metrics[r]},
        path("fig12"), k)
    return {k: os.path.join("figures", v) for k, v in FIGURES.items()}


def evaluate_runs(args, runs, run_dirs, todo, trained):
    """Train what is left in this process, then evaluate every run and draw the figures."""
    full = {}
    for ds in DATASETS:
        say(f"loading {ds}")
        full[ds] = {split: load(ds, split, args.data_dir) for split in ("train", "test")}

    metrics, arrays, pcas, explorers = {}, {}, {}, {}
    for i, (r, cfg) in enumerate(runs.items(), 1):
        data = select_subsets(full[cfg.dataset], cfg)
        n_tr, n_te = len(data["train"][0]), len(data["test"][0])
        if r in trained:
            what = "trained above; evaluating"
        elif r not in todo:
            what = "finished earlier, training skipped (resume); evaluating"
        else:
            what = f"training {cfg.epochs} epoch(s) on {n_tr} images, testing on {n_te}"
        say(f"run {i}/{len(runs)} {cfg.model}/{cfg.dataset}: {what}")
        result = train(cfg, out_dir=run_dirs[r], data=data, resume=args.resume or r in trained,
                       progress=not args.no_progress and r not in trained, backend=args.backend)
        if cfg.dataset not in pcas:
            need = max(get_arch(c.model).latent for c in runs.values() if c.dataset == cfg.dataset)
            say(f"fitting the PCA-of-pixels baseline on {n_tr} {cfg.dataset} training images")
            pcas[cfg.dataset] = pr.pca_fit(data["train"][0], need, seed=cfg.seed)
        say(f"run {i}/{len(runs)} {cfg.model}/{cfg.dataset}: evaluating (kNN, PCA baseline, ELBO, samples)")
        metrics[r], arrays[r] = analyze(result, cfg, data, pcas[cfg.dataset], args.knn_k, cfg.seed)
        m = metrics[r]
        say(f"  test rec {m['test_rec']:.2f}, kl {m['test_kl']:.2f}, -ELBO {m['nelbo_nats']:.1f} nats, "
            f"{m['bits_per_dim']:.3f} bits/dim, kNN acc {m['knn_accuracy']:.3f} "
            f"(PCA {m['pca_knn_accuracy']:.3f}), active units {m['active_units']}/{m['latent']}")
        if arrays[r]["mu"] is not None:                   # 2-D: a static explorer page beside REPORT.md
            explorers[r] = f"explore_{r}.html"
            size = explore.write_static_page(os.path.join(args.out, explorers[r]), result.model, asdict(cfg),
                                             data["test"][1], arrays[r]["mu"])
            say(f"  wrote {explorers[r]} ({size / 1e6:.2f} MB)")
        del result

    labels = {r: arrays[r]["labels"] for r in runs}
    if not np.array_equal(labels["simple_cifar10"], labels["deep_cifar10"]) or \
            not np.array_equal(labels["simple_cifar10"], labels["highdim_cifar10"]):
        raise ConfigError("the CIFAR-10 runs were tested on different images; "
                          "paired comparisons need the same --seed and --test-subset")
    comparisons = {
        "cifar10_rec_simple_minus_highdim": dict(zip(("diff", "se"), pr.paired_difference(
            arrays["simple_cifar10"]["sse"], arrays["highdim_cifar10"]["sse"]))),
        "cifar10_knn_deep_minus_simple": dict(zip(("diff", "se"), pr.paired_difference(
            arrays["deep_cifar10"]["knn_correct"], arrays["simple_cifar10"]["knn_correct"]))),
    }
    fig_dir = os.path.join(args.out, "figures")
    fig_paths = draw_figures(fig_dir, full, runs, arrays, metrics)
    return full, metrics, arrays, comparisons, fig_paths, explorers



def run_study(args):
    global _T0
    t_start = _T0 = time.perf_counter()
    out = args.out
    runs = configs(args)
    check_backend(args.backend)
    check_settings(args, runs)
    check_out_dir(out, create=False)
    ensure(DATASETS, args.data_dir, download=not args.no_download, log=say)  # before anything is created
    check_out_dir(out)
    with lock(out, "running a study"):                 # one study per folder; each run locks its own
        _run_locked(args, out, runs, t_start)


def _run_locked(args, out, runs, t_start):
    """:func:`run_study` with the study folder ``out`` created and locked."""
    run_dirs = {r: os.path.join(out, "runs", r) for r in runs}
    if not args.resume:
        existing = [os.path.join(d, CHECKPOINT) for d in run_dirs.values()
                    if os.path.exists(os.path.join(d, CHECKPOINT))]
        if existing:
            raise ConfigError(f"{out} already holds runs ({', '.join(existing)}); pass --resume to "
                              f"continue them (finished runs are skipped), or choose another --out")
    preset = preset_name(args)
    free = free_cores()
    jobs = min(args.jobs or default_jobs(), len(runs))
    threads = args.threads or max(1, free // jobs)          # per training process
    local = args.threads or free                            # this process: --jobs 1 training, evaluation
    say(f"{preset} settings: {len(runs)} runs into {os.path.abspath(out)}; "
        + (f"{jobs} side by side with {threads} thread(s) each" if jobs > 1 else f"one at a time on {local} thread(s)")
        + f" ({free} of {cores()} cores free{'' if args.jobs or args.threads else '; --jobs and --threads change it'})")

    trained, peak_all = set(), None
    todo = [r for r in runs if not (args.resume and finished_before(run_dirs[r], runs[r]))]
    if jobs > 1 and todo:
        order = sorted(todo, key=lambda r: -run_cost(runs[r]))
        say(f"training {len(todo)} run(s), {min(jobs, len(todo))} at a time with {threads} thread(s) "
            f"each, longest first: {', '.join(order)}")
        res = train_parallel([(r, runs[r], run_dirs[r]) for r in order], jobs, threads,
                             data_dir=args.data_dir, backend=args.backend, resume=args.resume,
                             progress=not args.no_progress, log=say)
        trained, peak_all = set(order), res["peak_rss_all_mib"]

    with thread_limit(local):
        full, metrics, arrays, comparisons, fig_paths, explorers = evaluate_runs(args, runs, run_dirs, todo, trained)

    cfg0 = next(iter(runs.values()))
    study = {
        "preset": preset, "seed": args.seed, "epochs": cfg0.epochs,
        "batch_size": cfg0.batch_size, "lr": cfg0.lr, "knn_k": args.knn_k,
        "train_subset": {r: c.train_subset or "all" for r, c in runs.items()},
        "test_subset": {r: c.test_subset or "all" for r, c in runs.items()},
        "resumed": bool(args.resume),
        "train_seconds_total": float(sum(m["train_seconds"] for m in metrics.values())),
        "jobs": jobs, "threads": threads, "runs_trained_here": len(todo),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "wall_seconds": time.perf_counter() - t_start,
        "data": data_provenance(args.data_dir),
    }
    # this process and the training processes together (sampled while they ran)
    study["peak_rss_all_mib"] = max(study["peak_rss_mib"], peak_all or 0.0)
    summary = {"study": study, "runs": metrics, "comparisons": comparisons}
    summary["claims"] = report.judge_claims(summary)
    summary = report.finite_or_null(summary)
    path = os.path.join(out, "metrics.json")
    ckpt.save_text(path, json.dumps(summary, indent=2, allow_nan=False) + "\n")
    say(f"wrote {path}")
    report_path = os.path.join(out, "REPORT.md")
    ckpt.save_text(report_path, report.render(summary, fig_paths, explorers))
    say(f"wrote {report_path}")
    for c in summary["claims"].values():
        say(f"claim ({c['id']}) {c['claim']}: {c['verdict'].upper()} -- {c['evidence']}")
    say(f"done in {time.perf_counter() - t_start:.1f} s (peak memory {study['peak_rss_all_mib']:.0f} MiB "
        f"in all processes together)")


def main(argv=None):
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        old = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:                           # not the main thread: leave signals alone
        old = None
    try:
        run_study(args)
        return 0
    except Interrupted as e:
        print(f"run_all: {e}", file=sys.stderr)
        return e.exit_code
    except TinyVAEError as e:
        print(f"run_all: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:                         # disk full, permissions, ... outside tinyvae's checks
        where = f" ({e.filename})" if e.filename else ""
        print(printable(f"run_all: error: {e.strerror or e}{where}; every file written before is whole "
                        f"(written atomically); free space or fix the folder, then run again with "
                        f"--resume", sys.stderr), file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        signum = e.args[0] if e.args and isinstance(e.args[0], int) else signal.SIGINT
        print(f"run_all: interrupted by {signal.Signals(signum).name}; checkpoints written so far "
              f"stay, continue with --resume", file=sys.stderr)
        return 128 + signum
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def _on_sigterm(signum, frame):
    """SIGTERM outside training (loading, evaluating, drawing) stops like Ctrl-C."""
    raise KeyboardInterrupt(signum)


if __name__ == "__main__":
    sys.exit(main())
