"""Tests of tinyvae.data and tinyvae.download: readers on small files written here, real data when
present, fuzzing, fetch."""

import contextlib
import functools
import gzip
import hashlib
import http.server
import io
import os
import resource
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
import time
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinyvae import data, download, formats
from tinyvae.errors import ConfigError, DataError

RNG = np.random.default_rng(0)
MNIST_NAMES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
               "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
CIFAR_MEMBERS = {"train": [f"cifar-10-batches-bin/data_batch_{i}.bin" for i in range(1, 6)],
                 "test": ["cifar-10-batches-bin/test_batch.bin"]}


# --------------------------------------------------------------------------- writers


def idx_bytes(array, code=0x08):
    array = np.asarray(array)
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]
    header = bytes([0, 0, code, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    return header + array.astype(dtype).tobytes()


def write_mnist(root, n=(5, 3)):
    """Write a tiny MNIST into root/mnist; return {split: (images NHWC, labels)}."""
    (root / "mnist").mkdir(parents=True, exist_ok=True)
    out = {}
    for split, count in zip(("train", "test"), n):
        images = RNG.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = RNG.integers(0, 10, count, dtype=np.uint8)
        img_name, lab_name = MNIST_NAMES[split]
        (root / "mnist" / img_name).write_bytes(gzip.compress(idx_bytes(images)))
        (root / "mnist" / lab_name).write_bytes(gzip.compress(idx_bytes(labels)))
        out[split] = (images[..., None], labels.astype(np.int64))
    return out


def cifar_batch(images, labels):
    """Official record layout: label byte, then the R, G and B planes."""
    planes = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    return np.concatenate([labels.astype(np.uint8)[:, None], planes], axis=1).tobytes()


def tar_bytes(members):
    """An uncompressed tar of (name, payload) regular files; payload None makes a symlink."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, payload in members:
            info = tarfile.TarInfo(name)
            if payload is None:
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            else:
                info.size = len(payload)
            tar.addfile(info, None if payload is None else io.BytesIO(payload))
    return buf.getvalue()


def cifar_members(n=2):
    """Members of a tiny CIFAR archive (n records per batch) and the expected arrays."""
    members, expected = [], {"train": [], "test": []}
    for split in ("train", "test"):
        for name in CIFAR_MEMBERS[split]:
            images = RNG.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
            labels = RNG.integers(0, 10, n)
            members.append((name, cifar_batch(images, labels)))
            expected[split].append((images, labels))
    expected = {s: (np.concatenate([i for i, _ in v]), np.concatenate([l for _, l in v]))
                for s, v in expected.items()}
    members.insert(3, ("cifar-10-batches-bin/batches.meta.txt", b"airplane\n"))
    return members, expected


def write_cifar(root, payload):
    (root / "cifar10").mkdir(parents=True, exist_ok=True)
    (root / "cifar10" / "cifar-10-binary.tar.gz").write_bytes(payload)


# --------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("code", [0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E])
def test_read_idx_round_trip(code):
    array = RNG.integers(0, 100, (4, 3, 2))
    got = formats.read_idx(idx_bytes(array, code))
    assert got.shape == (4, 3, 2) and got.dtype.isnative and got.flags.writeable
    np.testing.assert_array_equal(got, array)


VALID_IDX = idx_bytes(np.arange(6, dtype=np.uint8).reshape(2, 3))


@pytest.mark.parametrize("bad, words", [
    (b"", "short"),
    (b"\x01" + VALID_IDX[1:], "magic"),
    (VALID_IDX[:2] + b"\x07" + VALID_IDX[3:], "type code"),
    (VALID_IDX[:3] + b"\x00", "0 dimensions"),
    (VALID_IDX[:10], "header truncated"),
    (VALID_IDX[:-1], "payload"),
    (VALID_IDX + b"\x00", "payload"),
])
def test_read_idx_rejects(bad, words):
    with pytest.raises(DataError, match=words):
        formats.read_idx(bad)


# --------------------------------------------------------------------------- MNIST files


def test_load_mnist_round_trip(tmp_path, monkeypatch):
    expected = write_mnist(tmp_path)
    for split in ("train", "test"):
        images, labels = data.load_mnist(split, tmp_path)
        assert images.dtype == np.uint8 and labels.dtype == np.int64
        np.testing.assert_array_equal(images, expected[split][0])
        np.testing.assert_array_equal(labels, expected[split][1])
    monkeypatch.setenv("TINYVAE_DATA_DIR", str(tmp_path))
    np.testing.assert_array_equal(data.load("mnist", "test")[1], expected["test"][1])


def _rewrite(root, name, raw=None, gz=None):
    (root / "mnist" / name).write_bytes(gzip.compress(raw) if gz is None else gz)


@pytest.mark.parametrize("name, kwargs, words", [
    ("train-images-idx3-ubyte.gz", {"gz": b"not gzip at all"}, "gzip"),
    ("train-images-idx3-ubyte.gz", {"gz": b""}, "empty"),
    ("train-labels-idx1-ubyte.gz", {"gz": gzip.compress(b"x" * 1000)[:-20]}, "gzip"),
    ("train-labels-idx1-ubyte.gz", {"raw": b"\x01" + idx_bytes(np.zeros(5, np.uint8))[1:]}, "magic"),
    ("train-images-idx3-ubyte.gz", {"raw": idx_bytes(np.zeros((5, 28, 28)), 0x0D)}, "uint8 images"),
    ("train-images-idx3-ubyte.gz", {"raw": idx_bytes(np.zeros((5, 27, 28), np.uint8))}, "28, 28"),
    ("train-images-idx3-ubyte.gz", {"raw": idx_bytes(np.zeros((4, 28, 28), np.uint8))}, "4 images but"),
    ("train-labels-idx1-ubyte.gz", {"raw": idx_bytes(np.full(5, 10, np.uint8))}, "outside 0..9"),
    ("train-labels-idx1-ubyte.gz", {"raw": idx_bytes(np.zeros((5, 1), np.uint8))}, "vector"),
])
def test_load_mnist_rejects(tmp_path, name, kwargs, words):
    write_mnist(tmp_path)
    _rewrite(tmp_path, name, **kwargs)
    with pytest.raises(DataError, match=words) as info:
        data.load_mnist("train", tmp_path)
    assert name in str(info.value)


# --------------------------------------------------------------------------- CIFAR files


def test_load_cifar10_round_trip(tmp_path):
    members, expected = cifar_members(n=3)
    write_cifar(tmp_path, gzip.compress(tar_bytes(members)))
    for split in ("train", "test"):
        images, labels = data.load_cifar10(split, tmp_path, records_per_file=3)
        assert images.shape == (len(labels), 32, 32, 3) and images.dtype == np.uint8
        assert labels.dtype == np.int64 and images.flags.c_contiguous
        np.testing.assert_array_equal(images, expected[split][0])
        np.testing.assert_array_equal(labels, expected[split][1])
    np.testing.assert_array_equal(data.load_cifar10("test", tmp_path, records_per_file=None)[1],
                                  expected["test"][1])
    with pytest.raises(DataError, match="3 records, expected 10000"):
        data.load("cifar10", "test", tmp_path)  # the official archive has 10000 per file


def _cifar_variant(kind):
    members, _ = cifar_members(n=1)
    test = "cifar-10-batches-bin/test_batch.bin"
    if kind == "record size":
        members = [(n, p + b"\x00" if n == test else p) for n, p in members]
    elif kind == "missing member":
        members = [(n, p) for n, p in members if n != test]
    elif kind == "label":
        members = [(n, b"\x0a" + p[1:] if n == test else p) for n, p in members]
    elif kind == "empty member":
        members = [(n, b"" if n == test else p) for n, p in members]
    elif kind == "symlink":
        members = [(n, p) for n, p in members if n != test] + [(test, None)]
    elif kind == "not a tar":
        return gzip.compress(b"\x01" * 3000)
    elif kind == "not gzip":
        return tar_bytes(members)
    elif kind == "truncated":
        return gzip.compress(tar_bytes(members))[:-100]
    elif kind == "empty file":
        return b""
    return gzip.compress(tar_bytes(members))


@pytest.mark.parametrize("kind, words", [
    ("record size", "whole number"), ("missing member", "lacks member"), ("label", "outside 0..9"),
    ("empty member", "whole number"), ("symlink", "not a regular file"),
    ("not a tar", "tar.gz"), ("not gzip", "tar.gz"), ("truncated", "tar.gz"), ("empty file", "tar.gz"),
])
def test_load_cifar10_rejects(tmp_path, kind, words):
    write_cifar(tmp_path, _cifar_variant(kind))
    with pytest.raises(DataError, match=words) as info:
        data.load_cifar10("test", tmp_path, records_per_file=None)
    assert "cifar-10-binary.tar.gz" in str(info.value)


# --------------------------------------------------------------------------- damaged and hostile files


@contextlib.contextmanager
def memory_cap(extra=96 << 20):
    """Cap this process's address space at its current size + ``extra`` bytes, so a reader that
    allocates without bound gets a MemoryError instead of taking the machine."""
    vm = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmSize:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (vm + extra, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def refused(load, path, *words, cap=96 << 20):
    """Run ``load`` under a memory cap; it must raise a DataError naming ``path``, the fix and ``words``."""
    with pytest.raises(DataError) as info, memory_cap(cap):
        load()
    message = str(info.value)
    assert "not enough memory" not in message, message  # a bounded reader never runs out
    for needed in (str(path), "python -m tinyvae fetch", "--data-dir", *words):
        assert needed in message, message
    return message


@functools.lru_cache(maxsize=None)
def zeros_gz(nbytes=160 << 20):
    """A gzip member that inflates to ``nbytes`` zeros (~0.6 MB): appended to a file, a bomb."""
    z = zlib.compressobj(1, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    return b"".join([z.compress(block) for _ in range(nbytes >> 20)] + [z.flush()])


def tar_header(name, size=0, type=tarfile.REGTYPE, fmt=tarfile.GNU_FORMAT, **fields):
    """The header block(s) of one tar member, its data not included; ``fields`` set TarInfo attributes."""
    info = tarfile.TarInfo(name)
    info.size, info.type = size, type
    for key, value in fields.items():
        setattr(info, key, value)
    return info.tobuf(fmt)


def tar_entries(members):
    """Headers and padded data of (name, payload) regular files: a tar archive without its end marker."""
    return b"".join(tar_header(name, len(payload)) + payload + bytes(-len(payload) % 512)
                    for name, payload in members)


def with_checksum(block):
    """``block`` (a 512-byte tar header) with its checksum field recomputed."""
    block = bytearray(block)
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def sparse_header(name, realsize):
    """An old-GNU sparse member header: no data, all hole, ``realsize`` bytes once expanded."""
    block = bytearray(tar_header(name, 0, tarfile.GNUTYPE_SPARSE))
    block[483:495] = b"%011o\0" % realsize
    return with_checksum(block)


TEST_MEMBER = CIFAR_MEMBERS["test"][0]


def hostile_cifar(kind):
    """The bytes of a small CIFAR archive (1 record per batch) with one hostile part."""
    members = cifar_members(n=1)[0]
    body = tar_entries([m for m in members if m[0] != TEST_MEMBER])  # no end-of-archive marker yet
    end = bytes(1024)
    if kind == "sparse member":  # a 4 GiB member from a 512-byte header
        return gzip.compress(body + sparse_header(TEST_MEMBER, 1 << 32) + end)
    if kind == "oversized member":  # declared size 3 GB, then 160 MB of zeros
        return gzip.compress(body + tar_header(TEST_MEMBER, 3073 * 10**6)) + zeros_gz()
    if kind == "long-name bomb":  # a GNU long name of 4 GiB
        return gzip.compress(body + tar_header("././@LongLink", 1 << 32, tarfile.GNUTYPE_LONGNAME)) + zeros_gz()
    if kind == "sparse-map bomb":  # a pax GNU sparse 1.0 map announcing 10**9 entries
        head = tar_header(TEST_MEMBER, 3073, fmt=tarfile.PAX_FORMAT, pax_headers={
            "GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.realsize": "3073"})
        tail = zlib.compressobj(1, zlib.DEFLATED, 31)
        entries = b"0\n" * (1 << 20)
        bomb = b"".join([tail.compress(entries) for _ in range(80)] + [tail.flush()])
        return gzip.compress(body + head + b"1000000000\n") + bomb
    if kind == "big extra member":
        return gzip.compress(body + tar_header("cifar-10-batches-bin/extra", 100 << 20)) + zeros_gz(100 << 20)
    if kind == "many members":
        return gzip.compress(tar_bytes(members + [(f"x/{i}", b"") for i in range(100)]))
    if kind == "duplicate member":
        return gzip.compress(tar_bytes(members + [members[-1]]))
    if kind == "gzip bomb after the archive":
        return gzip.compress(tar_bytes(members)) + zeros_gz()
    raise ValueError(kind)


@pytest.mark.parametrize("kind, words", [
    ("sparse member", "not a regular file"), ("oversized member", "more than the 10000"),
    ("long-name bomb", "headers take more than"), ("sparse-map bomb", "headers take more than"),
    ("big extra member", "unexpected member"), ("many members", "more than 64 members"),
    ("duplicate member", "appears twice"), ("gzip bomb after the archive", "end-of-archive marker"),
])
def test_hostile_cifar10_is_refused_within_bounded_memory(tmp_path, kind, words):
    write_cifar(tmp_path, hostile_cifar(kind))
    path = tmp_path / "cifar10" / "cifar-10-binary.tar.gz"
    refused(lambda: data.load_cifar10("test", tmp_path, records_per_file=None), path, words)


def test_gzip_bomb_in_mnist_is_refused_within_bounded_memory(tmp_path):
    write_mnist(tmp_path, n=(2, 1))
    labels = idx_bytes(np.array([3, 9], np.uint8))
    _rewrite(tmp_path, "train-labels-idx1-ubyte.gz", gz=gzip.compress(labels) + zeros_gz())
    refused(lambda: data.load_mnist("train", tmp_path), tmp_path / "mnist" / "train-labels-idx1-ubyte.gz",
            "longer than")


def test_mnist_header_announcing_more_than_the_split_is_refused(tmp_path):
    write_mnist(tmp_path, n=(2, 1))
    header = bytes([0, 0, 8, 3]) + np.array([2**31, 28, 28], ">u4").tobytes()
    _rewrite(tmp_path, "train-images-idx3-ubyte.gz", raw=header + bytes(2 * 784))
    refused(lambda: data.load_mnist("train", tmp_path), tmp_path / "mnist" / "train-images-idx3-ubyte.gz",
            "more than the 60000")


def _stored(raw):
    """gzip of ``raw`` in stored (uncompressed) deflate blocks: a changed byte changes only the data."""
    z = zlib.compressobj(0, zlib.DEFLATED, 31)
    return z.compress(raw) + z.flush()


def _flip(blob, at, bit=0):
    out = bytearray(blob)
    out[at] ^= 1 << bit
    return bytes(out)


@pytest.mark.parametrize("damage, words", [
    (lambda gz: _flip(gz, len(gz) // 2), "CRC-32"),  # an altered pixel that deflate cannot notice
    (lambda gz: _flip(gz, len(gz) - 2), "length field"),
    (lambda gz: gz + b"junk", "not gzip follows"),
    (lambda gz: gz + bytes(10), "not gzip follows"),
    (lambda gz: gz[:-8], "truncated"),
], ids=["pixel bit flip", "length field", "trailing junk", "trailing zeros", "truncated"])
@pytest.mark.parametrize("dataset", data.DATASETS)
def test_damaged_gzip_is_refused(tmp_path, dataset, damage, words):
    if dataset == "mnist":
        write_mnist(tmp_path, n=(2, 1))
        path = tmp_path / "mnist" / MNIST_NAMES["train"][0]
        path.write_bytes(damage(_stored(gzip.decompress(path.read_bytes()))))
        load = functools.partial(data.load_mnist, "train", tmp_path)
    else:
        write_cifar(tmp_path, damage(_stored(tar_bytes(cifar_members(n=2)[0]))))
        path = tmp_path / "cifar10" / "cifar-10-binary.tar.gz"
        load = functools.partial(data.load_cifar10, "train", tmp_path, records_per_file=None)
    refused(load, path, words)


def test_concatenated_gzip_members_read_as_one_file(tmp_path):
    members, expected = cifar_members(n=2)
    tar = tar_bytes(members)
    write_cifar(tmp_path, gzip.compress(tar[:5000]) + gzip.compress(tar[5000:]))
    images, labels = data.load_cifar10("train", tmp_path, records_per_file=None)
    np.testing.assert_array_equal(images, expected["train"][0])
    np.testing.assert_array_equal(labels, expected["train"][1])


def test_corrupt_tar_header_mid_archive_is_corruption_not_a_missing_member(tmp_path):
    tar = bytearray(tar_bytes(cifar_members(n=1)[0]))
    tar[3 * (512 + 3584) + 10] ^= 0x20  # the name of the 4th member's header: its checksum fails
    write_cifar(tmp_path, gzip.compress(bytes(tar)))
    message = refused(lambda: data.load_cifar10("test", tmp_path, records_per_file=None),
                      tmp_path / "cifar10" / "cifar-10-binary.tar.gz", "corrupt", "bad tar header")
    assert "lacks" not in message


@pytest.mark.parametrize("ending, words", [
    (lambda tar: tar, "ends early"), (lambda tar: tar + bytes(300), "ends early"),
    (lambda tar: tar[:-1000], "ends inside member"),
    (lambda tar: tar + bytes(1024) + b"\x01", "follows the tar end-of-archive marker"),
], ids=["no end marker", "half an end marker", "cut inside a member", "data after the end marker"])
def test_tar_cut_short_or_with_data_after_its_end_is_refused(tmp_path, ending, words):
    write_cifar(tmp_path, gzip.compress(ending(tar_entries(cifar_members(n=1)[0]))))
    refused(lambda: data.load_cifar10("test", tmp_path, records_per_file=None),
            tmp_path / "cifar10" / "cifar-10-binary.tar.gz", words)


def test_out_of_memory_is_a_data_error(tmp_path, monkeypatch):
    write_mnist(tmp_path)

    def exhausted(*args):
        raise MemoryError

    monkeypatch.setattr(data, "read_idx_gz", exhausted)
    with pytest.raises(DataError, match="not enough memory to load the train split"):
        data.load("mnist", "train", tmp_path)


# --------------------------------------------------------------------------- missing data, arguments


@pytest.mark.parametrize("dataset", data.DATASETS)
def test_missing_data_is_fast_and_explains_the_fixes(tmp_path, dataset):
    start = time.perf_counter()
    with pytest.raises(DataError) as info:
        data.load(dataset, "train", tmp_path / "nowhere")
    assert time.perf_counter() - start < 2.0
    message = str(info.value)
    for needed in [str(tmp_path / "nowhere"), f"fetch {dataset}", "TINYVAE_DATA_DIR", "--data-dir",
                   f"fetch {dataset} --data-dir {tmp_path / 'nowhere'}", *data.OFFICIAL_URLS[dataset].values()]:
        assert needed in message


def test_unknown_dataset_or_split(tmp_path):
    with pytest.raises(ConfigError, match="mnist, cifar10"):
        data.load("imagenet", "train", tmp_path)
    for loader in (data.load_mnist, data.load_cifar10, functools.partial(data.load, "mnist")):
        with pytest.raises(ConfigError, match="train, test"):
            loader("val", tmp_path)
    assert issubclass(ConfigError, ValueError)


def test_resolve_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYVAE_DATA_DIR", str(tmp_path / "env"))
    assert data.resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert data.resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv("TINYVAE_DATA_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data.resolve_data_dir() == tmp_path / ".cache" / "tinyvae"


def test_class_names():
    assert data.CLASS_NAMES["mnist"] == tuple("0123456789")
    assert len(data.CLASS_NAMES["cifar10"]) == 10 and data.CLASS_NAMES["cifar10"][3] == "cat"


# --------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def real_mnist(mnist_data_dir):
    return {split: data.load_mnist(split, mnist_data_dir) for split in ("train", "test")}


@pytest.fixture(scope="module")
def real_cifar10(cifar10_data_dir):
    return {split: data.load_cifar10(split, cifar10_data_dir) for split in ("train", "test")}


def _check_real(images, labels, shape):
    assert images.shape == shape and images.dtype == np.uint8
    assert labels.shape == shape[:1] and labels.dtype == np.int64
    assert labels.min() == 0 and labels.max() == 9
    # Neighbouring pixels of real images are alike; a wrong plane/axis order would break that.
    horizontal = np.abs(np.diff(images[:500].astype(np.int16), axis=2)).mean()
    shuffled = np.abs(images[:500].astype(np.int16) - images[500:1000].astype(np.int16)).mean()
    assert horizontal < 0.5 * shuffled


def test_real_mnist(real_mnist):
    (train, train_labels), (test, test_labels) = real_mnist["train"], real_mnist["test"]
    _check_real(train, train_labels, (60000, 28, 28, 1))
    _check_real(test, test_labels, (10000, 28, 28, 1))
    assert (np.bincount(train_labels, minlength=10) > 5000).all()
    assert (np.bincount(test_labels, minlength=10) > 800).all()
    assert train[:, 0, 0].max() == 0 and train.max() == 255  # black border, white ink


def test_real_mnist_through_load(mnist_data_dir, real_mnist, monkeypatch):
    monkeypatch.setenv("TINYVAE_DATA_DIR", str(mnist_data_dir))
    np.testing.assert_array_equal(data.load("mnist", "test")[1], real_mnist["test"][1])


def test_real_cifar10(real_cifar10):
    (train, train_labels), (test, test_labels) = real_cifar10["train"], real_cifar10["test"]
    _check_real(train, train_labels, (50000, 32, 32, 3))
    _check_real(test, test_labels, (10000, 32, 32, 3))
    assert (np.bincount(train_labels, minlength=10) == 5000).all()
    assert (np.bincount(test_labels, minlength=10) == 1000).all()
    # Channels are distinct planes (R, G, B), not one plane repeated.
    assert not np.array_equal(train[:100, ..., 0], train[:100, ..., 2])


# --------------------------------------------------------------------------- fuzzing

FUZZ = settings(max_examples=500, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def mutated(draw, valid):
    """``valid`` after 1-4 truncations, byte flips, insertions or deletions.

    Positions favour the start (IDX header) and the first 160 bytes of each
    512-byte block (tar headers: name, size, checksum, type).
    """
    out = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        if not out:
            break
        last = len(out) - 1
        at = draw(st.one_of(
            st.integers(0, min(40, last)), st.integers(0, last),
            st.tuples(st.integers(0, last // 512), st.integers(0, 160)).map(
                lambda block: min(512 * block[0] + block[1], last))))
        kind = draw(st.sampled_from(["truncate", "flip", "insert", "delete"]))
        if kind == "truncate":
            del out[at:]
        elif kind == "flip":
            out[at] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            del out[at:at + draw(st.integers(1, 8))]
    return bytes(out)


def _idx_ok_or_data_error(blob):
    try:
        array = formats.read_idx(blob)
    except DataError:
        return
    assert array.ndim == blob[3]


@FUZZ
@given(st.binary(max_size=64) | st.binary(max_size=4).map(lambda b: b"\x00\x00" + b))
def test_fuzz_read_idx_arbitrary(blob):
    _idx_ok_or_data_error(blob)


@FUZZ
@given(mutated(idx_bytes(RNG.integers(0, 256, (2, 5, 3), dtype=np.uint8))))
def test_fuzz_read_idx_mutated(blob):
    _idx_ok_or_data_error(blob)


@pytest.fixture(scope="module")
def fuzz_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    write_mnist(root, n=(2, 1))
    return root


def load_or_refusal(load, path):
    """``load()`` under the memory cap: its result, or None if it raised a DataError naming ``path`` and the fix."""
    try:
        with memory_cap():
            return load()
    except DataError as e:
        message = str(e)
        assert "not enough memory" not in message, message
        assert str(path) in message and "python -m tinyvae fetch" in message, message
        return None


def _load_mnist_ok_or_data_error(root, name, payload):
    write_mnist(root, n=(2, 1))
    (root / "mnist" / name).write_bytes(payload)
    loaded = load_or_refusal(lambda: data.load_mnist("train", root), root / "mnist" / name)
    if loaded is not None:
        images, labels = loaded
        assert images.shape == (len(labels), 28, 28, 1) and labels.max(initial=0) <= 9


MNIST_FILE = st.sampled_from(MNIST_NAMES["train"])
VALID_IMAGES = idx_bytes(np.zeros((2, 28, 28), np.uint8))
VALID_LABELS = idx_bytes(np.array([3, 9], np.uint8))


@FUZZ
@given(MNIST_FILE, st.binary(max_size=200) | st.binary(max_size=200).map(gzip.compress))
def test_fuzz_load_mnist_arbitrary(fuzz_root, name, payload):
    _load_mnist_ok_or_data_error(fuzz_root, name, payload)


@FUZZ
@given(st.data())
def test_fuzz_load_mnist_mutated(fuzz_root, draw):
    name = draw.draw(MNIST_FILE)
    raw = VALID_IMAGES if name.startswith("train-images") else VALID_LABELS
    if draw.draw(st.booleans()):
        payload = gzip.compress(draw.draw(mutated(raw)))  # bad IDX inside good gzip
    else:
        payload = draw.draw(mutated(gzip.compress(raw)))  # damaged gzip
    _load_mnist_ok_or_data_error(fuzz_root, name, payload)


def _load_cifar_ok_or_data_error(root, payload):
    write_cifar(root, payload)
    loaded = load_or_refusal(lambda: data.load_cifar10("test", root, records_per_file=None),
                             root / "cifar10" / "cifar-10-binary.tar.gz")
    if loaded is not None:
        images, labels = loaded
        assert images.shape == (len(labels), 32, 32, 3) and labels.max() <= 9


VALID_TAR = tar_bytes(cifar_members(n=1)[0])


@FUZZ
@given(st.binary(max_size=1500) | st.binary(max_size=1500).map(gzip.compress)
       | st.binary(max_size=600).map(lambda b: gzip.compress(VALID_TAR[:512] + b)))
def test_fuzz_load_cifar10_arbitrary(fuzz_root, payload):
    _load_cifar_ok_or_data_error(fuzz_root, payload)


@FUZZ
@given(st.data())
def test_fuzz_load_cifar10_mutated(fuzz_root, draw):
    if draw.draw(st.booleans()):
        payload = gzip.compress(draw.draw(mutated(VALID_TAR)), compresslevel=1)  # bad tar, good gzip
    else:
        payload = draw.draw(mutated(gzip.compress(VALID_TAR)))  # damaged gzip
    _load_cifar_ok_or_data_error(fuzz_root, payload)


# Mutations of small files cut from the real ones: the first records, with the real headers.

REAL_FUZZ = settings(max_examples=300, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def real_mnist_prefix(mnist_data_dir):
    """The real MNIST train files cut to their first 3 images and labels: {name: IDX bytes}."""
    raw = {}
    for name, item in zip(MNIST_NAMES["train"], (784, 1)):
        with gzip.open(mnist_data_dir / "mnist" / name) as f:
            head = f.read(16 if item > 1 else 8)
            raw[name] = head[:4] + (3).to_bytes(4, "big") + head[8:] + f.read(3 * item)
    return raw


@pytest.fixture(scope="module")
def real_cifar_prefix(cifar10_data_dir):
    """The real CIFAR-10 archive, its members in its order with its headers, each batch cut to its first
    2 records: (tar bytes, offsets of its headers)."""
    out = io.BytesIO()
    with tarfile.open(cifar10_data_dir / "cifar10" / "cifar-10-binary.tar.gz", "r|gz") as src, \
            tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as dst:
        for member in src:
            payload = None
            if member.isfile():
                payload = src.extractfile(member).read(2 * 3073 if member.name.endswith(".bin") else member.size)
                member.size = len(payload)
            dst.addfile(member, None if payload is None else io.BytesIO(payload))
    tar = out.getvalue()
    with tarfile.open(fileobj=io.BytesIO(tar)) as check:
        offsets = [m.offset for m in check.getmembers()]
    return tar, offsets


@st.composite
def header_changed(draw, tar, offsets):
    """``tar`` with one field of one member's header set to another value, its checksum made right."""
    out = bytearray(tar)
    at = draw(st.sampled_from(offsets))
    start, length = draw(st.sampled_from([(0, 100), (124, 12), (156, 1), (157, 100), (345, 155)]))
    if start == 124:  # size
        value = b"%011o\0" % draw(st.integers(0, 8**11 - 1))
    elif start == 156:  # type: regular, link, symlink, device, folder, fifo, long name, sparse, pax, ...
        value = bytes([draw(st.sampled_from(b"0123456LKSxgVM\0"))])
    else:  # name, link name, prefix
        value = draw(st.binary(min_size=length, max_size=length))
    out[at + start:at + start + length] = value
    out[at:at + 512] = with_checksum(out[at:at + 512])
    return bytes(out)


@REAL_FUZZ
@given(st.data())
def test_fuzz_real_mnist_prefix(fuzz_root, real_mnist_prefix, draw):
    name = draw.draw(MNIST_FILE)
    for other, raw in real_mnist_prefix.items():
        (fuzz_root / "mnist" / other).write_bytes(gzip.compress(raw))
    damaged_gzip = draw.draw(st.booleans())
    raw = real_mnist_prefix[name]
    payload = draw.draw(mutated(gzip.compress(raw))) if damaged_gzip else gzip.compress(draw.draw(mutated(raw)))
    path = fuzz_root / "mnist" / name
    path.write_bytes(payload)
    loaded = load_or_refusal(lambda: data.load_mnist("train", fuzz_root), path)
    if loaded is None:
        return
    images, labels = loaded
    assert images.shape == (len(labels), 28, 28, 1) and labels.max(initial=0) <= 9
    if damaged_gzip:  # the CRC lets through only changes that leave the data as it was (gzip mtime, ...)
        images_raw, labels_raw = (real_mnist_prefix[n] for n in MNIST_NAMES["train"])
        assert images.tobytes() == images_raw[16:] and labels.astype(np.uint8).tobytes() == labels_raw[8:]


@REAL_FUZZ
@given(st.data())
def test_fuzz_real_cifar10_prefix(fuzz_root, real_cifar_prefix, draw):
    tar, offsets = real_cifar_prefix
    how = draw.draw(st.sampled_from(["gzip", "tar", "header"]))
    if how == "gzip":
        payload = draw.draw(mutated(gzip.compress(tar, compresslevel=1)))
    elif how == "tar":
        payload = gzip.compress(draw.draw(mutated(tar)), compresslevel=1)
    else:
        payload = gzip.compress(draw.draw(header_changed(tar, offsets)), compresslevel=1)
    write_cifar(fuzz_root, payload)
    loaded = load_or_refusal(lambda: data.load_cifar10("test", fuzz_root, records_per_file=None),
                             fuzz_root / "cifar10" / "cifar-10-binary.tar.gz")
    if loaded is None:
        return
    images, labels = loaded
    assert images.shape == (len(labels), 32, 32, 3) and labels.max() <= 9
    if how == "gzip":  # only changes the CRC cannot see, which leave the data as it was
        write_cifar(fuzz_root, gzip.compress(tar))
        expected = data.load_cifar10("test", fuzz_root, records_per_file=None)
        np.testing.assert_array_equal(images, expected[0])
        np.testing.assert_array_equal(labels, expected[1])


def test_real_prefixes_load_as_the_real_data(fuzz_root, real_mnist_prefix, real_cifar_prefix,
                                             real_mnist, real_cifar10):
    for name, raw in real_mnist_prefix.items():
        (fuzz_root / "mnist" / name).write_bytes(gzip.compress(raw))
    images, labels = data.load_mnist("train", fuzz_root)
    np.testing.assert_array_equal(images, real_mnist["train"][0][:3])
    np.testing.assert_array_equal(labels, real_mnist["train"][1][:3])
    write_cifar(fuzz_root, gzip.compress(real_cifar_prefix[0]))
    images, labels = data.load_cifar10("test", fuzz_root, records_per_file=None)
    np.testing.assert_array_equal(images, real_cifar10["test"][0][:2])
    np.testing.assert_array_equal(labels, real_cifar10["test"][1][:2])


@pytest.mark.parametrize("dataset, name", [("mnist", "mnist/train-images-idx3-ubyte.gz"),
                                           ("cifar10", "cifar10/cifar-10-binary.tar.gz")])
def test_real_file_with_one_flipped_bit_is_refused(real_data_dir, tmp_path, dataset, name):
    """Issue 15: a bit flipped in the real archive used to load as altered pixels. Flip one in the
    middle and one near the end (CIFAR: inside test_batch.bin, which loading train used to skip)."""
    path = tmp_path / name
    path.parent.mkdir()
    shutil.copyfile(real_data_dir / name, path)
    size = path.stat().st_size
    with open(path, "r+b") as f:
        for at in (size // 2, size - 20000):
            f.seek(at)
            byte = f.read(1)[0]
            f.seek(at)
            f.write(bytes([byte ^ 0x10]))
            f.flush()
            refused(lambda: data.load(dataset, "train", tmp_path), path, cap=1 << 30)  # a whole split
            f.seek(at)
            f.write(bytes([byte]))
            f.flush()


# --------------------------------------------------------------------------- fingerprint


def _manifest_digest(root, dataset):
    lines = "".join(f"{hashlib.sha256((root / rel).read_bytes()).hexdigest()}  {rel}\n"
                    for rel in sorted(data.OFFICIAL_URLS[dataset]))
    return hashlib.sha256(lines.encode()).hexdigest()


def test_fingerprint_is_the_sha256_of_the_sha256sum_manifest(tmp_path):
    write_mnist(tmp_path)
    write_cifar(tmp_path, gzip.compress(tar_bytes(cifar_members(n=1)[0])))
    for dataset in data.DATASETS:
        assert data.fingerprint(dataset, tmp_path) == _manifest_digest(tmp_path, dataset)
    if shutil.which("sha256sum"):  # the check the docstring tells a reader to run
        by_hand = subprocess.run("sha256sum mnist/*.gz | sha256sum", shell=True, cwd=tmp_path,
                                 capture_output=True, text=True, check=True, env={"LC_ALL": "C"})
        assert by_hand.stdout.split()[0] == data.fingerprint("mnist", tmp_path)


def test_fingerprint_follows_the_bytes_not_the_folder(tmp_path):
    write_mnist(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    first = data.fingerprint("mnist", tmp_path / "a")
    assert data.fingerprint("mnist", tmp_path / "b") == first  # a copy is the same data
    labels = tmp_path / "b" / "mnist" / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(idx_bytes(np.zeros(3, np.uint8))))
    os.utime(labels, ns=(labels.stat().st_atime_ns, labels.stat().st_mtime_ns + 10**9))
    second = data.fingerprint("mnist", tmp_path / "b")
    assert second != first and second == _manifest_digest(tmp_path / "b", "mnist")  # not a stale cache
    assert data.file_digests("mnist", tmp_path / "b")["mnist/t10k-labels-idx1-ubyte.gz"] == \
        hashlib.sha256(labels.read_bytes()).hexdigest()
    with pytest.raises(DataError, match="fetch mnist"):
        data.fingerprint("mnist", tmp_path / "nowhere")


def test_is_official_compares_with_the_registered_digests(tmp_path, monkeypatch):
    pytest.importorskip("tensorflow_datasets")
    write_mnist(tmp_path)
    digests = data.file_digests("mnist", tmp_path)
    registered = [download.RemoteFile(rel, url, digests[rel], 1) for rel, url in data.OFFICIAL_URLS["mnist"].items()]
    monkeypatch.setattr(download, "official_resources", lambda dataset: registered)
    assert download.is_official("mnist", tmp_path) is True
    registered[0] = registered[0]._replace(sha256="0" * 64)
    assert download.is_official("mnist", tmp_path) is False
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    assert download.is_official("mnist", tmp_path) is None


def test_real_data_is_not_official_and_still_loads(real_data_dir, real_mnist, real_cifar10):
    """The shared copy is rebuilt (README of ../shared/data): tinyvae reads it and only says so."""
    pytest.importorskip("tensorflow_datasets")
    assert download.is_official("cifar10", real_data_dir) is False
    assert len(data.fingerprint("cifar10", real_data_dir)) == 64


# --------------------------------------------------------------------------- fetch


def test_reading_data_imports_no_network_module():
    code = ("import sys, tinyvae.data; "
            "print(sorted(m for m in ('socket', 'ssl', 'http.client', 'urllib.request', 'tinyvae.download') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_root(tmp_path):
    """(folder, base URL) of an HTTP server on 127.0.0.1 serving the folder."""
    folder = tmp_path / "served"
    folder.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_fetch_downloads_and_verifies(tmp_path, http_root):
    pytest.importorskip("tensorflow_datasets")
    folder, base = http_root
    payload = RNG.integers(0, 256, 5000, dtype=np.uint8).tobytes()
    (folder / "labels.gz").write_bytes(payload)
    rel = "mnist/train-labels-idx1-ubyte.gz"
    resource = download.RemoteFile(rel, f"{base}/labels.gz", hashlib.sha256(payload).hexdigest(), len(payload))
    root = tmp_path / "data"
    assert download.fetch("mnist", root, resources=[resource]) == [root / rel]
    assert (root / rel).read_bytes() == payload
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == ["mnist", rel]
    assert download.fetch("mnist", root, resources=[resource]) == []  # already there


@pytest.mark.parametrize("existing_dir", [False, True])
@pytest.mark.parametrize("problem", ["checksum", "size", "404"])
def test_fetch_bad_download_leaves_nothing(tmp_path, http_root, problem, existing_dir):
    pytest.importorskip("tensorflow_datasets")
    folder, base = http_root
    payload = b"x" * 3000
    (folder / "archive.tar.gz").write_bytes(payload)
    sha, size, name = hashlib.sha256(payload).hexdigest(), len(payload), "archive.tar.gz"
    if problem == "checksum":
        sha = hashlib.sha256(b"something else").hexdigest()
    elif problem == "size":
        size += 1
    else:
        name = "absent.tar.gz"
    resource = download.RemoteFile("cifar10/cifar-10-binary.tar.gz", f"{base}/{name}", sha, size)
    root = tmp_path / "data"
    if existing_dir:
        root.mkdir()
    with pytest.raises(DataError, match=name):
        download.fetch("cifar10", root, resources=[resource])
    assert (list(root.iterdir()) == []) if existing_dir else not root.exists()


def test_fetch_unreachable_host_fails_fast(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/train-images-idx3-ubyte.gz"
    start = time.perf_counter()
    with pytest.raises(DataError, match="cannot reach|tensorflow-datasets"):
        download.fetch("mnist", tmp_path / "data",
                   resources=[download.RemoteFile("mnist/train-images-idx3-ubyte.gz", url, "0" * 64, 1)])
    assert time.perf_counter() - start < 2.0
    assert not (tmp_path / "data").exists()
    start = time.perf_counter()
    with pytest.raises(DataError, match="cannot reach"):
        download._probe(url, timeout=1.0)
    assert time.perf_counter() - start < 2.0


def test_fetch_without_tfds_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(DataError, match="pip install tensorflow-datasets"):
        download.fetch("mnist", tmp_path)


def test_fetch_rejects_paths_outside_the_data_dir(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    for bad in ("../escape.gz", "/abs/file.gz"):
        with pytest.raises(ConfigError):
            download.fetch("mnist", tmp_path, resources=[download.RemoteFile(bad, "http://127.0.0.1/x", "0" * 64, 1)])


def test_official_resources_come_from_tfds():
    pytest.importorskip("tensorflow_datasets")
    for dataset in data.DATASETS:
        files = download.official_resources(dataset)
        assert {f.path: f.url for f in files} == data.OFFICIAL_URLS[dataset]
        for f in files:
            assert len(f.sha256) == 64 and int(f.sha256, 16) >= 0 and f.size > 0
