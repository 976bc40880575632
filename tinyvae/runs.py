"""A run folder: what one training run leaves on disk, and the checks around it.

::

    <out>/checkpoint.npz   everything to continue bit-exactly (:mod:`tinyvae.checkpoint`)
    <out>/metrics.json     the run's summary numbers, rewritten at the end

Both are written atomically (a temporary file, then ``os.replace``), so a
killed run leaves the old file or the new one; :func:`prepare` deletes the
temporaries such a run left behind.
"""
import json
import os
import tempfile
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


def prepare(out_dir):
    """Make ``out_dir`` ready for a run: created, writable, no stale temporaries. Returns it as a str."""
    check_out_dir(out_dir)
    out_dir = os.fspath(out_dir)
    remove_stale_temporaries(out_dir)
    return out_dir


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
    model = VAE(cfg.model, image_shape_of(cfg.dataset), np.random.default_rng(0))
    for k, v in ckpt.check_params(arrays, model.params, path).items():
        model.params[k][...] = v
    test = load(cfg.dataset, "test", data_dir)
    train = load(cfg.dataset, "train", data_dir) if cfg.test_subset and cfg.train_subset \
        else (test[0][:0], test[1][:0])          # the train draw comes first only when there is one
    images, labels = select_subsets({"train": train, "test": test}, cfg)["test"]  # the run's draw
    mu, logvar = encode_all(model, images)                                       # (N, L) twice
    return Run(model, config, images, labels, mu, logvar)
