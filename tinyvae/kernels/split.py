"""Sharing a numba kernel's outer loop among a few plain threads.

Every numba kernel in this package releases the GIL (``nogil=True``) and
takes a ``[lo, hi)`` range of its outer loop as its last two arguments.
:func:`run_split` cuts the range into one chunk per thread. Chunks are
disjoint and each is computed as on one thread, so results never depend
on the thread count. (numba's own ``parallel=True`` loops are not used:
next to BLAS's threads its pool spins and slows a step down.)
"""
from concurrent.futures import ThreadPoolExecutor

import numba

MIN_WORK_PER_THREAD = 1 << 15
"""Elements a thread should touch at least; smaller jobs run on the calling thread."""

_pool, _pool_size = None, 0


def kernel_threads():
    """Threads the numba kernels use: numba's setting (see :mod:`tinyvae.threads`)."""
    return numba.get_num_threads()


def run_split(kernel, total, work, *args):
    """Run ``kernel(*args, lo, hi)`` over ``range(total)``, split across
    :func:`kernel_threads` threads when ``work`` (elements touched) is large
    enough to pay for it."""
    global _pool, _pool_size
    t = min(kernel_threads(), total, max(1, work // MIN_WORK_PER_THREAD))
    if t <= 1:
        kernel(*args, 0, total)
        return
    if _pool_size < t - 1:                               # helper threads, made once
        _pool_size = max(t - 1, numba.config.NUMBA_NUM_THREADS - 1)
        _pool = ThreadPoolExecutor(max_workers=_pool_size, thread_name_prefix="tinyvae")
    bounds = [total * i // t for i in range(t + 1)]
    futures = [_pool.submit(kernel, *args, lo, hi) for lo, hi in zip(bounds[1:-1], bounds[2:])]
    kernel(*args, bounds[0], bounds[1])                  # this thread takes the first chunk
    for f in futures:
        f.result()
