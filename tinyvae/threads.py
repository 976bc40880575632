"""How many threads tinyvae's numba kernels and NumPy's BLAS use.

Both default to every core. On a busy machine numba's and BLAS's thread
pools can fight over the cores (each spins while it waits), which makes a
training step many times slower than on one thread; pin them with
:func:`set_threads` (for a session or a notebook) or :func:`thread_limit`
(for a block, e.g. the command line's ``--threads``). The command line's
default is :func:`free_cores`: the cores that other work leaves free.
:func:`blas_info` says which BLAS (and which of its kernels) NumPy runs.
"""
import contextlib
import os

from .errors import ConfigError


def check_positive_int(n, name):
    """A ConfigError unless ``n`` is an int >= 1 (a bool is not)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"{name} must be a positive integer, got {n!r}")


def cores():
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                       # not on Linux
        return os.cpu_count() or 1


def free_cores():
    """The cores other work leaves free, at least 1: a core counts as busy once the 1-minute
    load average has reached 3/4 of it (the load of a command that just ended lingers)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):            # no load average here: assume a quiet machine
        load = 0.0
    return max(1, min(cores(), cores() - int(load + 0.25)))


def default_threads(threads=None):
    """``threads`` if given, else :func:`free_cores`; and a line saying which and why."""
    if threads is not None:
        return threads, f"{threads} thread(s) (--threads)"
    n = free_cores()
    return n, (f"{n} thread(s): {n} of {cores()} cores free (1-minute load "
               f"{os.getloadavg()[0] if hasattr(os, 'getloadavg') else 0.0:.1f}); --threads N to change")


def _check(n, name):
    import numba
    check_positive_int(n, name)
    if n > numba.config.NUMBA_NUM_THREADS:
        raise ConfigError(f"{name} {n} is more than the {numba.config.NUMBA_NUM_THREADS} "
                          f"threads numba can use here")


def current_threads():
    """The number of threads numba's kernels use now."""
    import numba
    return numba.get_num_threads()


def set_threads(n):
    """Use ``n`` threads in numba kernels and in BLAS from now on."""
    import numba
    from threadpoolctl import threadpool_limits
    _check(n, "threads")
    numba.set_num_threads(n)
    threadpool_limits(limits=n, user_api="blas")


@contextlib.contextmanager
def thread_limit(n):
    """Pin numba and BLAS to ``n`` threads inside the block (None: leave as is)."""
    if n is None:
        yield
        return
    import numba
    from threadpoolctl import threadpool_limits
    _check(n, "--threads")
    old = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        with threadpool_limits(limits=n, user_api="blas"):
            yield
    finally:
        numba.set_num_threads(old)


def blas_info():
    """The BLAS NumPy runs, as threadpoolctl reports it: a dict with ``blas`` (e.g.
    "openblas"), ``blas_version``, ``blas_kernel`` (OpenBLAS's core type, e.g.
    "SkylakeX"), ``blas_threads`` and ``OPENBLAS_CORETYPE`` (the variable that can
    force a kernel, None when unset). The kernel sets both the speed and the
    rounding of every matrix product."""
    import numpy.linalg  # noqa: F401  (make sure NumPy's BLAS is loaded)
    from threadpoolctl import threadpool_info
    blas = [d for d in threadpool_info() if d.get("user_api") == "blas"]
    d = next((d for d in blas if "numpy" in d.get("filepath", "")), blas[0] if blas else {})
    return {"blas": d.get("internal_api"), "blas_version": d.get("version"),
            "blas_kernel": d.get("architecture"), "blas_threads": d.get("num_threads"),
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE")}


def describe_blas(info):
    """One line for :func:`blas_info`'s dict, e.g.
    "openblas 0.3.31 kernel SkylakeX (OPENBLAS_CORETYPE unset)"."""
    forced = info.get("OPENBLAS_CORETYPE")
    return (f"{info.get('blas')} {info.get('blas_version')} kernel {info.get('blas_kernel')} "
            f"(OPENBLAS_CORETYPE{'=' + forced if forced else ' unset'})")
