"""How far ``python run_all.py`` is from this machine's limit, as one number.

    python benchmarks/study_limit.py                                  # the limit (measures the peak)
    python benchmarks/study_limit.py --metrics results/metrics.json   # and that study's wall time against it
    python benchmarks/study_limit.py --wall 1380 --peak 128,256       # a wall time in s, a peak given

The limit is the time the study's training needs if every GEMM ran at
NumPy's sgemm peak: the real FLOPs of its training steps (what tinyvae's
layers compute, :func:`tinyvae.bench.step_flops`, times 10 epochs of
batches of 50 for each of the four runs) over the two-thread peak, but at
least the deep run's FLOPs over the one-thread peak, because one run
cannot be split across the two lanes. Evaluation, Adam and every
non-GEMM pass count as zero, so no real study can reach 100%.

The peak is measured in this process, so it is that of the BLAS kernel this
process runs. A study's metrics.json says which kernel it ran on; a peak of
another kernel is refused (run this with the study's ``OPENBLAS_CORETYPE``,
or give ``--peak``).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from benchlib import measure_sgemm  # noqa: E402
from tinyvae.bench import PAIRS, step_flops  # noqa: E402
from tinyvae.config import TrainConfig  # noqa: E402
from tinyvae.errors import ConfigError, TinyVAEError  # noqa: E402
from tinyvae.models import IMAGE_SHAPES, VAE, get_arch  # noqa: E402
from tinyvae.study.parallel import planned_steps  # noqa: E402
from tinyvae.threads import blas_info, describe_blas, thread_limit  # noqa: E402

PROTOCOL = TrainConfig()                # the paper's epochs and batch size
PAPER_RUNS = {f"{model}_{dataset}" for model, dataset in PAIRS}


def protocol_flops():
    """[(model, dataset, steps, GEMM FLOPs of one step)] of the study's four training runs."""
    out = []
    for model, dataset in PAIRS:
        vae = VAE(get_arch(model), IMAGE_SHAPES[dataset], np.random.default_rng(0))
        steps = planned_steps(TrainConfig(model=model, dataset=dataset))
        out.append((model, dataset, steps, step_flops(vae, PROTOCOL.batch_size)[0]))
    return out


def limit_seconds(runs, peak1, peak2):
    """(limit, all runs at the two-thread peak, the longest run at the one-thread peak), seconds."""
    total = sum(steps * f for _, _, steps, f in runs)
    longest = max(steps * f for _, _, steps, f in runs)
    both, one = total / (peak2 * 1e9), longest / (peak1 * 1e9)
    return max(both, one), both, one


def study_wall(path):
    """Wall seconds of a whole one-seed study of the paper's four runs, and the BLAS it ran on
    (:func:`tinyvae.threads.blas_info`'s dict, None in a study that did not record it), from its
    metrics.json."""
    try:
        with open(path) as f:
            m = json.load(f)
        study = m["study"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"cannot read a study's metrics from {path}: {e}") from None
    runs = set(m.get("runs", {}))
    if runs != PAPER_RUNS or study.get("seeds", [0]) != [study.get("seed", 0)]:
        raise ConfigError(f"{path}: not the plain study (runs {', '.join(sorted(runs))}, seeds "
                          f"{study.get('seeds')}); compare a 'python run_all.py' study")
    if study.get("preset") != "full" or study.get("epochs") != PROTOCOL.epochs:
        raise ConfigError(f"{path}: a {study.get('preset')} study of {study.get('epochs')} epochs, "
                          f"not the full protocol")
    if study.get("runs_trained_here") != len(PAPER_RUNS):
        raise ConfigError(f"{path}: this invocation trained {study.get('runs_trained_here')} of the 4 "
                          f"runs (resumed), so its wall time is not a whole study's")
    return float(study["wall_seconds"]), study.get("blas")


def minutes(s):
    return f"{int(s // 60)} min {s % 60:04.1f} s"


def parse_peak(text):
    try:
        p = [float(v) for v in text.split(",")]
    except ValueError:
        p = []
    if len(p) != 2 or min(p) <= 0:
        raise ConfigError(f"--peak expects two GFLOP/s, one and two threads, e.g. 128,256; got {text!r}")
    return p


def main(argv=None):
    p = argparse.ArgumentParser(prog="study_limit.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--metrics", help="metrics.json of a 'python run_all.py' study: compare its wall time")
    p.add_argument("--wall", type=float, help="a study's wall time in seconds (instead of --metrics)")
    p.add_argument("--peak", help="sgemm GFLOP/s on one and two threads, e.g. 128,256 "
                                  "(default: measured now, a 2048^3 product, best of 5)")
    args = p.parse_args(argv)
    try:
        if args.metrics and args.wall is not None:
            raise ConfigError("give --metrics or --wall, not both")
        wall, study_blas = study_wall(args.metrics) if args.metrics else (args.wall, None)
        if wall is not None and not wall > 0:
            raise ConfigError(f"--wall must be a positive number of seconds, got {wall}")
        here = None if args.peak else blas_info()                 # the kernel the peak is measured on
        if args.peak:
            peak1, peak2 = parse_peak(args.peak)
        else:
            if study_blas and study_blas.get("blas_kernel") != here["blas_kernel"]:
                raise ConfigError(f"{args.metrics}: the study ran on {describe_blas(study_blas)}, this "
                                  f"process on {describe_blas(here)}; measure the peak on the study's "
                                  f"kernel (set OPENBLAS_CORETYPE as the study had it) or give --peak")
            peaks = []
            for n in (1, 2):
                with thread_limit(n):
                    peaks.append(measure_sgemm(2048, 2048, 2048)["best"])
            peak1, peak2 = peaks
        runs = protocol_flops()
    except TinyVAEError as e:
        print(f"study_limit: error: {e}", file=sys.stderr)
        return 2
    total = sum(steps * f for _, _, steps, f in runs)
    print(f"the study's training: {sum(r[2] for r in runs):,} steps of batch {PROTOCOL.batch_size}, "
          f"{total / 1e12:.1f} TFLOP of GEMMs (real: fused layers counted as computed)")
    for model, dataset, steps, f in runs:
        print(f"  {model}/{dataset}: {steps:,} steps x {f / 1e9:.3f} GFLOP = {steps * f / 1e12:.1f} TFLOP")
    print(f"sgemm peak: {peak1:.1f} GFLOP/s on one thread, {peak2:.1f} on two"
          + (f" ({describe_blas(here)})" if here else ""))
    limit, both, one = limit_seconds(runs, peak1, peak2)
    print(f"limit: {minutes(limit)} (all runs at the two-thread peak: {minutes(both)}; the longest run "
          f"alone at the one-thread peak: {minutes(one)})")
    if wall is not None:
        print(f"run_all: {minutes(wall)} = {100 * wall / limit:.0f}% of the limit "
              f"(the limit is {100 * limit / wall:.0f}% of its wall time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
