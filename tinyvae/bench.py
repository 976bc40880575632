"""Benchmarks: time full training steps, profile them per layer, time start-up.

``python -m tinyvae bench`` (or ``python benchmarks/bench_step.py``) times
full training steps -- forward, loss, backward and the Adam update, exactly
what :mod:`tinyvae.train` runs per batch -- at batch 50 in float32, after a
warm-up, for the study's four (model, dataset) pairs. Steps of the pairs are
run in interleaved blocks, so that a burst of load on a shared machine hits
every pair alike, and the median is reported.

What the FLOP numbers count
---------------------------
Only matrix products: ``2 * multiply-adds`` of every conv, transposed conv
and dense layer (bias adds, activations, pooling, im2col and the loss are
not counted).

* forward: each layer's GEMM;
* backward: the weight gradient (same size as the forward GEMM) and the
  input gradient (same size again) of every layer, *except* the input
  gradient of the network's first conv, which nothing needs: tinyvae skips it
  (``Conv2D(need_dx=False)``) and so does a framework for an input that does
  not require a gradient.

``gflop_step`` is the work tinyvae's layers do: a fused
``UpsampleConvTranspose2D`` multiplies at the resolution *before* the
upsampling, 4x fewer multiply-adds than the transposed conv run on the
upsampled image. ``gflop_nominal`` counts the architecture as written
(upsample, then transposed conv), which is what a framework such as PyTorch
computes. ``gflops = gflop_step / seconds per step``; ``pct_peak`` divides
that by the measured float32 GEMM rate of this machine (NumPy's BLAS on a
2048^3 product, same thread count).
"""
import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from . import layers as L
from .cli import nonnegative_int, positive_int
from .threads import thread_limit
from .data import IMAGE_SHAPES
from .errors import ConfigError, TinyVAEError
from .kernels import BACKENDS, get_backend
from .losses import kl_loss, sse_loss
from .models import ARCHS, VAE
from .optim import Adam

PAIRS = (("simple", "mnist"), ("simple", "cifar10"), ("highdim", "cifar10"), ("deep", "cifar10"))
BATCH = 50


# --------------------------------------------------------------------------
# analytic FLOP counts
# --------------------------------------------------------------------------

def _gemm_layers(model):
    """``(layer, input shape of one example)`` for every layer, in forward order."""
    out, shape = [], model.image_shape
    for layer in model.encoder:
        out.append((layer, shape))
        shape = tuple(layer.output_shape(shape))
    out += [(model.mu_head, shape), (model.logvar_head, shape)]
    shape = (model.arch.latent,)
    for layer in model.decoder:
        out.append((layer, shape))
        shape = tuple(layer.output_shape(shape))
    return out


def layer_flops(model, batch=BATCH):
    """GEMM FLOPs per layer of one training step of ``model`` at ``batch``.

    Returns a list of dicts, one per conv / transposed conv / dense layer, in
    forward order: ``name``, ``gemm`` (M, K, N) of the forward product,
    ``forward``, ``backward`` (dw + dx, dx left out where the layer skips
    it), ``nominal_forward``, ``nominal_backward`` (the unfused architecture:
    a transposed conv after an upsampling multiplies at the upsampled
    resolution).
    """
    up_cls = getattr(L, "UpsampleConvTranspose2D", None)
    rows, first = [], True
    for layer, in_shape in _gemm_layers(model):
        name = getattr(layer, "name", type(layer).__name__.lower())
        fused = up_cls is not None and isinstance(layer, up_cls)
        if isinstance(layer, L.Conv2D):
            KH, KW, C, F = layer.params["w"].shape
            Ho, Wo, _ = layer.output_shape(in_shape)
            gemm = (batch * Ho * Wo, KH * KW * C, F)
            nominal = gemm
        elif isinstance(layer, L.ConvTranspose2D):            # (N*H*W, F) x (F, KH*KW*C)
            KH, KW, C, F = layer.params["w"].shape
            H, W = in_shape[0], in_shape[1]
            gemm = (batch * H * W, F, KH * KW * C)
            f = getattr(layer, "factor", 2) if fused else 1
            nominal = (batch * H * W * f * f, F, KH * KW * C)
        elif isinstance(layer, L.Dense):
            D, M = layer.params["w"].shape
            gemm = nominal = (batch, D, M)
        else:
            continue
        needs_dx = getattr(layer, "need_dx", True)
        fwd, nom = 2 * math.prod(gemm), 2 * math.prod(nominal)
        rows.append({"name": name, "gemm": gemm, "forward": fwd,
                     "backward": fwd * (2 if needs_dx else 1),
                     "nominal_forward": nom, "nominal_backward": nom * (1 if first else 2)})
        first = False
    return rows


