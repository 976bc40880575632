#!/usr/bin/env python
"""Run the whole study: the paper's four VAEs, every figure, metrics.json and REPORT.md.

    python run_all.py                  # the paper's protocol (10 epochs, all data): 20-26 min on 2 cores
    python run_all.py --quick          # 1 epoch on small subsets: about 26 s on 2 cores
    python run_all.py --seeds 3        # every run with seeds 0, 1, 2: verdicts judged on the seed spread
    python run_all.py --extra-runs     # also the KL-weight ablation and a Bernoulli decoder
    python run_all.py --resume         # continue unfinished runs, skip finished ones
    python run_all.py --plan           # print one training command per run, for any batch scheduler

Runs, each trained with :func:`tinyvae.train.train` (Adam lr 1e-4, batch 50)
into ``OUT/runs/<run>/seed<S>/``: simple/MNIST, simple/CIFAR-10,
highdim/CIFAR-10, deep/CIFAR-10, and with ``--extra-runs`` deep/CIFAR-10 at
KL weight 1, simple/CIFAR-10 at KL weight 0.5 and simple/MNIST with a
Bernoulli decoder. By default as many runs train side by side as there are
free cores, each in its own process on one thread (:mod:`tinyvae.study.parallel`),
longest first, and this process evaluates each finished run on a core that
no training needs any more; ``--jobs 1`` trains them one after another in
this process;
``--executor ray`` sends them to Ray (:mod:`tinyvae.study.executors`). Then
every run is evaluated on its test set against baselines that need no
training (:mod:`tinyvae.study.analysis`), the paper's claims are judged on
the spread between seeds (:mod:`tinyvae.study.claims`), the figures are drawn
into ``OUT/figures/`` and ``OUT/metrics.json`` and ``OUT/REPORT.md`` written.

Errors print one line and exit with status 2; Ctrl-C during training saves
the run's checkpoint and exits with 130 (continue with ``--resume``).
"""
import argparse
import functools
import json
import math
import os
import resource
import signal
import sys
import threading
import time
from dataclasses import asdict

import numpy as np
from tqdm.auto import tqdm

from tinyvae import checkpoint as ckpt
from tinyvae import explore
from tinyvae import probes as pr
from tinyvae.bench import step_flops
from tinyvae.cli import add_train_args, check_backend, positive_int
from tinyvae.config import TrainConfig, select_subsets
from tinyvae.data import CLASS_NAMES, IMAGE_SHAPES, SPLIT_SIZES, file_digests, fingerprint, load
from tinyvae.download import ensure, is_official
from tinyvae.errors import ConfigError, Interrupted, TinyVAEError
from tinyvae.evaluate import ACTIVE_THRESHOLD, LIKELIHOODS
from tinyvae.models import VAE, get_arch
from tinyvae.runs import CHECKPOINT, METRICS, check_out_dir, lock, printable
from tinyvae.study import analysis, claims, figures, report
from tinyvae.study.parallel import Lanes, planned_steps, train_parallel
from tinyvae.threads import blas_info, cores, describe_blas, free_cores, thread_limit
from tinyvae.train import train

# name -> (model, dataset, TrainConfig overrides)
RUNS = {"simple_mnist": ("simple", "mnist", {}), "simple_cifar10": ("simple", "cifar10", {}),
        "highdim_cifar10": ("highdim", "cifar10", {}), "deep_cifar10": ("deep", "cifar10", {})}
EXTRA_RUNS = {"deep_cifar10_beta1": ("deep", "cifar10", {"beta": 1.0}),        # (d), (f): architecture
              "simple_cifar10_beta0.5": ("simple", "cifar10", {"beta": 0.5}),  # ... or the KL weight?
              "simple_mnist_bernoulli": ("simple", "mnist", {"likelihood": "bernoulli"})}
DATASETS = ("mnist", "cifar10")
QUICK = {"epochs": 1,
         "train_subset": {"mnist": 2000, "cifar10": 1000},
         "test_subset": {"mnist": 1000, "cifar10": 500},
         "iwae_k": 20, "iwae_images": 100}
