"""Each numba kernel against its NumPy reference: a layer's forward + backward,
float32, one thread, median of 7 (after one warm-up call).

    python benchmarks/bench_kernels.py
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from tinyvae import kernels  # noqa: E402
from tinyvae import layers as L  # noqa: E402
from tinyvae.bench import time_calls  # noqa: E402
from tinyvae.threads import thread_limit  # noqa: E402

REPEATS = 7


def fwd_bwd(forward, backward):
    """``run(backend)``: ``forward(backend)``, then ``backward`` of its own output."""
    def run(backend):
        out, cache = forward(backend)
        backward(out, cache)
    return run


def cases(rng):
    """``(name, run(backend))`` for every layer built on a kernel, at the study's sizes."""
    def arr(*shape):
        return rng.random(shape, dtype=np.float32)

    x1, w1, b1 = arr(50, 28, 28, 1), arr(3, 3, 1, 32), np.zeros(32, np.float32)    # first conv, MNIST
    x2, w2, b2 = arr(50, 13, 13, 32), arr(3, 3, 32, 64), np.zeros(64, np.float32)  # second conv
    x3, w3, b3 = arr(50, 26, 26, 32), arr(3, 3, 1, 32), np.zeros(1, np.float32)    # last convT
    x4, w4, b4 = arr(50, 12, 12, 64), arr(3, 3, 32, 64), np.zeros(32, np.float32)  # fused upsample+convT
    x5 = arr(50, 26, 26, 32)                                                        # first pool
    n = 929_093                                                                     # simple VAE's parameters
    p, g, m, v = arr(n), arr(n), np.zeros(n, np.float32), np.zeros(n, np.float32)
    return [
        ("conv2d fwd+bwd (50,28,28,1)->32",
         fwd_bwd(lambda be: L.conv2d_forward(x1, w1, b1, backend=be), L.conv2d_backward)),
        ("conv2d fwd+bwd (50,13,13,32)->64",
         fwd_bwd(lambda be: L.conv2d_forward(x2, w2, b2, backend=be), L.conv2d_backward)),
        ("conv_transpose2d fwd+bwd (50,26,26,32)->1",
         fwd_bwd(lambda be: L.conv_transpose2d_forward(x3, w3, b3, backend=be), L.conv_transpose2d_backward)),
        ("upsample+conv_transpose2d fwd+bwd (50,12,12,64)->32",
         fwd_bwd(lambda be: L.upsample_conv_transpose2d_forward(x4, w4, b4, 2, be),
                 L.upsample_conv_transpose2d_backward)),
        ("maxpool fwd+bwd (50,26,26,32)",
         fwd_bwd(lambda be: L.maxpool_forward(x5, 2, be), L.maxpool_backward)),
        ("relu fwd+bwd (50,26,26,32)",
         fwd_bwd(lambda be: L.relu_forward(x5, be), L.relu_backward)),
        ("bias add (50,26,26,32), in place",
         lambda be: kernels.bias_add(x5, b1, backend=be)),
        ("bias gradient (50*26*26, 32)",
         lambda be: kernels.bias_grad(x5.reshape(-1, 32), backend=be)),
        ("adam update, 929k params (simple VAE)",
         lambda be: kernels.adam_update(p, g, m, v, 1e-4, 0.9, 0.999, 1e-7, backend=be)),
    ]


def median_ms(run, backend):
    run(backend)                                                                    # warm-up (and JIT)
    return 1000 * float(np.median(time_calls(lambda: run(backend), REPEATS)))


def main():
    with thread_limit(1):
        for name, run in cases(np.random.default_rng(0)):
            a, b = median_ms(run, "numba"), median_ms(run, "numpy")
            print(f"{name:55s} numba {a:7.2f} ms  numpy {b:7.2f} ms  speed-up {b / a:5.1f}x")


if __name__ == "__main__":
    main()
