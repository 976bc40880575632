"""The Bernoulli decoder and the KL weight ``beta``: gradients, extremes, training, evaluation, resume.

``VAE(..., likelihood="bernoulli")`` ends its decoder without the Sigmoid: it
outputs logits, trained with :func:`tinyvae.losses.bce_with_logits_loss`;
``VAE(..., beta=b)`` weighs the KL by ``b`` in :meth:`VAE.loss`. Runs choose
both with ``train --likelihood/--beta`` (:class:`tinyvae.config.TrainConfig`),
and a checkpoint only resumes with the same ones.

1. the whole Bernoulli loss of the "simple" VAE on MNIST-sized images against
   centred differences (float64, ``h = 1e-5``, ``rel_error <= 1e-6`` as the
   Gaussian check in tests/test_gradients.py), at ``beta = 0.5``;
2. the cross-entropy at extreme logits against a closed form computed pixel by
   pixel with Python floats (tests/test_likelihoods.py covers binary targets
   and the textbook formula; here grey targets, +-80 in float32, tiny gradients);
3. a Bernoulli run trains, and ``negative_elbo_terms`` agrees with its test loss;
4. the importance-weighted bound of a Bernoulli model;
5. bad flags and settings, resuming across likelihoods and from checkpoints
   written before the fields existed, ``load_run``;
6. the Gaussian default is what it was.
"""
import contextlib
import io
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tinyvae import checkpoint as ckpt
from tinyvae import evaluate as ev
from tinyvae import layers as L
from tinyvae.cli import main, thread_limit
from tinyvae.config import TrainConfig, load_data, streams
from tinyvae.data import to_float
from tinyvae.errors import CheckpointError, ConfigError
from tinyvae.gradcheck import check_gradient, numerical_gradient, rel_error
from tinyvae.losses import bce_with_logits, bce_with_logits_loss, kl_loss, sse_loss
from tinyvae.models import VAE
from tinyvae.runs import CHECKPOINT, load_run
from tinyvae.train import train
from synthetic import idx_gz

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H_STEP = 1e-5
TOL_MODEL = 1e-6                 # tests/test_gradients.py's whole-VAE tolerance


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with thread_limit(1):        # the machine is shared: keep in-process runs lean
        yield


# ======================================================================================
# 1. the whole Bernoulli loss, finite differences
# ======================================================================================

GRAD_SEED = 2                    # see test_bernoulli_vae_loss_gradients: no kink crossed, no tiny entry
CHECKED = ("enc0_conv2d.w", "enc7_dense.b", "mu_dense.w", "logvar_dense.b", "dec4_dense.w",
           "dec7_upsampleconvtranspose2d.w", "dec11_convtranspose2d.w", "dec11_convtranspose2d.b")


def make_bernoulli_vae(seed=GRAD_SEED, n=2, beta=0.5):
    """float64 "simple" Bernoulli VAE on (28, 28, 1), non-zero biases, frozen eps, binary targets.

    The last layer's weights are scaled by 150 (logits of median magnitude ~3
    instead of ~0.03) and the targets are where the logits are positive, so
    most pixels agree with their logit and the loss is small: the float64
    rounding noise of the scalar loss (~1e-16 |loss| / h) stays well below
    the gradients, as with tests/test_gradients.py's targets near the
    reconstruction.
    """
    rng = np.random.default_rng(seed)
    model = VAE("simple", (28, 28, 1), rng, dtype=np.float64, likelihood="bernoulli", beta=beta)
    for name, p in model.params.items():
        if name.endswith(".b"):
            p[...] = rng.uniform(-0.1, 0.1, p.shape)
    model.params["dec11_convtranspose2d.w"] *= 150.0
    eps = rng.standard_normal((n, model.arch.latent))                    # (N, L)
    x = rng.random((n, 28, 28, 1))                                      # (N, 28, 28, 1)
    for _ in range(2):                                                  # targets the logits agree with
        logits, _, _ = model.forward(x, eps)                            # (N, 28, 28, 1)
        x = (logits > 0).astype(np.float64)
    return model, x, eps, rng


