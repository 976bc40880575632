"""Checkpoints: one ``.npz`` file with everything needed to continue bit-exactly.

Contents (every entry a plain array of numbers or text; nothing is ever
unpickled: each member is read by name, its ``.npy`` header checked, and
object arrays refused):

=====================  ==========================================================
``param/<name>``       model parameters
``adam/t``             Adam's step count; ``adam/m/<name>``, ``adam/v/<name>`` its moments
``state/epoch``        epoch in progress (0-based), ``state/step`` batches done in it
``state/perm``         that epoch's shuffled order of the training images
``state/rng``          the training stream's RNG state, as JSON text
``state/done``         1 when the run finished
``history/<key>``      per-batch ``loss``, ``rec``, ``kl``; ``epochs/<key>`` per-epoch test numbers
``state/changes``      JSON: ``lr`` [[global step, lr], ...] (a rate set by ``--resume --lr``
                       after a divergence), ``runtime`` [[global step, backend, threads], ...],
                       ``diverged`` (null, or where the last divergence happened)
``meta/format``        format version (:data:`FORMAT`)
``meta/config``        the run's configuration, as JSON text
``meta/data``          JSON: ``train_sha256`` of the training images (:func:`tinyvae.data.images_sha256`)
``meta/checksum``      sha256 over every other entry's name, dtype, shape and bytes
=====================  ==========================================================

``state/changes`` and ``meta/data`` came later within format 1: a checkpoint
without them reads as one with no changes and unknown data.

Files are written atomically: a temporary file in the same folder, flushed
and fsynced, then ``os.replace``-d over the old one, so a crash at any moment
leaves either the old checkpoint or the new one, never a torn file.

:func:`pack_state` and :func:`unpack_state` turn a training run's state
(:class:`tinyvae.train.Trainer`) into these entries and back, checking every
entry before anything is used; :func:`save_arrays` and :func:`load_arrays`
write and read the file.
"""
import hashlib
import json
import math
import os
import tempfile
import zipfile

import numpy as np

from .errors import CheckpointError
from .losses import HISTORY_KEYS

FORMAT = 1


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()       # what open() would give; mkstemp alone gives 0o600


def _checksum(arrays):
    h = hashlib.sha256()
    for key in sorted(arrays):
        if key == "meta/checksum":
            continue
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a)                                  # the array's bytes, without a copy
    return h.hexdigest()


def save_arrays(path, arrays):
    """Write ``arrays`` (name -> array) to ``path`` atomically, with format and checksum."""
    arrays = dict(arrays)
    arrays["meta/format"] = np.array(FORMAT, dtype=np.int64)
    arrays["meta/checksum"] = np.array(_checksum(arrays))
    atomic_write(path, lambda f: np.savez(f, **arrays), binary=True, prefix=".ckpt-")


def _read_member(zf, info, path):
    """One ``.npy`` member of the archive, read by name into memory (never extracted).

    Only what tinyvae writes is accepted: stored (uncompressed) members whose
    ``.npy`` header announces a plain dtype and exactly the bytes that follow,
    so a forged header cannot make this allocate more than the file holds.
    """
    name = info.filename
    if info.compress_type != zipfile.ZIP_STORED:
        raise CheckpointError(f"{path}: member {name!r} is compressed; tinyvae writes stored members")
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise CheckpointError(f"{path}: member {name!r} has .npy version {version}")
        if dtype.hasobject or dtype.kind not in "biufcUS":
            raise CheckpointError(f"{path}: member {name!r} has dtype {dtype}, which tinyvae never writes")
        count = math.prod(shape)
        nbytes = count * dtype.itemsize
        if nbytes > info.file_size:
            raise CheckpointError(f"{path}: member {name!r} announces {shape} of {dtype} "
                                  f"({nbytes} bytes) but holds at most {info.file_size}")
        data = f.read(nbytes)
        if len(data) != nbytes or f.read(1):            # reading to the end checks the CRC
            raise CheckpointError(f"{path}: member {name!r} is truncated or has trailing bytes")
    array = np.frombuffer(data, dtype=dtype, count=count)
    return array.reshape(shape, order="F" if fortran else "C").copy()


