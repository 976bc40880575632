"""Load MNIST and CIFAR-10 from their official files, with NumPy only.

Layout
------
Every dataset lives under one *data dir*: the ``data_dir`` argument, else the
``TINYVAE_DATA_DIR`` environment variable, else ``~/.cache/tinyvae``::

    <data dir>/mnist/train-images-idx3-ubyte.gz
    <data dir>/mnist/train-labels-idx1-ubyte.gz
    <data dir>/mnist/t10k-images-idx3-ubyte.gz
    <data dir>/mnist/t10k-labels-idx1-ubyte.gz
    <data dir>/cifar10/cifar-10-binary.tar.gz

These are the files exactly as published: gzipped IDX files for MNIST and the
*binary* CIFAR-10 archive, whose members ``cifar-10-batches-bin/data_batch_{1..5}.bin``
and ``test_batch.bin`` each hold 10000 records of 1 label byte followed by
3072 pixel bytes (the 32x32 red plane, then green, then blue, each row-major).
Nothing is ever extracted to disk, and nothing is unpickled.

What you get
------------
``load(dataset, split)`` returns ``(images, labels)``: ``images`` is uint8 in
NHWC order, shape ``(N, 28, 28, 1)`` for MNIST and ``(N, 32, 32, 3)`` for
CIFAR-10, with values 0..255 exactly as stored; ``labels`` is int64 of shape
``(N,)`` with values 0..9 (names in :data:`CLASS_NAMES`).

When the files are missing
--------------------------
The loaders never touch the network (:mod:`tinyvae.download` does, and
``run_all.py`` and ``tinyvae train`` call it first unless ``--no-download``
is given). A missing file raises :class:`DataError` naming every missing path
and three fixes:

1. ``python -m tinyvae fetch <dataset>`` downloads them (needs a network
   connection);
2. point ``--data-dir`` or ``TINYVAE_DATA_DIR`` at a folder that already has the
   files in the layout above;
3. download the files by hand from the official URLs (:data:`OFFICIAL_URLS`)
   into those paths.

When the files are damaged
--------------------------
Every file is read to its end, in bounded pieces: the CRC-32 and length of
every gzip member are checked, each IDX payload and each CIFAR-10 batch must
have exactly the size its header announces (and no more records than the
official split), the tar archive must end with its end-of-archive marker, and
nothing may follow. A damaged, truncated or bloated file raises
:class:`DataError` naming it and the fix (delete it and fetch it again, or
point ``--data-dir`` at a good copy); no file, however crafted, makes the
reader allocate more than the split it asked for. Files that differ from the
official ones but are well formed (mirrors, rebuilt copies) are read as they
are; :func:`fingerprint` names exactly which files a run used.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pathlib
from typing import Sequence

import numpy as np

from .checked_io import damaged, fix_hint
from .errors import ConfigError, DataError
from .formats import CIFAR_MEMBERS, CIFAR_RECORD, cifar_labels, read_idx_gz, read_cifar_archive

DATASETS = ("mnist", "cifar10")
SPLITS = ("train", "test")
CLASS_NAMES = {
    "mnist": tuple(str(d) for d in range(10)),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer",
                "dog", "frog", "horse", "ship", "truck"),
}
IMAGE_SHAPES = {"mnist": (28, 28, 1), "cifar10": (32, 32, 3)}
PIXEL_SCALE = 255  # images are stored as integers 0..255; models see pixels / PIXEL_SCALE
SPLIT_SIZES = {"mnist": {"train": 60000, "test": 10000}, "cifar10": {"train": 50000, "test": 10000}}

_MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
_MNIST_FILES = {  # split -> (images file, labels file)
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_CIFAR_ARCHIVE = "cifar10/cifar-10-binary.tar.gz"

#: Files of each dataset, relative to the data dir -> official download URL.
OFFICIAL_URLS = {
    "mnist": {f"mnist/{name}": _MNIST_URL + name
              for pair in _MNIST_FILES.values() for name in pair},
    "cifar10": {_CIFAR_ARCHIVE: "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"},
}

# --------------------------------------------------------------------------- paths


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """Return the data dir: ``data_dir``, else ``$TINYVAE_DATA_DIR``, else ``~/.cache/tinyvae``."""
    if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
        raise ConfigError(f"data_dir must be a path (str or os.PathLike) or None, got {data_dir!r}")
    if data_dir is None or os.fspath(data_dir) == "":
        data_dir = os.environ.get("TINYVAE_DATA_DIR") or pathlib.Path.home() / ".cache" / "tinyvae"
    return pathlib.Path(data_dir).expanduser()


def _check_dataset(dataset: str) -> None:
    if not isinstance(dataset, str) or dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {dataset!r}; accepted: {', '.join(DATASETS)}")


def _check_split(split: str) -> None:
    if not isinstance(split, str) or split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; accepted: {', '.join(SPLITS)}")


def missing_files(datasets: Sequence[str], data_dir: str | os.PathLike | None = None) -> dict:
    """``{dataset: [missing paths]}`` for each of ``datasets`` that lacks a file (empty: all there)."""
    root = resolve_data_dir(data_dir)
    for d in datasets:
        _check_dataset(d)
    missing = {d: [root / rel for rel in OFFICIAL_URLS[d] if not (root / rel).is_file()] for d in datasets}
    return {d: paths for d, paths in missing.items() if paths}


def missing_data_error(missing: dict, data_dir: str | os.PathLike | None = None,
                       why: str = "") -> DataError:
    """One DataError listing every missing file of ``missing`` (from :func:`missing_files`) and the fixes."""
    root = resolve_data_dir(data_dir)
    names = list(missing)
    layout = "\n".join(f"       <folder>/{rel}" for d in names for rel in OFFICIAL_URLS[d])
    urls = "\n".join(f"       {url}  ->  {root / rel}" for d in names for rel, url in OFFICIAL_URLS[d].items())
    return DataError(
        f"{' and '.join(names)} data not found{why}; missing:\n"
        + "".join(f"  {p}\n" for d in names for p in missing[d])
        + "Fix it in one of three ways:\n"
        f"  1. download them (needs a network connection): "
        f"python -m tinyvae fetch {' '.join(names)} --data-dir {root}\n"
        "  2. point --data-dir or TINYVAE_DATA_DIR at a folder that already has the files,\n"
        f"     laid out like this:\n{layout}\n"
        f"  3. download the files by hand from the official URLs into those paths:\n{urls}"
    )


def require(dataset: str, data_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """The data dir, or a DataError listing every missing file of ``dataset`` and the fixes."""
    missing = missing_files([dataset], data_dir)
    if missing:
        raise missing_data_error(missing, data_dir)
    return resolve_data_dir(data_dir)


# --------------------------------------------------------------------------- loaders


def _memory_error_is_data_error(loader):
    """Turn a MemoryError while ``loader`` runs into a DataError (bounded reads mean only a good split can need much)."""
    @functools.wraps(loader)
    def wrapper(split="train", data_dir=None, **kwargs):
        try:
            return loader(split, data_dir, **kwargs)
        except MemoryError:
            raise DataError(f"not enough memory to load the {split} split with {loader.__name__} "
                            f"from {resolve_data_dir(data_dir)}; free some memory and try again") from None
    return wrapper


# --------------------------------------------------------------------------- MNIST


@_memory_error_is_data_error
def load_mnist(split: str = "train", data_dir: str | os.PathLike | None = None):
    """Load an MNIST split.

    Parameters
    ----------
    split : {"train", "test"}
    data_dir : path, optional
        See :func:`resolve_data_dir`.

    Returns
    -------
    images : np.ndarray, uint8, shape (N, 28, 28, 1)
        N = 60000 for train, 10000 for test.
    labels : np.ndarray, int64, shape (N,)
        Digits 0..9.
    """
    _check_split(split)
    root = require("mnist", data_dir)
    images_path, labels_path = (root / "mnist" / name for name in _MNIST_FILES[split])
    most = SPLIT_SIZES["mnist"][split]
    images = read_idx_gz(images_path, (28, 28), most)  # (N, 28, 28)
    labels = read_idx_gz(labels_path, (), most)  # (N,)
    if len(images) != len(labels):
        raise DataError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} "
                        f"labels.\nOne of them is damaged or comes from another copy: {fix_hint('mnist')}.")
    if labels.size and labels.max() > 9:
        raise damaged(labels_path, "mnist", f"label {labels.max()} outside 0..9")
    return images.reshape(-1, 28, 28, 1), labels.astype(np.int64)


# --------------------------------------------------------------------------- CIFAR-10


@_memory_error_is_data_error
def load_cifar10(split: str = "train", data_dir: str | os.PathLike | None = None,
                 *, records_per_file: int | None = 10000):
    """Load a CIFAR-10 split from ``cifar10/cifar-10-binary.tar.gz``.

    Parameters
    ----------
    split : {"train", "test"}
    data_dir : path, optional
        See :func:`resolve_data_dir`.
    records_per_file : int or None, keyword-only
        Records each batch file must hold (10000 in the official archive);
        None accepts any whole number of records up to 10000 (for small test
        archives).

    Returns
    -------
    images : np.ndarray, uint8, shape (N, 32, 32, 3)
        N = 50000 for train, 10000 for test; NHWC, channels R, G, B.
    labels : np.ndarray, int64, shape (N,)
        Classes 0..9, named in ``CLASS_NAMES["cifar10"]``.
    """
    _check_split(split)
    if records_per_file is not None and (not isinstance(records_per_file, int)
                                         or isinstance(records_per_file, bool) or records_per_file < 1):
        raise ConfigError(f"records_per_file must be a positive integer or None, got {records_per_file!r}")
    path = require("cifar10", data_dir) / _CIFAR_ARCHIVE
    names = CIFAR_MEMBERS[split]
    members = read_cifar_archive(path, names, records_per_file)
    batches = [np.frombuffer(members[name], np.uint8).reshape(-1, CIFAR_RECORD) for name in names]  # (n, 3073)
    labels = np.concatenate([cifar_labels(rows, path, name) for rows, name in zip(batches, names)])  # (N,)
    images = np.empty((len(labels), 32, 32, 3), np.uint8)  # (N, 32, 32, 3)
    pixels = images.reshape(len(labels), 32 * 32, 3)  # (N, 1024, 3), a view
    start = 0
    for rows in batches:
        for c in range(3):  # one plane at a time: long strided runs, 4x faster than one transpose
            pixels[start:start + len(rows), :, c] = rows[:, 1 + 1024 * c:1 + 1024 * (c + 1)]  # (n, 1024)
        start += len(rows)
    return images, labels


def load(dataset: str, split: str = "train", data_dir: str | os.PathLike | None = None):
    """Load ``dataset`` ("mnist" or "cifar10"), ``split`` ("train" or "test"): see :func:`load_mnist`, :func:`load_cifar10`."""
    _check_dataset(dataset)
    _check_split(split)
    loader = load_mnist if dataset == "mnist" else load_cifar10
    return loader(split, data_dir)


# --------------------------------------------------------------------------- pixels


def to_float(images, dtype=np.float32):
    """uint8 images -> floats in [0, 1] (pixels / 255), same shape."""
    return np.divide(images, PIXEL_SCALE, dtype=dtype)   # (N, H, W, C)


# --------------------------------------------------------------------------- fingerprint


def sha256_file(path: str | os.PathLike) -> tuple[str, int]:
    """The sha256 hex digest and byte size of the file at ``path``, read in 1 MiB blocks."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


