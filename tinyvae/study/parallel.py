"""Train several runs side by side, one process each (``run_all.py --jobs``).

A training step at batch 50 is too small to split well over two cores: on
two cores, two runs side by side with one thread each finish sooner than
the same runs one after another with two threads each. Each run here is
the very same :func:`tinyvae.train.train` call as in one process (same
seed, checkpoints and numbers); what differs is around it:

- every child sits in its own process group, so a Ctrl-C at the terminal
  reaches only this parent, which passes SIGINT or SIGTERM on to each child
  (a second signal is passed on too, and stops the children at once, as in
  :meth:`tinyvae.train.Trainer.fit`); each child saves its checkpoint and
  stops, and :func:`train_parallel` raises :class:`Interrupted`;
- a child whose parent has died stops the same way, so no orphan trains on;
- one tqdm bar counts the batches of all runs; epoch results are printed as
  they come;
- a lane (``threads`` threads) whose run finished while no run waits to
  start goes to this process, which evaluates finished runs on it
  (:class:`Lanes`), so no core idles while the last runs train;
- an error in one run stops the others (they save first) and is raised here
  with the run's name.
"""
import multiprocessing
import os
import queue as queue_mod
import signal
import sys
import threading
import time

from tqdm.auto import tqdm

from .. import errors
from ..data import SPLIT_SIZES
from ..errors import ConfigError, Interrupted, TinyVAEError
from ..runs import CHECKPOINT
from ..threads import check_positive_int, thread_limit

REPORT_EVERY = 0.5      # seconds between a child's progress messages