IWAE_K, IWAE_IMAGES = 100, 500
EXPLORED = ("simple_mnist", "simple_cifar10", "deep_cifar10")

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
    """A progress line on stdout, with the seconds since the start (above any progress bar:
    the evaluation speaks while the training's bar is drawn)."""
    tqdm.write(printable(f"[run_all {time.perf_counter() - _T0:6.1f}s] {msg}"), file=sys.stdout)
    sys.stdout.flush()


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
                        f"images (about 26 s on 2 cores); the default is the full protocol")
    p.add_argument("--out", default="results", help="output folder (default results)")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="override the number of epochs (default 10, or 1 with --quick)")
    p.add_argument("--train-subset", type=positive_int, default=None,
                   help="train every run on this many images chosen with the seed "
                        "(default all, or the --quick sizes)")
    p.add_argument("--test-subset", type=positive_int, default=None,
                   help="evaluate on this many test images (default all, or the --quick sizes)")
    p.add_argument("--seeds", type=positive_int, default=1,
                   help="train every run with this many seeds, --seed, --seed + 1, ... (default 1); "
                        "results become mean +- SD over seeds and verdicts use the seed spread")
    p.add_argument("--extra-runs", action="store_true",
                   help="also train deep_cifar10_beta1 and simple_cifar10_beta0.5 (the KL-weight ablation "
                        "of the deep-vs-simple claims, with the decoder of --likelihood) and, when that is "
                        "gaussian, simple_mnist_bernoulli (a Bernoulli decoder)")
    p.add_argument("--likelihood", choices=LIKELIHOODS, default="gaussian",
                   help="decoder of the paper's four runs: gaussian (squared error, the paper's; default) "
                        "or bernoulli (binary cross-entropy on logits)")
    p.add_argument("--knn-k", type=positive_int, default=pr.KNN_K,
                   help=f"neighbours in the kNN separability test (default {pr.KNN_K})")
    p.add_argument("--iwae-k", type=positive_int, default=None,
                   help=f"importance samples of the IWAE bound on log p(x) (default {IWAE_K}, "
                        f"{QUICK['iwae_k']} with --quick)")
    p.add_argument("--iwae-images", type=positive_int, default=None,
                   help=f"first test images the IWAE bound is computed on (default {IWAE_IMAGES}, "
                        f"{QUICK['iwae_images']} with --quick)")
    p.add_argument("--jobs", type=positive_int, default=None,
                   help=f"train this many runs side by side, each in its own process, and evaluate "
                        f"finished runs on the lanes no training needs any more (default: one per "
                        f"free core, from the load average; here now {default_jobs()}); 1 trains them "
                        f"one after another in this process")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="where the runs train: local processes (default) or Ray tasks (pip install "
                        "-e '.[ray]'; a local Ray instance unless --ray-address)")
    p.add_argument("--ray-address", default=None, help="address of an existing Ray cluster (--executor ray)")
    p.add_argument("--plan", action="store_true",
                   help="print one 'python -m tinyvae train ...' command per run that is not finished, "
                        "and exit; run them with any scheduler, then this command with --resume "
                        "builds the report from the finished run folders")
    add_train_args(p, threads_help="numba and BLAS threads of each training process and of the "
                                    "evaluation (default: the free cores shared out over --jobs, at "
                                    "least 1)")
    return p


def default_jobs():
    """One run per free core (:func:`tinyvae.threads.free_cores`)."""
    return max(1, free_cores())


def run_cost(cfg):
    """Multiply-adds to train ``cfg``, to start the longest runs first."""
    return _step_flops(cfg.model, cfg.dataset, cfg.batch_size) * planned_steps(cfg)


@functools.lru_cache(maxsize=None)
def _step_flops(model, dataset, batch_size):
    """One training step's multiply-adds; built once per model and dataset, not once per seed."""
    vae = VAE(model, IMAGE_SHAPES[dataset], np.random.default_rng(0), np.float32)
    return step_flops(vae, batch_size)[0]


def run_specs(args):
    """{run name: (model, dataset, overrides)} of this invocation."""
    specs = {}
    for name, (model, dataset, over) in RUNS.items():
        specs[name] = (model, dataset, dict(over, likelihood=args.likelihood))
    if args.extra_runs:                 # the ablation with the paper's runs' decoder; Bernoulli if they are not
        for name, (model, dataset, over) in EXTRA_RUNS.items():
            if "beta" in over:
                specs[name] = (model, dataset, dict(over, likelihood=args.likelihood))
            elif over["likelihood"] != args.likelihood:
                specs[name] = (model, dataset, over)
    return specs


