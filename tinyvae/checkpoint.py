"""Checkpoints: one ``.npz`` file with everything needed to continue bit-exactly.

Contents (every entry a plain array; the file is read with
``allow_pickle=False``):

=====================  ==========================================================
``param/<name>``       model parameters
``adam/t``             Adam's step count; ``adam/m/<name>``, ``adam/v/<name>`` its moments
``state/epoch``        epoch in progress (0-based), ``state/step`` batches done in it
``state/perm``         that epoch's shuffled order of the training images
``state/rng``          the training stream's RNG state, as JSON text
``state/done``         1 when the run finished
``history/<key>``      per-batch ``loss``, ``rec``, ``kl``; ``epochs/<key>`` per-epoch test numbers
``meta/format``        format version (:data:`FORMAT`)
``meta/config``        the run's configuration, as JSON text
``meta/checksum``      sha256 over every other entry's name, dtype, shape and bytes
=====================  ==========================================================

Files are written atomically: a temporary file in the same folder, flushed
and fsynced, then ``os.replace``-d over the old one, so a crash at any moment
leaves either the old checkpoint or the new one, never a torn file.
"""
import hashlib
import json
import os
import tempfile
import zipfile

import numpy as np

from .errors import CheckpointError

FORMAT = 1


def _checksum(arrays):
    h = hashlib.sha256()
    for key in sorted(arrays):
        if key == "meta/checksum":
            continue
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_arrays(path, arrays):
    """Write ``arrays`` (name -> array) to ``path`` atomically, with format and checksum."""
    arrays = dict(arrays)
    arrays["meta/format"] = np.array(FORMAT, dtype=np.int64)
    arrays["meta/checksum"] = np.array(_checksum(arrays))
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".ckpt-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
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


def load_arrays(path):
    """Read and verify a checkpoint written by :func:`save_arrays`.

    Raises CheckpointError for a missing, truncated, corrupt or foreign file.
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zipfile.LargeZipFile,
            NotImplementedError, RuntimeError) as e:
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


def json_array(obj):
    """A 0-d text array holding ``obj`` as JSON (how configs and RNG states are stored)."""
    return np.array(json.dumps(obj, sort_keys=True))


def read_json_array(arrays, key, path="checkpoint"):
    """Inverse of :func:`json_array`, with a CheckpointError for a missing or bad entry."""
    try:
        return json.loads(str(arrays[key]))
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: entry {key!r} is missing or not valid JSON ({e})") from None


def check_params(arrays, params, path="checkpoint"):
    """Raise CheckpointError unless the stored ``param/*`` entries match ``params``
    (the model's dict) in names, shapes and dtypes."""
    stored = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
    if set(stored) != set(params):
        missing, extra = sorted(set(params) - set(stored)), sorted(set(stored) - set(params))
        raise CheckpointError(f"{path} belongs to another model (missing {missing[:3]}, "
                              f"unexpected {extra[:3]})")
    for k, p in params.items():
        if stored[k].shape != p.shape or stored[k].dtype != p.dtype:
            raise CheckpointError(f"{path} belongs to another model: {k} is {stored[k].dtype}"
                                  f"{stored[k].shape}, the model has {p.dtype}{p.shape}")
    return stored
