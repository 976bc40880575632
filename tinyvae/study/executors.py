"""Where the study's runs train: local processes, a Ray cluster, or any batch scheduler.

Every executor runs the very same :func:`tinyvae.train.train` call per run,
into the same run folder (``checkpoint.npz``, ``metrics.json``), so the
numbers do not depend on where a run trained, and ``run_all.py --resume``
builds the report from finished folders wherever they came from.

- :func:`tinyvae.study.parallel.train_parallel`: one machine, a few runs at
  a time in child processes, one progress bar. The default.
- :func:`train_ray`: more than one machine, through an existing Ray cluster
  (``address``; or a local instance). Ray places each run where ``threads``
  cores are free. A line per run start and end instead of a progress bar; a
  failed run does not stop the others. Needs ``pip install -e '.[ray]'``, and
  on a cluster tinyvae on every node and the run folders and data on a
  shared filesystem.
- :func:`plan_commands`: no engine at all: one ``python -m tinyvae train``
  command per run, for Slurm, PBS, GNU parallel, a cron job or a shell loop.
  Run them (in any order, anywhere the paths are the same), then
  ``run_all.py --resume`` with the same flags.
"""
import dataclasses
import logging
import os
import shlex
import signal
import socket
import threading
import time

from .. import errors
from ..config import TrainConfig
from ..errors import ConfigError, Interrupted, TinyVAEError
from ..runs import CHECKPOINT
from ..threads import check_positive_int, cores, thread_limit
from ..train import train

DRAIN_SECONDS = 60      # after Ctrl-C, how long cancelled runs may take to save before Ray is shut down
ALWAYS = ("model", "dataset", "seed", "epochs")   # planned commands name these even at their defaults


def _check_tasks(tasks, threads):
    check_positive_int(threads, "threads")
    names = [t[0] for t in tasks]
    if len(set(names)) != len(names):
        raise ConfigError(f"task names must differ, got {names}")


def _abspath(path):
    return None if path is None else os.path.abspath(path)


def _ray_run(cfg, out_dir, data_dir, backend, resume, threads):
    """One run on a Ray worker, a generator: ``("started", where)``, then how it ended."""
    yield "started", f"{socket.gethostname()}, process {os.getpid()}"
    try:                        # a local instance's workers inherit Ctrl-C ignored; a cancel must reach train()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:          # not the main thread
        pass
    try:
        with thread_limit(threads):
            result = train(cfg, out_dir=out_dir, data_dir=data_dir, resume=resume, progress=False,
                           backend=backend)
        yield "done", result.metrics["seconds"]
    except Interrupted as e:
        yield "interrupted", str(e)
    except TinyVAEError as e:
        yield "error", (type(e).__name__, str(e))


