"""The two file formats, read with NumPy alone and checked end to end.

* **IDX** (MNIST): a 4-byte magic ``00 00 <type> <ndim>``, ``ndim`` big-endian
  int32 sizes, then the items; here gzipped, uint8.
* **CIFAR-10 binary**: a gzipped tar whose batch members hold records of one
  label byte and 3072 pixel bytes (the 32x32 red plane, then green, then blue).

Every read is bounded by what the split can hold (:mod:`tinyvae.checked_io`
streams the gzip and stops at the limit), so no file, however crafted, makes
a reader allocate more than the split it asked for. :mod:`tinyvae.data`
finds the files and turns these arrays into NHWC images.
"""

from __future__ import annotations

import math
import pathlib
import tarfile
from typing import Sequence

import numpy as np

from .checked_io import CHUNK, Damage, StrictTarInfo, damaged, reading
from .errors import DataError

# IDX type codes -> big-endian NumPy dtypes.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
CIFAR_MEMBERS = {
    "train": tuple(f"cifar-10-batches-bin/data_batch_{i}.bin" for i in range(1, 6)),
    "test": ("cifar-10-batches-bin/test_batch.bin",),
}
_CIFAR_BATCHES = {name for names in CIFAR_MEMBERS.values() for name in names}
CIFAR_RECORD = 1 + 32 * 32 * 3  # label byte + R, G, B planes
_CIFAR_BATCH = 10000  # records in each official batch file, the most any may hold
_CIFAR_LIMIT = len(_CIFAR_BATCHES) * _CIFAR_BATCH * CIFAR_RECORD + (16 << 20)  # tar bytes, all told
_CIFAR_EXTRA = 1 << 20  # largest other member (the official readme.html is 88 bytes)
_CIFAR_MAX_MEMBERS = 64  # the official archive has 8
_TAR_HEADER_BUDGET = 4 << 20  # bytes one member's headers (pax, long names, sparse maps) may take


# --------------------------------------------------------------------------- IDX (MNIST)


def _idx_header(data: bytes):
    """Parse the IDX header at the start of ``data`` -> (dtype, dims, header length); DataError if bad."""
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
    return np.dtype(_IDX_DTYPES[code]), dims, header


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
    dtype, dims, header = _idx_header(data)
    expected = dtype.itemsize * math.prod(dims)
    if len(data) - header != expected:
        raise DataError(f"IDX payload is {len(data) - header} bytes, header {dims} of "
                        f"{dtype.name} announces {expected}")
    array = np.frombuffer(data, dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))


def read_idx_gz(path: pathlib.Path, shape: tuple, most: int) -> np.ndarray:
    """Read a gzipped IDX file of uint8 items, shape ``(n, *shape)`` with ``n <= most``, to its end."""
    what = "images" if shape else "labels"
    item = math.prod(shape)
    limit = 4 + 4 * 255 + most * item
    with reading(path, "mnist", limit, f"it decompresses to more than {limit} bytes, more than "
                  f"{most} MNIST {what}") as gz:
        head = gz.read(4)
        head += gz.read(4 * head[3]) if len(head) == 4 else b""
        try:
            dtype, dims, _ = _idx_header(head)
        except DataError as e:
            raise Damage(str(e)) from None
        if dtype != np.uint8 or dims[1:] != shape:
            expected = f"uint8 images of shape (N, {', '.join(map(str, shape))})" if shape else \
                "a uint8 vector of labels"
            raise Damage(f"expected {expected}, got {dtype.name} {dims}")
        if dims[0] > most:
            raise Damage(f"its header announces {dims[0]} {what}, more than the {most} of the split")
        expected = dims[0] * item
        payload = gz.read(expected)
        if len(payload) != expected:
            raise Damage(f"IDX payload is {len(payload)} bytes, header {dims} of uint8 announces {expected}")
        if gz.read(1):
            raise Damage(f"IDX payload is longer than the {expected} bytes its header {dims} announces")
    return np.frombuffer(payload, np.uint8).reshape(dims).copy()


# --------------------------------------------------------------------------- CIFAR-10 binary


