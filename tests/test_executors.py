"""Executors (tinyvae.study.executors): runs trained as Ray tasks are bit for bit the runs trained in
this process, errors name the run, and each planned command trains exactly its TrainConfig.

Tiny runs on synthetic MNIST files. Without Ray the Ray tests skip, except under CI
(``.[dev]`` installs Ray), where they fail.
"""
import dataclasses
import os
import shlex
import signal
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyvae import checkpoint as ckpt
from tinyvae.archs import ARCHS, IMAGE_SHAPES, LIKELIHOODS
from tinyvae.cli import build_parser
from tinyvae.config import TrainConfig
from tinyvae.errors import ConfigError, DataError
from tinyvae.runs import CHECKPOINT, METRICS
from tinyvae.study.executors import plan_commands, train_ray
from tinyvae.threads import thread_limit
from tinyvae.train import train
from conftest import _in_ci
from synthetic import write_mnist_dir
from test_train import same_state

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASKS = {"a": TrainConfig(epochs=2, batch_size=10, test_subset=10, lr=1e-3, seed=1),
         "b": TrainConfig(epochs=2, batch_size=10, test_subset=10, lr=1e-3, seed=2, beta=0.25,
                          likelihood="bernoulli")}


def require_ray():
    try:
        import ray
    except ImportError:
        if _in_ci():
            pytest.fail("CI installs .[dev], which includes Ray, but ray is not importable")
        pytest.skip("ray is not installed (pip install -e '.[ray]')")
    return ray


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_mnist_dir(tmp_path_factory.mktemp("data"), n_train=40)


@pytest.mark.slow
def test_ray_runs_are_the_runs_trained_here(data_dir, tmp_path):
    ray = require_ray()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    lines = []
    try:
        result = train_ray([(n, cfg, tmp_path / n) for n, cfg in TASKS.items()], threads=1,
                           data_dir=data_dir, log=lines.append)
        assert ray.is_initialized()                  # a connection it found is kept
    finally:
        ray.shutdown()
    assert set(result["seconds"]) == set(TASKS) and result["peak_rss_all_mib"] is None
    assert sorted(line.split()[0] for line in lines) == ["finished"] * 2 + ["started"] * 2
    for name, cfg in TASKS.items():
        with thread_limit(1):
            train(cfg, out_dir=tmp_path / f"ref_{name}", data_dir=data_dir, progress=False)
        got = ckpt.load_arrays(tmp_path / name / CHECKPOINT)
        assert int(got["state/done"]) == 1 and (tmp_path / name / METRICS).is_file()
        assert same_state(got, ckpt.load_arrays(tmp_path / f"ref_{name}" / CHECKPOINT)) > 20


@pytest.mark.slow
def test_a_failing_ray_run_raises_its_error_with_its_name(tmp_path):
    ray = require_ray()
    assert not ray.is_initialized()
    handlers = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)]
    with pytest.raises(DataError, match=r"^broken: "):
        train_ray([("broken", TASKS["a"], tmp_path / "broken")], data_dir=tmp_path / "no-data",
                  log=lambda line: None)
    assert not ray.is_initialized()                  # the instance it started is shut down
    assert [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)] == handlers


def test_without_ray_the_error_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[ray\]'") as e:
        train_ray([("a", TASKS["a"], tmp_path / "a")])
    assert "\n" not in str(e.value)


def test_each_planned_command_trains_its_config(data_dir, tmp_path):
    cfgs = {n: dataclasses.replace(cfg, train_subset=30, checkpoint_every=3) for n, cfg in TASKS.items()}
    lines = plan_commands([(n, cfg, tmp_path / n) for n, cfg in cfgs.items()], data_dir=data_dir,
                          python=sys.executable)
    assert len(lines) == 2
    for name, line in zip(cfgs, lines):
        done = subprocess.run(shlex.split(line), cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT),
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        arrays = ckpt.load_arrays(tmp_path / name / CHECKPOINT)
        assert int(arrays["state/done"]) == 1
        assert TrainConfig(**ckpt.read_config(arrays)) == cfgs[name]


FIELDS = {
    "model": st.sampled_from(list(ARCHS)), "dataset": st.sampled_from(list(IMAGE_SHAPES)),
    "epochs": st.integers(1, 10**6), "batch_size": st.integers(1, 10**4),
    "lr": st.floats(min_value=0, exclude_min=True, allow_infinity=False),
    "seed": st.integers(0, 2**63), "train_subset": st.none() | st.integers(1, 10**5),
    "test_subset": st.none() | st.integers(1, 10**5), "checkpoint_every": st.integers(0, 10**4),
    "beta": st.none() | st.floats(min_value=0, allow_infinity=False),
    "likelihood": st.sampled_from(list(LIKELIHOODS)),
}


def test_the_round_trip_covers_every_field():
    assert set(FIELDS) == {f.name for f in dataclasses.fields(TrainConfig)}


@settings(max_examples=60, deadline=None)
@given(cfg=st.builds(TrainConfig, **FIELDS), threads=st.integers(1, 64), backend=st.sampled_from([None, "numpy"]),
       resume=st.booleans())
def test_planned_commands_parse_back_to_their_config(cfg, threads, backend, resume):
    data_dir = "relative data"                       # a space, and made absolute
    line, = plan_commands([("x", cfg, "runs/x")], threads=threads, data_dir=data_dir, backend=backend,
                          resume=resume)
    argv = shlex.split(line)
    assert argv[:4] == ["python", "-m", "tinyvae", "train"]
    args = build_parser().parse_args(argv[3:])
    assert TrainConfig(**{f: getattr(args, f) for f in FIELDS}).validate() == cfg
    assert (args.out, args.data_dir) == (os.path.abspath("runs/x"), os.path.abspath(data_dir))
    assert (args.threads, args.backend, args.resume, args.no_progress) == (threads, backend, resume, True)
    assert {"--model", "--dataset", "--seed", "--epochs"} <= set(argv)   # named even at their defaults


def test_a_plan_checks_its_tasks(tmp_path):
    task = ("a", TASKS["a"], tmp_path / "a")
    for bad in ([task, task], [("a", TrainConfig(lr=-1.0), tmp_path / "a")]):
        with pytest.raises(ConfigError, match="names must differ|lr must be"):
            plan_commands(bad)
    with pytest.raises(ConfigError, match="threads"):
        plan_commands([task], threads=0)
