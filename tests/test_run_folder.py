"""One writer per run folder, resumes that only continue the same run, and messages that say
what really happened: two trainers on one --out, resume on other data, divergence and a new
learning rate, another backend on resume, paths that are not UTF-8.

Runs are tiny (tens of synthetic images, one thread).
"""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tinyvae import checkpoint as ckpt
from tinyvae import runs
from tinyvae.cli import main as cli_main
from tinyvae.cli import thread_limit
from tinyvae.config import TrainConfig, load_data
from tinyvae.data import images_sha256
from tinyvae.errors import CheckpointError, ConfigError, TrainingDiverged
from tinyvae.models import VAE
from tinyvae.runs import CHECKPOINT, METRICS
from tinyvae.train import Trainer, train
from synthetic import tiny_data, write_mnist_dir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=ROOT, TQDM_DISABLE="1")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with thread_limit(1):
        yield


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_mnist_dir(tmp_path_factory.mktemp("data"), n_train=60)


def train_args(data_dir, out, *extra):
    return ["train", "--data-dir", data_dir, "--batch-size", 10, "--test-subset", 10, "--lr", 1e-3,
            "--threads", 1, "--no-progress", "--out", out, *extra]


def cli(args, timeout=120, **kw):
    return subprocess.run([sys.executable, "-m", "tinyvae", *map(str, args)], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=timeout, **kw)


# --------------------------------------------------------------------------- one writer per folder


def test_a_second_trainer_exits_2_at_once_naming_the_first(tmp_path, data_dir):
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "tinyvae",
                              *map(str, train_args(data_dir, out, "--epochs", 500, "--checkpoint-every", 1))],
                             cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not (out / CHECKPOINT).exists():
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.01)
        for extra in ([], ["--resume"]):                 # fresh: it would overwrite; --resume: delete its temporaries
            p = cli(train_args(data_dir, out, "--epochs", 500, *extra))
            assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
            assert f"another process (PID {first.pid}) is training in {out}" in p.stderr, p.stderr
        assert first.poll() is None, "the first trainer died"
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=60)
        assert first.returncode == 130 and "checkpoint saved" in err, err
    finally:
        if first.poll() is None:
            first.kill()
    ckpt.load_arrays(out / CHECKPOINT)                   # whole


def test_stale_temporaries_are_removed_only_by_the_lock_holder(tmp_path):
    stale = tmp_path / ".ckpt-abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    with runs.lock(tmp_path):
        assert (tmp_path / runs.LOCK).read_text() == f"{os.getpid()}\n"
        assert not stale.exists()                        # the holder cleans up
        stale.write_bytes(b"being written by the holder")
        with pytest.raises(ConfigError, match=rf"another process \(PID {os.getpid()}\) is training"):
            train(TrainConfig(epochs=1, batch_size=10), out_dir=tmp_path, data=tiny_data(), resume=True,
                  progress=False)
        assert stale.read_bytes() == b"being written by the holder"
    train(TrainConfig(epochs=1, batch_size=10), out_dir=tmp_path, data=tiny_data(), progress=False)
    assert not stale.exists() and (tmp_path / CHECKPOINT).exists()


# --------------------------------------------------------------------------- the data a run trains on


def test_resume_on_other_images_of_the_same_count_is_refused(tmp_path):
    train(TrainConfig(epochs=1, batch_size=10), out_dir=tmp_path, data=tiny_data(seed=0), progress=False)
    before = (tmp_path / CHECKPOINT).read_bytes()
    mine, other = (images_sha256(tiny_data(seed=s)["train"][0]) for s in (0, 1))
    with pytest.raises(CheckpointError, match="other data") as info:
        train(TrainConfig(epochs=2, batch_size=10), out_dir=tmp_path, data=tiny_data(seed=1), resume=True,
              progress=False)
    assert mine[:16] in str(info.value) and other[:16] in str(info.value)
    assert (tmp_path / CHECKPOINT).read_bytes() == before


def test_file_and_array_runs_record_the_same_fingerprint(tmp_path, data_dir):
    """A run read from the files (run_all's children) and one given the arrays (its in-process
    path) name their training images alike, so either resumes the other."""
    cfg = TrainConfig(epochs=1, batch_size=10, train_subset=40, test_subset=10, seed=3)
    res = train(cfg, out_dir=tmp_path, data_dir=data_dir, progress=False)
    data = load_data(cfg, data_dir)
    assert res.metrics["train_images_sha256"] == images_sha256(data["train"][0])
    cfg.epochs = 2
    res2 = train(cfg, out_dir=tmp_path, data=data, resume=True, progress=False)
    assert res2.metrics["epochs"] == 2
    assert json.loads((tmp_path / METRICS).read_text())["train_images_sha256"] == images_sha256(data["train"][0])


# --------------------------------------------------------------------------- divergence: true messages, followable advice


def test_divergence_before_any_checkpoint_says_nothing_is_saved(tmp_path):
    with np.errstate(all="ignore"), pytest.raises(TrainingDiverged) as info:
        train(TrainConfig(epochs=1, batch_size=10, lr=1e30), out_dir=tmp_path, data=tiny_data(), progress=False)
    message = str(info.value)
    assert "nothing is saved" in message and "is kept" not in message, message
    assert "smaller --lr" in message
    assert not (tmp_path / CHECKPOINT).exists()


