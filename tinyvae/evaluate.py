"""Metrics beyond the training loss: separability, PCA baseline, active units, ELBO in nats and bits.

Everything here is plain NumPy and works on the outputs of
:func:`tinyvae.train.encode_all` (latent means ``mu`` and ``logvar``) or on
uint8 NHWC images as :func:`tinyvae.data.load` returns them.

Conventions
-----------
* **kNN** (:func:`knn_predict`): Euclidean distance, ``k`` nearest training
  points (default :data:`KNN_K` = 5), majority vote; a tie between classes
  goes to the tied class whose nearest member is closest.
* **Active units** (Burda et al., 2016): dimension ``d`` is active when
  ``Cov_x(E_q[z_d | x]) = Var_x(mu_d) > 0.01``.
* **Negative ELBO** (:func:`negative_elbo_terms`): the training loss's squared
  error is, up to constants, the negative log-likelihood of a Gaussian decoder
  ``p(x | z) = N(x; xhat(z), variance * I)`` with ``variance = 1/2``::

      -log p(x | z) = SSE / (2 * variance) + (D / 2) * log(2 * pi * variance)
                    = SSE + (D / 2) * log(pi)              (variance = 1/2)

  with ``x = pixels / 255`` and ``D = H * W * C``. The ELBO uses KL weight 1
  whatever ``beta`` the model was trained with, and one reparameterized
  sample ``z`` per image.
* **Bits per dimension** (:func:`bits_per_dim`): pixels are 8-bit integers
  ``k``; the model's density is over ``x = k / 255``. With uniform
  dequantization ``y = (k + u) / 255``, ``u ~ U[0, 1)^D``, Jensen's inequality
  gives ``-log P(k) <= E_u[-log p(y)] + D * log(255)``. For the Gaussian
  decoder ``E_u`` is exact in closed form (:func:`dequantized_sse`), so the
  bound needs no extra sampling; it is converted with
  ``bpd = (nelbo_dequantized + D * log(255)) / (D * log(2))``.
"""
from collections import namedtuple

import numpy as np

from .data import CLASS_NAMES
from .losses import kl_per_dim as _kl_per_dim
from .errors import ConfigError

KNN_K = 5
ACTIVE_THRESHOLD = 0.01
DECODER_VARIANCE = 0.5
PIXEL_SCALE = 255
VEHICLE_CLASSES = ("airplane", "automobile", "ship", "truck")

PCA = namedtuple("PCA", "mean components explained_variance total_variance")
PCA.__doc__ = """A fitted PCA.

mean : (D,); components : (D, K), orthonormal columns, largest variance first;
explained_variance : (K,) the variance along each component;
total_variance : float, the sum of the variances of all D coordinates.
"""


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def _as_2d(a, name):
    a = np.asarray(a)
    if a.ndim != 2:
        raise ConfigError(f"{name} must be a 2-D array (N, L), got shape {a.shape}")
    return a


def _flat(images):
    """(N, ...) -> (N, D) view/copy without changing dtype."""
    images = np.asarray(images)
    return images.reshape(len(images), -1)                 # (N, D)


def _check_labels(z, y, name):
    y = np.asarray(y)
    if y.shape != (len(z),):
        raise ConfigError(f"{name} must have shape ({len(z)},), got {y.shape}")
    return y


# --------------------------------------------------------------------------
# k nearest neighbours
# --------------------------------------------------------------------------