def step_flops(model, batch=BATCH):
    """``(executed, nominal)`` GEMM FLOPs of one training step (see the module doc)."""
    rows = layer_flops(model, batch)
    return (sum(r["forward"] + r["backward"] for r in rows),
            sum(r["nominal_forward"] + r["nominal_backward"] for r in rows))


# --------------------------------------------------------------------------
# the machine
# --------------------------------------------------------------------------

def blas_info():
    """What threadpoolctl says about the BLAS NumPy uses (kernel = OpenBLAS coretype)."""
    from threadpoolctl import threadpool_info
    import numpy.linalg  # noqa: F401  (make sure NumPy's BLAS is loaded)
    for d in threadpool_info():
        if d.get("user_api") == "blas" and "numpy" in d.get("filepath", ""):
            break
    else:
        blas = [d for d in threadpool_info() if d.get("user_api") == "blas"]
        d = blas[0] if blas else {}
    return {"blas": d.get("internal_api"), "blas_version": d.get("version"),
            "blas_kernel": d.get("architecture"), "blas_threads": d.get("num_threads"),
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE")}


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info():
    """A small dict describing the machine and libraries (goes into every JSON line)."""
    import numba
    info = {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "numba": numba.__version__}
    info.update(blas_info())
    try:
        info["numba_threading_layer"] = numba.threading_layer()
    except ValueError:                      # no parallel numba function has run yet
        info["numba_threading_layer"] = None
    return info


def measure_sgemm(m, k, n, repeats=5, min_seconds=0.2):
    """float32 ``(m, k) @ (k, n)`` with NumPy: ``{"best": GFLOP/s, "median": GFLOP/s}``.

    Each sample repeats the product until it has run ``min_seconds``; the
    best sample is the machine's rate (noise only ever slows a run down).
    """
    rng = np.random.default_rng(0)
    a = rng.random((m, k), dtype=np.float32)
    b = rng.random((k, n), dtype=np.float32)
    c = np.empty((m, n), dtype=np.float32)
    np.matmul(a, b, out=c)                                      # warm-up
    t0 = time.perf_counter()
    np.matmul(a, b, out=c)
    once = max(time.perf_counter() - t0, 1e-6)
    inner = max(1, int(min_seconds / once))
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            np.matmul(a, b, out=c)
        rates.append(2.0 * m * k * n * inner / (time.perf_counter() - t0) / 1e9)
    return {"shape": [m, k, n], "best": max(rates), "median": statistics.median(rates)}


def largest_gemm(models, batch):
    """(M, K, N) of the forward GEMM with the most FLOPs among ``models``' conv layers."""
    best = None
    for model in models:
        for r in layer_flops(model, batch):
            if len(r["gemm"]) == 3 and r["gemm"][0] > batch and (best is None or r["forward"] > best[0]):
                best = (r["forward"], r["gemm"])
    return best[1] if best else (batch, 1024, 1024)


# --------------------------------------------------------------------------
# timing training steps
# --------------------------------------------------------------------------

class StepRunner:
    """One model + Adam + a fixed random batch; ``step()`` is one training step."""

    def __init__(self, arch, dataset, batch=BATCH, backend=None, seed=0):
        rng = np.random.default_rng(seed)
        self.arch, self.dataset, self.batch = arch, dataset, batch
        if dataset not in IMAGE_SHAPES:
            raise ConfigError(f"unknown dataset {dataset!r}; accepted: {', '.join(IMAGE_SHAPES)}")
        self.model = VAE(arch, IMAGE_SHAPES[dataset], rng, np.float32, backend)
        self.opt = Adam(1e-4, backend=backend)
        self.x = rng.random((batch,) + self.model.image_shape, dtype=np.float32)   # (B, H, W, C)
        self.eps = rng.standard_normal((batch, self.model.arch.latent), dtype=np.float32)
        self.flops, self.nominal_flops = step_flops(self.model, batch)

    def step(self):
        """forward + loss + backward + Adam, as tinyvae.train does per batch."""
        self.model.loss(self.x, self.eps)
        self.opt.step(self.model.params, self.model.grads)

    def time_steps(self, n):
        """Seconds of each of ``n`` steps."""
        return time_calls(self.step, n)


def time_calls(fn, n):
    """Seconds of each of ``n`` calls of ``fn()`` (shared with benchmarks/compare_torch.py)."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def parse_pairs(text):
    """``"all"`` or ``"simple/mnist,deep/cifar10"`` -> list of (model, dataset)."""
    if text in (None, "", "all"):
        return list(PAIRS)
    pairs = []
    for item in text.split(","):
        item = item.strip()
        model, sep, dataset = item.partition("/")
        if not sep or model not in ARCHS or dataset not in IMAGE_SHAPES:
            raise ConfigError(f"bad pair {item!r}: expected MODEL/DATASET with MODEL in "
                              f"{', '.join(ARCHS)} and DATASET in {', '.join(IMAGE_SHAPES)} "
                              f"(e.g. simple/mnist), or 'all'")
        pairs.append((model, dataset))
    return pairs


def parse_threads(text):
    """``"1,2"`` -> [1, 2]; None -> [None] (leave the thread counts as they are)."""
    if text is None:
        return [None]
    try:
        out = [int(t) for t in str(text).split(",")]
    except ValueError:
        out = []
    if not out or min(out) < 1:
        raise ConfigError(f"--threads expects positive integers separated by commas, got {text!r}")
    return out


def current_threads():
    import numba
    return numba.get_num_threads()


def summarize(times, flops):
    """Median, min, max in ms and GFLOP/s at the median."""
    ms = [1e3 * t for t in times]
    med = statistics.median(ms)
    return {"ms_step": med, "ms_min": min(ms), "ms_max": max(ms),
            "gflop_step": flops / 1e9, "gflops": flops / 1e9 / (med / 1e3)}


def run_interleaved(runners, steps, warmup, rounds, budget=None, between=None):
    """Warm each runner up, then time ``steps`` steps of each in ``rounds`` interleaved blocks.

    ``budget``: seconds; once the timed blocks have taken longer, stop after
    the current round (a loaded machine then gives fewer steps, not a longer
    wait). ``between``: called after each round (e.g. to sample the sgemm rate).
    Returns one list of step times per runner.
    """
    for r in runners:
        r.time_steps(warmup)
    rounds = max(1, min(rounds, steps))
    per = [steps // rounds + (1 if i < steps % rounds else 0) for i in range(rounds)]
    times = [[] for _ in runners]
    t0 = time.perf_counter()
    for k in per:
        for i, r in enumerate(runners):
            times[i] += r.time_steps(k)
        if between is not None:
            between()
        if budget is not None and time.perf_counter() - t0 > budget:
            break
    return times


class PeakSampler:
    """The best sgemm rate seen over several short samples spread through a run.

    On a shared machine a single measurement may fall into a burst of load;
    sampling before, between and after the timed blocks and keeping the best
    gives the machine's rate (noise only ever slows a product down).
    """

    def __init__(self, m, k, n):
        self.shape, self.rates = (m, k, n), []

    def __call__(self, repeats=2, min_seconds=0.1):
        self.rates.append(measure_sgemm(*self.shape, repeats=repeats, min_seconds=min_seconds)["best"])

    @property
    def best(self):
        return max(self.rates)


def bench(pairs=PAIRS, threads=None, steps=20, warmup=3, rounds=4, backend=None, batch=BATCH,
          peak_n=2048, peak=True, budget=120.0):
    """Time training steps of each pair; returns one result dict per pair.

    ``threads``: pin numba and BLAS to this many threads (None: leave as is).
    ``peak``: also measure NumPy's sgemm rate (``peak_n``^3, sampled between
    the timed blocks, and the largest conv GEMM of the models) and give each
    result as a fraction of it. ``budget``: seconds for the timed blocks of
    all pairs together (see :func:`run_interleaved`).
    """
    runners = [StepRunner(m, d, batch, backend) for m, d in pairs]
    with thread_limit(threads):
        n_threads = current_threads()
        square = PeakSampler(peak_n, peak_n, peak_n)
        if peak:
            square(repeats=3, min_seconds=0.2)
            model_gemm = measure_sgemm(*largest_gemm([r.model for r in runners], batch))
        times = run_interleaved(runners, steps, warmup, rounds, budget, square if peak else None)
        info = machine_info()
    results = []
    for r, t in zip(runners, times):
        res = {"model": r.arch, "dataset": r.dataset, "threads": n_threads, "batch": batch,
               "backend": get_backend(backend), "steps": len(t)}
        res.update(summarize(t, r.flops))
        res["gflop_nominal"] = r.nominal_flops / 1e9
        if peak:
            res["sgemm_gflops"] = square.best
            res["sgemm_model_gflops"] = model_gemm["best"]
            res["sgemm_model_shape"] = model_gemm["shape"]
            res["pct_peak"] = 100.0 * res["gflops"] / square.best
        res["machine"] = info
        results.append(res)
    return results


# --------------------------------------------------------------------------
# per-layer profile
# --------------------------------------------------------------------------

def time_loss_terms(runner, n):
    """Seconds per call of the loss functions alone (sse + KL), on the runner's shapes."""
    rng = np.random.default_rng(1)
    xhat = rng.random(runner.x.shape, dtype=np.float32)
    mu = rng.standard_normal(runner.eps.shape, dtype=np.float32)
    logvar = 0.1 * rng.standard_normal(runner.eps.shape, dtype=np.float32)
    t0 = time.perf_counter()
    for _ in range(n):
        sse_loss(xhat, runner.x)
        kl_loss(mu, logvar)
    return (time.perf_counter() - t0) / n


