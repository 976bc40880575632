"""Executors (tinyvae.study.executors): each planned command trains exactly its TrainConfig.

Tiny runs on synthetic MNIST files.
"""
import dataclasses
import os
import shlex
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyvae import checkpoint as ckpt
from tinyvae.archs import ARCHS, IMAGE_SHAPES, LIKELIHOODS
from tinyvae.cli import build_parser
from tinyvae.config import TrainConfig
from tinyvae.errors import ConfigError
from tinyvae.runs import CHECKPOINT
from tinyvae.study.executors import plan_commands
from synthetic import write_mnist_dir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASKS = {"a": TrainConfig(epochs=2, batch_size=10, test_subset=10, lr=1e-3, seed=1),
         "b": TrainConfig(epochs=2, batch_size=10, test_subset=10, lr=1e-3, seed=2, beta=0.25,
                          likelihood="bernoulli")}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_mnist_dir(tmp_path_factory.mktemp("data"), n_train=40)


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