def knn_neighbors(train_z, test_z, k=KNN_K, chunk_bytes=64 << 20):
    """Indices of the ``k`` nearest training points of every test point.

    Squared Euclidean distances are computed in float64, one chunk of test
    points at a time so that a chunk's distance matrix stays under
    ``chunk_bytes``.

    Parameters
    ----------
    train_z : (N, L)
    test_z : (M, L)
    k : int, 1 <= k <= N

    Returns
    -------
    (M, k) int64 indices into ``train_z``, nearest first
    """
    train_z = _as_2d(train_z, "train_z").astype(np.float64)   # (N, L)
    test_z = _as_2d(test_z, "test_z").astype(np.float64)      # (M, L)
    n = len(train_z)
    if test_z.shape[1] != train_z.shape[1]:
        raise ConfigError(f"train_z has {train_z.shape[1]} dims but test_z has {test_z.shape[1]}")
    if not 1 <= k <= n:
        raise ConfigError(f"k must be between 1 and the {n} training points, got {k}")
    sq_train = np.einsum("nl,nl->n", train_z, train_z)       # (N,)
    rows = max(1, int(chunk_bytes // (8 * n)))
    out = np.empty((len(test_z), k), dtype=np.int64)        # (M, k)
    for i in range(0, len(test_z), rows):
        q = test_z[i:i + rows]                              # (m, L)
        # |q - t|^2 minus the constant |q|^2 of each row: same ranking
        d = sq_train[None, :] - 2.0 * (q @ train_z.T)       # (m, N)
        if k < n:
            part = np.argpartition(d, k - 1, axis=1)[:, :k]  # (m, k) unordered
        else:
            part = np.broadcast_to(np.arange(n), (len(q), n)).copy()
        order = np.argsort(np.take_along_axis(d, part, axis=1), axis=1, kind="stable")
        out[i:i + rows] = np.take_along_axis(part, order, axis=1)
    return out


def vote(neighbor_labels):
    """Majority vote of each row; ties go to the tied class with the nearest member.

    neighbor_labels : (M, k) non-negative ints, nearest first -> (M,) int64
    """
    nl = np.asarray(neighbor_labels, dtype=np.int64)        # (M, k)
    m, k = nl.shape
    n_classes = int(nl.max()) + 1 if nl.size else 1
    # one vote each plus a bonus 2^-(rank+2): all bonuses add up to < 1/2, and the
    # nearest neighbour's alone outweighs all farther ones, so among classes with
    # equal counts the one holding the nearest neighbour wins
    weights = 1.0 + 0.5 ** (np.arange(k) + 2.0)             # (k,)
    scores = np.zeros((m, n_classes))                       # (M, C)
    np.add.at(scores, (np.repeat(np.arange(m), k), nl.ravel()), np.tile(weights, m))
    return scores.argmax(axis=1)


def knn_predict(train_z, train_y, test_z, k=KNN_K, neighbors=None):
    """Predict labels of ``test_z`` by a k-nearest-neighbour majority vote.

    Parameters
    ----------
    train_z : (N, L); train_y : (N,) non-negative int labels; test_z : (M, L)
    neighbors : optional (M, k) result of :func:`knn_neighbors` to reuse

    Returns
    -------
    (M,) int64 predicted labels
    """
    train_y = _check_labels(train_z, train_y, "train_y").astype(np.int64)
    if neighbors is None:
        neighbors = knn_neighbors(train_z, test_z, k)       # (M, k)
    return vote(train_y[neighbors])


def knn_accuracy(train_z, train_y, test_z, test_y, k=KNN_K, neighbors=None):
    """Fraction of test points whose kNN vote (fitted on train) is their label.

    train_z : (N, L), train_y : (N,), test_z : (M, L), test_y : (M,) -> float in [0, 1]
    """
    test_y = _check_labels(test_z, test_y, "test_y")
    pred = knn_predict(train_z, train_y, test_z, k, neighbors)  # (M,)
    return float(np.mean(pred == test_y))


# --------------------------------------------------------------------------
# PCA of pixels (the baseline)
# --------------------------------------------------------------------------

def _top_eigh(cov, n_components, seed=0, max_iter=200, tol=1e-7):
    """Top eigenpairs of a symmetric PSD matrix, largest first.

    Exact ``eigh`` for small matrices; block subspace iteration with
    oversampling and a final Rayleigh-Ritz step for large ones (only a few
    components are ever needed here).
    """
    d = cov.shape[0]
    if d <= 512 or n_components > d // 4:
        w, v = np.linalg.eigh(cov)                          # ascending
        return w[::-1][:n_components], v[:, ::-1][:, :n_components]
    p = n_components + max(10, n_components)
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, p)))  # (D, p)
    prev = None
    for _ in range(max_iter):
        q, _ = np.linalg.qr(cov @ q)                        # (D, p)
        ritz = np.linalg.eigvalsh(q.T @ cov @ q)[::-1][:n_components]
        if prev is not None and np.all(np.abs(ritz - prev) <= tol * max(ritz[0], 1e-300)):
            break
        prev = ritz
    w, s = np.linalg.eigh(q.T @ cov @ q)                    # (p,), (p, p)
    v = q @ s[:, ::-1][:, :n_components]                    # (D, K)
    return w[::-1][:n_components], v


