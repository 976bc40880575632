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

from . import checkpoint as ckpt
from .errors import ConfigError

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