def seeds_of(args):
    return [args.seed + i for i in range(args.seeds)]


def configs(args):
    """{run name: {seed (str): TrainConfig}}, from the flags."""
    out = {}
    for name, (model, dataset, over) in run_specs(args).items():
        epochs = args.epochs or (QUICK["epochs"] if args.quick else 10)
        tr = args.train_subset or (QUICK["train_subset"][dataset] if args.quick else None)
        te = args.test_subset or (QUICK["test_subset"][dataset] if args.quick else None)
        out[name] = {str(s): TrainConfig(model=model, dataset=dataset, epochs=epochs, seed=s, train_subset=tr,
                                         test_subset=te, **over).validate() for s in seeds_of(args)}
    return out


def iwae_settings(args):
    return (args.iwae_k or (QUICK["iwae_k"] if args.quick else IWAE_K),
            args.iwae_images or (QUICK["iwae_images"] if args.quick else IWAE_IMAGES))


def check_settings(args, runs):
    """Raise ConfigError for settings the evaluation would reject only after all training."""
    if args.ray_address and args.executor != "ray":
        raise ConfigError("--ray-address needs --executor ray")
    for r, by_seed in runs.items():
        cfg = next(iter(by_seed.values()))
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


def run_config(cfg):
    """A run's settings for metrics.json: its TrainConfig without the seed, beta made explicit."""
    out = {k: v for k, v in asdict(cfg).items() if k != "seed"}
    out["beta"] = cfg.effective_beta()
    return out


def finished_before(run_dir, cfg):
    """True if ``run_dir`` holds a run that completed ``cfg.epochs`` (judged from its metrics.json)."""
    try:
        with open(os.path.join(run_dir, METRICS)) as f:
            m = json.load(f)
        return os.path.exists(os.path.join(run_dir, CHECKPOINT)) and int(m.get("epochs", 0)) >= cfg.epochs
    except (OSError, ValueError, TypeError):
        return False


