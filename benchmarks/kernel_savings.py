"""What each numba kernel saves on a training step of the study's four pairs.

    python benchmarks/kernel_savings.py                      # every kernel, 30 pairs of steps
    python benchmarks/kernel_savings.py --kernels bias_grad,runs_s1 --pairs 40

One thread. For each (model, dataset) pair and kernel, single training steps
alternate between the numba kernel and its NumPy reference (A B, then B A,
...): the kernel's entry in ``tinyvae.kernels.KERNELS`` is swapped from
outside for the reference's, everything else stays numba. Reported: the
median step time of each side and the median of the paired differences
(reference - numba), in ms and in % of the reference's median step.
``runs_s1`` turns off only the run-copying im2col/col2im for few channels
(the general numba loops run instead).

On a loaded machine a step's noise hides savings of a few per cent, so
``--calls`` also measures each kernel alone: the calls one training step
makes (recorded with their arguments) are replayed with the numba kernel
and with the reference, alternating, and the medians of their summed times
are compared with the median step time.
"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from tinyvae import kernels  # noqa: E402
from tinyvae.bench import PAIRS, StepRunner  # noqa: E402
from tinyvae.kernels import unfold  # noqa: E402
from tinyvae.threads import set_threads  # noqa: E402


def switch(name, fast):
    """Use kernel ``name``'s numba version (``fast``) or its NumPy reference."""
    if name == "runs_s1":
        unfold._runs_apply = ORIGINAL_RUNS if fast else (lambda *args: False)
    else:
        numba_fn, reference = ORIGINAL[name]
        kernels.KERNELS[name] = (numba_fn if fast else reference, reference)


ORIGINAL = dict(kernels.KERNELS)
ORIGINAL_RUNS = unfold._runs_apply


def measure(runner, name, n):
    """``(fast ms, reference ms, median paired difference ms)`` over ``n`` pairs of steps."""
    times = {True: [], False: []}
    diffs = []
    for fast in (False, True):                           # warm both paths
        switch(name, fast)
        runner.step()
    for k in range(n):
        order = (True, False) if k % 2 == 0 else (False, True)
        got = {}
        for fast in order:
            switch(name, fast)
            t0 = time.perf_counter()
            runner.step()
            got[fast] = time.perf_counter() - t0
            times[fast].append(got[fast])
        diffs.append(got[False] - got[True])
    switch(name, True)
    return tuple(1e3 * statistics.median(v) for v in (times[True], times[False], diffs))


def record_calls(runner):
    """``{kernel name: [args, ...]}``: copies of every kernel call of one training step."""
    calls = {name: [] for name in ORIGINAL}
    for name, (fast, ref) in ORIGINAL.items():
        def recording(*args, fast=fast, name=name):
            calls[name].append([a.copy() if hasattr(a, "copy") else a for a in args])
            return fast(*args)
        kernels.KERNELS[name] = (recording, ref)
    runner.step()
    kernels.KERNELS.update(ORIGINAL)
    return calls


def replay(fn, calls):
    t0 = time.perf_counter()
    for args in calls:
        fn(*args)
    return time.perf_counter() - t0


def measure_calls(calls, name, n):
    """``(numba ms, reference ms)`` per step of kernel ``name``'s calls, medians of ``n`` replays."""
    if name == "runs_s1":                                # only the calls the run copies serve
        todo = [a for a in calls["im2col"] if ORIGINAL_RUNS(a[0].shape, *a[1:])]
        todo += [a for a in calls["col2im"] if ORIGINAL_RUNS(*a[1:])]
    else:
        todo = calls[name]
    fns = {}
    for fast in (True, False):
        if name == "runs_s1":
            fns[fast] = lambda *args, fast=fast: _replay_runs(fast, *args)
        else:
            fns[fast] = ORIGINAL[name][0 if fast else 1]
    times = {True: [], False: []}
    for k in range(n + 1):
        for fast in ((True, False) if k % 2 == 0 else (False, True)):
            t = replay(fns[fast], todo)
            if k:                                        # the first round warms up
                times[fast].append(t)
    return tuple(1e3 * statistics.median(times[f]) for f in (True, False))


def _replay_runs(fast, *args):
    unfold._runs_apply = ORIGINAL_RUNS if fast else (lambda *a: False)
    try:
        fn = unfold.im2col_numba if len(args) == 6 and args[0].ndim == 4 else unfold.col2im_numba
        return fn(*args)
    finally:
        unfold._runs_apply = ORIGINAL_RUNS


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kernels", default=",".join(list(kernels.KERNELS) + ["runs_s1"]))
    p.add_argument("--pairs", type=int, default=30, help="pairs of steps per kernel and model")
    p.add_argument("--calls", action="store_true",
                   help="instead: replay one step's calls of each kernel alone (see above)")
    p.add_argument("--json", default=None, help="also write the results to this file")
    args = p.parse_args(argv)
    set_threads(1)
    results = []
    for arch, dataset in PAIRS:
        runner = StepRunner(arch, dataset)
        runner.time_steps(3)
        if args.calls:
            calls = record_calls(runner)
            step = 1e3 * statistics.median(runner.time_steps(15))
            for name in args.kernels.split(","):
                fast, ref = measure_calls(calls, name, args.pairs)
                results.append({"model": arch, "dataset": dataset, "kernel": name, "step_ms": step,
                                "numba_ms": fast, "numpy_ms": ref, "saving_ms": ref - fast,
                                "saving_pct": 100 * (ref - fast) / step})
                print(f"{arch + '/' + dataset:<16} {name:<17} per step: numba {fast:7.2f} ms  numpy "
                      f"{ref:7.2f} ms  saving {ref - fast:6.2f} ms = {100 * (ref - fast) / step:5.1f}% "
                      f"of a {step:.1f} ms step", flush=True)
            continue
        for name in args.kernels.split(","):
            fast, ref, diff = measure(runner, name, args.pairs)
            results.append({"model": arch, "dataset": dataset, "kernel": name, "numba_ms": fast,
                            "numpy_ms": ref, "saving_ms": diff, "saving_pct": 100 * diff / ref})
            print(f"{arch + '/' + dataset:<16} {name:<17} numba {fast:8.2f} ms  numpy {ref:8.2f} ms  "
                  f"saving {diff:7.2f} ms = {100 * diff / ref:5.1f}%", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
