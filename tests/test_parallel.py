"""Runs trained side by side (tinyvae.study.parallel, ``run_all.py --jobs``): the same numbers as one
after another, Ctrl-C and a killed parent leave every run checkpointed, errors name the run.

Two tiny runs on synthetic MNIST files, one thread each; the signal tests drive
``train_parallel`` in a subprocess, as ``run_all.py`` does.
"""
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tinyvae import checkpoint as ckpt
from tinyvae.cli import thread_limit
from tinyvae.errors import ConfigError, DataError, Interrupted
from tinyvae.study.parallel import Lanes, planned_steps, rss_mib, train_parallel
from tinyvae.runs import CHECKPOINT
from tinyvae.config import TrainConfig
from tinyvae.train import train
from synthetic import write_mnist_dir
from test_train import position, same_state, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS = 40
SEEDS = {"a": 1, "b": 2}

DRIVER = r"""
import sys
from tinyvae.errors import Interrupted, TinyVAEError
from tinyvae.study.parallel import train_parallel
from tinyvae.config import TrainConfig
data_dir, out, resume, epochs = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
tasks = [(name, TrainConfig(dataset="mnist", epochs=epochs, batch_size=10, test_subset=10, lr=1e-3,
                            seed=seed), f"{out}/{name}") for name, seed in (("a", 1), ("b", 2))]
try:
    train_parallel(tasks, jobs=2, threads=1, data_dir=data_dir, resume=resume, progress=False)
except Interrupted as e:
    print(e, file=sys.stderr)
    sys.exit(e.exit_code)
except TinyVAEError as e:
    print(e, file=sys.stderr)
    sys.exit(2)
"""


def config(name, epochs=EPOCHS):
    return TrainConfig(dataset="mnist", epochs=epochs, batch_size=10, test_subset=10, lr=1e-3,
                       seed=SEEDS[name])


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_mnist_dir(tmp_path_factory.mktemp("data"), n_train=60)


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory):
    """Both runs trained one after another in this process, one thread."""
    out = {}
    with thread_limit(1):
        for name in SEEDS:
            d = tmp_path_factory.mktemp(f"ref_{name}")
            train(config(name), out_dir=d, data_dir=data_dir, progress=False)
            out[name] = ckpt.load_arrays(d / CHECKPOINT)
    return out


