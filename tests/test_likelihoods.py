"""The Bernoulli decoder's loss and the importance-weighted estimate of log p(x).

The BCE is checked the CS231n way (float64, centred differences, rel_error)
and at extreme logits; the IWAE estimator on a linear-Gaussian model, where
log p(x) is known in closed form: p(z) = N(0, I), p(x|z) = N(Wz + b, s^2 I)
gives p(x) = N(b, W W^T + s^2 I).
"""
import numpy as np
import pytest

from tinyvae import evaluate as ev
from tinyvae.errors import ConfigError
from tinyvae.gradcheck import check_gradient, rel_error
from tinyvae.losses import bce_with_logits, bce_with_logits_loss
from tinyvae.models import VAE

# ---- binary cross-entropy with logits ---------------------------------------


def test_bce_matches_the_textbook_formula_and_its_gradient_checks():
    rng = np.random.default_rng(0)
    logits = 3 * rng.standard_normal((3, 4, 4, 2))                  # (N, H, W, C) float64
    x = rng.random(logits.shape)                                    # grey levels in [0, 1)
    loss, dlogits = bce_with_logits_loss(logits, x)
    p = 1 / (1 + np.exp(-logits))
    textbook = -np.sum(x * np.log(p) + (1 - x) * np.log(1 - p)) / len(x)
    assert abs(loss - textbook) < 1e-12 * abs(textbook)
    assert rel_error(bce_with_logits(logits, x), -np.sum((x * np.log(p) + (1 - x) * np.log(1 - p))
                                                         .reshape(3, -1), axis=1)) < 1e-12
    assert dlogits.shape == logits.shape and dlogits.dtype == np.float64


@pytest.mark.parametrize("targets", ["binary", "grey"])
def test_bce_gradient_check(targets):
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((2, 3, 3, 2))                      # (N, H, W, C) float64
    p = 1 / (1 + np.exp(-logits))
    # entries of d loss / d logits = (p - x) / N kept >= 0.05 / N: rel_error is entrywise
    x = (rng.random(logits.shape) < 0.5).astype(float) if targets == "binary" else \
        np.clip(p + rng.choice([-1, 1], logits.shape) * rng.uniform(0.05, 0.3, logits.shape), 0, 1)
    loss, dlogits = bce_with_logits_loss(logits, x)
    assert check_gradient(lambda: bce_with_logits_loss(logits, x)[0], logits, dlogits) < 1e-7


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_is_exact_and_finite_at_extreme_logits(dtype):
    logits = np.array([-1e4, -100.0, 0.0, 100.0, 1e4], dtype=dtype).reshape(1, 5, 1, 1)
    ones, zeros = np.ones_like(logits), np.zeros_like(logits)
    with np.errstate(over="raise", invalid="raise", divide="raise"):   # no overflow, no 0 * inf
        l1, d1 = bce_with_logits_loss(logits, ones)
        l0, d0 = bce_with_logits_loss(logits, zeros)
    # -log sigmoid(l) = softplus(-l): 1e4 + 100 + log 2 + ~e^-100 + ~0 for x = 1
    assert l1 == pytest.approx(1e4 + 100 + np.log(2) + np.log1p(np.exp(-100.0)), rel=1e-6)
    assert l0 == pytest.approx(1e4 + 100 + np.log(2) + np.log1p(np.exp(-100.0)), rel=1e-6)
    assert d1.dtype == dtype and np.all(np.isfinite(d1)) and np.all(np.isfinite(d0))
    assert np.allclose(d1.ravel(), [-1, -1, -0.5, 0, 0], atol=1e-6)
    assert np.allclose(d0.ravel(), [0, 0, 0.5, 1, 1], atol=1e-6)


def test_bce_gradient_check_at_large_logits():
    rng = np.random.default_rng(1)
    logits = rng.choice([-1.0, 1.0], size=(2, 3, 3, 1)) * rng.uniform(20, 40, (2, 3, 3, 1))
    x = rng.random(logits.shape)
    loss, dlogits = bce_with_logits_loss(logits, x)
    assert check_gradient(lambda: bce_with_logits_loss(logits, x)[0], logits, dlogits) < 1e-7


# ---- the importance-weighted estimator --------------------------------------


def linear_gaussian(rng, D=6, L=2, s=0.5):
    """W with orthogonal columns (so the exact posterior is diagonal), b, s."""
    q, _ = np.linalg.qr(rng.standard_normal((D, L)))               # (D, L) orthonormal columns
    W = q * np.array([2.0, 0.7])                                    # (D, L), W^T W = diag(4, 0.49)
    return W, rng.standard_normal(D), s


