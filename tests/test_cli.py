"""The command line: every bad flag exits 2 with a message and no traceback; help is complete.

The bad-input table runs ``python -m tinyvae`` in subprocesses, several at a
time (one fixture runs them all, each case is then checked on its own).
"""
import argparse
import concurrent.futures
import contextlib
import io
import os
import pathlib
import subprocess
import sys
import time

import pytest

from tinyvae import data
from tinyvae.cli import build_parser, main, resume_command
from tinyvae.cli import thread_limit
from tinyvae.errors import ConfigError
from tinyvae.runs import CHECKPOINT, LOCK
from tinyvae.config import TrainConfig
from tinyvae.train import train
from synthetic import write_mnist_dir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(args, env=None, timeout=120):
    env = dict(os.environ, PYTHONPATH=ROOT, TQDM_DISABLE="1", **(env or {}))
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "tinyvae", *map(str, args)], capture_output=True, text=True,
                       timeout=timeout, env=env, cwd=ROOT)
    r.seconds = time.monotonic() - t0
    return r


# --------------------------------------------------------------------------- bad flags


def bad_input_cases(data_dir, tmp):
    """name -> (arguments, words the message must contain)."""
    def train_args(*extra, out=None):
        args = ["train", "--data-dir", data_dir, "--epochs", "1", "--batch-size", "10",
                "--train-subset", "20", "--test-subset", "10", "--threads", "1", "--no-progress"]
        args += ["--out", out or tmp / "out"]
        return args + list(extra)

    corrupt = tmp / "corrupt_data"
    return {
        "unknown model": (train_args("--model", "nope"), ["--model", "invalid choice", "simple"]),
        "unknown dataset": (train_args("--dataset", "svhn"), ["--dataset", "invalid choice", "mnist"]),
        "batch size 0": (train_args("--batch-size", "0"), ["--batch-size", "positive integer"]),
        "batch size -1": (train_args("--batch-size", "-1"), ["--batch-size", "positive integer"]),
        "batch size 2.5": (train_args("--batch-size", "2.5"), ["--batch-size", "positive integer"]),
        "batch size > data": (train_args("--batch-size", "500"), ["batch_size 500", "20 training images"]),
        "lr 0": (train_args("--lr", "0"), ["--lr", "positive"]),
        "lr -1": (train_args("--lr", "-1"), ["--lr", "positive"]),
        "lr nan": (train_args("--lr", "nan"), ["--lr", "positive finite"]),
        "lr inf": (train_args("--lr", "inf"), ["--lr", "positive finite"]),
        "lr abc": (train_args("--lr", "abc"), ["--lr", "positive number", "abc"]),
        "lr empty": (train_args("--lr", ""), ["--lr"]),
        "epochs 0": (train_args("--epochs", "0"), ["--epochs", "positive integer"]),
        "epochs 1.5": (train_args("--epochs", "1.5"), ["--epochs", "positive integer"]),
        "threads 0": (train_args("--threads", "0"), ["--threads", "positive integer"]),
        "threads too many": (train_args("--threads", "100000"), ["--threads 100000", "threads numba can use"]),
        "seed -1": (train_args("--seed", "-1"), ["--seed", "integer >= 0"]),
        "train subset 0": (train_args("--train-subset", "0"), ["--train-subset", "positive integer"]),
        "test subset x": (train_args("--test-subset", "x"), ["--test-subset", "positive integer"]),
        "checkpoint every -1": (train_args("--checkpoint-every", "-1"), ["--checkpoint-every", "integer >= 0"]),
        "unknown backend": (train_args("--backend", "cuda"), ["--backend", "unknown kernel backend", "numba, numpy"]),
        "unknown flag": (train_args("--learning-rate", "1"), ["unrecognized arguments", "--learning-rate"]),
        "out under a file": (train_args(out=tmp / "a_file" / "out"), ["not writable", "--out"]),
        "out is a file": (train_args(out=tmp / "a_file"), ["is a file, not a folder", "--out"]),
        "missing --out": (train_args()[:-2], ["required", "--out"]),
        "data dir is a file": (train_args("--data-dir", tmp / "a_file"), ["not found", "fetch"]),
        "corrupt data": (train_args("--data-dir", corrupt), ["train-images-idx3-ubyte.gz", "gzip"]),
        "checkpoint without --resume": (train_args(out=tmp / "existing"), ["already exists", "--resume"]),
        "resume, other seed": (train_args("--seed", "1", "--resume", out=tmp / "existing"),
                               ["another run", "seed is 0", "this run's is 1"]),
        "resume, other batch size": (train_args("--batch-size", "5", "--resume", out=tmp / "existing"),
                                     ["another run", "batch_size"]),
        "resume, other model": (train_args("--model", "highdim", "--resume", out=tmp / "existing"),
                                ["another run", "highdim"]),
        "no command": ([], ["required", "COMMAND"]),
        "unknown command": (["frobnicate"], ["invalid choice", "frobnicate"]),
        "summary, unknown model": (["summary", "nope"], ["invalid choice"]),
        "fetch, unknown dataset": (["fetch", "svhn"], ["invalid choice"]),
    }