def profile(arch, dataset, threads=None, steps=10, warmup=3, backend=None, batch=BATCH):
    """Where one training step's time goes.

    Returns a dict with ``ms_step`` (mean of the profiled steps) and ``rows``:
    ``(label, ms per step, % of step, GFLOP/s or None)`` sorted by time, with
    every layer's forward and backward (from ``model.timings``), the Adam
    update, the loss functions (timed apart on the same shapes) and
    ``other``: what is left (reparameterization, Python overhead, ...).
    """
    r = StepRunner(arch, dataset, batch, backend)
    flops = {row["name"]: row for row in layer_flops(r.model, batch)}
    with thread_limit(threads):
        n_threads = current_threads()
        r.time_steps(warmup)
        r.model.timings = {}
        adam = total = 0.0
        for _ in range(steps):
            t0 = time.perf_counter()
            r.model.loss(r.x, r.eps)
            t1 = time.perf_counter()
            r.opt.step(r.model.params, r.model.grads)
            t2 = time.perf_counter()
            adam += t2 - t1
            total += t2 - t0
        timings, r.model.timings = r.model.timings, None
        loss_s = time_loss_terms(r, steps)
    ms_step = 1e3 * total / steps
    rows = []
    for (name, phase), s in timings.items():
        ms = 1e3 * s / steps
        f = flops.get(name, {}).get(phase)
        rows.append((f"{name} {phase}", ms, f / 1e6 / ms if f else None))
    rows.append(("adam update", 1e3 * adam / steps, None))
    rows.append(("loss terms (sse + kl, timed apart)", 1e3 * loss_s, None))
    rest = ms_step - sum(row[1] for row in rows)
    rows.append(("other (reparam, python, ...)", rest, None))
    rows.sort(key=lambda row: -row[1])
    return {"model": arch, "dataset": dataset, "threads": n_threads, "batch": batch,
            "backend": get_backend(backend), "steps": steps, "ms_step": ms_step,
            "rows": [(lab, ms, 100.0 * ms / ms_step, gf) for lab, ms, gf in rows]}