def load_arrays(path):
    """Read and verify a checkpoint written by :func:`save_arrays`.

    Every member is read by name into memory with ``allow_pickle`` never on.
    Raises CheckpointError (and nothing else) for a missing, unreadable,
    truncated, corrupt or foreign file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"no checkpoint at {path}")
    arrays = {}
    try:
        with open(path, "rb") as fh:
            if fh.read(4) != b"PK\x03\x04":
                raise CheckpointError(f"{path} is not a tinyvae checkpoint (not a .npz/zip archive)")
            fh.seek(0)
            with zipfile.ZipFile(fh) as zf:
                for info in zf.infolist():
                    name = info.filename
                    if not name.endswith(".npy") or info.is_dir():
                        raise CheckpointError(f"{path}: unexpected member {name!r}; "
                                              f"a tinyvae checkpoint holds only .npy arrays")
                    key = name[:-len(".npy")]
                    if key in arrays:
                        raise CheckpointError(f"{path}: member {name!r} appears twice")
                    arrays[key] = _read_member(zf, info, path)
    except CheckpointError:
        raise
    except Exception as e:  # zipfile, zlib, struct, numpy's header parser, MemoryError: all "unreadable"
        raise CheckpointError(f"{path} is not a readable tinyvae checkpoint "
                              f"({type(e).__name__}: {e})") from None
    fmt = arrays.get("meta/format")
    if fmt is None or fmt.shape != () or fmt.dtype.kind not in "iu":
        raise CheckpointError(f"{path} is not a tinyvae checkpoint (no format version)")
    if int(fmt) != FORMAT:
        raise CheckpointError(f"{path} has checkpoint format {int(fmt)}; this tinyvae reads format {FORMAT}")
    stored = arrays.get("meta/checksum")
    if stored is None or stored.shape != () or stored.dtype.kind != "U" or str(stored) != _checksum(arrays):
        raise CheckpointError(f"{path} is corrupt: its checksum does not match its contents")
    return arrays


def atomic_write(path, write, binary, prefix=".tmp-"):
    """Call ``write(f)`` on a temporary file beside ``path``, fsync it and
    ``os.replace`` it over ``path``: readers see the old file or the new one,
    never a torn one. The temporary file is removed if anything fails."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:                                   # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def save_text(path, text):
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda f: f.write(text), binary=False)


def json_array(obj):
    """A 0-d text array holding ``obj`` as JSON (how configs and RNG states are stored)."""
    return np.array(json.dumps(obj, sort_keys=True))


def read_json_array(arrays, key, path="checkpoint"):
    """Inverse of :func:`json_array`, with a CheckpointError for a missing or bad entry."""
    a = arrays.get(key)
    if a is None or not isinstance(a, np.ndarray) or a.shape != () or a.dtype.kind != "U":
        raise CheckpointError(f"{path}: entry {key!r} is missing or not a JSON text")
    try:
        return json.loads(str(a))
    except (ValueError, RecursionError) as e:
        raise CheckpointError(f"{path}: entry {key!r} is not valid JSON ({type(e).__name__})") from None


def check_params(arrays, params, path="checkpoint"):
    """Raise CheckpointError unless the stored ``param/*`` entries match ``params``
    (the model's dict) in names, shapes and dtypes."""
    stored = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
    if set(stored) != set(params):
        missing, extra = sorted(set(params) - set(stored)), sorted(set(stored) - set(params))
        raise CheckpointError(f"{path} belongs to another model (missing {missing[:3]}, "
                              f"unexpected {extra[:3]})")
    for k, p in params.items():
        if not isinstance(stored[k], np.ndarray) or stored[k].shape != p.shape or stored[k].dtype != p.dtype:
            raise CheckpointError(f"{path} belongs to another model: {k} is {stored[k].dtype}"
                                  f"{stored[k].shape}, the model has {p.dtype}{p.shape}")
    return stored


# --------------------------------------------------------------------------
# a training run's state <-> entries
# --------------------------------------------------------------------------

def read_config(a, path="checkpoint"):
    """The run's configuration (a dict) stored in ``meta/config``."""
    config = read_json_array(a, "meta/config", path)
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: entry 'meta/config' is not a configuration")
    return config


SAME_RUN = ("model", "dataset", "batch_size", "lr", "seed", "train_subset", "test_subset", "beta",
            "likelihood")
