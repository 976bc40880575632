"""Checkpoints: round trip, corruption of every kind, fuzzing of the loader and of resume.

Everything here runs on small synthetic data (no real data needed). The CLI
cases run ``python -m tinyvae`` in subprocesses, several at a time.
"""
import concurrent.futures
import io
import json
import os
import pathlib
import signal
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinyvae import checkpoint as ckpt
from tinyvae.cli import thread_limit
from tinyvae.errors import CheckpointError, Interrupted, TinyVAEError
from tinyvae.runs import CHECKPOINT
from tinyvae.config import TrainConfig
from tinyvae.train import Trainer, train
from synthetic import tiny_data, write_mnist_dir

ROOT = pathlib.Path(__file__).resolve().parents[1]
FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))


def run_cli(args, timeout=120):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TQDM_DISABLE="1")
    return subprocess.run([sys.executable, "-m", "tinyvae", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=ROOT)


def run_many(cases, workers=4):
    """Run several CLI invocations at once: {name: CompletedProcess}."""
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        futures = {name: pool.submit(run_cli, args) for name, args in cases.items()}
        return {name: f.result() for name, f in futures.items()}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with thread_limit(1):                       # the machine is shared: keep in-process runs lean
        yield


CFG = TrainConfig(epochs=2, batch_size=10, lr=1e-3, seed=3, checkpoint_every=0)


@pytest.fixture(scope="module")
def mid_epoch(tmp_path_factory):
    """A checkpoint saved by a SIGINT one step into the second epoch, and its arrays."""
    out = tmp_path_factory.mktemp("mid")
    t = Trainer(CFG, tiny_data(), str(out))
    real_loss, calls = t.model.loss, []

    def loss(*args, **kwargs):
        if kwargs.get("backward", True):
            calls.append(1)
            if len(calls) == 4:                 # 3 steps an epoch: step 1 of epoch 2
                t._signal = signal.SIGINT
        return real_loss(*args, **kwargs)

    t.model.loss = loss
    with pytest.raises(Interrupted) as info:
        t.fit(progress=False)
    assert info.value.exit_code == 130 and "--resume" in str(info.value)
    path = out / CHECKPOINT
    return Saved(path, ckpt.load_arrays(path))


class Saved(tuple):
    """(path, arrays) with a short repr (hypothesis prints its arguments)."""

    def __new__(cls, path, arrays):
        return super().__new__(cls, (path, arrays))

    def __repr__(self):
        return f"Saved({self[0].name}, {len(self[1])} arrays)"


# --------------------------------------------------------------------------- round trip


def test_save_load_round_trip(tmp_path):
    arrays = {"a/x": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array(7),
              "t": ckpt.json_array({"big": 2 ** 127 + 3, "f": 0.1}), "e": np.zeros((0,), np.int64),
              "f": np.asfortranarray(np.arange(12.0).reshape(3, 4))}
    ckpt.save_arrays(tmp_path / "c.npz", arrays)
    got = ckpt.load_arrays(tmp_path / "c.npz")
    assert set(got) == set(arrays) | {"meta/format", "meta/checksum"}
    for k, v in arrays.items():
        assert got[k].dtype == v.dtype and np.array_equal(got[k], v)
    assert ckpt.read_json_array(got, "t") == {"big": 2 ** 127 + 3, "f": 0.1}
    assert os.listdir(tmp_path) == ["c.npz"]                       # no temporary left


def test_pcg64_state_survives_json():
    rng = np.random.default_rng(12345)
    rng.standard_normal(7, dtype=np.float32)           # leave a buffered half-word behind
    state = json.loads(str(ckpt.json_array(rng.bit_generator.state)))
    other = np.random.default_rng()
    other.bit_generator.state = state
    assert np.array_equal(rng.standard_normal(50, dtype=np.float32), other.standard_normal(50, dtype=np.float32))
    assert np.array_equal(rng.permutation(100), other.permutation(100))


def test_resume_in_process_is_bit_exact(tmp_path, mid_epoch):
    path, _ = mid_epoch
    ref = train(CFG, out_dir=tmp_path / "ref", data=tiny_data(), progress=False)
    out = tmp_path / "resumed"
    out.mkdir()
    (out / CHECKPOINT).write_bytes(path.read_bytes())
    res = train(CFG, out_dir=out, data=tiny_data(), resume=True, progress=False)
    a, b = (ckpt.load_arrays(d / CHECKPOINT) for d in (tmp_path / "ref", out))
    for k in a:
        if k.startswith(("param/", "adam/", "history/", "epochs/", "state/rng", "state/epoch")):
            assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k
    assert res.metrics["test_loss"] == ref.metrics["test_loss"]
    assert res.test_history == ref.test_history


def test_failed_write_leaves_old_checkpoint_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    ckpt.save_arrays(path, {"x": np.ones(3)})
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError):
        ckpt.save_arrays(path, {"x": np.zeros(3)})
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["c.npz"]