def _kind(label):
    """``"enc3_conv2d backward"`` -> ``"conv2d backward"``; other labels unchanged."""
    head, _, phase = label.rpartition(" ")
    if phase in ("forward", "backward") and "_" in head:
        return f"{head.split('_', 1)[1]} {phase}"
    return label


def by_kind(p):
    """The profile's rows summed per layer kind and phase, sorted by time."""
    acc = {}
    for lab, ms, pct, _ in p["rows"]:
        k = _kind(lab)
        a = acc.setdefault(k, [0.0, 0.0])
        a[0] += ms
        a[1] += pct
    return sorted(((k, ms, pct) for k, (ms, pct) in acc.items()), key=lambda r: -r[1])


def format_profile(p, top=25):
    """The profile as text: the ``top`` rows, the rest summed, then the totals per layer kind."""
    lines = [f"profile {p['model']}/{p['dataset']}, batch {p['batch']}, {p['threads']} thread(s), "
             f"{p['backend']}: {p['ms_step']:.1f} ms/step (mean of {p['steps']} steps)"]
    rows = p["rows"]
    width = max(len(r[0]) for r in rows) + 2
    lines.append(f"  {'layer / part':<{width}}{'ms/step':>9}{'%':>7}{'GFLOP/s':>9}")
    for lab, ms, pct, gf in rows[:top]:
        gfs = f"{gf:9.1f}" if gf else f"{'':>9}"
        lines.append(f"  {lab:<{width}}{ms:9.2f}{pct:7.1f}{gfs}")
    if len(rows) > top:
        rest = rows[top:]
        lines.append(f"  {f'({len(rest)} more rows)':<{width}}{sum(r[1] for r in rest):9.2f}"
                     f"{sum(r[2] for r in rest):7.1f}")
    lines.append("  by kind: " + ", ".join(f"{k} {pct:.0f}%" for k, ms, pct in by_kind(p) if pct >= 0.5))
    return "\n".join(lines)