#: the cases the reliability issue lists run in subprocesses; the others in process (faster)
IN_SUBPROCESS = {"unknown model", "unknown dataset", "batch size 0", "batch size -1", "batch size > data",
                 "lr 0", "lr -1", "lr nan", "lr inf", "lr abc", "epochs 0", "threads 0", "out under a file",
                 "missing --out", "checkpoint every -1", "checkpoint without --resume", "resume, other seed",
                 "resume, other model"}


def run_main(args):
    """cli.main in this process: (status, stdout, stderr) as a subprocess would give them."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:                              # argparse
            code = e.code
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def bad_input_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    data_dir = write_mnist_dir(tmp / "data")
    (tmp / "a_file").write_text("not a folder")
    write_mnist_dir(tmp / "corrupt_data", 20, 10)
    (tmp / "corrupt_data" / "mnist" / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    with thread_limit(1):      # the checkpoint the resume cases find (CLI defaults: lr 1e-4, seed 0)
        train(TrainConfig(epochs=1, batch_size=10, train_subset=20, test_subset=10),
              out_dir=tmp / "existing", data_dir=data_dir, progress=False)
    cases = bad_input_cases(data_dir, tmp)
    assert IN_SUBPROCESS <= set(cases)
    by_out = {}                  # cases on one --out take turns: its lock admits one trainer at a time
    for name, (args, _) in cases.items():
        if name in IN_SUBPROCESS:
            out = args[args.index("--out") + 1] if "--out" in args else name
            by_out.setdefault(str(out), []).append(name)

    def run_in_turn(names):
        return {name: run_cli(cases[name][0]) for name in names}

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = {}
        for part in pool.map(run_in_turn, by_out.values()):
            results.update(part)
    results.update({name: run_main(args) for name, (args, _) in cases.items() if name not in IN_SUBPROCESS})
    return cases, results, tmp


CASE_NAMES = list(bad_input_cases(pathlib.Path("data"), pathlib.Path("tmp")))


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_input_exits_2_with_a_message(bad_input_results, name):
    cases, results, tmp = bad_input_results
    words = cases[name][1]
    r = results[name]
    assert r.returncode == 2, (r.returncode, r.stderr[-3000:])
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    assert r.stderr.strip(), "no message"
    for w in words:
        assert w in r.stderr, (w, r.stderr)


def test_bad_input_leaves_existing_checkpoint_untouched(bad_input_results):
    _, _, tmp = bad_input_results
    assert sorted(os.listdir(tmp / "existing")) == [LOCK, CHECKPOINT, "metrics.json"]


@pytest.mark.parametrize("how", ["env", "flag"])
def test_missing_data_exits_fast_with_the_fix(tmp_path, how):
    empty = tmp_path / "empty"
    empty.mkdir()
    args = ["train", "--epochs", "1", "--no-download", "--out", tmp_path / "out"]
    env = {"TINYVAE_DATA_DIR": str(empty)} if how == "env" else {"TINYVAE_DATA_DIR": ""}
    if how == "flag":
        args += ["--data-dir", empty]
    best = None
    for _ in range(2):                     # the machine is shared: take the better of two tries
        r = run_cli(args, env=env, timeout=30)
        best = r if best is None or r.seconds < best.seconds else best
        if r.seconds < 2:
            break
    assert best.returncode == 2 and "Traceback" not in best.stderr
    for w in ("fetch", "TINYVAE_DATA_DIR", str(empty), "--no-download", *data.OFFICIAL_URLS["mnist"]):
        assert w in best.stderr, w                     # every missing file, not one split's two
    assert not (tmp_path / "out").exists()             # nothing created
    assert best.seconds < 2, f"took {best.seconds:.2f} s"


# --------------------------------------------------------------------------- help


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    raise AssertionError("no subcommands")


def test_every_flag_has_help():
    parser = build_parser()
    for name, sub in {"": parser, **_subparsers(parser)}.items():
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)


def test_help_documents_every_flag():
    top = run_cli(["--help"])
    tr = run_cli(["train", "--help"])
    assert top.returncode == 0 and tr.returncode == 0
    for name in _subparsers(build_parser()):
        assert name in top.stdout
    assert "exit with status 2" in top.stdout
    train_parser = _subparsers(build_parser())["train"]
    for action in train_parser._actions:
        for flag in action.option_strings:
            assert flag in tr.stdout, flag
    for words in ("default 10", "default 50", "1e-4", "--resume", "checkpoint.npz", "metrics.json"):
        assert words in tr.stdout, words


# --------------------------------------------------------------------------- in process


def test_main_returns_2_for_library_errors(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["train", "--out", str(tmp_path / "f" / "o"), "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinyvae: error:") and "not writable" in err


def test_thread_limit_rejects_too_many():
    with pytest.raises(ConfigError, match="threads"):
        with thread_limit(10 ** 6):
            pass


def test_resume_command():
    cmd = resume_command(["train", "--out", "my dir"])
    assert cmd.endswith("-m tinyvae train --out 'my dir' --resume")
    assert resume_command(["train", "--resume"]).count("--resume") == 1
