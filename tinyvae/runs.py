"""A run folder: what one training run leaves on disk, and the checks around it.

::

    <out>/checkpoint.npz   everything to continue bit-exactly (:mod:`tinyvae.checkpoint`)
    <out>/metrics.json     the run's summary numbers, rewritten at the end
    <out>/.lock            the PID of the process writing the folder (:func:`lock`)

Both are written atomically (a temporary file, then ``os.replace``), so a
killed run leaves the old file or the new one; the next run's :func:`lock`
deletes the temporaries such a run left behind. A folder has one writer at a
time: :func:`lock` holds an OS lock on ``.lock`` for the whole run.
"""
import contextlib
import errno
import fcntl
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from . import checkpoint as ckpt
from .archs import image_shape_of
from .config import TrainConfig, select_subsets
from .data import load
from .errors import CheckpointError, ConfigError
from .evaluate import encode_all
from .models import VAE

CHECKPOINT = "checkpoint.npz"
METRICS = "metrics.json"
LOCK = ".lock"


def printable(text, stream=None):
    """``text`` as ``stream`` (default stdout) can print it: a path's undecodable bytes
    (``surrogateescape``) become ``\\xff``, characters its encoding lacks ``\\u00e9``."""
    stream = stream or sys.stdout
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:                      # surrogates that are not escaped bytes
        pass
    return text.encode(encoding, "backslashreplace").decode(encoding, "replace")


def check_out_dir(out_dir, create=True):
    """Create ``out_dir`` if needed and make sure it is writable (ConfigError if not).

    With ``create=False`` nothing is created: the folder, or the nearest
    folder above it that exists, must be a writable folder.
    """
    if not isinstance(out_dir, (str, os.PathLike)) or not os.fspath(out_dir):
        raise ConfigError(f"the output folder must be a path, got {out_dir!r}")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ConfigError(f"output folder {os.fspath(out_dir)!r} is a file, not a folder; "
                          f"pass a folder with --out")
    if not create:
        above = os.path.abspath(out_dir)
        while not os.path.exists(above):
            above = os.path.dirname(above)
        if not os.path.isdir(above) or not os.access(above, os.W_OK | os.X_OK):
            why = "a file" if not os.path.isdir(above) else "not writable"
            raise ConfigError(f"output folder {os.fspath(out_dir)!r} is not writable ({above} is {why}); "
                              f"pass a writable folder with --out")
        return
    try:
        os.makedirs(out_dir, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".tinyvae-write-test-", dir=out_dir)
        os.close(fd)
        os.unlink(probe)
    except (OSError, ValueError) as e:
        raise ConfigError(f"output folder {os.fspath(out_dir)!r} is not writable "
                          f"({getattr(e, 'strerror', None) or e}); pass a writable folder with --out") from None


def remove_stale_temporaries(out_dir):
    """Delete temporary files a killed run left behind (they are never the checkpoint)."""
    for name in os.listdir(out_dir):
        if name.endswith(".tmp") and name.startswith((".ckpt-", ".tmp-")):
            try:
                os.unlink(os.path.join(out_dir, name))
            except OSError:
                pass


def _holder(fd):
    """The PID written in an open lock file (None if none yet)."""
    for _ in range(50):                             # the holder writes it just after locking
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return int(text)
        time.sleep(0.01)
    return None


@contextlib.contextmanager
def lock(out_dir, what="training"):
    """Be the one process writing ``out_dir`` inside the block.

    Takes an exclusive ``fcntl.flock`` on ``out_dir/.lock`` and writes this
    process's PID in it; the OS drops the lock when the block ends or the
    process dies, however it dies. Only then are stale temporaries removed (a
    live writer's are never touched). Raises ConfigError at once, naming the
    holder's PID, if another process holds the folder. ``what`` says what the
    holder does, for that message.
    """
    out_dir = os.fspath(out_dir)
    path = os.path.join(out_dir, LOCK)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise ConfigError(f"cannot create the lock file {path} ({e.strerror or e}); "
                          f"pass a writable folder with --out") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            pid = _holder(fd)
            raise ConfigError(f"another process{f' (PID {pid})' if pid else ''} is {what} in {out_dir} "
                              f"(it holds {path}); wait for it to finish, or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        remove_stale_temporaries(out_dir)
        yield out_dir
    finally:
        os.close(fd)                                # releases the lock


def write_metrics(out_dir, metrics):
    """Write ``metrics`` (JSON-able) to ``out_dir/metrics.json`` atomically."""
    path = os.path.join(out_dir, METRICS)
    try:
        ckpt.save_text(path, json.dumps(metrics, indent=2) + "\n")
    except OSError as e:
        raise ConfigError(f"cannot write {path} ({e.strerror or e})") from None


# --------------------------------------------------------------------------
# a finished run, read back
# --------------------------------------------------------------------------

@dataclass
class Run:
    """A finished run: ``model`` (VAE), ``config`` (dict), its test ``images`` (N, H, W, C)
    uint8 and ``labels`` (N,), and their latent ``mu`` and ``logvar`` (N, L)."""
    model: object
    config: dict
    images: np.ndarray
    labels: np.ndarray
    mu: np.ndarray
    logvar: np.ndarray


def load_run(run_dir, data_dir=None):
    """The finished run in ``run_dir`` with the test images it was evaluated on.

    Raises CheckpointError for a folder without a finished checkpoint, DataError
    when the dataset is missing.
    """
    path = os.path.join(run_dir, CHECKPOINT)
    if not os.path.isfile(path):
        raise CheckpointError(f"{run_dir} holds no {CHECKPOINT}; train a run into it first "
                              f"(python -m tinyvae train --out {run_dir})")
    arrays = ckpt.load_arrays(path)
    config = ckpt.read_config(arrays, path)
    try:
        cfg = TrainConfig(**config).validate()
    except (TypeError, ConfigError) as e:
        raise CheckpointError(f"{path}: its configuration is not one tinyvae wrote ({e})") from None
    done = arrays.get("state/done")
    if done is None or done.shape != () or int(done) != 1:
        raise CheckpointError(f"{path} is from an unfinished run; finish it first "
                              f"(python -m tinyvae train ... --out {run_dir} --resume)")
    model = VAE(cfg.model, image_shape_of(cfg.dataset), np.random.default_rng(0),
                likelihood=cfg.likelihood, beta=cfg.beta)
    for k, v in ckpt.check_params(arrays, model.params, path).items():
        model.params[k][...] = v
    test = load(cfg.dataset, "test", data_dir)
    train = load(cfg.dataset, "train", data_dir) if cfg.test_subset and cfg.train_subset \
        else (test[0][:0], test[1][:0])          # the train draw comes first only when there is one
    images, labels = select_subsets({"train": train, "test": test}, cfg)["test"]  # the run's draw
    mu, logvar = encode_all(model, images)                                       # (N, L) twice
    return Run(model, config, images, labels, mu, logvar)
