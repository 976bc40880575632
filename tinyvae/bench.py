"""Time training steps of the study's models: ``python -m tinyvae bench``.

A step is what :mod:`tinyvae.train` runs per batch -- forward, loss,
backward and the Adam update -- in float32 on a fixed random batch. The
pairs' steps run in interleaved rounds, so a burst of load on a shared
machine hits every pair alike, and the median is reported with the GEMM
FLOPs of a step (:func:`step_flops`). Per-layer profiles, the machine's
BLAS peak and start-up times: ``benchmarks/bench_step.py``.
"""
import argparse
import json
import math
import statistics
import sys
import time

import numpy as np

from . import layers as L
from .archs import ARCHS, IMAGE_SHAPES
from .errors import ConfigError, TinyVAEError
from .heap import keep_freed_memory
from .kernels import BACKENDS, get_backend
from .models import VAE
from .optim import Adam
from .threads import blas_info, describe_blas, thread_limit

PAIRS = (("simple", "mnist"), ("simple", "cifar10"), ("highdim", "cifar10"), ("deep", "cifar10"))
BATCH = 50


def layer_flops(model, batch=BATCH):
    """GEMM FLOPs (2 x multiply-adds) of each conv, transposed conv and dense layer.

    Returns one dict per such layer in forward order: ``name``, ``kind``
    ("conv", "conv_transpose" or "dense"), ``gemm`` (M, K, N) of the forward
    product, ``need_dx``, ``forward``, ``backward`` (dw + dx, without the dx
    a layer skips), ``nominal_forward``, ``nominal_backward`` (the
    architecture as written: a transposed conv after an upsampling
    multiplies at the upsampled size, where the fused layer does not).
    """
    shapes, shape = [], model.image_shape                # (layer, one example's input shape)
    for layer in model.encoder:
        shapes.append((layer, shape))
        shape = tuple(layer.output_shape(shape))
    shapes += [(model.mu_head, shape), (model.logvar_head, shape)]
    shape = (model.arch.latent,)
    for layer in model.decoder:
        shapes.append((layer, shape))
        shape = tuple(layer.output_shape(shape))
    rows, first = [], True
    for layer, in_shape in shapes:
        if isinstance(layer, L.Conv2D):                  # (N*Ho*Wo, KH*KW*C) x (KH*KW*C, F)
            KH, KW, C, F = layer.params["w"].shape
            Ho, Wo, _ = layer.output_shape(in_shape)
            kind, gemm = "conv", (batch * Ho * Wo, KH * KW * C, F)
            nominal = gemm
        elif isinstance(layer, L.ConvTranspose2D):       # (N*H*W, F) x (F, KH*KW*C)
            KH, KW, C, F = layer.params["w"].shape
            f = layer.factor if isinstance(layer, L.UpsampleConvTranspose2D) else 1
            kind, gemm = "conv_transpose", (batch * in_shape[0] * in_shape[1], F, KH * KW * C)
            nominal = (gemm[0] * f * f, F, KH * KW * C)
        elif isinstance(layer, L.Dense):
            kind, gemm = "dense", (batch,) + layer.params["w"].shape
            nominal = gemm
        else:
            continue
        fwd, nom = 2 * math.prod(gemm), 2 * math.prod(nominal)
        need_dx = getattr(layer, "need_dx", True)
        rows.append({"name": layer.name, "kind": kind, "gemm": gemm, "need_dx": need_dx, "forward": fwd,
                     "backward": fwd * (2 if need_dx else 1),
                     "nominal_forward": nom, "nominal_backward": nom * (1 if first else 2)})
        first = False
    return rows


def step_flops(model, batch=BATCH):
    """``(executed, nominal)`` GEMM FLOPs of one training step (see :func:`layer_flops`)."""
    rows = layer_flops(model, batch)
    return (sum(r["forward"] + r["backward"] for r in rows),
            sum(r["nominal_forward"] + r["nominal_backward"] for r in rows))


class StepRunner:
    """One model + Adam + a fixed random batch; ``step()`` is one training step. Like
    :func:`tinyvae.train.train`, it has malloc keep freed memory (:mod:`tinyvae.heap`)."""

    def __init__(self, arch, dataset, batch=BATCH, backend=None, seed=0):
        if dataset not in IMAGE_SHAPES:
            raise ConfigError(f"unknown dataset {dataset!r}; accepted: {', '.join(IMAGE_SHAPES)}")
        keep_freed_memory()                 # as train() does before its first step
        rng = np.random.default_rng(seed)
        self.arch, self.dataset, self.batch = arch, dataset, batch
        self.model = VAE(arch, IMAGE_SHAPES[dataset], rng, np.float32, backend)
        self.opt = Adam(1e-4, backend=backend)
        self.x = rng.random((batch,) + self.model.image_shape, dtype=np.float32)   # (B, H, W, C)
        self.eps = rng.standard_normal((batch, self.model.arch.latent), dtype=np.float32)  # (B, L)
        self.flops, self.nominal_flops = step_flops(self.model, batch)

    def step(self):
        """forward + loss + backward + Adam, as tinyvae.train does per batch."""
        self.model.loss(self.x, self.eps)
        self.opt.step(self.model.params, self.model.grads)

    def time_steps(self, n):
        """Seconds of each of ``n`` steps."""
        return time_calls(self.step, n)


