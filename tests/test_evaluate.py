"""tinyvae.evaluate on synthetic data whose answers are known."""
import math

import numpy as np
import pytest

from tinyvae import evaluate as ev
from tinyvae import probes as pr
from tinyvae.errors import ConfigError
from tinyvae.losses import kl_loss


def clusters(n, centers, spread, rng):
    """n points around the rows of ``centers`` (C, L): (n, L) points and (n,) labels."""
    y = rng.integers(0, len(centers), n)
    return centers[y] + spread * rng.standard_normal((n, centers.shape[1])), y


# ---- kNN -------------------------------------------------------------------

def test_knn_separable_clusters_are_classified_perfectly():
    rng = np.random.default_rng(0)
    centers = np.stack([10.0 * np.arange(10), 5.0 * (np.arange(10) % 2)], 1)   # 10 centres in 2-D
    z, y = clusters(2000, centers, 0.3, rng)
    zt, yt = clusters(500, centers, 0.3, rng)
    assert pr.knn_accuracy(z, y, zt, yt, k=5) == 1.0


def test_knn_on_random_labels_is_near_chance():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((3000, 2))
    y = rng.integers(0, 10, 3000)
    zt = rng.standard_normal((1000, 2))
    yt = rng.integers(0, 10, 1000)
    assert abs(pr.knn_accuracy(z, y, zt, yt, k=5) - 0.1) < 0.04


@pytest.mark.parametrize("chunk_bytes", [64 << 20, 8 * 97 * 3])   # one chunk, and chunks of 3 rows
def test_knn_neighbors_match_brute_force(chunk_bytes):
    rng = np.random.default_rng(2)
    z = rng.standard_normal((97, 3))
    zt = rng.standard_normal((20, 3))
    got = pr.knn_neighbors(z, zt, k=4, chunk_bytes=chunk_bytes)        # (20, 4)
    d = ((zt[:, None, :] - z[None, :, :]) ** 2).sum(-1)               # (20, 97)
    want = np.argsort(d, axis=1)[:, :4]
    np.testing.assert_array_equal(got, want)


def test_knn_k_equal_to_train_size_and_bad_k():
    z = np.array([[0.0], [1.0], [5.0]])
    np.testing.assert_array_equal(pr.knn_neighbors(z, np.array([[4.0]]), k=3), [[2, 1, 0]])
    with pytest.raises(ConfigError, match="k must be"):
        pr.knn_neighbors(z, np.array([[4.0]]), k=4)
    with pytest.raises(ConfigError, match="dims"):
        pr.knn_neighbors(z, np.zeros((2, 2)), k=1)


def test_vote_majority_then_nearest_breaks_ties():
    got = pr.vote(np.array([[0, 1, 1, 0],      # 2-2 tie: class 0 holds the nearest
                            [2, 2, 3, 3],      # 2-2 tie: class 2 holds the nearest
                            [3, 2, 2, 3],      # 2-2 tie: class 3 holds the nearest
                            [1, 0, 0, 2],      # majority 0 beats the nearest (1)
                            [4, 4, 4, 4]]))
    np.testing.assert_array_equal(got, [0, 2, 3, 0, 4])


def test_knn_accuracy_counts_the_vote():
    z = np.array([[0.0], [0.1], [0.2], [10.0], [10.1]])
    y = np.array([0, 0, 0, 1, 1])
    # the point at 9 has neighbours 10, 10.1 (class 1) and 0.2 (class 0): majority 1
    assert pr.knn_accuracy(z, y, np.array([[9.0], [1.0]]), np.array([1, 1]), k=3) == 0.5


# ---- PCA -------------------------------------------------------------------

@pytest.mark.parametrize("d", [40, 600])                 # exact eigh, and subspace iteration (D > 512)
def test_pca_recovers_a_planted_subspace(d):
    rng = np.random.default_rng(3)
    basis, _ = np.linalg.qr(rng.standard_normal((d, 3)))             # (D, 3) orthonormal
    scales = np.array([5.0, 3.0, 2.0])
    coords = rng.standard_normal((4000, 3)) * scales                  # (N, 3)
    x = 7.0 + coords @ basis.T + 0.01 * rng.standard_normal((4000, d))
    p = pr.pca_fit(x, 3, chunk=512)
    proj = p.components @ p.components.T                               # (D, D)
    np.testing.assert_allclose(proj, basis @ basis.T, atol=1e-3)
    np.testing.assert_allclose(p.explained_variance, scales ** 2, rtol=0.08)
    np.testing.assert_allclose(p.components.T @ p.components, np.eye(3), atol=1e-10)
    np.testing.assert_allclose(p.mean, 7.0, atol=0.3)
    assert p.explained_variance[0] >= p.explained_variance[1] >= p.explained_variance[2]
    assert np.sum(p.explained_variance) / p.total_variance > 0.99


