"""The benchmark tools behind ``benchmarks/bench_step.py``: training-step
timings with the machine's BLAS peak beside them, a per-layer profile
(:mod:`layer_profile`), the step's products timed alone (:mod:`gemm_bound`)
and the start-up time of ``train`` (:mod:`startup`).
See benchmarks/README.md for what is measured and how.

The step timer itself (:class:`tinyvae.bench.StepRunner`, interleaved
rounds, FLOP counts) is the package's; this adds what only a benchmark
needs. Run from the repository root; the package is found beside this folder.
"""
import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir))

from tinyvae.bench import (BATCH, PAIRS, StepRunner, int_at_least, layer_flops,  # noqa: E402,F401
                           parse_pairs, run_interleaved, time_calls)
from tinyvae.errors import ConfigError, TinyVAEError  # noqa: E402
from tinyvae.kernels import BACKENDS, get_backend, kernel_threads  # noqa: E402
from tinyvae.threads import blas_info, describe_blas, thread_limit  # noqa: E402

from gemm_bound import format_gemm_bound, gemm_bound  # noqa: E402
from layer_profile import format_profile, profile  # noqa: E402
from startup import format_startup, measure_startup  # noqa: E402

POSITIVE, NONNEGATIVE = int_at_least(1), int_at_least(0)


# --------------------------------------------------------------------------
# the machine
# --------------------------------------------------------------------------

def cpu_name():
    """The CPU's model name, from /proc/cpuinfo where there is one."""
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
# timing training steps against the peak
# --------------------------------------------------------------------------

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


def summarize(times, flops):
    """Median, min, max in ms and GFLOP/s at the median."""
    ms = [1e3 * t for t in times]
    med = statistics.median(ms)
    return {"ms_step": med, "ms_min": min(ms), "ms_max": max(ms),
            "gflop_step": flops / 1e9, "gflops": flops / 1e9 / (med / 1e3)}


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
        n_threads = kernel_threads()
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
# output and the command line
# --------------------------------------------------------------------------

def format_table(results):
    r0 = results[0]
    m = r0["machine"]
    lines = [f"tinyvae training steps, batch {r0['batch']}, float32, {r0['backend']} kernels, "
             f"{r0['threads']} thread(s); {m['cpu']}, {m['cores']} cores",
             f"BLAS: {describe_blas(m)}; numba {m['numba']} threading layer {m['numba_threading_layer']}"]
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
        prog="python benchmarks/bench_step.py",
        description="Time full training steps (forward + backward + Adam) of the study's VAEs; "
                    "optionally profile them per layer and time the start-up of 'train'.",
        epilog="FLOPs count only GEMMs (2 x multiply-adds of conv/convT/dense, forward and "
               "backward dw + dx, without the first conv's unneeded dx); see benchmarks/README.md.")
    p.add_argument("--pairs", default="all",
                   help="comma-separated MODEL/DATASET pairs, or 'all' (default: simple/mnist, "
                        "simple/cifar10, highdim/cifar10, deep/cifar10)")
    p.add_argument("--threads", default=None,
                   help="pin numba and BLAS to N threads; '1,2' runs each (default: leave as is)")
    p.add_argument("--steps", type=POSITIVE, default=20, help="timed steps per pair (default 20)")
    p.add_argument("--warmup", type=NONNEGATIVE, default=3, help="untimed steps first (default 3)")
    p.add_argument("--rounds", type=POSITIVE, default=4,
                   help="interleave the pairs' timed steps in this many blocks (default 4)")
    p.add_argument("--max-seconds", type=float, default=120.0,
                   help="stop timing after the round that passes this many seconds (default 120)")
    p.add_argument("--backend", choices=BACKENDS, default=None,
                   help="kernels (default $TINYVAE_KERNELS, else numba)")
    p.add_argument("--batch-size", type=POSITIVE, default=BATCH, help="default 50")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object per pair on stdout (the tables go to stderr)")
    p.add_argument("--profile", action="store_true", help="also print a per-layer profile of each pair")
    p.add_argument("--profile-steps", type=POSITIVE, default=10, help="steps to profile (default 10)")
    p.add_argument("--profile-top", type=POSITIVE, default=25,
                   help="rows of the profile to print, the rest summed (default 25)")
    p.add_argument("--gemm-bound", action="store_true",
                   help="also time each pair's matrix products alone: the step's floor on this BLAS")
    p.add_argument("--startup", action="store_true",
                   help="also time `python -m tinyvae train` to its first step (needs the data)")
    p.add_argument("--data-dir", default=None, help="for --startup (default $TINYVAE_DATA_DIR)")
    p.add_argument("--no-peak", action="store_true", help="skip the sgemm peak measurement")
    p.add_argument("--peak-n", type=POSITIVE, default=2048, help="size of the square sgemm (default 2048)")
    return p


def main(argv=None):
    """``python benchmarks/bench_step.py ARGS``; returns the exit status."""
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
            if args.gemm_bound:
                bounds = [gemm_bound(m, d, n, batch=args.batch_size) for m, d in pairs]
                steps = {f"{r['model']}/{r['dataset']}": r["ms_step"] for r in results}
                print(format_gemm_bound(bounds, steps, results[0].get("sgemm_gflops")),
                      file=table_out, flush=True)
                if args.json:
                    for b in bounds:
                        print(json.dumps({"gemm_bound": b}), flush=True)
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
        print(f"bench_step: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench_step: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        with contextlib.suppress(Exception):
            sys.stderr.close()
        return 0
    return 0