def time_calls(fn, n):
    """Seconds of each of ``n`` calls of ``fn()``."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def run_interleaved(runners, steps, warmup, rounds, budget=None, between=None):
    """Warm each runner up, then time ``steps`` steps of each in ``rounds`` interleaved blocks.

    ``budget``: seconds; once the timed blocks have taken longer, stop after
    the current round. ``between``: called after each round. Returns one
    list of step times (seconds) per runner.
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


def parse_pairs(text):
    """``"all"`` or ``"simple/mnist,deep/cifar10"`` -> list of (model, dataset)."""
    if text in (None, "", "all"):
        return list(PAIRS)
    pairs = []
    for item in text.split(","):
        model, sep, dataset = item.strip().partition("/")
        if not sep or model not in ARCHS or dataset not in IMAGE_SHAPES:
            raise ConfigError(f"bad pair {item.strip()!r}: expected MODEL/DATASET with MODEL in "
                              f"{', '.join(ARCHS)} and DATASET in {', '.join(IMAGE_SHAPES)} "
                              f"(e.g. simple/mnist), or 'all'")
        pairs.append((model, dataset))
    return pairs


def int_at_least(lo):
    """An argparse type: an integer >= ``lo``."""
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            v = lo - 1
        if v < lo:
            raise argparse.ArgumentTypeError(f"expected an integer >= {lo}, got {text!r}")
        return v
    return parse


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m tinyvae bench",
        description="Time full training steps (forward + backward + Adam) of the study's VAEs: "
                    "median ms per step and GEMM GFLOP/s. More tools: benchmarks/bench_step.py.")
    p.add_argument("--pairs", default="all",
                   help="comma-separated MODEL/DATASET pairs, or 'all' (default: simple/mnist, "
                        "simple/cifar10, highdim/cifar10, deep/cifar10)")
    p.add_argument("--threads", type=int_at_least(1), default=None,
                   help="pin numba and BLAS to N threads (default: leave as is)")
    p.add_argument("--steps", type=int_at_least(1), default=20, help="timed steps per pair (default 20)")
    p.add_argument("--warmup", type=int_at_least(0), default=3, help="untimed steps first (default 3)")
    p.add_argument("--rounds", type=int_at_least(1), default=4,
                   help="interleave the pairs' timed steps in this many blocks (default 4)")
    p.add_argument("--backend", choices=BACKENDS, default=None,
                   help="kernels (default $TINYVAE_KERNELS, else numba)")
    p.add_argument("--batch-size", type=int_at_least(1), default=BATCH, help="default 50")
    p.add_argument("--json", action="store_true", help="one JSON object per pair on stdout")
    return p


def main(argv=None):
    """``python -m tinyvae bench ARGS``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:                        # `python -m tinyvae bench -- --pairs ...`
        argv = argv[1:]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:                       # --help, or a malformed flag (message printed)
        return e.code if isinstance(e.code, int) else 2
    try:
        backend = get_backend(args.backend)
        runners = [StepRunner(m, d, args.batch_size, backend) for m, d in parse_pairs(args.pairs)]
        with thread_limit(args.threads):
            import numba
            threads = numba.get_num_threads()
            times = run_interleaved(runners, args.steps, args.warmup, args.rounds)
    except TinyVAEError as e:
        print(f"tinyvae bench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tinyvae bench: interrupted", file=sys.stderr)
        return 130
    blas = blas_info()
    print(f"training steps, batch {args.batch_size}, float32, {backend} kernels, {threads} thread(s); "
          f"BLAS: {describe_blas(blas)}"
          f"\n{'model/dataset':<17}{'ms/step':>9}{'min':>8}{'max':>8}{'GFLOP':>8}{'GFLOP/s':>9}",
          file=sys.stderr if args.json else sys.stdout)
    for r, t in zip(runners, times):
        ms = statistics.median(t) * 1e3
        res = {"model": r.arch, "dataset": r.dataset, "threads": threads, "batch": args.batch_size,
               "backend": backend, "steps": len(t), "ms_step": ms, "ms_min": min(t) * 1e3,
               "ms_max": max(t) * 1e3, "gflop_step": r.flops / 1e9, "gflops": r.flops / 1e6 / ms,
               "blas_kernel": blas["blas_kernel"]}
        if args.json:
            print(json.dumps(res), flush=True)
        else:
            print(f"{r.arch + '/' + r.dataset:<17}{ms:9.1f}{res['ms_min']:8.1f}{res['ms_max']:8.1f}"
                  f"{res['gflop_step']:8.3f}{res['gflops']:9.1f}", flush=True)
    return 0
