"""Kernels split across threads give exactly the single-thread results; which BLAS runs."""
import numpy as np
import pytest

from tinyvae import kernels, threads
from tinyvae.kernels.split import run_split
from tinyvae.errors import ConfigError
from tinyvae.threads import set_threads, thread_limit


def _all_kernels(rng):
    x = rng.standard_normal((8, 20, 19, 16)).astype(np.float32)          # big enough to split
    cols = kernels.im2col(x, 3, 3, (1, 1), (0, 0), (18, 17), backend="numba")
    out = {"im2col": cols,
           "col2im": kernels.col2im(cols, x.shape, 3, 3, (1, 1), (0, 0), (18, 17), backend="numba")}
    up = rng.standard_normal((8 * 9 * 10, 3 * 3 * 16)).astype(np.float32)
    out["col2im_up"] = kernels.col2im_up(up, (8, 20, 22, 16), 3, 3, 2, (9, 10), backend="numba")
    out["im2col_up"] = kernels.im2col_up(out["col2im_up"], 3, 3, 2, (9, 10), backend="numba")
    pooled, arg = kernels.maxpool_forward(x, 2, backend="numba")
    out["pool"], out["arg"] = pooled, arg
    out["unpool"] = kernels.maxpool_backward(pooled, arg, x.shape, 2, backend="numba")
    p, g = rng.standard_normal(300_000).astype(np.float32), rng.standard_normal(300_000).astype(np.float32)
    m, v = np.zeros_like(p), np.zeros_like(p)
    kernels.adam_update(p, g, m, v, 1e-3, 0.9, 0.999, 1e-7, backend="numba")
    out["adam_p"], out["adam_m"], out["adam_v"] = p, m, v
    return out


def test_threaded_kernels_equal_single_thread():
    with thread_limit(1):
        one = _all_kernels(np.random.default_rng(0))
    with thread_limit(2):
        assert kernels.kernel_threads() == 2
        two = _all_kernels(np.random.default_rng(0))
    for name in one:
        np.testing.assert_array_equal(one[name], two[name], err_msg=name)


def test_run_split_covers_every_index_once():
    seen = np.zeros(1000, dtype=np.int64)

    def mark(arr, lo, hi):
        arr[lo:hi] += 1

    with thread_limit(2):
        run_split(mark, 1000, 1 << 20, seen)
    np.testing.assert_array_equal(seen, 1)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, 10 ** 6])
def test_bad_thread_counts_are_refused(bad):
    with pytest.raises(ConfigError):
        set_threads(bad)


@pytest.mark.parametrize("load, free", [(0.0, 4), (0.7, 4), (0.75, 3), (1.6, 3), (2.8, 1), (9.0, 1)])
def test_free_cores_follow_the_load_average(monkeypatch, load, free):
    from tinyvae import threads
    monkeypatch.setattr(threads, "cores", lambda: 4)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (load, load, load))
    assert threads.free_cores() == free
    n, why = threads.default_threads()
    assert n == free and f"{free} of 4 cores free" in why and "--threads" in why
    assert threads.default_threads(3) == (3, "3 thread(s) (--threads)")


def test_blas_info_names_the_kernel_and_whether_it_was_forced(monkeypatch):
    info = threads.blas_info()
    assert info["blas"] and info["blas_version"] and info["blas_threads"] >= 1
    if info["blas"] == "openblas":
        assert info["blas_kernel"]                        # OpenBLAS's core type, e.g. "Haswell"
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")    # read now; the loaded BLAS is unchanged
    forced = threads.blas_info()
    assert forced["OPENBLAS_CORETYPE"] == "Haswell" and forced["blas_kernel"] == info["blas_kernel"]
    assert threads.describe_blas(forced).endswith("(OPENBLAS_CORETYPE=Haswell)")
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    line = threads.describe_blas({**info, "blas": "openblas", "blas_version": "0.3.31",
                                  "blas_kernel": "SkylakeX", "OPENBLAS_CORETYPE": None})
    assert line == "openblas 0.3.31 kernel SkylakeX (OPENBLAS_CORETYPE unset)"
