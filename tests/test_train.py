"""Training reliability: killed and interrupted runs resume bit-exactly, NaN stops cleanly,
bad arguments raise ConfigError, metrics.json is complete.

Runs are tiny (tens of synthetic images, one thread); the kill and signal tests
drive ``python -m tinyvae train`` in subprocesses.
"""
import json
import math
import os
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

from tinyvae import checkpoint as ckpt
from tinyvae import data as tvdata
from tinyvae import train as tvtrain
from tinyvae.cli import main as cli_main
from tinyvae.cli import thread_limit
from tinyvae.errors import ConfigError, DataError, Interrupted, TrainingDiverged
from tinyvae.models import VAE
from tinyvae.evaluate import encode_all, mean_loss
from tinyvae.runs import CHECKPOINT, METRICS
from tinyvae.config import TrainConfig, load_data, streams
from tinyvae.train import Trainer, train
from synthetic import tiny_data, write_mnist_dir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_cli(args):
    env = dict(os.environ, PYTHONPATH=ROOT, TQDM_DISABLE="1")
    return subprocess.Popen([sys.executable, "-m", "tinyvae", *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_cli(args, timeout=120):
    p = start_cli(args)
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def position(path):
    """(epoch, step, done) of a checkpoint, read cheaply (None if there is none yet)."""
    try:
        with zipfile.ZipFile(path) as z:
            def get(key):
                with z.open(key + ".npy") as f:
                    return int(np.lib.format.read_array(f, allow_pickle=False))
            return get("state/epoch"), get("state/step"), get("state/done")
    except (OSError, KeyError, zipfile.BadZipFile, ValueError):
        return None


def wait_until(proc, predicate, timeout=90):
    """Poll every 2 ms until ``predicate()`` holds; fail if ``proc`` ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run ended (status {proc.returncode}) before the fault could be injected:\n{err}")
        time.sleep(0.002)
    proc.kill()
    pytest.fail("timed out waiting for the run")


def same_state(a, b, keys=("param/", "adam/", "history/", "epochs/", "state/rng", "state/epoch",
                           "state/step", "state/perm", "state/done")):
    """Assert two checkpoints hold bit-identical training state; return how many arrays were compared."""
    compared = 0
    assert {k for k in a if k.startswith(keys)} == {k for k in b if k.startswith(keys)}
    for k in a:
        if k.startswith(keys):
            assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), f"{k} differs"
            compared += 1
    return compared


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with thread_limit(1):
        yield


# --------------------------------------------------------------------------- kill, SIGINT, SIGTERM


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_mnist_dir(tmp_path_factory.mktemp("data"), n_train=60)


def run_args(data_dir, out):
    # 60 images, batch 10: 6 steps an epoch, 3 epochs, a checkpoint every 2 steps
    return ["train", "--data-dir", data_dir, "--epochs", 3, "--batch-size", 10, "--test-subset", 10,
            "--lr", 1e-3, "--seed", 7, "--checkpoint-every", 2, "--threads", 1, "--no-progress", "--out", out]


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory):
    """The uninterrupted run (in process, same code path as the CLI)."""
    out = tmp_path_factory.mktemp("reference")
    assert cli_main([str(a) for a in run_args(data_dir, out)]) == 0
    return ckpt.load_arrays(out / CHECKPOINT), json.loads((out / METRICS).read_text())


def test_sigkill_then_resume_is_bit_identical(tmp_path, data_dir, reference):
    out = tmp_path / "run"
    path = out / CHECKPOINT
    args = run_args(data_dir, out)
    # 1: killed right after its first checkpoint, in the middle of epoch 1
    p = start_cli(args)
    wait_until(p, lambda: position(path) is not None)
    p.send_signal(signal.SIGKILL)
    p.wait(30)
    first = position(path)
    assert first is not None and first[0] == 0 and 0 < first[1] < 6 and not first[2], first
    # 2: resumed, then killed while it writes a later checkpoint (or just after one, if the
    #    write is too quick to be caught)
    p = start_cli(args + ["--resume"])

    def writing_later_checkpoint():
        pos = position(path)
        later = pos is not None and pos[0] * 6 + pos[1] >= 8
        return later and (any(n.endswith(".tmp") for n in os.listdir(out)) or pos[0] * 6 + pos[1] >= 12)
    wait_until(p, writing_later_checkpoint)
    p.send_signal(signal.SIGKILL)
    p.wait(30)
    torn = [n for n in os.listdir(out) if n.endswith(".tmp")]
    print(f"second kill {'during a checkpoint write' if torn else 'between checkpoints'}: {torn}")
    second = position(path)
    assert second is not None and not second[2] and second[0] * 6 + second[1] > first[0] * 6 + first[1], second
    # 3: resumed to the end
    rc, stdout, stderr = run_cli(args + ["--resume"])
    assert rc == 0, stderr
    assert "Traceback" not in stderr
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")], "temporary files left behind"
    ref, ref_metrics = reference
    got = ckpt.load_arrays(path)
    assert same_state(ref, got) > 50
    metrics = json.loads((out / METRICS).read_text())
    for k in ("test_loss", "test_rec", "test_kl", "epochs", "steps", "epoch_test"):
        assert metrics[k] == ref_metrics[k], k


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_hints_and_resumes_equal(tmp_path, data_dir, reference, sig, code):
    out = tmp_path / "run"
    args = run_args(data_dir, out)
    p = start_cli(args)
    wait_until(p, lambda: position(out / CHECKPOINT) is not None)
    p.send_signal(sig)
    stdout, stderr = p.communicate(timeout=60)
    assert "Traceback" not in stderr
    assert p.returncode in (0, code), (p.returncode, stderr)
    if p.returncode == code:
        assert signal.Signals(sig).name in stderr and "--resume" in stderr and str(out) in stderr
        assert not position(out / CHECKPOINT)[2]
    ckpt.load_arrays(out / CHECKPOINT)                       # loads: complete and verified
    assert cli_main([str(a) for a in args] + ["--resume"]) == 0
    assert same_state(reference[0], ckpt.load_arrays(out / CHECKPOINT)) > 50


# --------------------------------------------------------------------------- signals in process

CFG = TrainConfig(epochs=2, batch_size=10, lr=1e-3, seed=5, checkpoint_every=0)


@pytest.fixture(scope="module")
def small_reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("small_ref")
    result = train(CFG, out_dir=out, data=tiny_data(), progress=False)
    return ckpt.load_arrays(out / CHECKPOINT), result


def _signal_on_evaluation(monkeypatch, which_call):
    real, calls = tvtrain.mean_loss, []

    def evaluate_then_signal(*args, **kwargs):
        calls.append(1)
        if len(calls) == which_call:
            os.kill(os.getpid(), signal.SIGINT)         # arrives while the test set is evaluated
        return real(*args, **kwargs)
    monkeypatch.setattr(tvtrain, "mean_loss", evaluate_then_signal)


def test_sigint_during_evaluation_saves_the_finished_epoch(tmp_path, monkeypatch, small_reference):
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    _signal_on_evaluation(monkeypatch, 1)
    with pytest.raises(Interrupted) as info:
        train(CFG, out_dir=tmp_path, data=tiny_data(), progress=False)
    assert info.value.exit_code == 130 and "--resume" in str(info.value)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    assert position(tmp_path / CHECKPOINT) == (1, 0, 0)            # epoch 1 done and evaluated
    monkeypatch.undo()
    train(CFG, out_dir=tmp_path, data=tiny_data(), resume=True, progress=False)
    same_state(small_reference[0], ckpt.load_arrays(tmp_path / CHECKPOINT))


def test_sigint_during_the_last_evaluation_lets_the_run_finish(tmp_path, monkeypatch, small_reference):
    before = signal.getsignal(signal.SIGINT)
    _signal_on_evaluation(monkeypatch, 2)
    result = train(CFG, out_dir=tmp_path, data=tiny_data(), progress=False)
    assert signal.getsignal(signal.SIGINT) == before
    assert result.metrics["epochs"] == 2 and (tmp_path / METRICS).exists()
    same_state(small_reference[0], ckpt.load_arrays(tmp_path / CHECKPOINT))


def test_killed_after_the_last_epoch_but_before_metrics(tmp_path, small_reference):
    ref_arrays, ref_result = small_reference
    # (a) the final checkpoint was written (done), metrics.json was not
    a = dict(ref_arrays)
    ckpt.save_arrays(tmp_path / CHECKPOINT, {k: v for k, v in a.items() if not k.startswith("meta/") or
                                             k == "meta/config"})
    res = train(CFG, out_dir=tmp_path, data=tiny_data(), resume=True, progress=False)
    assert json.loads((tmp_path / METRICS).read_text())["test_loss"] == ref_result.metrics["test_loss"]
    assert res.metrics["steps"] == ref_result.metrics["steps"]
    # (b) the last epoch's checkpoint was written but not the final "done" one
    (tmp_path / METRICS).unlink()
    a["state/done"] = np.array(0, dtype=np.int64)
    ckpt.save_arrays(tmp_path / CHECKPOINT, {k: v for k, v in a.items() if k not in ("meta/format",
                                                                                    "meta/checksum")})
    res = train(CFG, out_dir=tmp_path, data=tiny_data(), resume=True, progress=False)
    assert res.metrics["test_loss"] == ref_result.metrics["test_loss"] and (tmp_path / METRICS).exists()
    got = ckpt.load_arrays(tmp_path / CHECKPOINT)
    assert int(got["state/done"]) == 1
    same_state(ref_arrays, got, keys=("param/", "adam/", "history/", "epochs/"))


def test_resuming_with_more_epochs_equals_training_longer(tmp_path, small_reference):
    longer = TrainConfig(**{**CFG.__dict__, "epochs": 3})
    direct = train(longer, out_dir=tmp_path / "direct", data=tiny_data(), progress=False)
    out = tmp_path / "extended"
    out.mkdir()
    ckpt.save_arrays(out / CHECKPOINT, {k: v for k, v in small_reference[0].items()
                                        if k not in ("meta/format", "meta/checksum")})
    extended = train(longer, out_dir=out, data=tiny_data(), resume=True, progress=False)
    assert extended.test_history == direct.test_history
    same_state(ckpt.load_arrays(tmp_path / "direct" / CHECKPOINT), ckpt.load_arrays(out / CHECKPOINT))


def test_seconds_accumulate_over_a_resume(tmp_path):
    t = Trainer(CFG, tiny_data(), str(tmp_path))
    real, calls = t.model.loss, []

    def loss(*args, **kwargs):
        if kwargs.get("backward", True):
            calls.append(1)
            if len(calls) == 2:
                t._signal = signal.SIGTERM
        return real(*args, **kwargs)
    t.model.loss = loss
    with pytest.raises(Interrupted) as info:
        t.fit(progress=False)
    assert info.value.exit_code == 143
    saved = float(ckpt.load_arrays(tmp_path / CHECKPOINT)["state/seconds"])
    assert 0 < saved <= t.seconds + 1e-9
    res = train(CFG, out_dir=tmp_path, data=tiny_data(), resume=True, progress=False)
    assert math.isfinite(res.metrics["seconds"]) and res.metrics["seconds"] >= round(saved, 3) - 1e-3


# --------------------------------------------------------------------------- divergence


def test_nan_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    snapshots = []
    real_save = ckpt.save_arrays

    def save_and_snapshot(path, arrays):
        real_save(path, arrays)
        snapshots.append(open(path, "rb").read())
    monkeypatch.setattr(ckpt, "save_arrays", save_and_snapshot)
    cfg = TrainConfig(epochs=1, batch_size=10, lr=1e30, checkpoint_every=1)
    with np.errstate(all="ignore"), pytest.raises(TrainingDiverged) as info:
        train(cfg, out_dir=tmp_path, data=tiny_data(), progress=False)
    message = str(info.value)
    assert "step" in message and "learning rate" in message and str(tmp_path / CHECKPOINT) in message
    assert snapshots, "no checkpoint was written before the divergence"
    assert (tmp_path / CHECKPOINT).read_bytes() == snapshots[-1]          # the last good one, untouched
    a = ckpt.load_arrays(tmp_path / CHECKPOINT)
    assert all(np.all(np.isfinite(v)) for k, v in a.items() if v.dtype.kind == "f")
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_nan_at_the_first_step_writes_nothing(tmp_path):
    t = Trainer(TrainConfig(epochs=1, batch_size=10, checkpoint_every=1), tiny_data(), str(tmp_path))
    t.model.loss = lambda *a, **k: {"loss": float("nan"), "rec": float("nan"), "kl": 0.0}
    with pytest.raises(TrainingDiverged, match=r"epoch 1, step 1 \(global step 1\)"):
        t.fit(progress=False)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("where", ["param", "adam m", "adam v"])
def test_a_non_finite_state_is_never_saved(tmp_path, where):
    t = Trainer(TrainConfig(epochs=1, batch_size=10, checkpoint_every=1), tiny_data(), str(tmp_path))
    t.opt.step(t.model.params, {k: np.ones_like(p) for k, p in t.model.params.items()})
    t.save()
    before = (tmp_path / CHECKPOINT).read_bytes()
    target = {"param": t.model.params, "adam m": t.opt.m, "adam v": t.opt.v}[where]
    next(iter(target.values())).flat[0] = np.inf
    with pytest.raises(TrainingDiverged, match="not finite"):
        t.save()
    assert (tmp_path / CHECKPOINT).read_bytes() == before


def test_non_finite_test_loss_stops(tmp_path, monkeypatch):
    monkeypatch.setattr(tvtrain, "mean_loss", lambda *a, **k: {"loss": float("inf"), "rec": 1.0, "kl": 1.0})
    with pytest.raises(TrainingDiverged, match="test loss"):
        train(TrainConfig(epochs=1, batch_size=10), out_dir=tmp_path, data=tiny_data(), progress=False)
    assert not (tmp_path / CHECKPOINT).exists()


def test_cli_nan_exits_2_and_keeps_the_checkpoint(tmp_path, data_dir):
    out = tmp_path / "nan"
    rc, _, stderr = run_cli(["train", "--data-dir", data_dir, "--epochs", 1, "--batch-size", 10,
                             "--train-subset", 30, "--test-subset", 10, "--lr", "1e30", "--threads", 1,
                             "--checkpoint-every", 1, "--no-progress", "--out", out])
    assert rc == 2 and "Traceback" not in stderr
    assert "tinyvae: error:" in stderr and "step" in stderr and "smaller learning rate" in stderr
    a = ckpt.load_arrays(out / CHECKPOINT)
    assert all(np.all(np.isfinite(v)) for v in a.values() if v.dtype.kind == "f")
    assert not (out / METRICS).exists()


# --------------------------------------------------------------------------- metrics.json


def _check_metrics(out):
    m = json.loads((out / METRICS).read_text())
    for k in ("test_loss", "test_rec", "test_kl", "seconds"):
        assert isinstance(m[k], float) and math.isfinite(m[k]), k
    assert m["epochs"] == 1 and m["seconds"] > 0 and m["steps"] >= 1
    return m


def test_cli_writes_metrics(tmp_path, data_dir):
    rc, stdout, stderr = run_cli(["train", "--model", "simple", "--dataset", "mnist", "--epochs", 1,
                                  "--batch-size", 25, "--train-subset", 50, "--test-subset", 10,
                                  "--threads", 1, "--data-dir", data_dir, "--out", tmp_path])
    assert rc == 0 and "Traceback" not in stderr, stderr
    m = _check_metrics(tmp_path)
    assert m["n_train"] == 50 and m["n_test"] == 10 and "metrics.json" in stdout


def test_cli_writes_metrics_on_real_mnist(tmp_path, mnist_data_dir):
    rc, _, stderr = run_cli(["train", "--model", "simple", "--dataset", "mnist", "--epochs", 1,
                             "--batch-size", 50, "--train-subset", 200, "--test-subset", 100,
                             "--threads", 1, "--no-progress", "--data-dir", mnist_data_dir, "--out", tmp_path])
    assert rc == 0, stderr
    m = _check_metrics(tmp_path)
    assert 0 < m["test_rec"] < 200                  # sum of squared errors over 784 pixels


# --------------------------------------------------------------------------- input validation


@pytest.mark.parametrize("field, value, words", [
    ("model", "nope", "accepted: simple, highdim, deep"),
    ("model", 3, "model must be a name"),
    ("model", ["simple"], "model must be a name"),
    ("dataset", "imagenet", "accepted: mnist, cifar10"),
    ("epochs", 0, "epochs must be an integer >= 1"),
    ("epochs", 1.5, "epochs must be an integer >= 1"),
    ("epochs", True, "epochs must be an integer >= 1"),
    ("epochs", "3", "epochs must be an integer >= 1"),
    ("batch_size", 0, "batch_size must be an integer >= 1"),
    ("batch_size", -1, "batch_size must be an integer >= 1"),
    ("lr", 0, "lr must be a finite number > 0"),
    ("lr", -1e-3, "lr must be a finite number > 0"),
    ("lr", float("nan"), "lr must be a finite number > 0"),
    ("lr", float("inf"), "lr must be a finite number > 0"),
    ("lr", "abc", "lr must be a finite number > 0"),
    ("lr", None, "lr must be a finite number > 0"),
    ("seed", -1, "seed must be an integer >= 0"),
    ("seed", 0.5, "seed must be an integer >= 0"),
    ("train_subset", 0, "train_subset must be a positive integer or None"),
    ("test_subset", -5, "test_subset must be a positive integer or None"),
    ("checkpoint_every", -1, "checkpoint_every must be an integer >= 0"),
])
def test_config_validation(field, value, words):
    cfg = TrainConfig(**{field: value})
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
        cfg.validate()
    with pytest.raises(ConfigError):
        train(cfg, data=tiny_data(), progress=False)


def test_config_accepts_numpy_numbers(tmp_path):
    cfg = TrainConfig(epochs=np.int64(1), batch_size=np.int32(30), lr=np.float32(1e-3), seed=np.uint8(3))
    cfg.validate()
    assert type(cfg.epochs) is int and type(cfg.lr) is float and type(cfg.seed) is int
    train(cfg, out_dir=tmp_path, data=tiny_data(), progress=False)             # and it saves as JSON
    assert json.loads((tmp_path / METRICS).read_text())["config"]["seed"] == 3


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize("make_data, words", [
    (lambda d: None, "must be a dict"),
    (lambda d: {"train": d["train"]}, "must be a dict"),
    (lambda d: {**d, "train": d["train"][0]}, "pair"),
    (lambda d: {**d, "train": (d["train"][0].astype(np.float32), d["train"][1])}, "uint8"),
    (lambda d: {**d, "train": (d["train"][0][..., 0], d["train"][1])}, r"\(N, 28, 28, 1\)"),
    (lambda d: {**d, "test": (np.zeros((4, 32, 32, 3), np.uint8), np.zeros(4))}, r"\(N, 28, 28, 1\)"),
    (lambda d: {**d, "test": (d["test"][0][:0], d["test"][1][:0])}, "no images"),
    (lambda d: {**d, "train": (d["train"][0].tolist(), d["train"][1])}, "uint8 array"),
])
def test_train_rejects_bad_data(make_data, words):
    with pytest.raises(ConfigError, match=words):
        Trainer(TrainConfig(epochs=1, batch_size=5), make_data(tiny_data()))


def test_train_rejects_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="TrainConfig"):
        train({"model": "simple"}, data=tiny_data())
    with pytest.raises(ConfigError, match="larger than the 30 training images; accepted: 1..30"):
        train(TrainConfig(batch_size=31), data=tiny_data(), progress=False)
    with pytest.raises(ConfigError, match="backend"):
        train(TrainConfig(), data=tiny_data(), backend="cuda")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="not writable"):
        train(TrainConfig(), out_dir=tmp_path / "file" / "out", data=tiny_data())
    with pytest.raises(ConfigError, match="must be a path"):
        train(TrainConfig(), out_dir=42, data=tiny_data())
    train(TrainConfig(epochs=1, batch_size=30), out_dir=tmp_path / "o", data=tiny_data(), progress=False)
    with pytest.raises(ConfigError, match="already exists; pass --resume"):
        train(TrainConfig(epochs=1, batch_size=30), out_dir=tmp_path / "o", data=tiny_data())


def test_model_checks_images():
    model = VAE("simple", (28, 28, 1), np.random.default_rng(0))
    eps = np.zeros((2, 2), np.float32)
    good = np.zeros((2, 28, 28, 1), np.float32)
    model.forward(good, eps)
    for bad, words in [(np.zeros((2, 28, 28), np.float32), r"shape \(N, 28, 28, 1\)"),
                       (np.zeros((2, 32, 32, 3), np.float32), r"shape \(N, 28, 28, 1\)"),
                       (np.zeros((2, 28, 28, 1), np.uint8), "dtype float32"),
                       (np.zeros((2, 28, 28, 1), np.float64), "dtype float32"),
                       (good.tolist(), "shape"), (None, "shape")]:
        with pytest.raises(ConfigError, match=words):
            model.encode(bad)
        with pytest.raises(ConfigError, match=words):
            model.forward(bad, eps)


def test_evaluate_and_encode_all_check_images():
    model = VAE("simple", (28, 28, 1), np.random.default_rng(0))
    x = tiny_data()["test"][0]
    _, _, _, seed = streams(0)
    assert set(mean_loss(model, x, seed)) == {"loss", "rec", "kl"}
    mu, logvar = encode_all(model, x)
    assert mu.shape == logvar.shape == (10, 2)
    for fn in (lambda im: mean_loss(model, im, seed), lambda im: encode_all(model, im)):
        with pytest.raises(ConfigError, match="uint8"):
            fn(x.astype(np.float32))
        with pytest.raises(ConfigError, match=r"\(N, 28, 28, 1\)"):
            fn(x[..., 0])
    with pytest.raises(ConfigError, match="at least one image"):
        mean_loss(model, x[:0], seed)
    with pytest.raises(ConfigError, match="batch_size"):
        mean_loss(model, x, seed, batch_size=0)
    assert encode_all(model, x[:0])[0].shape == (0, 2)


def test_data_loaders_check_their_arguments(tmp_path):
    with pytest.raises(ConfigError, match="accepted: train, test"):
        tvdata.load("mnist", "validation", tmp_path)
    with pytest.raises(ConfigError, match="accepted: mnist, cifar10"):
        tvdata.load("svhn", "train", tmp_path)
    with pytest.raises(ConfigError, match="accepted: mnist, cifar10"):
        tvdata.load(["mnist"], "train", tmp_path)
    with pytest.raises(ConfigError, match="data_dir must be a path"):
        tvdata.load("mnist", "train", 42)
    with pytest.raises(ConfigError, match="records_per_file"):
        tvdata.load_cifar10("test", tmp_path, records_per_file=0)
    with pytest.raises(DataError, match="fetch"):
        load_data(TrainConfig(), tmp_path)


def test_a_second_signal_stops_at_once_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    before = signal.getsignal(signal.SIGINT)
    real_save, saves = ckpt.save_arrays, []

    def save_then_signal_twice(path, arrays):
        real_save(path, arrays)
        saves.append(1)
        if len(saves) == 2:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)          # the second one raises KeyboardInterrupt
    monkeypatch.setattr(ckpt, "save_arrays", save_then_signal_twice)
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(epochs=1, batch_size=10, checkpoint_every=1), out_dir=tmp_path, data=tiny_data(),
              progress=False)
    assert signal.getsignal(signal.SIGINT) == before
    assert position(tmp_path / CHECKPOINT) == (0, 2, 0)
    ckpt.load_arrays(tmp_path / CHECKPOINT)