ADDED_LATER = {"beta": None, "likelihood": "gaussian"}   # what checkpoints without these fields used


def check_resumable(a, path, cfg, train_sha256):
    """Raise CheckpointError unless the checkpoint's entries ``a`` continue the run
    ``cfg`` (a dict) on the training images whose :func:`tinyvae.data.images_sha256`
    is ``train_sha256``; return its stored config.

    The learning rate may differ only when the checkpoint records a divergence.
    """
    stored_cfg = read_config(a, path)
    diverged = read_optional(a, "state/changes", path, {}).get("diverged")
    for k in SAME_RUN:
        theirs = stored_cfg.get(k, ADDED_LATER.get(k))
        if k == "lr" and diverged and isinstance(theirs, float):
            continue
        if theirs != cfg[k] or type(theirs) is bool:
            hint = " (--resume --lr X is allowed only after a divergence)" if k == "lr" else ""
            raise CheckpointError(f"{path} is from another run: its {k} is {theirs!r}, this run's is "
                                  f"{cfg[k]!r}{hint}; use another --out or the same settings")
    stored = read_optional(a, "meta/data", path, {}).get("train_sha256")
    if stored is not None and stored != train_sha256:
        raise CheckpointError(f"{path} was trained on other data: its training images have sha256 "
                              f"{str(stored)[:16]}..., this run's {train_sha256[:16]}... (same count, "
                              f"other images); resume with the same data (--data-dir, --seed, "
                              f"--train-subset), or use another --out")
    return stored_cfg


def pack_state(s):
    """A run's state -> the checkpoint's entries (see the table above).

    ``s`` holds ``params`` and ``adam`` (name -> array, Adam's ``state_dict``),
    ``history`` (key -> per-batch list), ``test_history`` (per-epoch dicts),
    ``epoch``, ``step``, ``perm`` (array or None), ``rng`` (a bit generator
    state), ``seconds``, ``done``, ``config``, ``changes`` and ``data`` (JSON-able dicts).
    """
    arrays = {f"param/{k}": v for k, v in s["params"].items()}
    arrays.update({f"adam/{k}": v for k, v in s["adam"].items()})
    arrays.update({f"history/{k}": np.asarray(v, dtype=np.float64) for k, v in s["history"].items()})
    arrays.update({f"epochs/{k}": np.asarray([e[k] for e in s["test_history"]], dtype=np.float64)
                   for k in HISTORY_KEYS})
    arrays.update({
        "state/epoch": np.array(s["epoch"], dtype=np.int64),
        "state/step": np.array(s["step"], dtype=np.int64),
        "state/perm": np.asarray(s["perm"] if s["perm"] is not None else [], dtype=np.int64),
        "state/rng": json_array(s["rng"]),
        "state/seconds": np.array(s["seconds"], dtype=np.float64),
        "state/done": np.array(int(s["done"]), dtype=np.int64),
        "state/changes": json_array(s["changes"]),
        "meta/config": json_array(s["config"]),
        "meta/data": json_array(s["data"]),
    })
    return arrays


def read_optional(a, key, path, default):
    """The JSON dict in ``key``, or ``default`` where an older checkpoint lacks it."""
    if key not in a:
        return default
    value = read_json_array(a, key, path)
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: entry {key!r} is not a JSON object")
    return value


def mark_diverged(path, where):
    """Record in the checkpoint at ``path`` that training from it diverged ``where`` (a dict),
    so that ``--resume`` may change the learning rate. Nothing else in the file changes."""
    a = load_arrays(path)
    changes = read_optional(a, "state/changes", path, {})
    changes["diverged"] = where
    a["state/changes"] = json_array(changes)
    save_arrays(path, a)


def _scalar(a, key, path, kinds, low=None, high=None):
    v = a.get(key)
    if v is None or v.shape != () or v.dtype.kind not in kinds:
        raise CheckpointError(f"{path}: entry {key!r} is missing or not a scalar")
    v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        raise CheckpointError(f"{path}: entry {key!r} is {v}")
    if (low is not None and v < low) or (high is not None and v > high):
        raise CheckpointError(f"{path}: entry {key!r} is {v}, outside {low}..{high}")
    return v