def test_pca_of_uint8_images_scales_pixels_by_255():
    rng = np.random.default_rng(4)
    imgs = rng.integers(0, 256, (300, 4, 4, 3), dtype=np.uint8)
    a = pr.pca_fit(imgs, 2)
    b = pr.pca_fit(imgs.reshape(300, -1).astype(np.float64) / 255, 2)
    np.testing.assert_allclose(a.mean, b.mean, atol=1e-12)
    np.testing.assert_allclose(a.components, b.components, atol=1e-9)
    za = pr.pca_transform(a, imgs)                                     # (300, 2)
    assert za.shape == (300, 2)
    np.testing.assert_allclose(za.mean(axis=0), 0.0, atol=1e-9)        # centred on train's mean
    np.testing.assert_allclose(za.var(axis=0, ddof=1), a.explained_variance, rtol=1e-9)


def test_pca_knn_baseline_finds_class_along_the_main_direction():
    rng = np.random.default_rng(5)
    n = 600
    y = rng.integers(0, 3, n)
    base = rng.integers(100, 140, (n, 8, 8, 1)).astype(np.int64)
    base[:, :4] += 60 * y[:, None, None, None]                         # class shifts the top half
    imgs = np.clip(base, 0, 255).astype(np.uint8)
    r = pr.pca_knn_baseline(imgs[:400], y[:400], imgs[400:], y[400:], n_components=1)
    assert r["accuracy"] == 1.0
    assert 0 < r["explained_variance_ratio"] <= 1
    assert r["train_z"].shape == (400, 1) and r["test_z"].shape == (200, 1)


# ---- active units, KL ------------------------------------------------------

def test_active_units_counts_dims_whose_mean_varies():
    rng = np.random.default_rng(6)
    std = np.array([1.0, np.sqrt(0.02), np.sqrt(0.005), 0.0])
    mu = 3.0 + rng.standard_normal((20000, 4)) * std                   # Var(mu) = 1, .02, .005, 0
    np.testing.assert_allclose(ev.unit_activity(mu), std ** 2, rtol=0.05, atol=1e-12)
    assert ev.active_units(mu) == 2
    assert ev.active_units(mu, threshold=0.001) == 3
    assert ev.active_units(mu, threshold=2.0) == 0


def test_kl_per_dim_hand_values_and_sum():
    mu = np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 2.0]])
    logvar = np.array([[0.0, 0.0, np.log(2.0)], [0.0, 0.0, np.log(2.0)]])
    # KL per dim = 0.5 (mu^2 + var - 1 - log var): dim 0: 0; dim 1: 0.5; dim 2: the mean of
    # 0.5 (0 + 2 - 1 - log 2) and 0.5 (4 + 2 - 1 - log 2) = 0.5 (3 - log 2) = 1.15343
    want = [0.0, 0.5, 1.5 - 0.5 * math.log(2)]
    got = ev.kl_per_dim(mu, logvar)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(got.sum(), kl_loss(mu, logvar)[0], rtol=1e-12)


# ---- nats, bits ------------------------------------------------------------

def test_gaussian_constant_at_variance_one_half_is_d_half_log_pi():
    assert ev.gaussian_nll_const(784) == pytest.approx(392 * math.log(math.pi))
    # the full NLL at variance 1/2 is SSE + (D/2) log(pi), checked against the normal log-density
    rng = np.random.default_rng(7)
    x, xhat = rng.random(10), rng.random(10)
    logpdf = -0.5 * np.log(2 * np.pi * 0.5) - (x - xhat) ** 2 / (2 * 0.5)
    sse = np.sum((x - xhat) ** 2)
    assert -logpdf.sum() == pytest.approx(sse + ev.gaussian_nll_const(10))


def test_bits_per_dim_hand_computed():
    # (10 + 2 ln 255) / (2 ln 2) = (10 + 11.0825) / 1.386294 = 15.2078
    assert ev.bits_per_dim(10.0, 2) == pytest.approx(15.2078, abs=1e-4)
    # a density of exactly 1 on [0, 1]^D (0 nats) costs log2(255) bits at 1/255 scaling
    assert ev.bits_per_dim(0.0, 5) == pytest.approx(math.log2(255))
    assert ev.bits_per_dim(0.0, 5, scale=256) == pytest.approx(8.0)
    with pytest.raises(ConfigError):
        ev.bits_per_dim(1.0, 0)


def test_dequantized_sse_matches_monte_carlo():
    rng = np.random.default_rng(8)
    k = rng.integers(0, 256, (2, 6))
    x = k / 255.0
    xhat = rng.random((2, 6))
    u = rng.random((200000, 1, 6))
    mc = (((x + u / 255.0) - xhat) ** 2).sum(-1).mean(0)               # (2,)
    np.testing.assert_allclose(ev.dequantized_sse(x, xhat), mc, rtol=1e-4)