def pca_fit(x, n_components, chunk=2048, scale=PIXEL_SCALE, seed=0):
    """PCA of the rows of ``x`` from its covariance, accumulated in chunks.

    Parameters
    ----------
    x : (N, ...) images (uint8 are divided by ``scale``) or features; flattened per row
    n_components : K, 1 <= K <= D
    chunk : rows converted to float64 at a time (memory: chunk * D * 8 bytes)

    Returns
    -------
    PCA(mean (D,), components (D, K), explained_variance (K,), total_variance)
    """
    x = _flat(x)                                            # (N, D)
    n, d = x.shape
    if n < 2:
        raise ConfigError(f"PCA needs at least 2 rows, got {n}")
    if not 1 <= n_components <= d:
        raise ConfigError(f"n_components must be between 1 and {d}, got {n_components}")
    div = scale if x.dtype == np.uint8 else 1
    mean = np.zeros(d)                                      # (D,)
    for i in range(0, n, chunk):
        mean += np.sum(x[i:i + chunk], axis=0, dtype=np.float64) / div
    mean /= n
    cov = np.zeros((d, d))                                  # (D, D)
    for i in range(0, n, chunk):
        c = x[i:i + chunk].astype(np.float64) / div - mean  # (chunk, D)
        cov += c.T @ c
    cov /= n - 1
    w, v = _top_eigh(cov, n_components, seed)               # (K,), (D, K)
    # a deterministic sign: the largest-magnitude entry of each component is positive
    signs = np.sign(v[np.argmax(np.abs(v), axis=0), np.arange(v.shape[1])])
    v = v * np.where(signs == 0, 1.0, signs)
    return PCA(mean, v, np.maximum(w, 0.0), float(np.trace(cov)))


def pca_transform(pca, x, chunk=2048, scale=PIXEL_SCALE):
    """Project rows of ``x`` (as in :func:`pca_fit`) onto the components: (N, K) float64."""
    x = _flat(x)                                            # (N, D)
    if x.shape[1] != len(pca.mean):
        raise ConfigError(f"PCA was fitted on {len(pca.mean)} dims, got {x.shape[1]}")
    div = scale if x.dtype == np.uint8 else 1
    out = np.empty((len(x), pca.components.shape[1]))      # (N, K)
    for i in range(0, len(x), chunk):
        out[i:i + chunk] = (x[i:i + chunk].astype(np.float64) / div - pca.mean) @ pca.components
    return out


def pca_knn_baseline(train_x, train_y, test_x, test_y, n_components, k=KNN_K, pca=None):
    """kNN accuracy of a ``n_components``-dim PCA of the pixels, PCA and kNN fitted on train.

    train_x : (N, H, W, C) uint8; test_x : (M, H, W, C) uint8; labels (N,), (M,)

    Returns
    -------
    dict: ``accuracy``, ``explained_variance_ratio`` (fraction of pixel
    variance the components keep), ``train_z`` (N, K), ``test_z`` (M, K)
    """
    pca = pca if pca is not None else pca_fit(train_x, n_components)
    train_z = pca_transform(pca, train_x)[:, :n_components]   # (N, K)
    test_z = pca_transform(pca, test_x)[:, :n_components]     # (M, K)
    return {"accuracy": knn_accuracy(train_z, train_y, test_z, test_y, k),
            "explained_variance_ratio": float(np.sum(pca.explained_variance[:n_components])
                                              / pca.total_variance),
            "train_z": train_z, "test_z": test_z}