def start_driver(data_dir, out, resume=False):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.Popen([sys.executable, "-u", "-c", DRIVER, str(data_dir), str(out), "1" if resume else "0",
                             str(EPOCHS)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def both_checkpointed(out):
    return lambda: all(position(out / n / CHECKPOINT) for n in SEEDS)


def alive(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_side_by_side_equals_one_after_another(data_dir, reference, tmp_path):
    tasks = [(n, config(n), tmp_path / n) for n in SEEDS]
    lines = []
    res = train_parallel(tasks, jobs=2, threads=1, data_dir=data_dir, progress=False, log=lines.append)
    assert set(res["seconds"]) == set(SEEDS) and all(s > 0 for s in res["seconds"].values())
    for n in SEEDS:
        assert same_state(ckpt.load_arrays(tmp_path / n / CHECKPOINT), reference[n]) > 10
    assert sum("epoch" in line for line in lines) == 2 * EPOCHS       # every epoch's test loss is shown
    if rss_mib(os.getpid()) is not None:
        assert 100 < res["peak_rss_all_mib"] < 4096


@pytest.mark.slow
def test_one_job_at_a_time_also_equal(data_dir, reference, tmp_path):
    tasks = [(n, config(n), tmp_path / n) for n in SEEDS]
    train_parallel(tasks, jobs=1, threads=1, data_dir=data_dir, progress=False, log=lambda s: None)
    for n in SEEDS:
        same_state(ckpt.load_arrays(tmp_path / n / CHECKPOINT), reference[n])


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_every_run_with_a_checkpoint_and_resume_finishes_equal(
        data_dir, reference, tmp_path, sig, code):
    p = start_driver(data_dir, tmp_path)
    wait_until(p, both_checkpointed(tmp_path))
    p.send_signal(sig)
    out, err = p.communicate(timeout=120)
    assert p.returncode == code, err
    assert "--resume" in err and "Traceback" not in err
    for n in SEEDS:
        epoch, _, done = position(tmp_path / n / CHECKPOINT)
        assert not done and epoch < EPOCHS
    p = start_driver(data_dir, tmp_path, resume=True)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    for n in SEEDS:
        same_state(ckpt.load_arrays(tmp_path / n / CHECKPOINT), reference[n])


@pytest.mark.slow
def test_children_of_a_killed_parent_save_and_stop(data_dir, reference, tmp_path):
    p = start_driver(data_dir, tmp_path)
    wait_until(p, both_checkpointed(tmp_path))
    p.send_signal(signal.SIGKILL)
    out, _ = p.communicate(timeout=60)
    pids = [int(line.split("(process ")[1].split(",")[0]) for line in out.splitlines() if "(process " in line]
    assert len(pids) == 2, out
    deadline = time.monotonic() + 60
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in pids), "an orphaned run kept training"
    positions = [position(tmp_path / n / CHECKPOINT) for n in SEEDS]
    assert all(pos is not None and not pos[2] for pos in positions), positions
    p = start_driver(data_dir, tmp_path, resume=True)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    for n in SEEDS:
        same_state(ckpt.load_arrays(tmp_path / n / CHECKPOINT), reference[n])


def test_an_error_names_the_run_and_starts_no_more(tmp_path):
    tasks = [(n, config("a", 1), tmp_path / n) for n in ("a", "b", "c")]
    lines, before = [], signal.getsignal(signal.SIGINT)
    with pytest.raises(DataError, match=r"(?s)^[ab]: mnist data not found.*nowhere"):
        train_parallel(tasks, jobs=2, data_dir=tmp_path / "nowhere", progress=False, log=lines.append)
    assert not any(line.startswith("started c") for line in lines), lines
    assert signal.getsignal(signal.SIGINT) is before        # the handler it found is back


@pytest.mark.parametrize("jobs", [0, -1, 1.5, True, "2"])
def test_bad_jobs(jobs, tmp_path):
    with pytest.raises(ConfigError, match="jobs"):
        train_parallel([("a", config("a"), tmp_path)], jobs=jobs)


@pytest.mark.parametrize("threads", [0, None, 1.5, True])
def test_bad_threads(threads, tmp_path):
    with pytest.raises(ConfigError, match="threads"):
        train_parallel([("a", config("a"), tmp_path)], jobs=1, threads=threads)


def test_duplicate_names(tmp_path):
    with pytest.raises(ConfigError, match="differ"):
        train_parallel([("a", config("a"), tmp_path / "1"), ("a", config("a"), tmp_path / "2")], jobs=2)


def test_planned_steps():
    assert planned_steps(TrainConfig(dataset="mnist", epochs=10)) == 12000
    assert planned_steps(TrainConfig(dataset="cifar10", epochs=10)) == 10000
    assert planned_steps(TrainConfig(dataset="cifar10", epochs=2, train_subset=1001)) == 42
    assert planned_steps(TrainConfig(dataset="mnist", epochs=1, train_subset=10**6)) == 1200


def test_a_signal_during_start_up_says_that_nothing_was_saved(data_dir, tmp_path):
    """Ctrl-C while the children still import: none saved a checkpoint, and the message says so."""
    tasks = [(n, config(n), str(tmp_path / n)) for n in SEEDS]
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(Interrupted) as info:
            train_parallel(tasks, jobs=2, threads=1, data_dir=data_dir, progress=False, log=lambda line: None)
    finally:
        timer.cancel()
    message = str(info.value)
    assert "every run saved" not in message and "--resume" in message
    for n in SEEDS:                     # what it says of each run is what is on disk (the timing varies)
        if (tmp_path / n / CHECKPOINT).exists():
            assert f"{n} saved its checkpoint" in message or f"{n} stopped before saving" in message, message
        else:
            assert f"{n} has no checkpoint" in message, message


def test_the_stop_message_says_what_each_run_left(tmp_path):
    """stopped_message on outcomes made up here: the words follow the children's reports and the files."""
    from tinyvae.study.parallel import stopped_message
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / CHECKPOINT).write_bytes(b"an earlier one")
    tasks = [(n, config("a"), str(tmp_path / n)) for n in ("a", "b", "c", "d")]
    outcome = {"b": ("started", {}), "c": ("interrupted", {"saved": True}), "d": ("done", {})}
    message = stopped_message(signal.SIGINT, tasks, outcome)
    assert "a has no checkpoint (stopped before its training began" in message
    assert "b stopped before saving; its earlier checkpoint stays" in message
    assert "c saved its checkpoint" in message and "d finished" in message
    assert message.startswith("stopped by SIGINT") and "every run saved" not in message


def _until(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


class _Recorder:
    """``fn`` for :meth:`Lanes.map`: notes each key's start, holds it until released."""

    def __init__(self):
        self.started, self.running, self.most = [], 0, 0
        self.lock, self.go = threading.Lock(), {}

    def __call__(self, key):
        with self.lock:
            self.started.append(key)
            self.running += 1
            self.most = max(self.most, self.running)
            self.go[key] = threading.Event()
        self.go[key].wait(10)
        with self.lock:
            self.running -= 1
        if key == "bad":
            raise DataError("bad run")


def _map_in_thread(lanes, fn, keys):
    box = {}

    def body():
        try:
            lanes.map(fn, keys)
        except BaseException as e:
            box["error"] = e
    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t, box


def test_lanes_evaluate_a_finished_run_only_on_a_free_lane():
    lanes, rec = Lanes(2, 1, ["a", "b", "c"]), _Recorder()
    t, box = _map_in_thread(lanes, rec, ["a", "earlier", "b", "c"])   # "earlier" trained before
    time.sleep(0.3)
    assert rec.started == []                             # runs still wait to start: no lane is free
    lanes.update(2, False)
    time.sleep(0.3)
    assert rec.started == []                             # both lanes train
    lanes.update(1, False, ["a"])
    _until(lambda: len(rec.started) == 1)
    time.sleep(0.3)
    assert rec.started == ["a"] and rec.most == 1        # one free lane: one evaluation
    rec.go["a"].set()
    _until(lambda: len(rec.started) == 2)
    assert rec.started == ["a", "earlier"]               # "b" and "c" are not finished
    lanes.update(0, False, ["b", "c"])
    _until(lambda: len(rec.started) == 3)
    assert rec.most == 2                                 # training over: both lanes evaluate
    for key in ("earlier", "b"):
        rec.go[key].set()
    _until(lambda: len(rec.started) == 4)
    rec.go["c"].set()
    t.join(10)
    assert not t.is_alive() and "error" not in box and sorted(rec.started) == ["a", "b", "c", "earlier"]


def test_lanes_raise_the_first_error_and_stop_on_abort():
    lanes, rec = Lanes(2, 1, []), _Recorder()
    t, box = _map_in_thread(lanes, rec, ["bad", "x", "y"])
    _until(lambda: len(rec.started) == 2)
    rec.go["bad"].set()
    _until(lambda: lanes._aborted)                       # the error stops the lanes ...
    rec.go["x"].set()                                    # ... so "x"'s thread takes no more
    t.join(10)
    assert isinstance(box["error"], DataError) and "y" not in rec.started
    lanes, rec = Lanes(2, 1, ["a"]), _Recorder()
    t, box = _map_in_thread(lanes, rec, ["a"])
    lanes.abort()                                        # training stopped before "a" finished
    t.join(10)
    assert isinstance(box["error"], Interrupted) and rec.started == []