def test_unwritable_checkpoint_is_a_checkpoint_error(tmp_path, monkeypatch):
    t = Trainer(TrainConfig(epochs=1, batch_size=10), tiny_data(), str(tmp_path))

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(ckpt, "save_arrays", boom)
    with pytest.raises(CheckpointError, match="No space left"):
        t.save()


# --------------------------------------------------------------------------- corrupt files, in process


def _zip_of(members, compression=zipfile.ZIP_STORED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, payload in members.items():
            z.writestr(name, payload)
    return buf.getvalue()


def _npy(array, allow_pickle=False):
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


class _Trap:
    """Unpickling this creates a file: proof that something was unpickled."""
    marker = None

    def __reduce__(self):
        return (open, (self.marker, "w"))


def corrupt_variants(valid: bytes, tmp):
    fmt = _npy(np.array(1, np.int64))
    trap = _Trap()
    _Trap.marker = str(tmp / "UNPICKLED")
    header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (10000000000,), }".ljust(117) + b"\n"
    huge = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header      # 80 GB announced
    return {
        "empty file": b"",
        "not a zip": b"this is a text file, not a checkpoint\n" * 10,
        "truncated": valid[:len(valid) // 2],
        "truncated tail": valid[:-30],
        "flipped bytes": bytes(b ^ 0xFF if i % 997 == 500 else b for i, b in enumerate(valid)),
        "foreign npz": _zip_of({"weights.npy": _npy(np.ones(4)), "bias.npy": _npy(np.zeros(2))}),
        "plain npy": _npy(np.arange(10)),
        "pickled object": _zip_of({"meta/format.npy": fmt,
                                   "evil.npy": _npy(np.array([trap], dtype=object), allow_pickle=True)}),
        "huge header": _zip_of({"meta/format.npy": fmt, "x.npy": huge}),
        "compressed member": _zip_of({"meta/format.npy": fmt}, zipfile.ZIP_DEFLATED),
        "not npy member": _zip_of({"meta/format.npy": fmt, "readme.txt": b"hello"}),
        "format 99": _zip_of({"meta/format.npy": _npy(np.array(99))}),
        "no checksum": _zip_of({"meta/format.npy": fmt, "x.npy": _npy(np.ones(2))}),
        "path traversal": _zip_of({"../../escaped.npy": _npy(np.ones(2)), "meta/format.npy": fmt}),
    }


def test_corrupt_files_raise_checkpoint_error(tmp_path, mid_epoch):
    valid = mid_epoch[0].read_bytes()
    for name, blob in corrupt_variants(valid, tmp_path).items():
        path = tmp_path / "c.npz"
        path.write_bytes(blob)
        with pytest.raises(CheckpointError) as info:
            ckpt.load_arrays(path)
        assert str(path) in str(info.value), name
    assert not (tmp_path / "UNPICKLED").exists(), "a checkpoint was unpickled"
    assert not (tmp_path.parent / "escaped.npy").exists()
    with pytest.raises(CheckpointError, match="no checkpoint"):
        ckpt.load_arrays(tmp_path / "missing.npz")
    with pytest.raises(CheckpointError):
        ckpt.load_arrays(tmp_path)                                   # a folder


def test_checksum_catches_a_changed_value(tmp_path):
    ckpt.save_arrays(tmp_path / "c.npz", {"x": np.ones(3)})
    a = ckpt.load_arrays(tmp_path / "c.npz")
    a["x"] = np.array([1.0, 2.0, 1.0])
    ckpt.np.savez(tmp_path / "d.npz", **a)                         # stale checksum
    with pytest.raises(CheckpointError, match="checksum"):
        ckpt.load_arrays(tmp_path / "d.npz")


def _restore_into_fresh(arrays, path="ckpt", cfg=CFG, data=None):
    t = Trainer(cfg, data or tiny_data(), None)
    t.restore_arrays(arrays, path)
    return t


def test_restore_rejects_inconsistent_states(mid_epoch):
    _, a = mid_epoch
    t = _restore_into_fresh(dict(a))
    assert (t.epoch, t.step, t.global_step) == (1, 1, 4)
    other_model = TrainConfig(**{**CFG.__dict__, "model": "highdim"})
    cases = {
        "model": (dict(a), other_model, None),
        "lr": (dict(a), TrainConfig(**{**CFG.__dict__, "lr": 2e-3}), None),
        "seed": (dict(a), TrainConfig(**{**CFG.__dict__, "seed": 4}), None),
        "fewer epochs": (dict(a), TrainConfig(**{**CFG.__dict__, "epochs": 1}), None),
        "other data": (dict(a), CFG, tiny_data(n_train=40)),
        "no config": ({k: v for k, v in a.items() if k != "meta/config"}, CFG, None),
        "config is a list": ({**a, "meta/config": ckpt.json_array([1, 2])}, CFG, None),
        "nested json": ({**a, "meta/config": np.array("[" * 100000 + "]" * 100000)}, CFG, None),
        "param of another model": ({**a, "param/enc0_conv2d.w": np.zeros((3, 3, 1, 16), np.float32)}, CFG, None),
        "float64 params": ({**a, **{k: v.astype(np.float64) for k, v in a.items() if k.startswith("param/")}},
                           CFG, None),
        "adam shape": ({**a, **{k: v[..., :1] for k, v in a.items() if k.startswith("adam/m/")}}, CFG, None),
        "adam nan": ({**a, **{k: v * np.nan for k, v in a.items() if k.startswith("adam/v/")}}, CFG, None),
        "adam t": ({**a, "adam/t": np.array(99)}, CFG, None),
        "no adam": ({k: v for k, v in a.items() if not k.startswith("adam/")}, CFG, None),
        "step too far": ({**a, "state/step": np.array(7)}, CFG, None),
        "negative epoch": ({**a, "state/epoch": np.array(-1)}, CFG, None),
        "epoch as text": ({**a, "state/epoch": np.array("1")}, CFG, None),
        "perm not a permutation": ({**a, "state/perm": np.zeros(30, np.int64)}, CFG, None),
        "perm of floats": ({**a, "state/perm": a["state/perm"].astype(float)}, CFG, None),
        "perm missing mid-epoch": ({**a, "state/perm": np.zeros(0, np.int64)}, CFG, None),
        "history short": ({**a, "history/loss": a["history/loss"][:-1]}, CFG, None),
        "history nan": ({**a, "history/kl": a["history/kl"] * np.nan}, CFG, None),
        "epochs long": ({**a, "epochs/rec": np.ones(5)}, CFG, None),
        "rng not pcg64": ({**a, "state/rng": ckpt.json_array({"bit_generator": "MT19937"})}, CFG, None),
        "rng garbage": ({**a, "state/rng": ckpt.json_array({"bit_generator": "PCG64", "state": 3})}, CFG, None),
        "rng negative": ({**a, "state/rng": ckpt.json_array(
            {"bit_generator": "PCG64", "state": {"state": -5, "inc": 3}, "has_uint32": 0, "uinteger": 0})},
            CFG, None),
        "seconds nan": ({**a, "state/seconds": np.array(np.nan)}, CFG, None),
        "done 7": ({**a, "state/done": np.array(7)}, CFG, None),
    }
    for name, (arrays, cfg, data) in cases.items():
        t = Trainer(cfg, data or tiny_data(), None)
        before = {k: v.copy() for k, v in t.model.params.items()}
        with pytest.raises(CheckpointError):
            t.restore_arrays(arrays, "ckpt")
            pytest.fail(f"{name}: accepted")
        assert all(np.array_equal(before[k], v) for k, v in t.model.params.items()), \
            f"{name}: a failed restore changed the model"
        assert t.global_step == 0 and t.opt.t == 0, name


# --------------------------------------------------------------------------- fuzzing


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


SMALL_ARRAYS = {"param/w": np.arange(6, dtype=np.float32).reshape(2, 3), "state/step": np.array(3),
                "state/rng": ckpt.json_array({"s": 2 ** 100}), "history/loss": np.linspace(0, 1, 5)}


@pytest.fixture(scope="module")
def small_blob(scratch):
    ckpt.save_arrays(scratch / "small.npz", SMALL_ARRAYS)
    return (scratch / "small.npz").read_bytes()


def _load_or_tinyvae_error(path):
    try:
        return ckpt.load_arrays(path)
    except TinyVAEError as e:
        assert isinstance(e, CheckpointError) and str(e)
        return None


@FUZZ
@given(blob=st.one_of(st.binary(max_size=3000),
                      st.binary(max_size=3000).map(lambda b: b"PK\x03\x04" + b),
                      st.binary(max_size=3000).map(lambda b: b"\x93NUMPY" + b)))
def test_fuzz_load_arrays_arbitrary_bytes(scratch, blob):
    path = scratch / "arbitrary.npz"
    path.write_bytes(blob)
    assert _load_or_tinyvae_error(path) is None


def mutate(blob, draw):
    """One to a few random byte-level edits of ``blob``."""
    blob = bytearray(blob)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "truncate", "delete", "insert", "overwrite", "append"]))
        i = draw(st.integers(0, max(len(blob) - 1, 0)))
        if kind == "flip" and blob:
            blob[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and blob:
            blob[i] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del blob[i:]
        elif kind == "delete":
            del blob[i:i + draw(st.integers(1, 64))]
        elif kind == "insert":
            blob[i:i] = draw(st.binary(min_size=1, max_size=32))
        elif kind == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=32))
            blob[i:i + len(chunk)] = chunk
        elif kind == "append":
            blob += draw(st.binary(min_size=1, max_size=64))
    return bytes(blob)