# --------------------------------------------------------------------------
# active units, KL per dimension
# --------------------------------------------------------------------------

def unit_activity(mu):
    """``Var_x(mu_d)`` of each latent dimension over the data: mu (N, L) -> (L,)."""
    mu = _as_2d(mu, "mu").astype(np.float64)                # (N, L)
    return np.var(mu, axis=0)                               # (L,)


def active_units(mu, threshold=ACTIVE_THRESHOLD):
    """Number of dims with ``Var_x(E_q[z_d]) > threshold`` (Burda et al.): mu (N, L) -> int."""
    return int(np.sum(unit_activity(mu) > threshold))


def kl_per_dim(mu, logvar):
    """KL(q(z_d | x) || N(0, 1)) of each dim averaged over the data: (N, L) twice -> (L,) nats."""
    mu = _as_2d(mu, "mu").astype(np.float64)
    logvar = _as_2d(logvar, "logvar").astype(np.float64)
    return _kl_per_dim(mu, logvar)                          # (L,)


# --------------------------------------------------------------------------
# negative ELBO in nats, bits per dimension
# --------------------------------------------------------------------------

def gaussian_nll_const(n_dims, variance=DECODER_VARIANCE):
    """The constant ``(D/2) log(2 pi variance)`` of a Gaussian NLL (``(D/2) log(pi)`` at 1/2)."""
    return 0.5 * n_dims * np.log(2.0 * np.pi * variance)


def dequantized_sse(x, xhat, scale=PIXEL_SCALE):
    """``E_u sum ((x + u / scale) - xhat)^2`` for ``u ~ U[0, 1)`` per pixel, in closed form.

    ``= sum[(x - xhat)^2 + (x - xhat) / scale + 1 / (3 scale^2)]`` per image.

    x, xhat : (N, ...) with ``x = pixels / scale`` -> (N,) float64
    """
    diff = _flat(x).astype(np.float64) - _flat(xhat)        # (N, D)
    d = diff.shape[1]
    return (np.einsum("nd,nd->n", diff, diff) + diff.sum(axis=1) / scale
            + d / (3.0 * scale * scale))


def negative_elbo_terms(model, images, seed, batch_size=100, variance=DECODER_VARIANCE,
                        scale=PIXEL_SCALE):
    """Per-image terms of the negative ELBO under the Gaussian decoder.

    One ``z = mu + exp(logvar / 2) * eps`` per image, with ``eps`` drawn from
    ``numpy.random.default_rng(seed)`` batch by batch exactly as
    :func:`tinyvae.train.evaluate` draws it, so passing the run's evaluation
    seed (``streams(cfg.seed)[3]``) gives the same samples as its test loss.

    Parameters
    ----------
    model : tinyvae.models.VAE
    images : (N, H, W, C) uint8
    seed : int or numpy.random.SeedSequence
    batch_size : images per forward pass (keep <= 200 for memory)
    variance : the decoder's fixed variance (1/2 is what squared error implies)

    Returns
    -------
    dict of (N,) float64 arrays: ``sse`` (the training loss's rec term),
    ``sse_dequantized`` (:func:`dequantized_sse`), ``kl`` (weight 1),
    ``nelbo`` (nats, density of ``x = pixels / scale``) and
    ``nelbo_dequantized`` (nats, averaged over the dequantization noise);
    and the encoder's ``mu`` and ``logvar``, (N, L) each in the model's dtype
    """
    from .train import to_float
    rng = np.random.default_rng(seed)
    n = len(images)
    d = int(np.prod(model.image_shape))
    sse, sse_dq, kl = (np.empty(n) for _ in range(3))      # (N,) each
    mus = np.empty((n, model.arch.latent), dtype=model.dtype)             # (N, L)
    logvars = np.empty((n, model.arch.latent), dtype=model.dtype)         # (N, L)
    for i in range(0, n, batch_size):
        x = to_float(images[i:i + batch_size], model.dtype)            # (B, H, W, C)
        eps = rng.standard_normal((len(x), model.arch.latent), dtype=model.dtype)  # (B, L)
        mu, logvar = model.encode(x)                                    # (B, L) twice
        mus[i:i + len(x)], logvars[i:i + len(x)] = mu, logvar
        z = mu + np.exp(0.5 * logvar) * eps                             # (B, L)
        xhat = model.decode(z)                                          # (B, H, W, C)
        diff = (xhat - x).reshape(len(x), -1).astype(np.float64)        # (B, D)
        sse[i:i + len(x)] = np.einsum("nd,nd->n", diff, diff)
        sse_dq[i:i + len(x)] = dequantized_sse(x, xhat, scale)
        mu64, lv64 = mu.astype(np.float64), logvar.astype(np.float64)
        kl[i:i + len(x)] = 0.5 * np.sum(mu64 ** 2 + np.exp(lv64) - 1.0 - lv64, axis=1)
    const = gaussian_nll_const(d, variance)
    return {"sse": sse, "sse_dequantized": sse_dq, "kl": kl,
            "nelbo": sse / (2 * variance) + const + kl,
            "nelbo_dequantized": sse_dq / (2 * variance) + const + kl,
            "mu": mus, "logvar": logvars}


