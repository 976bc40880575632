"""Where the study's runs train: local processes, or any batch scheduler.

Every executor runs the very same :func:`tinyvae.train.train` call per run,
into the same run folder (``checkpoint.npz``, ``metrics.json``), so the
numbers do not depend on where a run trained, and ``run_all.py --resume``
builds the report from finished folders wherever they came from.

- :func:`tinyvae.study.parallel.train_parallel`: one machine, a few runs at
  a time in child processes, one progress bar. The default.
- :func:`plan_commands`: no engine at all: one ``python -m tinyvae train``
  command per run, for Slurm, PBS, GNU parallel, a cron job or a shell loop.
  Run them (in any order, anywhere the paths are the same), then
  ``run_all.py --resume`` with the same flags.
"""
import dataclasses
import os
import shlex

from ..config import TrainConfig
from ..errors import ConfigError
from ..threads import check_positive_int

ALWAYS = ("model", "dataset", "seed", "epochs")   # planned commands name these even at their defaults


def _check_tasks(tasks, threads):
    check_positive_int(threads, "threads")
    names = [t[0] for t in tasks]
    if len(set(names)) != len(names):
        raise ConfigError(f"task names must differ, got {names}")


def _abspath(path):
    return None if path is None else os.path.abspath(path)


def plan_commands(tasks, threads=1, data_dir=None, backend=None, resume=False, python="python"):
    """One shell command line per task, training it with ``python -m tinyvae train``.

    Parameters
    ----------
    tasks : list of ``(name, TrainConfig, out_dir)``
    threads, data_dir, backend, resume : the train command's flags (paths made absolute)
    python : the interpreter to call (e.g. ``sys.executable``)

    Returns
    -------
    list of str : model, dataset, seed and epochs always; every other TrainConfig
        field only where it differs from its default (which is the command line's)
    """
    _check_tasks(tasks, threads)
    defaults = TrainConfig()
    order = ALWAYS + tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name not in ALWAYS)
    lines = []
    for _, cfg, out_dir in tasks:
        cfg.validate()
        argv = [python, "-m", "tinyvae", "train"]
        for field in order:
            value = getattr(cfg, field)
            if field in ALWAYS or value != getattr(defaults, field):
                argv += [f"--{field.replace('_', '-')}", repr(value) if isinstance(value, float) else str(value)]
        argv += ["--out", _abspath(out_dir), "--threads", str(threads), "--no-progress"]
        argv += ["--data-dir", _abspath(data_dir)] if data_dir is not None else []
        argv += ["--backend", backend] if backend is not None else []
        argv += ["--resume"] if resume else []
        lines.append(shlex.join(argv))
    return lines