def train_ray(tasks, threads=1, data_dir=None, backend=None, resume=False, log=print, address=None):
    """Train ``tasks`` as Ray tasks, each on ``threads`` cores of a Ray cluster.

    Parameters
    ----------
    tasks : list of ``(name, TrainConfig, out_dir)``, submitted in this order
    threads : numba and BLAS threads per run, and the CPUs Ray reserves for it
    data_dir, backend, resume : passed to :func:`tinyvae.train.train` (paths made
        absolute; ``data_dir=None``: each worker's default)
    log : prints a line as each run starts and ends
    address : a Ray cluster to connect to (``"auto"``, ``"10.0.0.1:6379"``); None:
        ``$RAY_ADDRESS``, else a new local instance with one CPU per core. If this
        process is connected to Ray already, that connection is used (and kept).

    Returns
    -------
    dict : ``"seconds"``: ``{name: training seconds}``; ``"peak_rss_all_mib"``: None

    Raises
    ------
    ConfigError : Ray is not installed; bad ``threads`` or task names
    TinyVAEError : a run failed: the same type, its message prefixed with the run's
        name, raised once the other runs have ended
    Interrupted : Ctrl-C or SIGTERM: the runs still going are cancelled and save
        their checkpoints first (``resume=True`` continues them)
    """
    _check_tasks(tasks, threads)
    try:
        import ray
    except ImportError:
        raise ConfigError("the Ray executor needs Ray: pip install -e '.[ray]'") from None
    main = threading.current_thread() is threading.main_thread()
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}  # ray.init sets SIGTERM's
    started, received, pending, outcome = not ray.is_initialized(), [], {}, {}

    def on_signal(signum, frame):
        received.append(signum)
        raise KeyboardInterrupt

    try:
        if started:
            _init(ray, address, threads, main)
        for s in old if main else ():
            signal.signal(s, on_signal)
        remote = ray.remote(num_cpus=threads, max_retries=0)(_ray_run)
        for name, cfg, out in tasks:
            pending[remote.options(name=f"tinyvae-{name}").remote(
                cfg, _abspath(out), _abspath(data_dir), backend, resume, threads)] = name
        _follow(ray, pending, outcome, log)
    except KeyboardInterrupt:
        received[:] = received or [signal.SIGINT]
        log(f"stopping {len(pending)} run(s): cancelling their Ray tasks (each saves its checkpoint)")
        for gen in pending:
            ray.cancel(gen)
        try:
            _follow(ray, pending, outcome, log, time.monotonic() + DRAIN_SECONDS)
        except KeyboardInterrupt:                        # a second signal: stop waiting for them
            pass
    finally:
        for s, h in old.items() if main else ():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        if started:
            ray.shutdown()
    failed = [(name, info) for name, (event, info) in outcome.items() if event == "error"]
    if failed and not received:
        name, (kind, message) = failed[0]
        cls = getattr(errors, kind, TinyVAEError)
        raise (cls if isinstance(cls, type) and issubclass(cls, TinyVAEError) and cls is not Interrupted
               else TinyVAEError)(f"{name}: {message}")
    if received or any(outcome.get(name, ("",))[0] != "done" for name, _, _ in tasks):
        fates = [f"{name} finished" if outcome.get(name, ("",))[0] == "done" else
                 f"{name}'s last checkpoint stays" if os.path.exists(os.path.join(_abspath(out), CHECKPOINT))
                 else f"{name} has no checkpoint" for name, _, out in tasks]
        signum = received[0] if received else signal.SIGTERM
        raise Interrupted(f"stopped by {signal.Signals(signum).name}: {'; '.join(fates)}. Continue with "
                          f"the same command and --resume", 128 + signum)
    return {"seconds": {name: info for name, (_, info) in outcome.items()}, "peak_rss_all_mib": None}


def _init(ray, address, threads, main):
    """Connect to ``address``, or start a local Ray instance whose own processes ignore the
    terminal's Ctrl-C (this process cancels the runs instead, so that they save first)."""
    local = address is None and not os.environ.get("RAY_ADDRESS")
    if local and threads > cores():
        raise ConfigError(f"threads {threads} is more than the {cores()} cores of a local Ray instance")
    old = signal.signal(signal.SIGINT, signal.SIG_IGN) if local and main else None
    try:
        ray.init(address=address, num_cpus=cores() if local else None, include_dashboard=False,
                 logging_level=logging.ERROR, log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise ConfigError(f"cannot {'start' if local else 'reach'} Ray: {str(e).splitlines()[0]}") from None
    finally:
        if old is not None:
            signal.signal(signal.SIGINT, old)


def _follow(ray, pending, outcome, log, deadline=None):
    """Record the runs' reports in ``outcome`` as they come, until ``pending`` (generator ->
    name) is empty or ``time.monotonic()`` reaches ``deadline`` (None: no limit)."""
    while pending and (deadline is None or time.monotonic() < deadline):
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
        if not ready:
            continue
        name = pending[ready[0]]
        try:
            event, info = ray.get(next(ready[0]))
        except (StopIteration, ray.exceptions.TaskCancelledError):   # cancelled: its report is lost
            event, info = "interrupted", "stopped (its Ray task was cancelled)"
        except ray.exceptions.RayError as e:             # its worker died, a node was lost, a bug...
            event, info = "error", ("TinyVAEError", f"its Ray task failed ({type(e).__name__}: "
                                    f"{str(e).strip().splitlines()[-1]}); its last checkpoint stays")
        if event == "started":
            log(f"started {name} ({info})")
            continue
        outcome[name] = event, info
        del pending[ready[0]]
        log(f"finished {name} in {info:.0f} s" if event == "done" else
            f"{name}: {info}" if event == "interrupted" else f"{name} failed: {info[1]}")


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