def negative_elbo_nats(model, images, seed, batch_size=100, variance=DECODER_VARIANCE):
    """Mean negative ELBO in nats per image (density of ``x = pixels / 255``, KL weight 1)."""
    return float(np.mean(negative_elbo_terms(model, images, seed, batch_size, variance)["nelbo"]))


def bits_per_dim(nats, n_dims, scale=PIXEL_SCALE):
    """Nats per image of a density over ``x = pixels / scale`` -> bits per 8-bit dimension.

    ``bpd = (nats + D * log(scale)) / (D * log(2))``: the change of variables
    from ``x`` to the integer pixel scale. It bounds the discrete model's code
    length when ``nats`` is the dequantized negative ELBO
    (``nelbo_dequantized`` of :func:`negative_elbo_terms`).
    """
    if n_dims < 1:
        raise ConfigError(f"n_dims must be >= 1, got {n_dims}")
    return (nats + n_dims * np.log(scale)) / (n_dims * np.log(2.0))


# --------------------------------------------------------------------------
# vehicles vs animals, linear probe, uncertainty
# --------------------------------------------------------------------------

def vehicle_labels(y, class_names=CLASS_NAMES["cifar10"]):
    """CIFAR-10 labels (N,) -> (N,) int64: 1 for a vehicle (:data:`VEHICLE_CLASSES`), 0 for an animal."""
    vehicles = [class_names.index(c) for c in VEHICLE_CLASSES]
    return np.isin(np.asarray(y), vehicles).astype(np.int64)


def logistic_fit(z, y, ridge=1e-6, max_iter=100, tol=1e-10):
    """Binary logistic regression by Newton's method (IRLS) on standardized features.

    z : (N, L); y : (N,) in {0, 1} -> dict with ``mean`` (L,), ``std`` (L,), ``w`` (L + 1,)
    """
    z = _as_2d(z, "z").astype(np.float64)                   # (N, L)
    y = _check_labels(z, y, "y").astype(np.float64)         # (N,)
    mean, std = z.mean(axis=0), z.std(axis=0)               # (L,) twice
    std = np.where(std > 0, std, 1.0)
    a = np.hstack([(z - mean) / std, np.ones((len(z), 1))])  # (N, L + 1)
    w = np.zeros(a.shape[1])                                # (L + 1,)
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-np.clip(a @ w, -30, 30)))  # (N,)
        grad = a.T @ (p - y) + ridge * len(z) * w           # (L + 1,)
        hess = (a * (p * (1 - p))[:, None]).T @ a + ridge * len(z) * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < tol:
            break
    return {"mean": mean, "std": std, "w": w}


