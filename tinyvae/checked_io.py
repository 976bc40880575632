"""Read gzip and tar data to its end, in bounded pieces, turning any damage into a DataError.

The data readers (:mod:`tinyvae.data`) stream every file through
:class:`GzipReader`, which checks each gzip member's CRC-32 and length and
never hands out more than a limit; CIFAR-10's tar stream is parsed with
:class:`StrictTarInfo`, which reports a bad header where tarfile would end
the archive quietly. A :class:`Damage` raised while :func:`reading` a file
becomes a DataError naming the file and how to get a good copy.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import tarfile
import zlib

from .errors import DataError

CHUNK = 1 << 20  # compressed bytes read at a time


class Damage(Exception):
    """What is wrong inside a data file; :func:`reading` turns it into a DataError naming the file."""


def fix_hint(dataset: str) -> str:
    """How to replace a bad ``dataset`` file, as one clause."""
    return (f"delete it and fetch it again with `python -m tinyvae fetch {dataset}`, "
            "or point --data-dir (or TINYVAE_DATA_DIR) at a folder with a good copy")


def damaged(path, dataset: str, why: str) -> DataError:
    """The DataError for a damaged ``dataset`` file at ``path``: what is wrong and how to get a good copy."""
    return DataError(f"{path}: {why}.\nThe file is damaged or is not a {dataset} file: {fix_hint(dataset)}.")


def zlib_why(error: zlib.error) -> str:
    """zlib's terse error, said in words (a CRC mismatch means the bytes were altered)."""
    text = str(error)
    if "incorrect data check" in text:
        return f"the gzip CRC-32 does not match the data: its bytes were altered (zlib: {text})"
    if "incorrect length check" in text:
        return f"the gzip length field does not match the data (zlib: {text})"
    if "incorrect header check" in text or "unknown compression method" in text:
        return f"not gzip data (zlib: {text})"
    return f"corrupt gzip data (zlib: {text})"


class GzipReader:
    """The decompressed bytes of an open gzip file, handed out in bounded pieces.

    zlib checks each gzip member's CRC-32 and length when the reader reaches
    the member's end; members that follow one another read as one stream, and
    anything else after the last member is refused. At most ``limit`` bytes
    are handed out: a read past it raises ``Damage(limit_why)`` if the data
    goes on.
    """

    def __init__(self, f, limit: int, limit_why: str):
        self._f = f
        self._z = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip: header, deflate, CRC-32, length
        self._input = b""  # compressed bytes not yet given to zlib
        self._ended = False
        self.produced = 0
        self.limit, self.limit_why = limit, limit_why

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all that is left if ``n < 0``); fewer only at the end of the data."""
        room = self.limit - self.produced
        if n is None or n < 0 or n > room:
            out = self._read(room)
            if self._read(1):
                raise Damage(self.limit_why)
            return out
        return self._read(n)

    def _read(self, n: int) -> bytes:
        pieces = []
        while n > 0 and not self._ended:
            if self._z.eof and not self._next_member():
                break
            fed = self._input or self._f.read(CHUNK)
            try:
                piece = self._z.decompress(fed, n)
            except zlib.error as e:
                raise Damage(zlib_why(e)) from None
            self._input = self._z.unused_data if self._z.eof else self._z.unconsumed_tail
            if not (fed or piece or self._z.eof):
                raise Damage("the gzip data ends early: the file is truncated")
            pieces.append(piece)
            n -= len(piece)
        out = b"".join(pieces)
        self.produced += len(out)
        return out

    def _next_member(self) -> bool:
        """At the end of a gzip member: start the next one, or return False at the end of the file."""
        while len(self._input) < 2 and (more := self._f.read(CHUNK)):
            self._input += more
        if not self._input:
            self._ended = True
            return False
        if self._input[:2] != b"\x1f\x8b":
            at = self._f.tell() - len(self._input)
            raise Damage(f"data that is not gzip follows the end of the gzip data, at byte {at}")
        self._z = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        return True


@contextlib.contextmanager
def reading(path: pathlib.Path, dataset: str, limit: int, limit_why: str):
    """Open ``path`` as a :class:`GzipReader`; any damage found inside becomes a DataError naming it."""
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                raise Damage("empty file, expected gzip-compressed data")
            yield GzipReader(f, limit, limit_why)
    except Damage as e:
        raise damaged(path, dataset, str(e)) from None
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({type(e).__name__}: {e})") from e


class StrictTarInfo(tarfile.TarInfo):
    """A TarInfo whose bad header raises, where tarfile would end the archive quietly after its
    first member (so damage mid-archive read as a short archive)."""

    @classmethod
    def fromtarfile(cls, tar):
        try:
            return super().fromtarfile(tar)
        except tarfile.EOFHeaderError:
            raise  # a block of zeros: the end-of-archive marker
        except (tarfile.EmptyHeaderError, tarfile.TruncatedHeaderError):
            raise Damage(f"the tar data ends early, at byte {tar.offset}, without its "
                          "end-of-archive marker: the archive is truncated") from None
        except tarfile.HeaderError as e:
            raise Damage(f"the archive is corrupt: bad tar header at byte {tar.offset} ({e})") from None
