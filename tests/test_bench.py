"""Smoke tests of the step timer and the benchmark tools (no timing is ever asserted)."""
import importlib.util
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from tinyvae import bench
from tinyvae.models import VAE, IMAGE_SHAPES
from tinyvae.threads import blas_info

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture
def benchlib(monkeypatch):
    """benchmarks/benchlib.py, imported the way bench_step.py imports it."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import benchlib
    return benchlib


def test_step_timer_one_tiny_config(capsys):
    code = bench.main(["--pairs", "simple/mnist,deep/cifar10", "--threads", "1", "--steps", "2",
                       "--warmup", "1", "--rounds", "2", "--batch-size", "4", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = _json_lines(out)
    assert [(r["model"], r["dataset"]) for r in lines] == [("simple", "mnist"), ("deep", "cifar10")]
    for r in lines:
        assert (r["threads"], r["batch"], r["steps"]) == (1, 4, 2)
        assert 0 < r["ms_min"] <= r["ms_step"] <= r["ms_max"] and r["gflops"] > 0
    assert "ms/step" in err                            # the table header went to stderr
    kernel = blas_info()["blas_kernel"]                # the BLAS kernel sets the speed: named
    assert all(r["blas_kernel"] == kernel for r in lines) and f"kernel {kernel}" in err


def test_bench_does_not_import_the_command_line():
    code = "import sys, tinyvae.bench; print('tinyvae.cli' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout
    assert out.strip() == "False"


def test_benchlib_one_tiny_config_with_profile(benchlib, capsys):
    code = benchlib.main(["--pairs", "simple/mnist", "--threads", "1", "--steps", "2", "--warmup", "1",
                          "--rounds", "2", "--batch-size", "4", "--peak-n", "64", "--json",
                          "--profile", "--profile-steps", "1"])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = _json_lines(out)
    pair, prof = lines[0], lines[1]["profile"]
    assert (pair["model"], pair["dataset"], pair["threads"], pair["batch"]) == ("simple", "mnist", 1, 4)
    for key in ("ms_step", "ms_min", "ms_max", "gflop_step", "gflops", "gflop_nominal",
                "sgemm_gflops", "pct_peak"):
        assert np.isfinite(pair[key]) and pair[key] > 0, key
    assert pair["ms_min"] <= pair["ms_step"] <= pair["ms_max"]
    assert pair["machine"]["blas"]                    # threadpoolctl found NumPy's BLAS
    # the profile covers every layer's forward and backward, Adam, and sums to the step
    labels = [row[0] for row in prof["rows"]]
    assert "enc0_conv2d forward" in labels and "enc0_conv2d backward" in labels
    assert "adam update" in labels
    assert sum(row[2] for row in prof["rows"]) == pytest.approx(100.0)
    assert "simple/mnist" in err and "profile simple/mnist" in err   # the tables went to stderr


def test_gemm_bound_times_the_steps_own_products(benchlib, capsys):
    """--gemm-bound times every product a step makes (its FLOPs are the step's), with the
    shapes each layer's code gives them, and sets their sum against the step."""
    import gemm_bound
    model = VAE("deep", IMAGE_SHAPES["cifar10"], np.random.default_rng(0))
    rows, rng = bench.layer_flops(model, 4), np.random.default_rng(0)
    total = 0
    for row in rows:
        M, K, N = row["gemm"]
        calls = gemm_bound.gemm_calls(row, rng)
        assert [part for part, _, _ in calls] == ["forward", "dw"] + ["dx"] * row["need_dx"]
        w_shape = (N, K) if row["kind"] == "conv_transpose" else (K, N)
        shapes = {"forward": (M, N), "dw": w_shape, "dx": (M, K)}
        for part, flops, fn in calls:
            assert fn().shape == shapes[part], (row["name"], part)
            total += flops
    assert total == bench.step_flops(model, 4)[0]
    assert not rows[0]["need_dx"] and rows[0]["kind"] == "conv"   # nobody needs the image's gradient

    code = benchlib.main(["--pairs", "simple/mnist", "--threads", "1", "--steps", "2", "--warmup", "1",
                          "--rounds", "2", "--batch-size", "4", "--peak-n", "64", "--json",
                          "--gemm-bound"])
    out, err = capsys.readouterr()
    assert code == 0, err
    b = _json_lines(out)[1]["gemm_bound"]
    assert b["pair"] == "simple/mnist" and b["batch"] == 4 and b["ms"] > 0
    assert b["gflop"] == pytest.approx(_json_lines(out)[0]["gflop_step"])
    assert sum(r[3] for r in b["rows"]) == pytest.approx(b["ms"])
    assert "GEMM share" in err and "% peak" in err


def test_profiler_wraps_layers_from_outside_and_unwraps(benchlib):
    import layer_profile
    model = VAE("simple", IMAGE_SHAPES["mnist"], np.random.default_rng(0))
    layer = model.encoder[0]
    timings = {}
    layer_profile.timed(layer, timings)
    model.encode(np.zeros((2, 28, 28, 1), np.float32))
    assert set(timings) == {("enc0_conv2d", "forward")}
    layer_profile.untimed(layer)
    assert "forward" not in vars(layer) and "backward" not in vars(layer)


def test_flop_count_matches_the_architecture():
    """Nominal GEMM FLOPs of simple/mnist, counted by hand from the layer sizes."""
    model = VAE("simple", IMAGE_SHAPES["mnist"], np.random.default_rng(0))
    N = 50
    macs = {  # forward multiply-adds: conv N*Ho*Wo*9*C*F, dense N*D*M, convT at the upsampled size
        "enc0": N * 26 * 26 * 9 * 1 * 32, "enc3": N * 11 * 11 * 9 * 32 * 64,
        "dense": N * (1600 * 256 + 256 * 64 + 2 * 64 * 2 + 2 * 64 + 64 * 256 + 256 * 1600),
        "convT1": N * 10 * 10 * 9 * 64 * 64, "convT2": N * 24 * 24 * 9 * 64 * 32,
        "convT3": N * 26 * 26 * 9 * 32 * 1,
    }
    # forward + dw + dx, without the first conv's dx
    nominal = 2 * (3 * sum(macs.values()) - macs["enc0"])
    executed, nom = bench.step_flops(model, N)
    assert nom == nominal
    # executed: the two fused upsample+convT layers multiply at a quarter of the size
    fused = macs["convT1"] + macs["convT2"]
    assert executed == nominal - 2 * 3 * fused * 3 // 4


def test_bad_arguments_exit_2(capsys, benchlib):
    for main in (bench.main, benchlib.main):
        assert main(["--pairs", "simple/svhn"]) == 2
        assert "simple/svhn" in capsys.readouterr().err
        assert main(["--threads", "0"]) == 2
        assert main(["--steps", "zero"]) == 2


def test_pairs_parse(benchlib):
    assert bench.parse_pairs("all") == list(bench.PAIRS)
    assert bench.parse_pairs("deep/cifar10,simple/mnist") == [("deep", "cifar10"), ("simple", "mnist")]
    assert benchlib.parse_threads("1,2") == [1, 2] and benchlib.parse_threads(None) == [None]


def test_torch_model_matches_tinyvae():
    """benchmarks/compare_torch.py builds the same network: same parameter count, loss, gradients."""
    pytest.importorskip("torch")
    spec = importlib.util.spec_from_file_location("compare_torch", ROOT / "benchmarks" / "compare_torch.py")
    ct = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ct)
    for arch, dataset in (("simple", "mnist"), ("deep", "cifar10")):
        runner = bench.StepRunner(arch, dataset, batch=3)
        tm = ct.TorchVAE(arch, IMAGE_SHAPES[dataset])
        assert ct.n_params(tm) == ct.tinyvae_n_params(runner.model)
        ct.copy_weights(runner.model, tm)
        check = ct.check_equivalent(runner.model, tm, runner.x, runner.eps)
        assert check["loss_rel_diff"] < 1e-5, check
        assert check["grad_max_rel_diff"] < 1e-3, check


