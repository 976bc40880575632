"""A read-only install: neither the package folder nor HOME can be written (issue 15, item 6).

numba's ``cache=True`` used to raise "no locator available" at import. The
package is copied to a folder that is then made read-only, with a read-only
HOME: by a read-only bind mount in a private user and mount namespace
(``unshare -rm``), or, where that is not allowed and we are not root, by
file modes.
"""

import os
import pathlib
import shutil
import stat
import subprocess
import sys

import pytest

import tinyvae

PACKAGE = pathlib.Path(tinyvae.__file__).parent


@pytest.fixture(scope="module")
def read_only_run(tmp_path_factory):
    """run(*args, **env) -> CompletedProcess of ``python -m tinyvae args`` from a read-only copy;
    run.python(*args, **env) runs ``python args`` there; run.cache is the writable temporary folder."""
    root = tmp_path_factory.mktemp("ro")
    install, home, tmp = root / "install", root / "home", root / "tmp"
    shutil.copytree(PACKAGE, install / "tinyvae", ignore=shutil.ignore_patterns("__pycache__"))
    home.mkdir()
    tmp.mkdir()
    protect = " && ".join(f"mount --bind {d} {d} && mount -o remount,bind,ro {d}" for d in (install, home))
    prefix = ["unshare", "-rm", "sh", "-c", protect + ' && exec "$@"', "sh"]
    if shutil.which("unshare") and subprocess.run(prefix + ["true"], capture_output=True).returncode == 0:
        pass
    elif os.geteuid() != 0:
        for folder in (install, home, *[p for p in (install / "tinyvae").rglob("*") if p.is_dir()],
                       install / "tinyvae"):
            folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
        prefix = []
    else:
        pytest.skip("root without user namespaces: cannot make a folder read-only for this test")

    def python(*args, **env):
        environ = {k: v for k, v in os.environ.items()
                   if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME", "PYTHONPATH")}
        environ.update(HOME=str(home), TMPDIR=str(tmp), PYTHONPATH=str(install), **env)
        return subprocess.run(prefix + [sys.executable, *args], cwd=install,
                              env=environ, capture_output=True, text=True, timeout=300)

    def run(*args, **env):
        return python("-m", "tinyvae", *args, **env)

    run.python = python

    probe = subprocess.run(prefix + ["sh", "-c", f"touch {install}/x {home}/x"], capture_output=True)
    assert probe.returncode != 0, "the copy should be read-only"
    run.cache = tmp
    return run


@pytest.mark.parametrize("kernels", ["numba", "numpy"])
def test_summary_runs_from_a_read_only_install(read_only_run, kernels):
    result = read_only_run("summary", "simple", "--dataset", "mnist", TINYVAE_KERNELS=kernels)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "Conv" in result.stdout or "conv" in result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tinyvae: cannot write numba's cache"), result.stderr
    assert str(read_only_run.cache) in lines[0]


def test_kernels_compile_into_the_fallback_cache(read_only_run):
    code = ("import numpy as np; from tinyvae import kernels; "
            "x = np.ones((2, 4), np.float32); kernels.bias_add(x, np.ones(4, np.float32), backend='numba')")
    result = read_only_run.python("-c", code)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert list(read_only_run.cache.rglob("*.nbi")), "numba wrote no cache index in the fallback folder"