# --------------------------------------------------------------------------
# start-up time of `python -m tinyvae train`
# --------------------------------------------------------------------------

_STARTUP_CHILD = r"""
import json, os, sys, time
import tinyvae.models as M, tinyvae.optim as O
marks = {}
_loss, _step = M.VAE.loss, O.Adam.step
def loss(self, *a, **k):
    marks.setdefault("first_step_start", time.time())
    return _loss(self, *a, **k)
def step(self, *a, **k):
    r = _step(self, *a, **k)
    marks["first_step_end"] = time.time()
    sys.stdout.write("\nSTARTUP " + json.dumps(marks) + "\n"); sys.stdout.flush()
    os._exit(0)
M.VAE.loss, O.Adam.step = loss, step
from tinyvae.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _run_timed(cmd, env):
    t0 = time.time()
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t1 = time.time()
    return t0, t1, p


def measure_startup(model="simple", dataset="mnist", data_dir=None, repeats=3, cold=True):
    """Seconds from launching ``python -m tinyvae train ...`` to its first training step.

    The child runs ``tinyvae.cli.main`` (what ``python -m tinyvae`` runs) with
    ``VAE.loss`` and ``Adam.step`` wrapped to note the wall-clock time when
    the first step starts and when it ends, then exits. ``warm``: the numba
    cache in place (one untimed run first fills it); ``cold``: an empty
    ``NUMBA_CACHE_DIR``, so every kernel is compiled. Also times
    ``import numpy`` and ``import tinyvae.train`` alone.
    """
    env = dict(os.environ)
    if data_dir:
        env["TINYVAE_DATA_DIR"] = str(data_dir)
    with tempfile.TemporaryDirectory() as tmp:
        def once(extra_env=None, i=0):
            out = os.path.join(tmp, f"run{i}")
            cmd = [sys.executable, "-c", _STARTUP_CHILD, "train", "--model", model, "--dataset", dataset,
                   "--epochs", "1", "--out", out, "--no-progress"]
            t0, t1, p = _run_timed(cmd, {**env, **(extra_env or {})})
            marks = [line for line in p.stdout.splitlines() if line.startswith("STARTUP ")]
            if not marks:
                msg = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
                raise ConfigError(f"the start-up run did not reach a training step: {msg}")
            m = json.loads(marks[-1][len("STARTUP "):])
            return {"to_first_step": m["first_step_start"] - t0,
                    "first_step_done": m["first_step_end"] - t0, "total": t1 - t0}

        result = {"model": model, "dataset": dataset}
        if cold:
            result["cold"] = once({"NUMBA_CACHE_DIR": os.path.join(tmp, "numba-cache")}, 100)
        once(i=101)                                               # make sure the cache is warm
        warm = [once(i=i) for i in range(repeats)]
        result["warm"] = {k: statistics.median(w[k] for w in warm) for k in warm[0]}
        result["warm_runs"] = warm
        for label, code in (("python_startup", "pass"), ("import_numpy", "import numpy"),
                            ("import_tinyvae_train", "import tinyvae.train")):
            ts = []
            for _ in range(repeats):
                t0, t1, p = _run_timed([sys.executable, "-c", code], env)
                ts.append(t1 - t0)
            result[label] = statistics.median(ts)
    return result


def format_startup(s):
    w = s["warm"]
    lines = [f"start-up of `python -m tinyvae train --model {s['model']} --dataset {s['dataset']}` "
             f"(seconds, median of {len(s['warm_runs'])} runs, warm numba cache):",
             f"  to the first training step     {w['to_first_step']:6.2f}   (target < 3 s)",
             f"  first step done                {w['first_step_done']:6.2f}"]
    if "cold" in s:
        c = s["cold"]
        lines.append(f"  cold cache: first step start   {c['to_first_step']:6.2f}, "
                     f"first step done {c['first_step_done']:.2f}")
    lines.append(f"  for scale: python alone {s['python_startup']:.2f}, import numpy "
                 f"{s['import_numpy']:.2f}, import tinyvae.train {s['import_tinyvae_train']:.2f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# output and the command line
# --------------------------------------------------------------------------

def format_table(results):
    r0 = results[0]
    m = r0["machine"]
    lines = [f"tinyvae training steps, batch {r0['batch']}, float32, {r0['backend']} kernels, "
             f"{r0['threads']} thread(s); {m['cpu']}, {m['cores']} cores",
             f"BLAS: {m['blas']} {m['blas_version']} kernel {m['blas_kernel']} "
             f"(OPENBLAS_CORETYPE={m['OPENBLAS_CORETYPE'] or 'unset'}); "
             f"numba {m['numba']} threading layer {m['numba_threading_layer']}"]
    if "sgemm_gflops" in r0:
        s = r0["sgemm_model_shape"]
        lines.append(f"sgemm peak: {r0['sgemm_gflops']:.1f} GFLOP/s (2048^3-sized), "
                     f"{r0['sgemm_model_gflops']:.1f} GFLOP/s on a model-shaped "
                     f"({s[0]}, {s[1]}) x ({s[1]}, {s[2]})")
    head = f"{'model/dataset':<17}{'ms/step':>9}{'min':>8}{'max':>8}{'GFLOP':>8}{'GFLOP/s':>9}"
    if "pct_peak" in r0:
        head += f"{'% peak':>8}"
    lines.append(head)
    for r in results:
        line = (f"{r['model'] + '/' + r['dataset']:<17}{r['ms_step']:9.1f}{r['ms_min']:8.1f}"
                f"{r['ms_max']:8.1f}{r['gflop_step']:8.3f}{r['gflops']:9.1f}")
        if "pct_peak" in r:
            line += f"{r['pct_peak']:8.1f}"
        lines.append(line)
    return "\n".join(lines)


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m tinyvae bench",
        description="Time full training steps (forward + backward + Adam) of the study's VAEs; "
                    "optionally profile them per layer and time the start-up of 'train'.",
        epilog="FLOPs count only GEMMs (2 x multiply-adds of conv/convT/dense, forward and "
               "backward dw + dx, without the first conv's unneeded dx); see tinyvae/bench.py.")
    p.add_argument("--pairs", default="all",
                   help="comma-separated MODEL/DATASET pairs, or 'all' (default: simple/mnist, "
                        "simple/cifar10, highdim/cifar10, deep/cifar10)")
    p.add_argument("--threads", default=None,
                   help="pin numba and BLAS to N threads; '1,2' runs each (default: leave as is)")
    p.add_argument("--steps", type=positive_int, default=20, help="timed steps per pair (default 20)")
    p.add_argument("--warmup", type=nonnegative_int, default=3, help="untimed steps first (default 3)")
    p.add_argument("--rounds", type=positive_int, default=4,
                   help="interleave the pairs' timed steps in this many blocks (default 4)")
    p.add_argument("--max-seconds", type=float, default=120.0,
                   help="stop timing after the round that passes this many seconds (default 120)")
    p.add_argument("--backend", choices=BACKENDS, default=None,
                   help="kernels (default $TINYVAE_KERNELS, else numba)")
    p.add_argument("--batch-size", type=positive_int, default=BATCH, help="default 50")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object per pair on stdout (the tables go to stderr)")
    p.add_argument("--profile", action="store_true", help="also print a per-layer profile of each pair")
    p.add_argument("--profile-steps", type=positive_int, default=10, help="steps to profile (default 10)")
    p.add_argument("--profile-top", type=positive_int, default=25,
                   help="rows of the profile to print, the rest summed (default 25)")
    p.add_argument("--startup", action="store_true",
                   help="also time `python -m tinyvae train` to its first step (needs the data)")
    p.add_argument("--data-dir", default=None, help="for --startup (default $TINYVAE_DATA_DIR)")
    p.add_argument("--no-peak", action="store_true", help="skip the sgemm peak measurement")
    p.add_argument("--peak-n", type=positive_int, default=2048, help="size of the square sgemm (default 2048)")
    return p


def main(argv=None):
    """``python -m tinyvae bench ARGS``; returns the exit status."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:                        # `python -m tinyvae bench -- --pairs ...`
        argv = argv[1:]
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:                       # --help, or a malformed flag (message printed)
        return e.code if isinstance(e.code, int) else 2
    table_out = sys.stderr if args.json else sys.stdout
    try:
        pairs = parse_pairs(args.pairs)
        threads = parse_threads(args.threads)
        get_backend(args.backend)
        for n in threads:
            results = bench(pairs, n, args.steps, args.warmup, args.rounds, args.backend,
                            args.batch_size, args.peak_n, peak=not args.no_peak,
                            budget=args.max_seconds)
            print(format_table(results), file=table_out, flush=True)
            if args.json:
                for r in results:
                    print(json.dumps(r), flush=True)
            if args.profile:
                for m, d in pairs:
                    prof = profile(m, d, n, args.profile_steps, args.warmup, args.backend,
                                   args.batch_size)
                    print(format_profile(prof, args.profile_top), file=table_out, flush=True)
                    if args.json:
                        print(json.dumps({"profile": prof}), flush=True)
        if args.startup:
            s = measure_startup(data_dir=args.data_dir)
            print(format_startup(s), file=table_out, flush=True)
            if args.json:
                print(json.dumps({"startup": s}), flush=True)
    except TinyVAEError as e:
        print(f"tinyvae bench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tinyvae bench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        with contextlib.suppress(Exception):
            sys.stderr.close()
        return 0
    return 0