def _vector(a, key, path, kinds):
    v = a.get(key)
    if v is None or v.ndim != 1 or v.dtype.kind not in kinds:
        raise CheckpointError(f"{path}: entry {key!r} is missing or not a vector")
    if v.dtype.kind == "f" and not np.all(np.isfinite(v)):
        raise CheckpointError(f"{path}: entry {key!r} holds values that are not finite")
    return v


def unpack_state(a, path, params, n_train, steps_per_epoch):
    """A run's state from the entries :func:`load_arrays` read, every one checked.

    ``params`` is the model's dict (names, shapes, dtypes to match), ``n_train``
    and ``steps_per_epoch`` the run's. Returns the dict :func:`pack_state`
    takes (``params`` included, ``config`` left to :func:`read_config`);
    raises CheckpointError naming the first entry that does not fit.
    """
    s = {"params": check_params(a, params, path)}
    for k, v in s["params"].items():
        if not np.all(np.isfinite(v)):
            raise CheckpointError(f"{path}: parameter {k} is not finite")
    s["epoch"] = _scalar(a, "state/epoch", path, "iu", 0)
    s["step"] = _scalar(a, "state/step", path, "iu", 0, steps_per_epoch)
    perm = _vector(a, "state/perm", path, "iu")
    if perm.size:
        if perm.shape != (n_train,) or not np.array_equal(np.sort(perm), np.arange(n_train)):
            raise CheckpointError(f"{path}: its batch order does not fit this run's {n_train} training "
                                  f"images; was it made with other data?")
        s["perm"] = perm.astype(np.int64)
    else:
        s["perm"] = None
    if s["step"] and s["perm"] is None:
        raise CheckpointError(f"{path}: it is {s['step']} steps into an epoch but has no batch order")
    s["seconds"] = float(_scalar(a, "state/seconds", path, "iuf", 0))
    s["done"] = bool(_scalar(a, "state/done", path, "iub", 0, 1))

    s["history"] = {k: _vector(a, f"history/{k}", path, "f").tolist() for k in HISTORY_KEYS}
    cols = [_vector(a, f"epochs/{k}", path, "f").tolist() for k in HISTORY_KEYS]
    s["test_history"] = [dict(zip(HISTORY_KEYS, vals)) for vals in zip(*cols)]
    steps = s["epoch"] * steps_per_epoch + s["step"]
    if {len(v) for v in s["history"].values()} != {steps} or {len(c) for c in cols} != {s["epoch"]}:
        raise CheckpointError(f"{path}: its history does not match its position (epoch {s['epoch']}, "
                              f"step {s['step']}, {steps_per_epoch} steps an epoch); was it made with "
                              f"other data?")

    t = _scalar(a, "adam/t", path, "iu", 0)
    moments = {k: v for k, v in a.items() if k.startswith(("adam/m/", "adam/v/"))}
    expected = {f"adam/{mv}/{k}" for k in params for mv in "mv"} if t else set()
    if t != steps or set(moments) != expected:
        raise CheckpointError(f"{path}: its optimizer state does not match the model and position")
    for k, v in moments.items():
        p = params[k[len("adam/m/"):]]
        if v.shape != p.shape or v.dtype != p.dtype or not np.all(np.isfinite(v)):
            raise CheckpointError(f"{path}: optimizer entry {k!r} is {v.dtype}{v.shape}, "
                                  f"expected finite {p.dtype}{p.shape}")
    s["adam"] = {"t": np.array(t, dtype=np.int64), **{k[len("adam/"):]: v for k, v in moments.items()}}

    rng = read_json_array(a, "state/rng", path)
    try:
        np.random.PCG64().state = rng                       # validates without touching ours
    except (TypeError, ValueError, KeyError, OverflowError, AttributeError) as e:
        raise CheckpointError(f"{path}: entry 'state/rng' is not a PCG64 state ({type(e).__name__})") from None
    s["rng"] = rng
    s["changes"] = changes = read_optional(a, "state/changes", path, {})
    for key, width in (("lr", 2), ("runtime", 3)):
        rows = changes.get(key, [])
        if not isinstance(rows, list) or not all(isinstance(r, list) and len(r) == width for r in rows):
            raise CheckpointError(f"{path}: entry 'state/changes' has a bad {key!r} list")
    s["data"] = read_optional(a, "meta/data", path, {})
    return s