def draw_figures(fig_dir, full, runs, arrays, metrics, summaries, n_seeds):
    """Every figure into ``fig_dir`` (pictures of each run's first seed); returns {key: path}."""
    def path(key):
        say(f"figure {FIGURES[key]}")
        return os.path.join(fig_dir, FIGURES[key])

    names = CLASS_NAMES
    vehicles = [names["cifar10"].index(c) for c in pr.VEHICLE_CLASSES]
    animals = [i for i in range(10) if i not in vehicles]
    first = {r: next(iter(metrics[r].values())) for r in metrics}          # the first seed's numbers
    out = {}
    figures.train_examples({"MNIST": (*full["mnist"]["train"], names["mnist"]),
                            "CIFAR-10": (*full["cifar10"]["train"], names["cifar10"])}, path("fig1"))
    out["fig1"] = FIGURES["fig1"]
    for key, run in (("fig2", "simple_mnist"), ("fig3", "simple_cifar10"), ("fig4", "deep_cifar10")):
        if run not in arrays:
            continue
        ds, a, m = runs[run].dataset, arrays[run], first[run]
        figures.latent_scatter(
            a["mu"], a["labels"], names[ds],
            f"{runs[run].model} VAE on {'MNIST' if ds == 'mnist' else 'CIFAR-10'}, seed {runs[run].seed}: "
            f"latent means of {len(a['labels'])} test images\n(kNN accuracy {m['knn_accuracy']:.3f}, "
            f"k={m['knn_k']})",
            path(key), highlight=None if ds == "mnist" else {"vehicles": vehicles, "animals": animals},
            highlight_title=None if ds == "mnist" else
            f"the same points, vehicles vs animals\n(kNN accuracy {m['vehicle_animal']['knn_accuracy']:.3f}, "
            f"majority rate {m['vehicle_animal']['majority_rate']:.3f})")
        out[key] = FIGURES[key]
    figures.training_curves({r: a["history"] for r, a in arrays.items()}, path("fig5"),
                            betas={r: first[r]["beta"] for r in arrays},
                            n_dims={r: first[r]["n_dims"] for r in arrays})
    out["fig5"] = FIGURES["fig5"]
    if "simple_mnist" in arrays:
        a = arrays["simple_mnist"]
        figures.reconstructions(a["recon_orig"], {"simple VAE": a["recon"]}, path("fig6"), list(names["mnist"]),
                                "MNIST test images and their reconstructions decode(mu)")
        out["fig6"] = FIGURES["fig6"]
    cifar = [r for r in ("simple_cifar10", "highdim_cifar10", "deep_cifar10") if r in arrays]
    if cifar:
        figures.reconstructions(arrays[cifar[0]]["recon_orig"], {f"{r.split('_')[0]} VAE": arrays[r]["recon"]
                                                                 for r in cifar},
                                path("fig7"), list(names["cifar10"]),
                                "CIFAR-10 test images and their reconstructions decode(mu)")
        out["fig7"] = FIGURES["fig7"]
    for key, run in (("fig8a", "simple_mnist"), ("fig8b", "simple_cifar10"), ("fig8c", "deep_cifar10")):
        if run in arrays:
            dec, q, v = arrays[run]["manifold"]
            figures.manifold(dec, q, v, path(key), f"{run.replace('_', ' / ')}: decoder outputs on a "
                                                   f"{len(v)}x{len(v)} grid of normal quantiles")
            out[key] = FIGURES[key]
    figures.sample_panels({r: a["prior"] for r, a in arrays.items()}, path("fig9"),
                          "Samples from the prior: decode(z), z ~ N(0, I)")
    figures.interpolations({r: a["interp"] for r, a in arrays.items()}, path("fig10"),
                           "Latent interpolations between test images: decode(mu_A + t (mu_B - mu_A))")
    figures.kl_and_activity({r: np.asarray(first[r]["kl_per_dim"]) for r in arrays},
                            {r: np.asarray(first[r]["unit_activity"]) for r in arrays},
                            ACTIVE_THRESHOLD, path("fig11"))
    out.update({k: FIGURES[k] for k in ("fig9", "fig10", "fig11")})

    def ms(r, key):
        return summaries[r][key]["mean"], summaries[r][key]["sd"]

    figures.separability(
        {r: {"latent": ms(r, "knn_accuracy"), "pca": ms(r, "pca_knn_accuracy"), "dims": first[r]["latent"]}
         for r in metrics},
        {r: {"latent": ms(r, "vehicle_animal.knn_accuracy"), "pca": ms(r, "vehicle_animal.pca_knn_accuracy"),
             "linear": ms(r, "vehicle_animal.linear_accuracy"),
             "majority": first[r]["vehicle_animal"]["majority_rate"]}
         for r in metrics if "vehicle_animal" in first[r]},
        path("fig12"), next(iter(first.values()))["knn_k"], n_seeds=n_seeds)
    out["fig12"] = FIGURES["fig12"]
    return {k: os.path.join("figures", v) for k, v in out.items()}