def activation_pattern(model, x, eps):
    """Every ReLU's input sign and every max-pool window's winner for one forward pass."""
    pattern = []

    def run(layers, h):
        for layer in layers:
            if isinstance(layer, L.ReLU):
                pattern.append(h > 0)
            elif isinstance(layer, L.MaxPool2D):
                N, H, W, C = h.shape
                p = layer.pool
                win = h[:, :H // p * p, :W // p * p].reshape(N, H // p, p, W // p, p, C)
                pattern.append(win.transpose(0, 1, 3, 5, 2, 4).reshape(N, H // p, W // p, C, p * p).argmax(-1))
            h = layer.forward(h)
        return h

    h = run(model.encoder, x)                                           # (N, D)
    mu, logvar = model.mu_head.forward(h), model.logvar_head.forward(h)  # (N, L) twice
    run(model.decoder, L.reparam_forward(mu, logvar, eps)[0])
    return pattern


def sampled_errors(model, x, eps, grads, names, n_samples=4, seed=0):
    """rel_error of ``grads[name]`` on ``n_samples`` entries of each named parameter; whether
    every ``+-h`` perturbation kept the activation pattern (no kink crossed); and the smallest
    non-zero ``|grads|`` entry compared."""
    base = activation_pattern(model, x, eps)
    smooth, smallest, errors = [], np.inf, {}

    def f():
        now = activation_pattern(model, x, eps)
        smooth.append(all(np.array_equal(a, b) for a, b in zip(base, now)))
        return model.loss(x, eps, backward=False)["loss"]

    rng = np.random.default_rng(seed)
    for name in names:
        num = numerical_gradient(f, model.params[name], H_STEP, n_samples, rng)   # NaN where not drawn
        drawn = ~np.isnan(num)
        errors[name] = rel_error(grads[name][drawn], num[drawn])
        g = np.abs(grads[name][drawn])
        smallest = min(smallest, g[g > 0].min(initial=np.inf))
    return errors, all(smooth), smallest


def test_bernoulli_vae_loss_gradients():
    model, x, eps, _ = make_bernoulli_vae()
    assert model.beta == 0.5 and not isinstance(model.decoder[-1], L.Sigmoid)
    r = model.loss(x, eps)                                              # beta: the model's 0.5
    assert r["loss"] == pytest.approx(r["rec"] + 0.5 * r["kl"], rel=1e-15)
    assert r["rec"] < 150 and r["kl"] > 1e-3                            # 123 nats, not 543: small noise
    grads = {k: v.copy() for k, v in model.grads.items()}
    errors, smooth, smallest = sampled_errors(model, x, eps, grads, CHECKED)
    # the seeds are chosen so that the check is sharp: the function is smooth between -h and +h,
    # and every non-zero entry compared is >= 1e-3, 1e6 times the rounding noise (~1e-9)
    assert smooth, "a perturbation crossed a ReLU kink or a max-pool tie: choose another GRAD_SEED"
    assert smallest >= 1e-3, f"a compared gradient entry is {smallest:.1e}: choose another GRAD_SEED"
    bad = {k: v for k, v in errors.items() if not v <= TOL_MODEL}
    assert not bad, f"relative errors above {TOL_MODEL:g}: {bad}"
    # d loss / d beta is the unweighted KL
    b = np.array([0.5])
    assert check_gradient(lambda: model.loss(x, eps, beta=b[0], backward=False)["loss"], b,
                          [r["kl"]], h=H_STEP) < TOL_MODEL


def test_bernoulli_check_catches_the_wrong_beta_and_a_one_percent_error():
    """Gradients of beta = 1 (the architecture's) fail against the loss at the model's 0.5."""
    model, x, eps, _ = make_bernoulli_vae()
    model.loss(x, eps, beta=1.0)
    wrong_beta = {k: v.copy() for k, v in model.grads.items()}
    errors, _, _ = sampled_errors(model, x, eps, wrong_beta, ("mu_dense.b", "logvar_dense.b"), n_samples=2)
    assert min(errors.values()) > 100 * TOL_MODEL, errors
    model.loss(x, eps)
    scaled = {k: 1.01 * v for k, v in model.grads.items()}
    errors, _, _ = sampled_errors(model, x, eps, scaled, ("dec11_convtranspose2d.b",), n_samples=1)
    assert errors["dec11_convtranspose2d.b"] > TOL_MODEL


# ======================================================================================
# 2. the cross-entropy at extreme logits
# ======================================================================================

def softplus(t):
    """``log(1 + e^t)`` of a Python float, without overflow."""
    return max(t, 0.0) + math.log1p(math.exp(-abs(t)))


def sigmoid(t):
    return 1 / (1 + math.exp(-t)) if t >= 0 else math.exp(t) / (1 + math.exp(t))


EXTREME = [-1e4, -80.0, -30.0, 0.0, 30.0, 80.0, 1e4]
TARGETS = [0.0, 0.3, 0.5, 1.0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_at_extreme_logits_matches_a_closed_form_pixel_by_pixel(dtype):
    """``x softplus(-l) + (1 - x) softplus(l)``, one pixel per image, Python floats; the
    gradient ``(sigmoid(l) - x) / N`` keeps its tiny entries (``sigmoid(-80) = 1.8e-35``)."""
    grid = [(l, t) for l in EXTREME for t in TARGETS]
    logits = np.array([l for l, _ in grid], dtype=dtype).reshape(-1, 1, 1, 1)    # (P, 1, 1, 1)
    x = np.array([t for _, t in grid], dtype=dtype).reshape(-1, 1, 1, 1)         # (P, 1, 1, 1)
    N = len(grid)
    with np.errstate(over="raise", under="ignore", invalid="raise", divide="raise"):
        per_image = bce_with_logits(logits, x)                                   # (P,) float64
        loss, dlogits = bce_with_logits_loss(logits, x)
    want = np.array([float(t) * softplus(-float(l)) + (1 - float(t)) * softplus(float(l))
                     for l, t in zip(logits.ravel(), x.ravel())])               # (P,)
    ulp = float(np.finfo(dtype).eps)                      # a Python float: pytest.approx refuses float32
    assert per_image.dtype == np.float64 and np.all(np.isfinite(per_image))
    np.testing.assert_allclose(per_image, want, rtol=4 * ulp, atol=0)    # 1.8e-35 (x = 1, l = 80) too
    assert loss == pytest.approx(want.sum() / N, rel=4 * ulp)
    assert dlogits.dtype == dtype and np.all(np.isfinite(dlogits))
    dwant = np.array([sigmoid(float(l)) - float(t) for l, t in zip(logits.ravel(), x.ravel())]) / N
    # relative where sigmoid(l) - x is tiny only through sigmoid (x = 0): 1.8e-35 stays 1.8e-35
    np.testing.assert_allclose(dlogits.ravel(), dwant, rtol=4 * ulp, atol=ulp / N)
    tiny = (x.ravel() == 0) & (logits.ravel() == -80)
    assert np.all(dlogits.ravel()[tiny] > 0)
    np.testing.assert_allclose(dlogits.ravel()[tiny], math.exp(-80) / N, rtol=4 * ulp)


def test_bce_gradient_check_at_80_and_0():
    """Centred differences where the cross-entropy is nearly linear (|l| = 80) and at 0."""
    rng = np.random.default_rng(3)
    logits = rng.choice([-80.0, 0.0, 80.0], size=(2, 2, 3, 1))                 # (N, H, W, C)
    # x in [0.1, 0.3] or [0.7, 0.9]: every (p - x) / N >= 0.05, and the loss (~200, its
    # rounding noise ~1e-9 in the differences) small next to it
    x = 0.5 + rng.choice([-1.0, 1.0], logits.shape) * rng.uniform(0.2, 0.4, logits.shape)
    _, dlogits = bce_with_logits_loss(logits, x)
    assert check_gradient(lambda: bce_with_logits_loss(logits, x)[0], logits, dlogits) < 1e-7


# ======================================================================================
# 3-5. runs: training, evaluation, IWAE, resume
# ======================================================================================

RUN = dict(epochs=2, batch_size=10, lr=1e-3, seed=3)
BERNOULLI = TrainConfig(likelihood="bernoulli", beta=1.0, **RUN)
GAUSSIAN = TrainConfig(**RUN)


def write_squares_mnist(root, n_train=20, n_test=10, seed=0):
    """A data dir in the official MNIST layout whose images a few steps can learn something
    about (random pixels cannot: their best cross-entropy is the untrained model's, 784 log 2):
    black, with one white 8x8 square at a random place."""
    rng = np.random.default_rng(seed)
    (root / "mnist").mkdir(parents=True)
    for (images, labels), n in ((("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"), n_train),
                                (("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"), n_test)):
        img = np.zeros((n, 28, 28), dtype=np.uint8)                     # (n, 28, 28)
        for k, (r, c) in enumerate(rng.integers(4, 16, (n, 2))):
            img[k, r:r + 8, c:c + 8] = 255
        (root / "mnist" / images).write_bytes(idx_gz(img))
        (root / "mnist" / labels).write_bytes(idx_gz(rng.integers(0, 10, n, dtype=np.uint8)))
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A finished Bernoulli and a finished Gaussian run (2 epochs of 2 steps) on synthetic MNIST."""
    tmp = tmp_path_factory.mktemp("bernoulli")
    data_dir = write_squares_mnist(tmp / "data")
    done = {name: train(cfg, out_dir=tmp / name, data_dir=data_dir, progress=False)
            for name, cfg in (("bernoulli", BERNOULLI), ("gaussian", GAUSSIAN))}
    return done, data_dir, tmp


def copy_run(tmp, name, to):
    (tmp / to).mkdir()
    shutil.copy(tmp / name / CHECKPOINT, tmp / to / CHECKPOINT)
    return tmp / to


def test_a_bernoulli_run_lowers_its_loss_and_decodes_probabilities(runs):
    done, data_dir, _ = runs
    res = done["bernoulli"]
    assert res.model.likelihood == "bernoulli" and res.model.beta == 1.0
    assert res.metrics["likelihood"] == "bernoulli" and res.metrics["beta"] == 1.0
    x_test = res.data["test"][0]
    init, _, _, eval_seed = streams(BERNOULLI.seed)          # the run's untrained model, rebuilt
    fresh = VAE("simple", (28, 28, 1), init, likelihood="bernoulli", beta=1.0)
    before = ev.mean_loss(fresh, x_test, eval_seed)["loss"]
    after = res.test_history[-1]["loss"]
    assert after < before - 20, (before, after)              # 4 steps: 548 -> 507 nats
    z = np.random.default_rng(0).standard_normal((50, 2)).astype(np.float32)      # (50, L)
    xhat = res.model.decode(z)                                                  # (50, 28, 28, 1)
    assert xhat.dtype == np.float32 and np.all((xhat > 0) & (xhat < 1))
    np.testing.assert_array_equal(xhat, L.sigmoid_forward(res.model.decode_output(z))[0])


def test_negative_elbo_terms_of_a_bernoulli_run_match_its_test_loss(runs):
    done, _, _ = runs
    res = done["bernoulli"]
    x_test, eval_seed = res.data["test"][0], streams(BERNOULLI.seed)[3]
    t = ev.negative_elbo_terms(res.model, x_test, eval_seed)
    np.testing.assert_array_equal(t["nelbo"], t["rec_nll"] + t["kl"])
    # rec_nll is the cross-entropy of the very logits the same eps decode to
    mu, logvar = res.model.encode(to_float(x_test))
    eps = np.random.default_rng(eval_seed).standard_normal(mu.shape, dtype=np.float32)       # (N, L)
    logits = res.model.decode_output(L.reparam_forward(mu, logvar, eps)[0])                # (N, 28, 28, 1)
    np.testing.assert_array_equal(t["rec_nll"], bce_with_logits(logits, to_float(x_test)))
    assert np.all(np.isnan(t["nelbo_dequantized"]))          # not a density over grey levels
    assert np.all(np.isfinite(t["sse"])) and np.all(t["rec_nll"] > 300)
    # beta = 1: the trainer's test loss is the mean -ELBO (same eval stream, same eps)
    test = res.test_history[-1]
    assert t["nelbo"].mean() == pytest.approx(test["loss"], rel=1e-6)
    assert t["rec_nll"].mean() == pytest.approx(test["rec"], rel=1e-6)
    assert t["kl"].mean() == pytest.approx(test["kl"], rel=1e-4, abs=1e-6)


def test_iwae_of_a_bernoulli_model(runs):
    """k = 1 estimates the ELBO (-mean nelbo); k = 100 is a tighter bound on every image pair."""
    done, _, _ = runs
    model, images = done["bernoulli"].model, done["bernoulli"].data["test"][0]
    nelbo = ev.negative_elbo_terms(model, images, seed=1)["nelbo"]
    m1, se1 = ev.iwae_log_px(model, images, k=1, seed=2)                  # the model's likelihood
    assert abs(m1 + nelbo.mean()) < 4 * se1 and se1 > 0
    assert ev.iwae_log_px(model, images, k=1, seed=2, likelihood="bernoulli") == (m1, se1)
    many = [ev.iwae_log_px(model, images, k=1, seed=s)[0] for s in range(3, 8)]
    m100, _ = ev.iwae_log_px(model, images, k=100, seed=8)
    assert m100 > max(many) and m100 > m1, (m100, m1, many)
    log_lik = ev.decoder_log_likelihood(model)                            # default: the model's
    z = np.zeros((len(images), 2))
    x = to_float(images, np.float32)
    np.testing.assert_allclose(log_lik(x, z), -bce_with_logits(model.decode_output(z), x))


def bad_cli(*args, out):
    env = dict(os.environ, PYTHONPATH=ROOT, TQDM_DISABLE="1")
    return subprocess.run([sys.executable, "-m", "tinyvae", "train", "--epochs", "1", "--no-progress",
                           "--out", str(out), *args], capture_output=True, text=True, timeout=60,
                          env=env, cwd=ROOT)


@pytest.mark.parametrize("args, words", [
    (("--likelihood", "poisson"), ["--likelihood", "invalid choice", "'poisson'", "bernoulli"]),
    (("--beta", "-1"), ["--beta", ">= 0", "'-1'"]),
    (("--beta", "nan"), ["--beta", "finite", "'nan'"]),
    (("--beta", "inf"), ["--beta", "finite", "'inf'"]),
    (("--beta", "x"), ["--beta", "number", "'x'"]),
], ids=["poisson", "beta-1", "beta-nan", "beta-inf", "beta-x"])
def test_bad_likelihood_or_beta_exits_2_creating_nothing(tmp_path, args, words):
    r = bad_cli(*args, out=tmp_path / "out")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert len([l for l in r.stderr.splitlines() if "error" in l]) == 1, r.stderr
    for w in words:
        assert w in r.stderr, (w, r.stderr)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("field, value", [("beta", "x"), ("beta", -0.5), ("beta", float("nan")),
                                          ("beta", True), ("likelihood", "poisson"), ("likelihood", None)])
def test_train_config_rejects_bad_beta_and_likelihood(field, value):
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**{field: value}).validate()


def test_train_config_beta_is_a_float_and_defaults_to_the_architecture():
    assert TrainConfig(beta=np.int64(2)).validate().beta == 2.0
    assert type(TrainConfig(beta=np.int64(2)).validate().beta) is float        # JSON-able
    assert TrainConfig(model="deep").validate().effective_beta() == 0.5
    assert TrainConfig(model="deep", beta=0.0).validate().effective_beta() == 0.0
    with pytest.raises(ConfigError, match="likelihood"):
        VAE("simple", (28, 28, 1), np.random.default_rng(0), likelihood="poisson")
    for bad in ("0.5", -1, float("nan"), float("inf"), True):           # the model checks its own
        with pytest.raises(ConfigError, match="beta must be a finite number >= 0"):
            VAE("simple", (28, 28, 1), np.random.default_rng(0), beta=bad)


def run_main(*args):
    """cli.main in this process: (status, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, err.getvalue()


def test_a_checkpoint_resumes_only_with_its_likelihood(runs):
    done, data_dir, tmp = runs
    for name, other in (("bernoulli", TrainConfig(likelihood="gaussian", beta=1.0, **RUN)),
                        ("gaussian", TrainConfig(likelihood="bernoulli", **RUN))):
        out = copy_run(tmp, name, f"{name}_as_other")
        before = (out / CHECKPOINT).read_bytes()
        with pytest.raises(CheckpointError, match=f"likelihood is '{name}'"):
            train(other, out_dir=out, data_dir=data_dir, resume=True, progress=False)
        assert (out / CHECKPOINT).read_bytes() == before
    out = copy_run(tmp, "bernoulli", "bernoulli_cli")
    code, err = run_main("train", "--data-dir", data_dir, "--out", out, "--resume", "--epochs", 2,
                         "--batch-size", 10, "--lr", 1e-3, "--seed", 3, "--beta", 1, "--no-progress")
    assert code == 2 and err.count("error") == 1 and "likelihood is 'bernoulli'" in err, err
    code, err = run_main("train", "--data-dir", data_dir, "--out", out, "--resume", "--epochs", 2,
                         "--batch-size", 10, "--lr", 1e-3, "--seed", 3, "--beta", 0.5,
                         "--likelihood", "bernoulli", "--no-progress")
    assert code == 2 and "beta is 1.0" in err, err


def strip_config(path, *fields):
    """Rewrite the checkpoint as one written before ``fields`` existed (checksum redone)."""
    a = ckpt.load_arrays(path)
    cfg = ckpt.read_config(a, path)
    a["meta/config"] = ckpt.json_array({k: v for k, v in cfg.items() if k not in fields})
    ckpt.save_arrays(path, {k: v for k, v in a.items() if k not in ("meta/format", "meta/checksum")})


def test_an_old_checkpoint_resumes_as_gaussian_with_the_architectures_beta(runs):
    done, data_dir, tmp = runs
    out = copy_run(tmp, "gaussian", "old")
    strip_config(out / CHECKPOINT, "beta", "likelihood")
    assert "likelihood" not in ckpt.read_config(ckpt.load_arrays(out / CHECKPOINT))
    with pytest.raises(CheckpointError, match="likelihood is 'gaussian'"):
        train(TrainConfig(likelihood="bernoulli", **RUN), out_dir=out, data_dir=data_dir, resume=True,
              progress=False)
    with pytest.raises(CheckpointError, match="beta is None"):      # even the value it trained with
        train(TrainConfig(beta=1.0, **RUN), out_dir=out, data_dir=data_dir, resume=True, progress=False)
    run = load_run(out, data_dir)                             # read back as the Gaussian model it is
    assert run.model.likelihood == "gaussian" and isinstance(run.model.decoder[-1], L.Sigmoid)
    assert run.model.beta == 1.0
    z = np.random.default_rng(1).standard_normal((5, 2))
    np.testing.assert_array_equal(run.model.decode(z), done["gaussian"].model.decode(z))
    res = train(TrainConfig(**{**RUN, "epochs": 3}), out_dir=out, data_dir=data_dir, resume=True,
                progress=False)                               # one more epoch on top of the old one
    assert res.metrics["steps"] == 6 and res.metrics["likelihood"] == "gaussian"
    assert res.metrics["beta"] == 1.0
    saved = ckpt.read_config(ckpt.load_arrays(out / CHECKPOINT))
    assert saved["likelihood"] == "gaussian" and saved["beta"] is None


def test_load_run_rebuilds_the_bernoulli_model(runs):
    done, data_dir, tmp = runs
    run = load_run(tmp / "bernoulli", data_dir)
    trained = done["bernoulli"].model
    assert run.model.likelihood == "bernoulli" and run.model.beta == 1.0
    assert not isinstance(run.model.decoder[-1], L.Sigmoid)
    z = np.random.default_rng(2).standard_normal((5, 2))
    np.testing.assert_array_equal(run.model.decode_output(z), trained.decode_output(z))
    np.testing.assert_array_equal(run.model.decode(z), trained.decode(z))
    np.testing.assert_array_equal(run.images, load_data(BERNOULLI, data_dir)["test"][0])
    metrics = json.loads((tmp / "bernoulli" / "metrics.json").read_text())
    assert metrics["config"]["likelihood"] == "bernoulli" and metrics["config"]["beta"] == 1.0


# ======================================================================================
# 6. the Gaussian default
# ======================================================================================

def test_the_gaussian_default_is_untouched():
    rng = np.random.default_rng(4)
    model = VAE("simple", (28, 28, 1), np.random.default_rng(0))
    again = VAE("simple", (28, 28, 1), np.random.default_rng(0), likelihood="gaussian", beta=None)
    assert model.likelihood == "gaussian" and model.beta == 1.0
    assert isinstance(model.decoder[-1], L.Sigmoid) and len(model.decoder) == len(again.decoder)
    for k in model.params:
        np.testing.assert_array_equal(model.params[k], again.params[k])
    x = rng.random((3, 28, 28, 1), dtype=np.float32)
    eps = rng.standard_normal((3, 2), dtype=np.float32)
    out, mu, logvar = model.forward(x, eps)
    np.testing.assert_array_equal(out, model.decode(L.reparam_forward(mu, logvar, eps)[0]))
    sse, _ = sse_loss(out, x)
    kl, _, _ = kl_loss(mu, logvar)
    for beta in (None, 0.25):
        r = model.loss(x, eps, beta=beta, backward=False)
        assert r["rec"] == sse and r["kl"] == kl
        assert r["loss"] == sse + (1.0 if beta is None else beta) * kl
    deep = VAE("deep", (28, 28, 1), np.random.default_rng(0))
    assert deep.beta == 0.5 and VAE("deep", (28, 28, 1), np.random.default_rng(0), beta=2).beta == 2.0