def rss_mib(pid):
    """Resident memory of process ``pid`` in MiB, from /proc (None where there is no /proc)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


class Lanes:
    """A study's ``jobs`` lanes of ``threads`` threads, shared between its
    training processes and this process's evaluation of the runs they finish.

    :func:`train_parallel` reports how many runs train and whether any waits
    to start; :meth:`map` evaluates runs in this process, each on one lane,
    as soon as it finished training and a lane is free (no run waits and
    fewer than ``jobs`` lanes are in use).

    keys : the runs :func:`train_parallel` will train; any other key counts as finished
    """

    def __init__(self, jobs, threads, keys):
        self.jobs, self.threads = jobs, threads
        self._cond = threading.Condition()
        self._unfinished = set(keys)
        self._training, self._pending, self._evaluating, self._aborted = 0, bool(keys), 0, False

    def update(self, training, pending, finished=()):
        """From :func:`train_parallel`: runs training now, whether any waits, runs just finished."""
        with self._cond:
            self._training, self._pending = training, pending
            self._unfinished.difference_update(finished)
            self._cond.notify_all()

    def abort(self):
        """Stop :meth:`map`: each worker ends after the run it is on."""
        with self._cond:
            self._aborted = True
            self._cond.notify_all()

    def _take(self, left):
        with self._cond:
            while True:
                ready = [k for k in left if k not in self._unfinished]
                if self._aborted or not left:
                    return None
                if ready and not self._pending and self._training + self._evaluating < self.jobs:
                    self._evaluating += 1
                    left.remove(ready[0])
                    return ready[0]
                self._cond.wait(timeout=1.0)

    def _release(self):
        with self._cond:
            self._evaluating -= 1
            self._cond.notify_all()

    def map(self, fn, keys):
        """Call ``fn(key)`` for every key, in up to ``jobs`` threads of this process, each on a
        free lane with ``threads`` numba threads (the caller pins BLAS); of the keys ready, the
        first in ``keys`` goes first. Returns when all are done, raising the first error (the
        other threads stop after their current key)."""
        import numba
        left, errors_ = list(keys), []

        def worker():
            numba.set_num_threads(self.threads)          # per thread; BLAS is the caller's
            while not errors_:
                key = self._take(left)
                if key is None:
                    return
                try:
                    fn(key)
                except BaseException as e:               # raised in map's thread below
                    errors_.append(e)
                    self.abort()
                finally:
                    self._release()

        workers = [threading.Thread(target=worker, name=f"tinyvae-lane{i}", daemon=True)
                   for i in range(min(self.jobs, len(keys)))]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        if errors_:
            raise errors_[0]
        if left:
            raise Interrupted("stopped before every run was evaluated", 130)


def _child(name, cfg, out_dir, resume, data_dir, backend, threads, q):
    """One run in a child process: train, then report "done", "interrupted" or "error"."""
    from ..train import train
    os.setpgrp()                       # the terminal's Ctrl-C goes to the parent only
    parent, state = os.getppid(), {"last": 0.0, "orphan": False}

    def report(trainer, event):
        if not state["orphan"] and os.getppid() != parent:
            state["orphan"] = True     # the parent died: stop like SIGTERM, checkpoint saved
            q.cancel_join_thread()
            os.kill(os.getpid(), signal.SIGTERM)
        now = time.monotonic()
        if event == "epoch" or now - state["last"] >= REPORT_EVERY:
            state["last"] = now
            info = {"step": trainer.global_step, "total": trainer.steps_per_epoch * trainer.cfg.epochs,
                    "epoch": trainer.epoch}
            if event == "epoch":
                info["test"] = trainer.test_history[-1]
            q.put((name, event, info))

    code = 0
    try:
        with thread_limit(threads):
            result = train(cfg, out_dir=out_dir, data_dir=data_dir, resume=resume, progress=False,
                           backend=backend, callback=report)
        m = result.metrics
        q.put((name, "done", {"step": m["steps"], "total": m["steps"], "seconds": m["seconds"]}))
    except Interrupted as e:
        q.put((name, "interrupted", {"message": str(e), "saved": out_dir is not None}))
        code = e.exit_code
    except TinyVAEError as e:
        q.put((name, "error", {"type": type(e).__name__, "message": str(e)}))
        code = 2
    except KeyboardInterrupt:          # a second signal (or one during start-up): stopped at once
        q.put((name, "interrupted", {"message": "stopped at once, nothing more saved", "saved": False}))
        code = 130
    sys.exit(code)


def train_parallel(tasks, jobs, threads=1, data_dir=None, backend=None, resume=False, progress=True,
                   log=print, lanes=None):
    """Train ``tasks`` in child processes, at most ``jobs`` at a time.

    Parameters
    ----------
    tasks : list of ``(name, TrainConfig, out_dir)``, started in this order
        (put the longest first so that the last to finish starts early)
    jobs : processes at a time, >= 1
    threads : numba and BLAS threads in each process
    data_dir, backend, resume : passed to :func:`tinyvae.train.train`
    progress : one tqdm bar over every run's batches
    log : prints a line (epoch results, starts, ends)
    lanes : a :class:`Lanes` told which runs train, wait and finished, so that this
        process can evaluate finished runs on the idle lanes

    Returns
    -------
    dict : ``"seconds"``: ``{name: training seconds}``; ``"peak_rss_all_mib"``:
        the largest resident memory of this process and its children
        together, sampled every 0.2 s (None without /proc)

    Raises
    ------
    Interrupted : SIGINT or SIGTERM reached this process (after every child saved and stopped)
    TinyVAEError : a run failed (the same type, its message prefixed with the run's name)
    """
    check_positive_int(jobs, "jobs")
    check_positive_int(threads, "threads")
    names = [t[0] for t in tasks]
    if len(set(names)) != len(names):
        raise ConfigError(f"task names must differ, got {names}")
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    pending, running, received = list(tasks), {}, []
    steps = {name: [0, planned_steps(cfg)] for name, cfg, _ in tasks}   # [done, total], as reported
    outcome, failures, seconds = {}, [], {}
    peak = [None]

    def stop_all(signum):
        for p in running.values():
            _kill(p, signum)

    def on_signal(signum, frame):
        received.append(signum)
        stop_all(signum)

    def handle(name, event, info):
        if "step" in info:
            steps[name][0] = info["step"]
        if "total" in info:
            steps[name][1] = info["total"]
        if event == "epoch":
            t = info["test"]
            say(f"{name} epoch {info['epoch']}: test loss {t['loss']:.3f} "
                f"(rec {t['rec']:.3f}, kl {t['kl']:.3f})")
        elif event in ("done", "interrupted", "error"):
            outcome[name] = (event, info)
            if event == "done":
                seconds[name] = info["seconds"]

    def say(line):
        if progress:
            bar.clear()
            log(line)
            bar.refresh()
        else:
            log(line)

    def drain(timeout):
        try:
            handle(*q.get(timeout=timeout))
            while True:
                handle(*q.get_nowait())
        except queue_mod.Empty:
            pass

    def sample_memory():
        pids = [os.getpid()] + [p.pid for p in running.values()]
        sizes = [rss_mib(pid) for pid in pids]
        if all(s is not None for s in sizes):
            peak[0] = max(peak[0] or 0.0, sum(sizes))

    old = {}
    try:
        for s in (signal.SIGINT, signal.SIGTERM):
            old[s] = signal.signal(s, on_signal)
    except ValueError:                                   # not the main thread
        pass
    bar = tqdm(total=sum(v[1] for v in steps.values()), disable=not progress, unit="batch",
               desc=f"training {len(tasks)} runs, {min(jobs, len(tasks))} at a time", dynamic_ncols=True)
    try:
        while running or (pending and not received and not failures):
            while pending and len(running) < jobs and not received and not failures:
                name, cfg, out_dir = pending.pop(0)
                p = ctx.Process(target=_child, name=f"tinyvae-{name}",
                                args=(name, cfg, out_dir, resume, data_dir, backend, threads, q))
                p.start()
                running[name] = p
                if received:                             # a signal came while it started
                    _kill(p, received[-1])
                say(f"started {name} (process {p.pid}, {threads} thread{'s' * (threads > 1)})")
            if lanes is not None and (received or failures):
                lanes.abort()                            # stopping: evaluate nothing more
            elif lanes is not None:
                lanes.update(len(running), bool(pending))
            drain(0.2)
            sample_memory()
            for name, p in list(running.items()):
                if p.exitcode is None:
                    continue
                p.join()
                del running[name]
                drain(0.05)
                event, info = outcome.get(name, (None, {}))
                if p.exitcode == 0 and event == "done":
                    say(f"finished {name} in {info['seconds']:.0f} s")
                    if lanes is not None:
                        lanes.update(len(running), bool(pending), [name])
                    continue
                if event == "error":
                    failures.append((name, info["type"], info["message"]))
                elif event == "interrupted":
                    say(f"{name}: {info['message']}")
                elif received:                           # the signal came before train() could catch it
                    say(f"{name}: stopped before its training began (status {p.exitcode})")
                elif p.exitcode < 0:
                    failures.append((name, "TinyVAEError",
                                     f"its process was killed by {signal.Signals(-p.exitcode).name}; "
                                     f"its last checkpoint stays"))
                else:
                    failures.append((name, "TinyVAEError",
                                     f"its process ended with status {p.exitcode} (see the messages above)"))
                if failures and not received:
                    stop_all(signal.SIGTERM)
            bar.total = sum(v[1] for v in steps.values())
            bar.n = sum(v[0] for v in steps.values())
            bar.set_postfix_str(", ".join(f"{n} {steps[n][0]}/{steps[n][1]}" for n in running), refresh=False)
            bar.refresh()
        if lanes is not None:
            lanes.update(0, False)
    finally:
        bar.close()
        for s, h in old.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        for p in running.values():                       # only if this loop itself failed
            _kill(p, signal.SIGTERM)
        for p in running.values():
            p.join()
    if failures:
        name, kind, message = failures[0]
        cls = getattr(errors, kind, TinyVAEError)
        if not (isinstance(cls, type) and issubclass(cls, TinyVAEError)) or cls is Interrupted:
            cls = TinyVAEError
        raise cls(f"{name}: {message}")
    if received or any(e == "interrupted" for e, _ in outcome.values()):
        signum = received[0] if received else signal.SIGTERM
        raise Interrupted(stopped_message(signum, tasks, outcome), 128 + signum)
    return {"seconds": seconds, "peak_rss_all_mib": peak[0]}


def stopped_message(signum, tasks, outcome):
    """What a stop by ``signum`` left of each task, in words: saved now, finished, an earlier
    checkpoint kept, or nothing on disk (from the children's reports and the files)."""
    fates = []
    for name, _, out_dir in tasks:
        event, info = outcome.get(name, (None, {}))
        on_disk = out_dir is not None and os.path.exists(os.path.join(out_dir, CHECKPOINT))
        if event == "done":
            fates.append(f"{name} finished")
        elif event == "interrupted" and info.get("saved"):
            fates.append(f"{name} saved its checkpoint")
        elif on_disk:
            fates.append(f"{name} stopped before saving; its earlier checkpoint stays")
        else:
            fates.append(f"{name} has no checkpoint" + ("" if event else " (stopped before its "
                                                                     "training began, or not started)"))
    return (f"stopped by {signal.Signals(signum).name}: {'; '.join(fates)}. Continue with the same "
            f"command and --resume")


def planned_steps(cfg):
    """Batches a run of ``cfg`` trains in all (its training subset, else the whole split)."""
    n = SPLIT_SIZES[cfg.dataset]["train"]
    if cfg.train_subset is not None:
        n = min(n, cfg.train_subset)
    return cfg.epochs * -(-n // cfg.batch_size)


def _kill(p, signum):
    try:
        if p.pid is not None and p.exitcode is None:
            os.kill(p.pid, signum)
    except ProcessLookupError:
        pass