def evaluate_runs(args, runs, run_dirs, todo, trained, lanes=None, threads=None):
    """Train what is left in this process, then evaluate every run and seed and draw the figures.

    With ``lanes`` (a :class:`tinyvae.study.parallel.Lanes`, while the runs train in other
    processes) each run is evaluated as soon as it finished training and a lane is free, on
    that lane's threads (a lane free before any run is ready computes a dataset's baselines);
    else one after another on ``threads`` threads. The numbers are the same in any order.

    Returns (full data, {run: {seed: metrics}}, {run: :func:`analysis.summarize`}, comparisons,
    figure paths, explorers).
    """
    full = {}                                                  # dataset: its splits, loaded when first needed
    state = {"metrics": {}, "arrays": {}, "per_image": {}, "bases": {}, "explorers": {},
             "locks": {k: threading.Lock() for k in DATASETS + ("count",)}}
    run_seed = {f"{r}/seed{s}": (r, s) for r in runs for s in runs[r]}
    first_of = {}                                              # "baselines/<dataset>": its first (run, seed)
    for key, (r, s) in run_seed.items():
        first_of.setdefault(f"baselines/{runs[r][s].dataset}", (r, s))
    counter = iter(range(1, len(run_seed) + 1))
    n_threads = threads if lanes is None else lanes.threads

    def one(key):
        if key in first_of:                                    # a free lane's work before a run is ready
            _dataset_and_baselines(args, runs, *first_of[key], full, state)
            return
        with state["locks"]["count"]:
            count = f"{next(counter)}/{len(run_seed)}"
        _evaluate_run(args, runs, run_dirs, todo, trained, key, *run_seed[key], count, full, state)
    with thread_limit(n_threads):
        if lanes is None:
            for key in run_seed:
                one(key)
        else:
            lanes.map(one, list(run_seed) + list(first_of))
    order = {r: list(runs[r]) for r in runs}                   # the configured order, whatever came first
    metrics = {r: {s: state["metrics"][r][s] for s in order[r]} for r in runs}
    per_image = {r: {s: state["per_image"][r][s] for s in order[r]} for r in runs}
    arrays = {r: state["arrays"][r] for r in runs}
    explorers = {r: state["explorers"][r] for r in runs if r in state["explorers"]}
    comparisons = compare(per_image)
    summaries = {r: analysis.summarize(metrics[r]) for r in metrics}          # mean and SD over seeds
    full = {ds: full[ds] for ds in DATASETS if ds in full}
    with thread_limit(n_threads):
        fig_paths = draw_figures(os.path.join(args.out, "figures"), full,
                                 {r: next(iter(runs[r].values())) for r in runs},
                                 arrays, metrics, summaries, args.seeds)
    return full, metrics, summaries, comparisons, fig_paths, explorers


def _evaluate_run(args, runs, run_dirs, todo, trained, key, r, s, count, full, state):
    """Train (what is left of) run ``key`` = "r/seed<s>" in this process, then evaluate it into
    ``state``; the first configured seed of a run also gives its pictures and explorer page."""
    cfg = runs[r][s]
    data, base = _dataset_and_baselines(args, runs, r, s, full, state)
    n_tr, n_te = len(data["train"][0]), len(data["test"][0])
    if key in trained:
        what = "trained above; evaluating"
    elif key not in todo:
        what = "finished earlier, training skipped (resume); evaluating"
    else:
        what = f"training {cfg.epochs} epoch(s) on {n_tr} images, testing on {n_te}"
    say(f"run {count} {key}: {what}")
    result = train(cfg, out_dir=run_dirs[key], data=data, resume=args.resume or key in trained,
                   progress=not args.no_progress and key not in trained, backend=args.backend)
    first = s == next(iter(runs[r]))
    iwae_k, iwae_n = iwae_settings(args)
    say(f"run {count} {key}: evaluating (kNN, baselines, ELBO, IWAE k={iwae_k} on "
        f"{min(iwae_n, n_te)} images{', pictures' if first else ''})")
    m, a = analysis.analyze(result, cfg, data, base, args.knn_k, iwae_k, iwae_n, pictures=first)
    state["metrics"].setdefault(r, {})[s] = m
    state["per_image"].setdefault(r, {})[s] = {"sse_mu": a["sse_mu"], "knn_correct": a["knn_correct"],
                                               "labels": a["labels"]}
    if first:
        state["arrays"][r] = a
    say(f"  {key}: test rec {m['test_rec']:.2f}, kl {m['test_kl']:.2f}, -ELBO {m['nelbo_nats']:.1f} nats, "
        f"IWAE log p(x) >= {m['iwae']['log_px']:.1f}, kNN acc {m['knn_accuracy']:.3f} "
        f"(PCA {m['pca_knn_accuracy']:.3f}), SSE of decode(mu) {m['rec_sse_mu']:.2f} "
        f"(PCA {m['pca_rec_sse']:.2f})")
    if first and r in EXPLORED and a["mu"] is not None:   # a static explorer page beside REPORT.md
        state["explorers"][r] = f"explore_{r}.html"
        size = explore.write_static_page(os.path.join(args.out, state["explorers"][r]), result.model,
                                         asdict(cfg), data["test"][1], a["mu"])
        say(f"  wrote {state['explorers'][r]} ({size / 1e6:.2f} MB)")


