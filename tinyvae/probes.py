"""Numbers on latent codes and pixels that need no model: kNN, PCA, a linear probe.

Everything here is plain NumPy and works on the outputs of
:func:`tinyvae.evaluate.encode_all` (latent means ``mu``) or on uint8 NHWC
images as :func:`tinyvae.data.load` returns them.

* **kNN** (:func:`knn_predict`): Euclidean distance, ``k`` nearest training
  points (default :data:`KNN_K` = 5), majority vote; a tie between classes
  goes to the tied class whose nearest member is closest.
* **PCA** (:func:`pca_fit`): the baseline a learned latent space is compared
  with, fitted on pixels / 255.
* **Vehicles vs animals** (:func:`vehicle_animal_separability`): CIFAR-10's
  binary split, by kNN and by logistic regression.
"""
from collections import namedtuple

import numpy as np

from .data import CLASS_NAMES, PIXEL_SCALE
from .errors import ConfigError

KNN_K = 5
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


def pca_reconstruction_sse(pca, x, n_components, chunk=2048, scale=PIXEL_SCALE):
    """Per-image squared error of the rank-``n_components`` PCA reconstruction of ``x``.

    ``x`` is projected on the first components and mapped back,
    ``mean + (x - mean) V V^T``; the error is summed over pixels on the
    ``pixels / scale`` range, as a VAE's reconstruction error.

    x : (N, ...) as in :func:`pca_fit` -> (N,) float64
    """
    x = _flat(x)                                            # (N, D)
    v = pca.components[:, :n_components]                    # (D, K)
    div = scale if x.dtype == np.uint8 else 1
    out = np.empty(len(x))                                  # (N,)
    for i in range(0, len(x), chunk):
        c = x[i:i + chunk].astype(np.float64) / div - pca.mean   # (n, D)
        r = c - (c @ v) @ v.T                               # (n, D)
        out[i:i + chunk] = np.einsum("nd,nd->n", r, r)
    return out


def mean_image_sse(train_x, test_x, scale=PIXEL_SCALE):
    """Per-image squared error of predicting every test image by the mean training image: (M,)."""
    mean = np.mean(_flat(train_x), axis=0, dtype=np.float64) / scale   # (D,)
    diff = _flat(test_x).astype(np.float64) / scale - mean            # (M, D)
    return np.einsum("nd,nd->n", diff, diff)


def per_class_recall(pred, y, n_classes=10):
    """Fraction of each class's items predicted as that class: (n_classes,) (NaN for an absent class)."""
    pred, y = np.asarray(pred), np.asarray(y)
    return np.array([np.mean(pred[y == c] == c) if np.any(y == c) else np.nan for c in range(n_classes)])


def top_confusions(pred, y, n=3):
    """The ``n`` most frequent mistakes as ``[(true class, predicted class, count), ...]``."""
    pairs = np.asarray(y, dtype=np.int64) * 1000 + np.asarray(pred, dtype=np.int64)
    wrong = pairs[np.asarray(pred) != np.asarray(y)]
    vals, counts = np.unique(wrong, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:n]
    return [(int(vals[i] // 1000), int(vals[i] % 1000), int(counts[i])) for i in order]


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


def group_separability(train_z, train_y, test_z, test_y, group_a, group_b, k=KNN_K):
    """kNN separability of two groups of classes, on the items of those classes only.

    group_a, group_b : class indices (e.g. automobile and truck vs deer and dog);
    the label is 1 for ``group_a``. Returns dict: ``knn_accuracy``,
    ``majority_rate`` (always predicting train's majority group), ``n_test``,
    ``se`` (binomial, at the majority rate)
    """
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    both = list(group_a) + list(group_b)
    tr, te = np.isin(train_y, both), np.isin(test_y, both)     # (N,), (M,) masks
    tb = np.isin(train_y[tr], group_a).astype(np.int64)
    sb = np.isin(test_y[te], group_a).astype(np.int64)
    if len(tb) < k or len(sb) == 0:
        raise ConfigError(f"too few images of classes {both}: {len(tb)} train, {len(sb)} test (k={k})")
    maj = float(np.mean(sb == int(tb.mean() > 0.5)))
    return {"knn_accuracy": knn_accuracy(np.asarray(train_z)[tr], tb, np.asarray(test_z)[te], sb, k),
            "majority_rate": maj, "n_test": int(len(sb)), "se": binomial_se(maj, len(sb))}


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