def _study_limit(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import study_limit
    return study_limit


def test_study_limit_is_the_lane_bound_of_the_protocols_flops(monkeypatch, capsys, tmp_path):
    sl = _study_limit(monkeypatch)
    runs = sl.protocol_flops()
    assert [(m, d, s) for m, d, s, _ in runs] == [("simple", "mnist", 12000), ("simple", "cifar10", 10000),
                                                  ("highdim", "cifar10", 10000), ("deep", "cifar10", 10000)]
    for (m, d, _, f) in runs:
        assert f == bench.step_flops(VAE(m, IMAGE_SHAPES[d], np.random.default_rng(1)))[0]
    # two lanes: never faster than the longest run alone on one lane
    assert sl.limit_seconds([("a", "x", 10, 100e9), ("b", "x", 10, 10e9)], 100, 200) == (10.0, 5.5, 10.0)
    assert sl.limit_seconds([("a", "x", 10, 50e9), ("b", "x", 10, 50e9)], 100, 150)[0] == 1000 / 150
    metrics = {"study": {"preset": "full", "epochs": 10, "seed": 0, "seeds": [0], "runs_trained_here": 4,
                         "wall_seconds": 2 * sum(s * f for _, _, s, f in runs) / 256e9},
               "runs": dict.fromkeys(sl.PAPER_RUNS, {})}
    (tmp_path / "m.json").write_text(json.dumps(metrics))
    assert sl.main(["--metrics", str(tmp_path / "m.json"), "--peak", "1000,256"]) == 0
    out = capsys.readouterr().out
    assert "178.6 TFLOP" in out and "= 200% of the limit (the limit is 50% of its wall time)" in out
    metrics["study"]["runs_trained_here"] = 0                         # a resumed study
    (tmp_path / "m.json").write_text(json.dumps(metrics))
    assert sl.main(["--metrics", str(tmp_path / "m.json"), "--peak", "1000,256"]) == 2
    assert "resumed" in capsys.readouterr().err
    # a peak is only comparable on the kernel the study ran on
    metrics["study"].update(runs_trained_here=4, blas={"blas": "openblas", "blas_kernel": "NoSuchKernel"})
    (tmp_path / "m.json").write_text(json.dumps(metrics))
    assert sl.main(["--metrics", str(tmp_path / "m.json")]) == 2
    err = capsys.readouterr().err
    assert "kernel NoSuchKernel" in err and "OPENBLAS_CORETYPE" in err and "--peak" in err
    assert sl.main(["--metrics", str(tmp_path / "m.json"), "--peak", "1000,256"]) == 0
    assert "= 200% of the limit" in capsys.readouterr().out
    for bad in (["--peak", "128"], ["--peak", "1,x"], ["--wall", "-3", "--peak", "1,2"],
                ["--metrics", str(tmp_path / "none.json")]):
        assert sl.main(bad) == 2
        assert capsys.readouterr().err.startswith("study_limit: error: ")