def _dataset_and_baselines(args, runs, r, s, full, state):
    """Run ``r``, seed ``s``: its data and :func:`analysis.baselines` of it, each loaded or
    computed once per dataset (and seed, with subsets)."""
    cfg = runs[r][s]
    bases, bkey = state["bases"], (cfg.dataset, s if cfg.train_subset or cfg.test_subset else None)
    with state["locks"][cfg.dataset]:
        if cfg.dataset not in full:
            say(f"loading {cfg.dataset}")
            full[cfg.dataset] = {split: load(cfg.dataset, split, args.data_dir) for split in ("train", "test")}
        data = select_subsets(full[cfg.dataset], cfg)
        if bkey not in bases:
            latents = sorted({get_arch(c.model).latent for by_seed in runs.values() for c in by_seed.values()
                              if c.dataset == cfg.dataset})
            say(f"baselines of {cfg.dataset} (PCA of the pixels, mean image) on {len(data['train'][0])} "
                f"training images")
            for k in [k for k in bases if k[0] == cfg.dataset]:             # keep one per dataset
                del bases[k]
            bases[bkey] = analysis.baselines(data, cfg.dataset, latents, args.knn_k, seed=cfg.seed)
        return data, bases[bkey]


def _start_thread(fn, *args):
    """Run ``fn(*args)`` in a daemon thread; returns ``wait()``, which joins it and returns
    its result or raises its exception."""
    box = {}

    def body():
        try:
            box["result"] = fn(*args)
        except BaseException as e:                    # handed to wait()
            box["error"] = e

    t = threading.Thread(target=body, name="tinyvae-evaluation", daemon=True)
    t.start()

    def wait():
        t.join()
        if "error" in box:
            raise box["error"]
        return box["result"]
    return wait


PAIRED = {"rec_simple_minus_highdim": ("sse_mu", "simple_cifar10", "highdim_cifar10"),
          "rec_simple_minus_deep": ("sse_mu", "simple_cifar10", "deep_cifar10"),
          "knn_deep_minus_simple": ("knn_correct", "deep_cifar10", "simple_cifar10")}


def compare(per_image):
    """Paired per-image differences between runs of the same seed: {name: {seed: {"diff", "se"}}}."""
    out = {}
    for name, (key, a, b) in PAIRED.items():
        if a not in per_image or b not in per_image:
            continue
        for s in per_image[a]:
            if s not in per_image[b]:
                continue
            if not np.array_equal(per_image[a][s]["labels"], per_image[b][s]["labels"]):
                raise ConfigError("the CIFAR-10 runs were tested on different images; "
                                  "paired comparisons need the same --seed and --test-subset")
            d, se = pr.paired_difference(per_image[a][s][key], per_image[b][s][key])
            out.setdefault(name, {})[s] = {"diff": d, "se": se}
    return out


def run_study(args):
    global _T0
    t_start = _T0 = time.perf_counter()
    out = args.out
    runs = configs(args)
    check_backend(args.backend)
    check_settings(args, runs)
    run_dirs = {f"{r}/seed{s}": os.path.join(out, "runs", r, f"seed{s}") for r in runs for s in runs[r]}
    cfg_of = {f"{r}/seed{s}": runs[r][s] for r in runs for s in runs[r]}
    if args.plan:                                      # fetch once here, not in every planned job
        from tinyvae.study import executors
        ensure(DATASETS, args.data_dir, download=not args.no_download, log=say)
        todo = [(k, cfg_of[k], run_dirs[k]) for k in sorted(cfg_of, key=lambda k: -run_cost(cfg_of[k]))
                if not finished_before(run_dirs[k], cfg_of[k])]
        for line in executors.plan_commands(todo, threads=args.threads or 1, data_dir=args.data_dir,
                                            backend=args.backend, resume=True):
            print(line)
        print(f"run_all: {len(todo)} run(s) to train (the others are finished); when they are, "
              f"run this command again with --resume instead of --plan to build the report",
              file=sys.stderr)
        return
    check_out_dir(out, create=False)
    ensure(DATASETS, args.data_dir, download=not args.no_download, log=say)  # before anything is created
    check_out_dir(out)
    with lock(out, "running a study"):                 # one study per folder; each run locks its own
        _run_locked(args, out, runs, cfg_of, run_dirs, t_start)