class StubModel:
    """encode -> mu = 0, logvar = 0 (KL 0); decode -> every pixel 0.5."""

    class arch:
        latent = 2

    image_shape = (2, 2, 1)
    dtype = np.dtype(np.float64)
    likelihood = "gaussian"

    def encode(self, x):
        return np.zeros((len(x), 2)), np.zeros((len(x), 2))

    def decode_output(self, z):
        return np.full((len(z), 2, 2, 1), 0.5)

    decode = decode_output


def test_negative_elbo_on_a_hand_computed_example():
    img = np.array([0, 255, 51, 204], dtype=np.uint8).reshape(1, 2, 2, 1)   # x = 0, 1, .2, .8
    t = ev.negative_elbo_terms(StubModel(), img, seed=0)
    assert t["sse"][0] == pytest.approx(0.68)                 # .25 + .25 + .09 + .09
    assert t["kl"][0] == 0.0
    assert t["nelbo"][0] == pytest.approx(0.68 + 2 * math.log(math.pi))   # 2.96946
    assert t["nelbo"][0] == pytest.approx(2.96946, abs=1e-5)
    # dequantized: + sum (x - xhat) / 255 + D / (3 * 255^2); sum (x - xhat) = 0 here
    assert t["nelbo_dequantized"][0] == pytest.approx(2.96946 + 4 / (3 * 255 ** 2), abs=1e-5)
    assert ev.negative_elbo_nats(StubModel(), img, 0) == pytest.approx(t["nelbo"][0])
    assert t["mu"].shape == (1, 2)


def test_negative_elbo_of_a_real_model_matches_the_training_evaluation():
    from tinyvae.models import VAE
    from tinyvae.config import streams
    rng = np.random.default_rng(9)
    model = VAE("simple", (28, 28, 1), np.random.default_rng(0))
    imgs = rng.integers(0, 256, (130, 28, 28, 1), dtype=np.uint8)
    seed = streams(0)[3]
    t = ev.negative_elbo_terms(model, imgs, seed)
    want = ev.mean_loss(model, imgs, seed, beta=1.0)
    assert t["sse"].mean() == pytest.approx(want["rec"], rel=1e-5)
    assert t["kl"].mean() == pytest.approx(want["kl"], rel=1e-4, abs=1e-6)
    np.testing.assert_allclose(t["nelbo"], t["sse"] + 392 * math.log(math.pi) + t["kl"])
    again = ev.negative_elbo_terms(model, imgs, seed, batch_size=100)
    np.testing.assert_array_equal(t["nelbo"], again["nelbo"])       # same seed, same numbers
    other = ev.negative_elbo_terms(model, imgs, streams(1)[3])
    assert not np.array_equal(t["sse"], other["sse"])


# ---- vehicles vs animals, probes, uncertainty ------------------------------

def test_vehicle_labels():
    np.testing.assert_array_equal(pr.vehicle_labels(np.arange(10)), [1, 1, 0, 0, 0, 0, 0, 0, 1, 1])


def test_vehicle_animal_separability_on_a_separating_latent():
    rng = np.random.default_rng(10)
    y = rng.integers(0, 10, 3000)
    veh = pr.vehicle_labels(y)
    z = np.stack([np.where(veh == 1, 3.0, -3.0), np.zeros(3000)], 1) + 0.5 * rng.standard_normal((3000, 2))
    r = pr.vehicle_animal_separability(z[:2000], y[:2000], z[2000:], y[2000:])
    assert r["knn_accuracy"] == 1.0 and r["linear_accuracy"] == 1.0
    assert r["majority_rate"] == pytest.approx(1 - veh[2000:].mean())
    assert r["vehicle_fraction"] == pytest.approx(veh[2000:].mean())
    # a latent that ignores the group: no better than the majority rate
    noise = rng.standard_normal((3000, 2))
    r = pr.vehicle_animal_separability(noise[:2000], y[:2000], noise[2000:], y[2000:])
    assert r["linear_accuracy"] <= r["majority_rate"] + 3 * r["se"]
    assert r["knn_accuracy"] <= r["majority_rate"] + 3 * r["se"]


def test_linear_probe_on_a_tilted_boundary():
    rng = np.random.default_rng(11)
    z = rng.standard_normal((2000, 3)) * [1.0, 100.0, 0.01]
    y = (z[:, 0] + z[:, 1] / 100.0 > 0.3).astype(int)
    acc = pr.linear_probe_accuracy(z[:1500], y[:1500], z[1500:], y[1500:])
    assert acc > 0.98


def test_paired_difference_and_binomial_se():
    d, se = pr.paired_difference([3.0, 5.0, 7.0], [1.0, 1.0, 1.0])     # diffs 2, 4, 6
    assert d == pytest.approx(4.0)
    assert se == pytest.approx(2.0 / math.sqrt(3))                   # std (ddof 1) 2
    assert pr.binomial_se(0.6, 2400) == pytest.approx(0.01)
    with pytest.raises(ConfigError):
        pr.paired_difference([1.0], [0.0])
