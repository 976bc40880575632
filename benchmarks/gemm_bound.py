"""The floor a training step has on this BLAS: its matrix products timed alone.

Every conv, transposed conv and dense layer makes its forward product, its
weight gradient's and (where the layer needs one) its input gradient's,
each in the orientation its code uses. Timed one at a time, on random
numbers already in cache, they sum to what a step would cost if everything
else (im2col and col2im, activations, pooling, Adam, Python) were free.
"""
import statistics
import time

import numpy as np

from tinyvae.bench import BATCH, layer_flops
from tinyvae.models import IMAGE_SHAPES, VAE
from tinyvae.threads import thread_limit


def gemm_calls(row, rng):
    """One layer's products as ``[(part, flops, fn)]``, as its code computes them.

    row : one row of :func:`tinyvae.bench.layer_flops`; ``fn()`` returns the product.
    """
    M, K, N = row["gemm"]
    f32 = np.float32
    a = rng.random((M, K), dtype=f32)                 # (M, K): im2col rows, x2 or x
    d = rng.random((M, N), dtype=f32)                 # (M, N): the output's gradient (or cols)
    flops = 2 * M * K * N
    if row["kind"] == "conv_transpose":               # w stored (KH*KW*C, F) = (N, K)
        w = rng.random((N, K), dtype=f32)             # (N, K)
        dw = np.empty((N, K), f32)                    # (N, K)
        calls = [("forward", flops, lambda: a @ w.T),
                 ("dw", flops, lambda: np.matmul(d.T, a, out=dw))]
        dx = ("dx", flops, lambda: d @ w)
    else:                                             # conv, dense: w stored (K, N)
        w = rng.random((K, N), dtype=f32)             # (K, N)
        dw = np.empty((K, N), f32)                    # (K, N)
        calls = [("forward", flops, lambda: a @ w),
                 ("dw", flops, lambda: np.matmul(a.T, d, out=dw))]
        dx = ("dx", flops, (lambda: (w @ d.T).T) if row["kind"] == "dense" else (lambda: d @ w.T))
    return calls + [dx] if row["need_dx"] else calls


def gemm_bound(arch, dataset, threads=None, repeats=7, batch=BATCH, seed=0):
    """Median seconds of each product of one step of ``arch``/``dataset``, timed apart.

    Returns ``{"pair", "threads", "batch", "ms", "gflop", "gflops", "rows"}``:
    ``ms`` the sum of the medians; ``rows`` ``[layer, part, (M, K, N), ms]``.
    """
    rng = np.random.default_rng(seed)
    model = VAE(arch, IMAGE_SHAPES[dataset], rng, np.float32)       # only its layers' shapes are used
    rows, total, flops = [], 0.0, 0
    with thread_limit(threads):
        for row in layer_flops(model, batch):
            for part, f, fn in gemm_calls(row, rng):
                fn()                                  # warm: the output's pages, BLAS's buffers
                times = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    fn()
                    times.append(time.perf_counter() - t0)
                sec = statistics.median(times)
                rows.append([row["name"], part, list(row["gemm"]), 1e3 * sec])
                total, flops = total + sec, flops + f
    return {"pair": f"{arch}/{dataset}", "threads": threads, "batch": batch, "ms": 1e3 * total,
            "gflop": flops / 1e9, "gflops": flops / 1e9 / total, "rows": rows}


def format_gemm_bound(bounds, steps, peak=None):
    """A table: each pair's products alone against its measured step.

    bounds : :func:`gemm_bound` results; steps : ``{pair: ms per step}``;
    peak : the sgemm peak in GFLOP/s (a column of % when given)
    """
    lines = ["the step's products alone (each timed apart, in cache; the floor if all else were free)",
             f"{'model/dataset':<17}{'GEMM ms':>9}{'GFLOP/s':>9}" + (f"{'% peak':>8}" if peak else "")
             + f"{'step ms':>9}{'GEMM share':>12}"]
    for b in bounds:
        line = f"{b['pair']:<17}{b['ms']:9.1f}{b['gflops']:9.1f}"
        if peak:
            line += f"{100.0 * b['gflops'] / peak:8.1f}"
        step = steps[b["pair"]]
        lines.append(line + f"{step:9.1f}{100.0 * b['ms'] / step:11.0f}%")
    return "\n".join(lines)
