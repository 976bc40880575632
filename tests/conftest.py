"""Shared fixtures.

Real data: set ``TINYVAE_DATA_DIR`` to a folder in the layout of
``tinyvae.data`` (e.g. ``../shared/data``). Tests that need it skip without it,
except under CI (``CI=true`` or ``CI=1``), where missing data is a failure.
"""

import os
import pathlib

import pytest

_FILES = {
    "mnist": ("mnist/train-images-idx3-ubyte.gz", "mnist/train-labels-idx1-ubyte.gz",
              "mnist/t10k-images-idx3-ubyte.gz", "mnist/t10k-labels-idx1-ubyte.gz"),
    "cifar10": ("cifar10/cifar-10-binary.tar.gz",),
}


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def require_data(*datasets: str) -> pathlib.Path:
    """Return ``$TINYVAE_DATA_DIR`` if it holds the files of ``datasets`` (default: all).

    Otherwise skip the calling test, or fail it under CI.
    """
    datasets = datasets or tuple(_FILES)
    root = os.environ.get("TINYVAE_DATA_DIR")
    if not root:
        reason = "TINYVAE_DATA_DIR is not set (point it at a folder with the real data)"
    else:
        missing = [str(pathlib.Path(root, rel)) for d in datasets for rel in _FILES[d]
                   if not pathlib.Path(root, rel).is_file()]
        if not missing:
            return pathlib.Path(root)
        reason = f"real {'/'.join(datasets)} data missing: {', '.join(missing)}"
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