@FUZZ
@given(data=st.data())
def test_fuzz_load_arrays_mutated(scratch, small_blob, data):
    blob = mutate(small_blob, data.draw)
    path = scratch / "mutated.npz"
    path.write_bytes(blob)
    got = _load_or_tinyvae_error(path)
    if got is not None:                       # accepted: then it must hold exactly what was written
        assert set(got) == set(SMALL_ARRAYS) | {"meta/format", "meta/checksum"}
        for k, v in SMALL_ARRAYS.items():
            assert got[k].dtype == v.dtype and np.array_equal(got[k], v)


STATE_KEYS = ["state/epoch", "state/step", "state/done", "state/seconds", "adam/t"]
small_arrays = hnp.arrays(
    dtype=st.sampled_from([np.int64, np.int8, np.uint8, np.float64, np.float32, np.bool_, np.dtype("<U4")]),
    shape=hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=4))
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                           lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids,
                                                                                      max_size=3),
                           max_leaves=8)


@st.composite
def state_mutations(draw, saved):
    arrays = saved[1]
    a = dict(arrays)
    keys = sorted(a)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["drop", "replace", "scalar", "json", "config field", "rng field",
                                     "perm", "vector", "dtype", "nan", "extra"]))
        key = draw(st.sampled_from(keys))
        if kind == "drop":
            a.pop(key, None)
        elif kind == "replace":
            a[key] = draw(small_arrays)
        elif kind == "scalar":
            a[draw(st.sampled_from(STATE_KEYS))] = np.array(
                draw(st.one_of(st.integers(-3, 20), st.integers(-2 ** 63, 2 ** 63 - 1), st.floats(), st.booleans())))
        elif kind == "json":
            a[draw(st.sampled_from(["meta/config", "state/rng"]))] = draw(st.one_of(
                json_values.map(ckpt.json_array), st.text(max_size=20).map(np.array)))
        elif kind == "config field":
            try:
                cfg = json.loads(str(a["meta/config"]))
            except (KeyError, ValueError):
                cfg = None
            if isinstance(cfg, dict):
                cfg[draw(st.sampled_from(sorted(CFG.__dict__)))] = draw(json_values)
                a["meta/config"] = ckpt.json_array(cfg)
        elif kind == "rng field":
            rng = json.loads(str(arrays["state/rng"]))
            part = draw(st.sampled_from(["state", "inc", "has_uint32", "uinteger", "bit_generator"]))
            value = draw(st.one_of(st.integers(), json_values))
            if part in ("state", "inc"):
                rng["state"][part] = value
            else:
                rng[part] = value
            a["state/rng"] = ckpt.json_array(rng)
        elif kind == "perm":
            perm = arrays["state/perm"].copy()
            op = draw(st.sampled_from(["shuffle", "shorten", "duplicate", "out of range", "negative"]))
            if op == "shuffle":
                perm = np.asarray(draw(st.permutations(perm.tolist())), np.int64)
            elif op == "shorten":
                perm = perm[:draw(st.integers(0, len(perm) - 1))]
            elif op == "duplicate":
                perm[draw(st.integers(0, len(perm) - 1))] = perm[draw(st.integers(0, len(perm) - 1))]
            elif op == "out of range":
                perm[draw(st.integers(0, len(perm) - 1))] = draw(st.integers(len(perm), 2 ** 62))
            else:
                perm[draw(st.integers(0, len(perm) - 1))] = -1
            a["state/perm"] = perm
        elif kind == "vector":
            k = draw(st.sampled_from([k for k in keys if k.startswith(("history/", "epochs/"))]))
            a[k] = np.asarray(draw(st.lists(st.floats(), max_size=8)), np.float64)
        elif kind == "dtype" and key in a and a[key].dtype.kind in "iuf":
            with np.errstate(invalid="ignore", over="ignore"):
                a[key] = a[key].astype(draw(st.sampled_from([np.float64, np.float32, np.int64, np.int32])))
        elif kind == "nan" and key in a and a[key].dtype.kind == "f" and a[key].size:
            v = a[key].copy()
            v.flat[draw(st.integers(0, v.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
            a[key] = v
        elif kind == "extra":
            a[draw(st.sampled_from(["param/extra", "adam/m/extra", "adam/v/enc0_conv2d.w", "junk"]))] = \
                draw(small_arrays)
    return a


@pytest.fixture(scope="module")
def restore_target():
    return Trainer(CFG, tiny_data(), None)


@FUZZ
@given(data=st.data())
def test_fuzz_restore_mutated_state(mid_epoch, restore_target, data):
    a = data.draw(state_mutations(mid_epoch))
    t = restore_target
    try:
        t.restore_arrays(a, "fuzzed")
    except TinyVAEError as e:
        assert isinstance(e, CheckpointError) and str(e)
        return
    # accepted: the state must be one training can go on from
    assert 0 <= t.step <= t.steps_per_epoch and 0 <= t.epoch <= CFG.epochs
    assert t.global_step == t.epoch * t.steps_per_epoch + t.step == t.opt.t
    assert t.perm is None or np.array_equal(np.sort(t.perm), np.arange(len(t.x_train)))
    assert len(t.test_history) == t.epoch
    for k, p in t.model.params.items():
        assert np.all(np.isfinite(p)) and t.opt.m[k].shape == p.shape and t.opt.v[k].dtype == p.dtype
    np.random.default_rng().bit_generator.state = t.rng.bit_generator.state


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzz_restore_mutated_file(scratch, mid_epoch, restore_target, data):
    """Byte-level damage to a real checkpoint: restore raises CheckpointError or restores exactly it."""
    path, arrays = mid_epoch
    blob = path.read_bytes()
    # aim the edits at the structure (headers, directory, small entries) as often as at the payload
    n = len(blob)
    spot = data.draw(st.one_of(st.integers(0, 4096), st.integers(max(n - 8192, 0), n - 1), st.integers(0, n - 1)))
    size = data.draw(st.integers(1, 16))
    kind = data.draw(st.sampled_from(["flip", "truncate", "overwrite"]))
    if kind == "flip":
        blob = blob[:spot] + bytes(b ^ 0x55 for b in blob[spot:spot + size]) + blob[spot + size:]
    elif kind == "truncate":
        blob = blob[:spot]
    else:
        blob = blob[:spot] + data.draw(st.binary(min_size=size, max_size=size)) + blob[spot + size:]
    bad = scratch / "damaged.npz"
    bad.write_bytes(blob)
    t = restore_target
    try:
        t.restore(bad)
    except TinyVAEError as e:
        assert isinstance(e, CheckpointError) and str(bad) in str(e)
        return
    assert t.global_step == 4
    for k, p in t.model.params.items():
        assert np.array_equal(p, arrays[f"param/{k}"])


# --------------------------------------------------------------------------- through the CLI


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_mnist_dir(tmp_path_factory.mktemp("data"))


def test_cli_corrupt_checkpoints_exit_2_without_traceback(tmp_path, data_dir, mid_epoch):
    base = ["train", "--data-dir", data_dir, "--epochs", 2, "--batch-size", 10, "--train-subset", 30,
            "--test-subset", 10, "--lr", 1e-3, "--seed", 3, "--threads", 1, "--no-progress", "--resume"]
    # a checkpoint of another architecture, made by a real run
    train(TrainConfig(model="highdim", epochs=1, batch_size=10, lr=1e-3, seed=3),
          out_dir=tmp_path / "highdim", data=tiny_data(), progress=False)
    every = corrupt_variants(mid_epoch[0].read_bytes(), tmp_path)   # all of them are tried in process
    blobs = {k: every[k] for k in ("truncated", "flipped bytes", "foreign npz", "not a zip", "pickled object")}
    blobs["another model"] = (tmp_path / "highdim" / CHECKPOINT).read_bytes()
    cases = {}
    for name, blob in blobs.items():
        out = tmp_path / name.replace(" ", "_")
        out.mkdir(exist_ok=True)
        (out / CHECKPOINT).write_bytes(blob)
        cases[name] = base + ["--out", out]
    results = run_many(cases)
    for name, r in results.items():
        assert r.returncode == 2, (name, r.returncode, r.stderr[-2000:])
        assert "Traceback" not in r.stderr, (name, r.stderr)
        assert "tinyvae: error:" in r.stderr and CHECKPOINT in r.stderr, (name, r.stderr)
    assert "highdim" in results["another model"].stderr
    assert not (tmp_path / "UNPICKLED").exists()
    for name in blobs:                          # the bad file is left for inspection, unchanged
        assert (tmp_path / name.replace(" ", "_") / CHECKPOINT).read_bytes() == blobs[name]