def logistic_predict(fit, z):
    """(N, L) -> (N,) int64 in {0, 1} from a :func:`logistic_fit` result."""
    z = _as_2d(z, "z").astype(np.float64)
    return ((((z - fit["mean"]) / fit["std"]) @ fit["w"][:-1] + fit["w"][-1]) > 0).astype(np.int64)


def linear_probe_accuracy(train_z, train_y, test_z, test_y):
    """Test accuracy of a binary logistic regression fitted on train: float in [0, 1]."""
    test_y = _check_labels(test_z, test_y, "test_y")
    return float(np.mean(logistic_predict(logistic_fit(train_z, train_y), test_z) == test_y))


def vehicle_animal_separability(train_z, train_y, test_z, test_y, k=KNN_K, neighbors=None):
    """How well a latent space separates vehicles from animals (CIFAR-10 labels in, 0..9).

    Parameters
    ----------
    train_z : (N, L); train_y : (N,); test_z : (M, L); test_y : (M,)
    neighbors : optional (M, k) from :func:`knn_neighbors` to reuse

    Returns
    -------
    dict: ``knn_accuracy`` (k-NN on the binary label), ``linear_accuracy``
    (logistic regression), ``majority_rate`` (test accuracy of always
    predicting train's majority class), ``vehicle_fraction`` (of the test set),
    ``se`` (binomial standard error of an accuracy at ``majority_rate`` over M)
    """
    tb, sb = vehicle_labels(train_y), vehicle_labels(test_y)  # (N,), (M,)
    majority = int(tb.mean() > 0.5)
    maj_rate = float(np.mean(sb == majority))
    return {"knn_accuracy": knn_accuracy(train_z, tb, test_z, sb, k, neighbors),
            "linear_accuracy": linear_probe_accuracy(train_z, tb, test_z, sb),
            "majority_rate": maj_rate,
            "vehicle_fraction": float(sb.mean()),
            "se": binomial_se(maj_rate, len(sb))}


def binomial_se(p, n):
    """Standard error ``sqrt(p (1 - p) / n)`` of an accuracy ``p`` measured on ``n`` items."""
    return float(np.sqrt(max(p * (1.0 - p), 0.0) / max(n, 1)))


def paired_difference(a, b):
    """Mean of ``a - b`` over paired per-item values and its standard error.

    a, b : (M,) per-item numbers on the same items (e.g. 0/1 correctness, or
    per-image reconstruction error) -> (mean difference, standard error)
    """
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)  # (M,)
    if diff.ndim != 1 or len(diff) < 2:
        raise ConfigError(f"need two 1-D arrays of the same length >= 2, got shape {diff.shape}")
    return float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(len(diff)))


# --------------------------------------------------------------------------
# importance-weighted estimate of log p(x) (the IWAE bound)
# --------------------------------------------------------------------------

LIKELIHOODS = ("gaussian", "bernoulli")


def log_mean_exp(a, axis=0):
    """``log(mean(exp(a), axis))`` in float64 without overflow (shift by the max)."""
    a = np.asarray(a, dtype=np.float64)
    m = np.max(a, axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.mean(np.exp(a - m), axis=axis))


