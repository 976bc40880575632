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

Every problem with the files themselves (truncated, not gzip, wrong sizes,
labels out of range, ...) raises :class:`DataError` as well.
"""

from __future__ import annotations

import gzip
import math
import os
import pathlib
import tarfile
import zlib
from typing import Sequence

import numpy as np

from .errors import ConfigError, DataError

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
_CIFAR_MEMBERS = {
    "train": tuple(f"cifar-10-batches-bin/data_batch_{i}.bin" for i in range(1, 6)),
    "test": ("cifar-10-batches-bin/test_batch.bin",),
}
_CIFAR_RECORD = 1 + 32 * 32 * 3  # label byte + R, G, B planes

#: Files of each dataset, relative to the data dir -> official download URL.
OFFICIAL_URLS = {
    "mnist": {f"mnist/{name}": _MNIST_URL + name
              for pair in _MNIST_FILES.values() for name in pair},
    "cifar10": {_CIFAR_ARCHIVE: "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"},
}

# IDX type codes -> big-endian NumPy dtypes.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


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


# --------------------------------------------------------------------------- MNIST


def read_idx(data: bytes) -> np.ndarray:
    """Parse an (uncompressed) IDX file.

    Parameters
    ----------
    data : bytes
        The whole file: magic ``00 00 <type> <ndim>``, ``ndim`` big-endian int32
        dimensions, then exactly ``prod(dims)`` big-endian items.

    Returns
    -------
    np.ndarray
        A new, writable array of shape ``dims`` in native byte order
        (uint8 for MNIST).

    Raises
    ------
    DataError
        Bad magic, unknown type code, no dimensions, or a payload whose length
        is not exactly the one the header announces.
    """
    data = bytes(data)
    if len(data) < 4:
        raise DataError(f"IDX data too short for a header: {len(data)} bytes")
    if data[0] != 0 or data[1] != 0:
        raise DataError(f"not an IDX file: magic starts {data[:2].hex()}, expected 0000")
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise DataError(f"IDX type code 0x{code:02x} unknown; known: "
                        + ", ".join(f"0x{c:02x}" for c in _IDX_DTYPES))
    if ndim == 0:
        raise DataError("IDX header has 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"IDX header truncated: {ndim} dimensions need {header} bytes, got {len(data)}")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = dtype.itemsize * math.prod(dims)
    if len(data) - header != expected:
        raise DataError(f"IDX payload is {len(data) - header} bytes, header {dims} of "
                        f"{dtype.name} announces {expected}")
    array = np.frombuffer(data, dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))


def read_gzip(path: str | os.PathLike) -> bytes:
    """Return the decompressed contents of a gzip file; DataError if unreadable, not gzip, truncated or empty."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
        data = gzip.decompress(raw)
    except (gzip.BadGzipFile, EOFError, zlib.error, OSError) as e:
        raise DataError(f"{path}: cannot read as gzip ({type(e).__name__}: {e})") from e
    if not data:
        raise DataError(f"{path}: empty file, expected gzip-compressed data")
    return data


def _read_idx_gz(path: pathlib.Path) -> np.ndarray:
    data = read_gzip(path)
    try:
        return read_idx(data)
    except DataError as e:
        raise DataError(f"{path}: {e}") from e


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
    images = _read_idx_gz(images_path)
    labels = _read_idx_gz(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{images_path}: expected uint8 images of shape (N, 28, 28), "
                        f"got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(f"{labels_path}: expected a uint8 vector of labels, got {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise DataError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise DataError(f"{labels_path}: label {labels.max()} outside 0..9")
    return images.reshape(-1, 28, 28, 1), labels.astype(np.int64)


# --------------------------------------------------------------------------- CIFAR-10


def _decode_cifar(data: bytes, source: str, records: int | None):
    """Decode one CIFAR-10 batch file: -> uint8 (n, 32, 32, 3), int64 (n,)."""
    if len(data) == 0 or len(data) % _CIFAR_RECORD:
        raise DataError(f"{source}: {len(data)} bytes is not a whole number of "
                        f"{_CIFAR_RECORD}-byte records")
    n = len(data) // _CIFAR_RECORD
    if records is not None and n != records:
        raise DataError(f"{source}: {n} records, expected {records}")
    rows = np.frombuffer(data, np.uint8).reshape(n, _CIFAR_RECORD)
    labels = rows[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DataError(f"{source}: label {labels.max()} outside 0..9")
    images = rows[:, 1:].reshape(n, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels


def _read_members(path: pathlib.Path, names: Sequence[str]) -> dict[str, bytes]:
    """Read the regular-file members ``names`` of a tar.gz in memory, in one pass that stops
    once all are found (so the first of duplicate names wins)."""
    wanted, found = set(names), {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                if member.name not in wanted:
                    continue
                if not member.isfile():
                    raise DataError(f"{path}: member {member.name} is not a regular file")
                found[member.name] = tar.extractfile(member).read()
                if len(found[member.name]) != member.size:
                    raise DataError(f"{path}: member {member.name} is truncated")
                if len(found) == len(wanted):
                    break
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise DataError(f"{path}: cannot read as tar.gz ({type(e).__name__}: {e})") from e
    missing = [n for n in names if n not in found]
    if missing:
        raise DataError(f"{path}: archive lacks member(s) {', '.join(missing)}")
    return found


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
        None accepts any whole number of records (for small test archives).

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
    names = _CIFAR_MEMBERS[split]
    members = _read_members(path, names)
    parts = [_decode_cifar(members.pop(name), f"{path}:{name}", records_per_file) for name in names]
    total = sum(len(labels) for _, labels in parts)
    images = np.empty((total, 32, 32, 3), np.uint8)
    labels = np.empty(total, np.int64)
    start = 0
    for part_images, part_labels in parts:
        images[start:start + len(part_labels)] = part_images
        labels[start:start + len(part_labels)] = part_labels
        start += len(part_labels)
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
