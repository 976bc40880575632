"""The course runs: every lesson, as a script, exits 0 and saves its figures.

Each lesson asserts its own key facts (gradient checks, adjoint identities,
collapse, ...), so a broken package makes its lesson exit non-zero here.
Lessons 8-10 need the real data: they skip without it, and fail under CI
(``require_data`` from conftest). Each lesson takes well under a minute on
two cores.
"""
import os
import pathlib
import subprocess
import sys

import pytest

from conftest import require_data

ROOT = pathlib.Path(__file__).resolve().parents[1]

# The course, in order. A lesson file that is not listed here fails
# test_every_lesson_file_is_listed, so none can be left out of the runs below.
LESSONS = [
    "l01_dense",
    "l02_activations_loss",
    "l03_conv2d",
    "l04_maxpool",
    "l05_transposed_conv",
    "l06_reparam_kl",
    "l07_adam",
    "l08_vae_mnist",
    "l09_cifar10",
    "l10_evaluating",
]
NEEDS_DATA = {"l08_vae_mnist": ("mnist",), "l09_cifar10": ("cifar10",), "l10_evaluating": ("mnist",)}
TIMEOUT_S = 300          # generous: a lesson takes < 60 s, but the machine may be shared
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_lesson(name, out, **env):
    """``python -m lessons.<name> --out <out>`` from the repo root; the CompletedProcess."""
    full_env = {k: v for k, v in os.environ.items() if k != "TINYVAE_LESSON_OUT"}
    full_env.update(env)
    full_env.setdefault("MPLBACKEND", "Agg")
    return subprocess.run([sys.executable, "-m", f"lessons.{name}", "--out", str(out)],
                          cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=TIMEOUT_S)


def test_every_lesson_file_is_listed():
    found = sorted(p.stem for p in (ROOT / "lessons").glob("l[0-9][0-9]_*.py"))
    assert found, "no lesson files found"
    assert found == sorted(LESSONS), (
        f"lesson files and the test's list differ: not run {sorted(set(found) - set(LESSONS))}, "
        f"listed but missing {sorted(set(LESSONS) - set(found))}")
    assert set(NEEDS_DATA) <= set(LESSONS)


@pytest.mark.parametrize("name", LESSONS)
def test_lesson_runs_and_saves_figures(name, tmp_path):
    env = {}
    if name in NEEDS_DATA:
        env["TINYVAE_DATA_DIR"] = str(require_data(*NEEDS_DATA[name]))
    out = tmp_path / "figures"
    proc = run_lesson(name, out, **env)
    assert proc.returncode == 0, (
        f"lessons.{name} exited {proc.returncode}\n--- stdout (end) ---\n{proc.stdout[-4000:]}"
        f"\n--- stderr (end) ---\n{proc.stderr[-4000:]}")
    pngs = sorted(out.glob("*.png"))
    assert pngs, f"lessons.{name} saved no PNG into {out}"
    for png in pngs:
        assert png.read_bytes()[:8] == PNG_MAGIC, f"{png} is not a PNG"
        assert png.stat().st_size > 1000, f"{png} is (nearly) empty"
    assert str(out) in proc.stdout, "a lesson prints where its figures go"


@pytest.mark.parametrize("name", sorted(NEEDS_DATA))
def test_data_lesson_without_data_exits_with_a_clear_message(name, tmp_path):
    proc = run_lesson(name, tmp_path / "figures", TINYVAE_DATA_DIR=str(tmp_path / "no-data-here"))
    assert proc.returncode != 0
    assert "TINYVAE_DATA_DIR" in proc.stderr and NEEDS_DATA[name][0] in proc.stderr
    assert "Traceback" not in proc.stderr