def exact_log_px(x, W, b, s):
    """log N(x; b, W W^T + s^2 I) of each row: (N,)."""
    cov = W @ W.T + s * s * np.eye(len(b))
    sign, logdet = np.linalg.slogdet(cov)
    r = x - b                                                       # (N, D)
    return -0.5 * (np.einsum("nd,nd->n", r, np.linalg.solve(cov, r.T).T) + logdet
                   + len(b) * np.log(2 * np.pi))


def log_lik(W, b, s):
    def f(x, z):
        r = x - z @ W.T - b                                         # (N, D)
        return -0.5 * np.sum(r * r, axis=1) / s ** 2 - 0.5 * len(b) * np.log(2 * np.pi * s * s)
    return f


def test_iwae_with_the_exact_posterior_is_exact_for_every_k():
    rng = np.random.default_rng(0)
    W, b, s = linear_gaussian(rng)
    x = rng.standard_normal((50, 6)) * 2                            # (N, D)
    prec = np.diag(1 + W.T @ W / s ** 2)                            # the posterior's precision (diagonal)

    def exact_posterior(x):
        m = ((x - b) @ W / s ** 2) / prec                           # (N, L)
        return m, np.broadcast_to(-np.log(prec), m.shape)

    want = exact_log_px(x, W, b, s)
    for k in (1, 5):
        got = ev.importance_weighted_log_px(exact_posterior, log_lik(W, b, s), x, k, rng)
        assert np.max(np.abs(got - want)) < 1e-9, k                # every weight is p(x) itself


def test_iwae_rises_from_the_elbo_to_log_px_with_a_poor_posterior():
    rng = np.random.default_rng(1)
    W, b, s = linear_gaussian(rng)
    x = rng.standard_normal((400, 6)) * 2 + b
    want = exact_log_px(x, W, b, s).mean()

    def prior_as_posterior(x):                                      # q(z|x) = p(z): a poor encoder
        return np.zeros((len(x), 2)), np.zeros((len(x), 2))

    # closed-form ELBO for q = N(0, I): E_q log p(x|z) - KL(q || p), KL = 0
    r = x - b
    elbo = np.mean(-0.5 * (np.sum(r * r, 1) + np.trace(W.T @ W)) / s ** 2
                   - 3 * np.log(2 * np.pi * s * s))
    est = {k: ev.importance_weighted_log_px(prior_as_posterior, log_lik(W, b, s), x, k,
                                            np.random.default_rng(k)) for k in (1, 10, 1000)}
    se1 = est[1].std(ddof=1) / np.sqrt(len(x))
    assert abs(est[1].mean() - elbo) < 4 * se1                      # k = 1 estimates the ELBO
    assert elbo < est[10].mean() < est[1000].mean() < want          # a lower bound, tighter with k
    assert want - est[1000].mean() < 0.2 * (want - elbo)


def test_log_mean_exp_does_not_overflow():
    a = np.array([[1000.0, 1000.0], [-1000.0, 0.0]])
    assert np.allclose(ev.log_mean_exp(a, axis=1), [1000.0, np.log(0.5)])
    assert np.allclose(ev.log_mean_exp(a, axis=0), [1000 + np.log(0.5)] * 2)


def test_iwae_log_px_on_a_vae_k1_is_the_elbo_and_k_tightens_it():
    rng = np.random.default_rng(0)
    model = VAE("simple", (28, 28, 1), rng, dtype=np.float64)
    images = rng.integers(0, 256, (40, 28, 28, 1), dtype=np.uint8)
    nelbo = ev.negative_elbo_terms(model, images, seed=3)["nelbo"]
    m1, se1 = ev.iwae_log_px(model, images, k=1, seed=4)
    m20, _ = ev.iwae_log_px(model, images, k=20, seed=5)
    assert abs(m1 + nelbo.mean()) < 4 * se1 + 1e-6 and se1 > 0
    assert m20 >= m1 - 4 * se1
    mb, seb = ev.iwae_log_px(model, images, k=2, seed=6, likelihood="bernoulli")
    assert np.isfinite(mb) and np.isfinite(seb) and mb < 0
    with pytest.raises(ConfigError, match="likelihood"):
        ev.iwae_log_px(model, images, k=2, seed=6, likelihood="poisson")
    with pytest.raises(ConfigError, match="k must"):
        ev.iwae_log_px(model, images, k=0, seed=6)