def _check_batch(member: tarfile.TarInfo, records: int | None) -> None:
    if not member.isreg() or member.issparse():
        raise Damage(f"member {member.name} is not a regular file")
    n, rest = divmod(member.size, CIFAR_RECORD)
    if rest or n == 0:
        raise Damage(f"member {member.name} is {member.size} bytes, not a whole number of "
                      f"{CIFAR_RECORD}-byte records")
    if records is not None and n != records:
        raise Damage(f"member {member.name} holds {n} records, expected {records}")
    if n > _CIFAR_BATCH:
        raise Damage(f"member {member.name} holds {n} records, more than the {_CIFAR_BATCH} of a batch")


def read_cifar_archive(path: pathlib.Path, names: Sequence[str], records: int | None) -> dict[str, bytes]:
    """The members ``names`` of the CIFAR-10 archive, in one pass to the end of the archive.

    Every batch member, wanted or not, must be a plain regular file of
    ``records`` records (None: any whole number up to 10000) and appear once;
    other members may only be folders or small regular files; the tar data
    must end with its end-of-archive marker and nothing but zeros after it.
    """
    found, seen = {}, set()
    budget = f"one member's tar headers take more than {_TAR_HEADER_BUDGET} bytes: the archive is corrupt"
    total = f"it decompresses to more than {_CIFAR_LIMIT} bytes, more than a CIFAR-10 archive holds"
    with reading(path, "cifar10", _TAR_HEADER_BUDGET, budget) as gz:
        try:
            with tarfile.open(fileobj=gz, mode="r|", bufsize=CHUNK, tarinfo=StrictTarInfo) as tar:
                skip = 0  # data of the last member that next() will step over
                while True:
                    gz.limit, gz.limit_why = min(gz.produced + skip + _TAR_HEADER_BUDGET, _CIFAR_LIMIT), budget
                    member = tar.next()
                    if member is None:
                        break
                    gz.limit, gz.limit_why = _CIFAR_LIMIT, total
                    if len(seen) == _CIFAR_MAX_MEMBERS:
                        raise Damage(f"more than {_CIFAR_MAX_MEMBERS} members (CIFAR-10 has 8)")
                    if member.name in _CIFAR_BATCHES:
                        if member.name in seen:
                            raise Damage(f"member {member.name} appears twice")
                        _check_batch(member, records)
                    elif member.isdir():
                        pass
                    elif not member.isreg() or member.issparse():
                        raise Damage(f"unexpected member {member.name!r}: not a regular file or folder")
                    elif member.size > _CIFAR_EXTRA:
                        raise Damage(f"unexpected member {member.name!r} of {member.size} bytes")
                    seen.add(member.name)
                    skip = member.size
                    if member.name in names:  # straight from the stream: extractfile() copies twice more
                        tar.fileobj.seek(member.offset_data)
                        found[member.name] = tar.fileobj.read(member.size)
                        if len(found[member.name]) != member.size:
                            raise Damage(f"the tar data ends inside member {member.name}: the archive is truncated")
                gz.limit = gz.produced + _TAR_HEADER_BUDGET  # tar pads its end to a record, a few KiB
                gz.limit_why = f"more than {_TAR_HEADER_BUDGET} bytes follow the tar end-of-archive marker"
                while block := tar.fileobj.read(CHUNK):
                    if block.count(0) != len(block):
                        raise Damage("data follows the tar end-of-archive marker")
        except (tarfile.TarError, EOFError, ValueError, IndexError, KeyError, OverflowError) as e:
            raise Damage(f"the archive is corrupt ({type(e).__name__}: {e})") from None
        missing = [n for n in names if n not in found]
        if missing:
            raise Damage(f"the archive lacks member(s) {', '.join(missing)}")
    return found


def cifar_labels(rows: np.ndarray, path: pathlib.Path, name: str) -> np.ndarray:
    """The label column of one batch's records (n, 3073) -> int64 (n,); DataError if one is not 0..9."""
    labels = rows[:, 0].astype(np.int64)  # (n,)
    if labels.max() > 9:
        raise damaged(path, "cifar10", f"member {name}: label {labels.max()} outside 0..9")
    return labels