def _run_locked(args, out, runs, cfg_of, run_dirs, t_start):
    """:func:`run_study` with the study folder ``out`` created and locked."""
    if not args.resume:
        existing = [os.path.join(d, CHECKPOINT) for d in run_dirs.values()
                    if os.path.exists(os.path.join(d, CHECKPOINT))]
        if existing:
            raise ConfigError(f"{out} already holds runs ({', '.join(existing[:3])}"
                              f"{', ...' if len(existing) > 3 else ''}); pass --resume to continue them "
                              f"(finished runs are skipped), or choose another --out")
    preset = preset_name(args)
    free = free_cores()
    jobs = min(args.jobs or default_jobs(), len(cfg_of))
    threads = args.threads or max(1, free // jobs)          # per training process
    local = args.threads or free                            # this process: --jobs 1 training, evaluation
    say(f"{preset} settings: {len(runs)} runs x {args.seeds} seed(s) into {os.path.abspath(out)}; "
        + (f"{jobs} side by side with {threads} thread(s) each" if jobs > 1 else f"one at a time on {local} thread(s)")
        + f" ({free} of {cores()} cores free{'' if args.jobs or args.threads else '; --jobs and --threads change it'})")
    blas = blas_info()
    say(f"NumPy's BLAS: {describe_blas(blas)}")

    trained, peak_all, evaluation = set(), None, None
    todo = [k for k in cfg_of if not (args.resume and finished_before(run_dirs[k], cfg_of[k]))]
    if todo and (jobs > 1 or args.executor == "ray"):
        order = sorted(todo, key=lambda k: -run_cost(cfg_of[k]))
        tasks = [(k, cfg_of[k], run_dirs[k]) for k in order]
        if args.executor == "ray":
            from tinyvae.study import executors
            say(f"training {len(todo)} run(s) as Ray tasks with {threads} thread(s) each")
            res = executors.train_ray(tasks, threads, data_dir=args.data_dir, backend=args.backend,
                                      resume=args.resume, log=say, address=args.ray_address)
        else:
            say(f"training {len(todo)} run(s), {min(jobs, len(todo))} at a time with {threads} thread(s) "
                f"each, longest first: {', '.join(order)}; each run is evaluated here once it finished "
                f"and a lane is free")
            lanes = Lanes(jobs, threads, order)
            evaluation = _start_thread(evaluate_runs, args, runs, run_dirs, todo, set(order), lanes)
            try:
                res = train_parallel(tasks, jobs, threads, data_dir=args.data_dir, backend=args.backend,
                                     resume=args.resume, progress=not args.no_progress, log=say, lanes=lanes)
            except BaseException:
                lanes.abort()                            # the evaluation stops at its next run
                raise
        trained, peak_all = set(order), res["peak_rss_all_mib"]

    if evaluation is not None:
        full, metrics, summaries, comparisons, fig_paths, explorers = evaluation()
    else:
        full, metrics, summaries, comparisons, fig_paths, explorers = evaluate_runs(
            args, runs, run_dirs, todo, trained, threads=local)

    cfg0 = next(iter(cfg_of.values()))
    study = {
        "preset": preset, "seed": args.seed, "seeds": seeds_of(args), "epochs": cfg0.epochs,
        "batch_size": cfg0.batch_size, "lr": cfg0.lr, "knn_k": args.knn_k,
        "iwae_k": iwae_settings(args)[0], "iwae_images": iwae_settings(args)[1],
        "train_subset": {r: c.train_subset or "all" for r, c in cfg_of.items()},
        "test_subset": {r: c.test_subset or "all" for r, c in cfg_of.items()},
        "resumed": bool(args.resume),
        "train_seconds_total": float(sum(m["train_seconds"] for by in metrics.values() for m in by.values())),
        "jobs": jobs, "threads": threads, "executor": args.executor, "runs_trained_here": len(todo),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "wall_seconds": time.perf_counter() - t_start,
        "data": data_provenance(args.data_dir), "blas": blas,
    }
    # this process and the training processes together (sampled while they ran)
    study["peak_rss_all_mib"] = max(study["peak_rss_mib"], peak_all or 0.0)
    summary = {"study": study, "comparisons": comparisons,
               "runs": {r: {"config": run_config(next(iter(runs[r].values()))),
                            "seeds": metrics[r], "summary": summaries[r]} for r in runs}}
    summary = report.finite_or_null(summary)
    summary["claims"] = report.finite_or_null(claims.judge_claims(summary))
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
