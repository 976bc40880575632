"""Shared fixtures.

Real data is looked for where the package looks (:func:`tinyvae.data.resolve_data_dir`:
``TINYVAE_DATA_DIR``, else ``~/.cache/tinyvae``). Tests that need it skip without it,
except under CI (``CI=true`` or ``CI=1``), where missing data is a failure.
"""

import os
import pathlib

import pytest

from tinyvae.data import OFFICIAL_URLS, resolve_data_dir

# No test reaches the internet: a run that finds data missing fails instead of downloading
# (tests/test_fresh_machine.py turns downloads back on, from a server on 127.0.0.1).
os.environ["TINYVAE_NO_DOWNLOAD"] = "1"
# ...and the official URLs and digests are tfds's, whatever mirror the shell names.
os.environ.pop("TINYVAE_RESOURCES", None)


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def require_data(*datasets: str) -> pathlib.Path:
    """Return the data dir if it holds the files of ``datasets`` (default: all).

    Otherwise skip the calling test, or fail it under CI.
    """
    datasets = datasets or tuple(OFFICIAL_URLS)
    root = resolve_data_dir()
    missing = [str(root / rel) for d in datasets for rel in OFFICIAL_URLS[d] if not (root / rel).is_file()]
    if not missing:
        return root
    reason = (f"real {'/'.join(datasets)} data missing: {', '.join(missing)} "
              f"(set TINYVAE_DATA_DIR, or run python -m tinyvae fetch {' '.join(datasets)})")
    if _in_ci():
        pytest.fail(f"CI needs the real data: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def real_data_dir():
    """Data dir with every dataset (MNIST and CIFAR-10)."""
    return require_data()


@pytest.fixture(scope="session")
def mnist_data_dir():
    """Data dir with MNIST."""
    return require_data("mnist")


@pytest.fixture(scope="session")
def cifar10_data_dir():
    """Data dir with CIFAR-10."""
    return require_data("cifar10")