def importance_weighted_log_px(encode, log_likelihood, x, k, rng):
    """Per-example importance-weighted lower bound on ``log p(x)`` (Burda et al., 2016).

    ``log (1/k) sum_j p(x | z_j) p(z_j) / q(z_j | x)`` with ``z_j ~ q(z | x) =
    N(mu, exp(logvar))`` and ``p(z) = N(0, I)``, in float64. Its expectation
    rises with ``k`` towards ``log p(x)``; ``k = 1`` is the one-sample ELBO
    (with the KL sampled instead of in closed form).

    Parameters
    ----------
    encode : callable, x -> (mu, logvar), each (N, L)
    log_likelihood : callable, (x, z) -> (N,) ``log p(x | z)`` in nats, z (N, L) float64
    x : (N, ...) whatever the two callables take
    k : int >= 1, samples per example
    rng : numpy Generator for the samples

    Returns
    -------
    (N,) float64, nats
    """
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ConfigError(f"k must be an integer >= 1, got {k!r}")
    mu, logvar = (np.asarray(a, dtype=np.float64) for a in encode(x))   # (N, L) twice
    std = np.exp(0.5 * logvar)                              # (N, L)
    log_w = np.empty((k, len(mu)))                          # (k, N)
    for j in range(k):
        eps = rng.standard_normal(mu.shape)                 # (N, L)
        z = mu + std * eps                                  # (N, L)
        log_q = -0.5 * np.sum(eps * eps + np.log(2 * np.pi) + logvar, axis=1)   # (N,)
        log_prior = -0.5 * np.sum(z * z + np.log(2 * np.pi), axis=1)            # (N,)
        log_w[j] = log_likelihood(x, z) + log_prior - log_q
    return log_mean_exp(log_w, axis=0)                      # (N,)


def decoder_log_likelihood(model, likelihood="gaussian", variance=DECODER_VARIANCE):
    """``log p(x | z)`` of a VAE's decoder as a function ``(x, z) -> (N,)`` nats.

    ``"gaussian"``: ``N(x; decode(z), variance I)``, the density the squared
    error implies (as :func:`negative_elbo_terms`). ``"bernoulli"``: pixels
    are Bernoulli with logits the decoder's output before its final Sigmoid
    layer (:func:`tinyvae.losses.bce_with_logits`). ``x`` : (N, H, W, C) floats in [0, 1].
    """
    from .layers import Sigmoid
    from .losses import bce_with_logits
    if likelihood not in LIKELIHOODS:
        raise ConfigError(f"likelihood must be one of {', '.join(LIKELIHOODS)}, got {likelihood!r}")
    if not isinstance(model.decoder[-1], Sigmoid):
        raise ConfigError("the decoder must end in a Sigmoid layer")
    d = int(np.prod(model.image_shape))

    def gaussian(x, z):
        diff = (model.decode(z) - x).reshape(len(x), -1).astype(np.float64)   # (N, D)
        return -np.einsum("nd,nd->n", diff, diff) / (2 * variance) - gaussian_nll_const(d, variance)

    def bernoulli(x, z):
        h = z.astype(model.dtype)                           # (N, L)
        for layer in model.decoder[:-1]:
            h = layer.forward(h)                            # -> logits (N, H, W, C)
        return -bce_with_logits(h, x)

    return gaussian if likelihood == "gaussian" else bernoulli


def iwae_log_px(model, images, k, seed, likelihood="gaussian", batch_size=100,
                variance=DECODER_VARIANCE):
    """Mean importance-weighted estimate of ``log p(x)`` per image, and its standard error.

    Parameters
    ----------
    model : tinyvae.models.VAE
    images : (N, H, W, C) uint8; the density is over ``x = pixels / 255``
        (like ``nelbo`` of :func:`negative_elbo_terms`, not dequantized)
    k : samples from ``q(z | x)`` per image (1: the ELBO; ~100: a much tighter bound)
    seed : int or numpy.random.SeedSequence for the samples
    likelihood : "gaussian" (fixed ``variance``) or "bernoulli" (see :func:`decoder_log_likelihood`)
    batch_size : images per pass

    Returns
    -------
    (mean, standard error of the mean over images), nats
    """
    from .train import to_float
    log_lik = decoder_log_likelihood(model, likelihood, variance)
    rng = np.random.default_rng(seed)
    per_image = np.concatenate([
        importance_weighted_log_px(model.encode, log_lik, to_float(images[i:i + batch_size], model.dtype),
                                   k, rng)
        for i in range(0, len(images), batch_size)])        # (N,)
    se = per_image.std(ddof=1) / np.sqrt(len(per_image)) if len(per_image) > 1 else float("nan")
    return float(per_image.mean()), float(se)
