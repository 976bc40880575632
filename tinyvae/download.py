"""Download the official MNIST and CIFAR-10 files into the data dir (:mod:`tinyvae.data` reads them).

tensorflow-datasets is used only for its registered URLs, checksums and
downloader; TensorFlow is never imported. The readers in :mod:`tinyvae.data`
never import this module, so loading data opens no socket.

:func:`ensure` is what ``run_all.py`` and ``tinyvae train`` call before
anything else: it downloads every missing file of the datasets they need, or
fails within about a second offline, naming every missing file at once.

Mirrors and tests: ``TINYVAE_RESOURCES`` may name a JSON file
``{"<dataset>": [{"path": ..., "url": ..., "sha256": ..., "size": ...}, ...]}``
that replaces the official URLs and digests of the datasets it lists.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import shutil
import socket
import tempfile
import threading
import urllib.parse
import urllib.request
from typing import NamedTuple, Sequence

from .data import (OFFICIAL_URLS, _check_dataset, file_digests, missing_data_error, missing_files,
                   resolve_data_dir, sha256_file)
from .errors import ConfigError, DataError

RESOURCES_ENV = "TINYVAE_RESOURCES"
NO_DOWNLOAD_ENV = "TINYVAE_NO_DOWNLOAD"   # "1": as if --no-download were given (the tests set it)


class RemoteFile(NamedTuple):
    """One file to fetch: ``path`` relative to the data dir, its ``url``, ``sha256`` hex digest and byte ``size``."""

    path: str
    url: str
    sha256: str
    size: int


def official_resources(dataset: str) -> list[RemoteFile]:
    """The official files of ``dataset`` with the sha256 and sizes registered in tensorflow-datasets
    (or what ``$TINYVAE_RESOURCES`` lists for it)."""
    _check_dataset(dataset)
    override = _resources_from_env(dataset)
    if override is not None:
        return override
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


def _resources_from_env(dataset: str) -> list[RemoteFile] | None:
    """``dataset``'s entry of the JSON file named by ``$TINYVAE_RESOURCES``, if any."""
    path = os.environ.get(RESOURCES_ENV)
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            listed = json.load(f)
        if dataset not in listed:
            return None
        return [RemoteFile(str(r["path"]), str(r["url"]), str(r["sha256"]), int(r["size"]))
                for r in listed[dataset]]
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise ConfigError(f"{RESOURCES_ENV}={path}: not a readable list of resources "
                          f"({type(e).__name__}: {e})") from None


def _require_tfds() -> None:
    if importlib.util.find_spec("tensorflow_datasets") is None:
        raise DataError("fetch needs tensorflow-datasets (used only as a downloader; TensorFlow "
                        "is not needed): pip install tensorflow-datasets")


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


def _probe_hosts(urls: Sequence[str], timeout: float) -> None:
    """:func:`_probe` each host of ``urls`` once."""
    for url in {urllib.parse.urlsplit(u)[:2]: u for u in urls}.values():
        _probe(url, timeout)


def fetch(dataset: str, data_dir: str | os.PathLike | None = None, *, timeout: float = 1.0,
          resources: Sequence[RemoteFile] | None = None) -> list[pathlib.Path]:
    """Download the missing files of ``dataset`` into the data dir.

    tensorflow-datasets is used only as a
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
    official = resources is None and _resources_from_env(dataset) is None
    if official:                              # the same URLs official_resources gives, probed
        urls = [url for rel, url in OFFICIAL_URLS[dataset].items() if not (root / rel).is_file()]
        _probe_hosts(urls, timeout)           # before tfds's registry loads: offline fails fast
    files = list(official_resources(dataset) if resources is None else resources)
    for f in files:
        rel = pathlib.PurePosixPath(f.path)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise ConfigError(f"resource path {f.path!r} must be relative, inside the data dir")
    todo = [f for f in files if not (root / f.path).is_file()]
    if not todo:
        return []
    if not official:
        _probe_hosts([f.url for f in todo], timeout)

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
            digest, size = sha256_file(got)
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


def ensure(datasets: Sequence[str], data_dir: str | os.PathLike | None = None, *, download: bool = True,
           timeout: float = 1.0, log=None) -> list[pathlib.Path]:
    """Make sure every file of ``datasets`` is in the data dir, downloading what is missing.

    Files already there are never downloaded again. With ``download=False``,
    or when a download fails (offline: within about ``timeout`` seconds),
    raises one DataError that lists every missing file of every dataset, the
    folder layout, the URLs and the fixes. ``log(msg)``, if given, is told
    what is being downloaded. ``TINYVAE_NO_DOWNLOAD=1`` turns downloads off
    like ``download=False``.

    Returns the files written (empty if all were there).
    """
    root = resolve_data_dir(data_dir)
    missing = missing_files(datasets, root)
    if not missing:
        return []
    if not download:
        raise missing_data_error(missing, root, why=" (downloads are off: --no-download)")
    if os.environ.get(NO_DOWNLOAD_ENV) == "1":
        raise missing_data_error(missing, root, why=f" (downloads are off: {NO_DOWNLOAD_ENV}=1)")
    written = []
    for dataset in missing:
        if log is not None:
            log(f"downloading {dataset} into {root} (once; later runs find it there)")
        try:
            written += fetch(dataset, root, timeout=timeout)
        except DataError as e:
            raise DataError(f"{e}\n{missing_data_error(missing_files(datasets, root), root)}") from None
    return written


def is_official(dataset: str, data_dir: str | os.PathLike | None = None) -> bool | None:
    """Whether the files of ``dataset`` in the data dir are byte for byte the official ones.

    Compares their sha256 (:func:`tinyvae.data.file_digests`) with the digests
    registered in tensorflow-datasets. Returns None when tensorflow-datasets is
    not installed. A copy that is not official (a mirror, a rebuilt archive)
    is still read and trained on; this only says which it is.
    """
    if importlib.util.find_spec("tensorflow_datasets") is None:
        return None
    digests = file_digests(dataset, data_dir)
    return all(digests[f.path] == f.sha256 for f in official_resources(dataset))