@functools.lru_cache(maxsize=32)
def _sha256_of_version(path: str, device: int, inode: int, size: int, mtime_ns: int) -> str:
    return sha256_file(path)[0]  # the key names one version of the file: hashed once per process


def file_digests(dataset: str, data_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """The sha256 of each file of ``dataset`` in the data dir, keyed by its path relative to it.

    Each version of a file (same path, inode, size and mtime) is hashed once
    per process. DataError if a file is missing or changes while it is hashed.
    """
    _check_dataset(dataset)
    root = resolve_data_dir(data_dir)
    paths = {rel: root / rel for rel in sorted(OFFICIAL_URLS[dataset])}
    require(dataset, root)
    digests = {}
    for rel, path in paths.items():
        try:
            before = path.stat()
            digests[rel] = _sha256_of_version(str(path.resolve()), before.st_dev, before.st_ino,
                                              before.st_size, before.st_mtime_ns)
            after = path.stat()
        except OSError as e:
            raise DataError(f"{path}: cannot read it ({type(e).__name__}: {e})") from e
        if (after.st_ino, after.st_size, after.st_mtime_ns) != (before.st_ino, before.st_size, before.st_mtime_ns):
            raise DataError(f"{path} changed while it was being hashed; try again once nothing writes to it")
    return digests


def images_sha256(images: np.ndarray) -> str:
    """Name exact images: the sha256 of their dtype, shape and bytes (C order).

    A checkpoint records this of the images a run trains on, so a resume on
    other data is refused; it is the same whether the images were read from the
    files or passed in as arrays. :func:`fingerprint` names the files instead.
    """
    a = np.ascontiguousarray(images)
    digest = hashlib.sha256(f"{a.dtype.str}|{a.shape}|".encode())
    digest.update(a)
    return digest.hexdigest()


def fingerprint(dataset: str, data_dir: str | os.PathLike | None = None) -> str:
    """Name the exact files of ``dataset`` a run reads: a sha256 hex digest.

    It is the sha256 of the manifest that ``sha256sum`` prints for the files,
    one line ``<sha256>  <path relative to the data dir>`` each, sorted by
    path; check it by hand with ``cd <data dir> && sha256sum mnist/*.gz | sha256sum``
    (or ``cifar10/cifar-10-binary.tar.gz``). Any copy of the data, official or
    not, has one; :func:`tinyvae.download.is_official` says whether the files
    are the official ones.
    """
    manifest = "".join(f"{digest}  {rel}\n" for rel, digest in file_digests(dataset, data_dir).items())
    return hashlib.sha256(manifest.encode()).hexdigest()