def nan_from_call(monkeypatch, n):
    """Make VAE.loss return NaN from its ``n``-th call on (a divergence after good checkpoints)."""
    real, calls = VAE.loss, []

    def loss(self, *args, **kwargs):
        calls.append(1)
        r = real(self, *args, **kwargs)
        return dict(r, loss=float("nan")) if len(calls) >= n else r
    monkeypatch.setattr(VAE, "loss", loss)


def test_after_a_divergence_resume_with_a_smaller_lr_continues_and_is_recorded(tmp_path, monkeypatch):
    cfg = TrainConfig(epochs=2, batch_size=10, lr=1e-2, checkpoint_every=1)
    nan_from_call(monkeypatch, 5)
    with pytest.raises(TrainingDiverged) as info:
        train(cfg, out_dir=tmp_path, data=tiny_data(), progress=False)
    a = ckpt.load_arrays(tmp_path / CHECKPOINT)
    saved = len(a["history/loss"])
    assert saved >= 2 and f"(global step {saved}) is kept" in str(info.value)
    assert "--resume and a smaller --lr" in str(info.value)
    assert json.loads(str(a["state/changes"]))["diverged"] == {"global_step": saved + 1, "lr": 1e-2}
    monkeypatch.undo()
    cfg.lr = 1e-4
    res = train(cfg, out_dir=tmp_path, data=tiny_data(), resume=True, progress=False)
    assert res.metrics["epochs"] == 2 and res.metrics["lr_history"] == [[0, 1e-2], [saved, 1e-4]]
    changes = json.loads(str(ckpt.load_arrays(tmp_path / CHECKPOINT)["state/changes"]))
    assert changes["lr"] == [[0, 1e-2], [saved, 1e-4]] and changes["diverged"] is None
    assert json.loads((tmp_path / METRICS).read_text())["lr_history"] == [[0, 1e-2], [saved, 1e-4]]


def test_without_a_divergence_resume_refuses_another_lr(tmp_path):
    train(TrainConfig(epochs=1, batch_size=10), out_dir=tmp_path, data=tiny_data(), progress=False)
    with pytest.raises(CheckpointError, match="lr is 0.0001.*only after a divergence"):
        train(TrainConfig(epochs=2, batch_size=10, lr=1e-5), out_dir=tmp_path, data=tiny_data(), resume=True,
              progress=False)


def test_cli_divergence_then_resume_with_the_advised_lr(tmp_path, data_dir, monkeypatch, capsys):
    out = tmp_path / "nan"
    common = [str(a) for a in train_args(data_dir, out, "--epochs", 2, "--train-subset", 30,
                                         "--checkpoint-every", 1)]
    nan_from_call(monkeypatch, 3)
    assert cli_main(common + ["--lr", "1e-2"]) == 2
    assert "--resume and a smaller --lr" in capsys.readouterr().err
    monkeypatch.undo()
    assert cli_main(common + ["--lr", "1e-4", "--resume"]) == 0, capsys.readouterr().err
    assert json.loads((out / METRICS).read_text())["lr_history"] == [[0, 1e-2], [2, 1e-4]]


# --------------------------------------------------------------------------- runtime changes on resume


def test_resume_on_another_backend_warns_and_records_it(tmp_path, capsys):
    train(TrainConfig(epochs=1, batch_size=10), out_dir=tmp_path, data=tiny_data(), progress=False,
          backend="numba")
    res = train(TrainConfig(epochs=2, batch_size=10), out_dir=tmp_path, data=tiny_data(), resume=True,
                progress=False, backend="numpy")
    err = capsys.readouterr().err
    assert "backend numba" in err and "uses numpy" in err and "not bit-exactly" in err, err
    assert res.metrics["runtime_history"] == [[0, "numba", 1], [3, "numpy", 1]]


def test_a_checkpoint_records_its_data_and_changes(tmp_path):
    t = Trainer(TrainConfig(epochs=1, batch_size=10), tiny_data(), str(tmp_path))
    t.save()
    a = ckpt.load_arrays(tmp_path / CHECKPOINT)
    assert json.loads(str(a["meta/data"])) == {"train_sha256": images_sha256(tiny_data()["train"][0])}
    assert json.loads(str(a["state/changes"]))["lr"] == [[0, 1e-4]]


# --------------------------------------------------------------------------- paths that are not UTF-8


def test_an_undecodable_out_path_prints_under_a_strict_stdout(tmp_path, data_dir):
    out = os.path.join(os.fsencode(tmp_path), b"run-\xff")
    args = [os.fsencode(str(a)) for a in train_args(data_dir, "X", "--epochs", 1, "--train-subset", 20)]
    args[args.index(b"X")] = out
    p = subprocess.run([sys.executable.encode(), b"-m", b"tinyvae", *args], cwd=ROOT,
                       env=dict(ENV, PYTHONIOENCODING="utf-8:strict"), capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    assert b"Traceback" not in p.stderr
    assert b"run-\\xff/metrics.json" in p.stdout, p.stdout
    assert os.path.isfile(os.path.join(out, b"metrics.json"))
