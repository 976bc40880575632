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
The loaders never touch the network. A missing file raises :class:`DataError`
naming the missing paths and three fixes:

1. ``python -m tinyvae fetch <dataset>`` downloads them (needs
   ``pip install 'tinyvae[tfds]'`` and a network connection);
2. point ``--data-dir`` or ``TINYVAE_DATA_DIR`` at a folder that already has the
   files in the layout above;
3. download the files by hand from the official URLs (:data:`OFFICIAL_URLS`)
   into those paths.

Every problem with the files themselves (truncated, not gzip, wrong sizes,
labels out of range, ...) raises :class:`DataError` as well.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import math
import os
import pathlib
import shutil
import socket
import tarfile
import tempfile
import threading
import urllib.parse
import urllib.request
import zlib
from typing import NamedTuple, Sequence

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


def _require_files(dataset: str, root: pathlib.Path, paths: Sequence[pathlib.Path]) -> None:
    """Raise DataError, with the three fixes, if any of ``paths`` is not a file."""
    missing = [p for p in paths if not p.is_file()]
    if not missing:
        return
    layout = "\n".join(f"       <folder>/{rel}" for rel in OFFICIAL_URLS[dataset])
    urls = "\n".join(f"       {url}  ->  {root / rel}" for rel, url in OFFICIAL_URLS[dataset].items())
    raise DataError(
        f"{dataset} data not found; missing:\n"
        + "".join(f"  {p}\n" for p in missing)
        + "Fix it in one of three ways:\n"
        f"  1. download them into {root}: python -m tinyvae fetch {dataset}\n"
        "     (needs pip install 'tinyvae[tfds]' and a network connection)\n"
        "  2. point --data-dir or TINYVAE_DATA_DIR at a folder that already has the files,\n"
        f"     laid out like this:\n{layout}\n"
        f"  3. download the files by hand from the official URLs into those paths:\n{urls}"
    )


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
    root = resolve_data_dir(data_dir)
    images_path, labels_path = (root / "mnist" / name for name in _MNIST_FILES[split])
    _require_files("mnist", root, [images_path, labels_path])
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
    root = resolve_data_dir(data_dir)
    path = root / _CIFAR_ARCHIVE
    _require_files("cifar10", root, [path])
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


# --------------------------------------------------------------------------- download


class RemoteFile(NamedTuple):
    """One file to fetch: ``path`` relative to the data dir, its ``url``, ``sha256`` hex digest and byte ``size``."""

    path: str
    url: str
    sha256: str
    size: int


def official_resources(dataset: str) -> list[RemoteFile]:
    """The official files of ``dataset`` with the sha256 and sizes registered in tensorflow-datasets."""
    _check_dataset(dataset)
    _require_tfds()
    from tensorflow_datasets.core.download import checksums

    registered = checksums.get_all_url_infos()
    out = []
    for rel, url in OFFICIAL_URLS[dataset].items():
        info = registered.get(url)
        if info is None:
            raise DataError(f"tensorflow-datasets has no registered checksum for {url}; "
                            "upgrade it, or download the file by hand")
        out.append(RemoteFile(rel, url, info.checksum, int(info.size)))
    return out


def _require_tfds() -> None:
    if importlib.util.find_spec("tensorflow_datasets") is None:
        raise DataError("fetch needs tensorflow-datasets (used only as a downloader; TensorFlow "
                        "is not needed): pip install 'tinyvae[tfds]'")


def _probe(url: str, timeout: float) -> None:
    """Raise DataError unless a TCP connection to the URL's host (or its proxy) opens within ``timeout`` s."""
    parts = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        parts = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    outcome: list = []

    def attempt():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as e:
            outcome.append(e)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout)  # bounds the DNS lookup too, which socket timeouts do not
    if not outcome or outcome[0] is not None:
        why = f"{type(outcome[0]).__name__}: {outcome[0]}" if outcome else f"no answer in {timeout:g} s"
        raise DataError(f"cannot reach {host}:{port} ({why}). No network? Copy the files into the "
                        "data dir by hand, or point TINYVAE_DATA_DIR at a folder that has them.")


def _sha256(path: pathlib.Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def fetch(dataset: str, data_dir: str | os.PathLike | None = None, *, timeout: float = 1.0,
          resources: Sequence[RemoteFile] | None = None) -> list[pathlib.Path]:
    """Download the missing files of ``dataset`` into the data dir.

    tensorflow-datasets (``pip install 'tinyvae[tfds]'``) is used only as a
    downloader: its ``DownloadManager`` fetches each file into a temporary
    folder inside the data dir and checks it against the registered sha256 and
    size; tinyvae checks the sha256 again, then moves the file into place with
    ``os.replace``. A partial or bad download never lands, and a checksum
    mismatch leaves nothing behind. Files already present are kept as they are.

    Parameters
    ----------
    dataset : {"mnist", "cifar10"}
    data_dir : path, optional
        See :func:`resolve_data_dir`.
    timeout : float
        Seconds allowed to open a connection to each host before downloading;
        offline, fetch fails within about this time. (tfds's downloader sets no
        timeout on the transfer itself.)
    resources : sequence of RemoteFile, optional
        What to fetch; default :func:`official_resources` (``dataset``).

    Returns
    -------
    list of pathlib.Path
        The files written (empty if all were already there).

    Raises
    ------
    DataError
        tensorflow-datasets missing, host unreachable, download failed, or
        checksum mismatch.
    """
    _check_dataset(dataset)
    root = resolve_data_dir(data_dir)
    _require_tfds()
    files = list(official_resources(dataset) if resources is None else resources)
    for f in files:
        rel = pathlib.PurePosixPath(f.path)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise ConfigError(f"resource path {f.path!r} must be relative, inside the data dir")
    todo = [f for f in files if not (root / f.path).is_file()]
    if not todo:
        return []
    for url in {urllib.parse.urlsplit(f.url)[:2]: f.url for f in todo}.values():
        _probe(url, timeout)  # one quick connection per host: offline fails fast

    from tensorflow_datasets.core import utils as tfds_utils
    from tensorflow_datasets.core.download import checksums, download_manager

    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=".fetch-", dir=root))
    written = []
    try:
        for f in todo:
            info = checksums.UrlInfo(size=tfds_utils.Size(f.size), checksum=f.sha256,
                                     filename=pathlib.PurePosixPath(f.path).name)
            manager = download_manager.DownloadManager(
                download_dir=tmp / str(len(written)), url_infos={f.url: info},
                register_checksums=False, force_checksums_validation=True,
                max_simultaneous_downloads=1)
            try:
                got = pathlib.Path(manager.download(f.url))
            except Exception as e:  # requests, tfds DownloadError, NonMatchingChecksumError, ...
                raise DataError(f"download of {f.url} failed ({type(e).__name__}): {e}") from e
            digest, size = _sha256(got)
            if digest != f.sha256 or size != f.size:
                raise DataError(f"{f.url}: sha256 {digest} ({size} bytes) does not match the "
                                f"expected {f.sha256} ({f.size} bytes); nothing was saved")
            dest = root / f.path
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(got, dest)
            written.append(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if created and not written:
            try:
                root.rmdir()  # only if still empty
            except OSError:
                pass
    return written


# --------------------------------------------------------------------------- pixels


def to_float(images, dtype=np.float32):
    """uint8 images -> floats in [0, 1] (pixels / 255), same shape."""
    return np.divide(images, PIXEL_SCALE, dtype=dtype)   # (N, H, W, C)
