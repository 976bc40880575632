"""A trained model on test images: its loss, its codes, its ELBO in nats and bits.

Images are uint8 NHWC as :func:`tinyvae.data.load` returns them. Numbers
that need only the codes or the pixels (kNN, PCA, probes) are in
:mod:`tinyvae.probes`.

Conventions
-----------
* **Active units** (Burda et al., 2016): dimension ``d`` is active when
  ``Cov_x(E_q[z_d | x]) = Var_x(mu_d) > 0.01``.
* **Negative ELBO** (:func:`negative_elbo_terms`): the training loss's squared
  error is, up to constants, the negative log-likelihood of a Gaussian decoder
  ``p(x | z) = N(x; xhat(z), variance * I)`` with ``variance = 1/2``::

      -log p(x | z) = SSE / (2 * variance) + (D / 2) * log(2 * pi * variance)
                    = SSE + (D / 2) * log(pi)              (variance = 1/2)

  with ``x = pixels / 255`` and ``D = H * W * C``. The ELBO uses KL weight 1
  whatever ``beta`` the model was trained with, and one reparameterized
  sample ``z`` per image. A Bernoulli decoder (``VAE(likelihood="bernoulli")``)
  has ``-log p(x | z)`` = the binary cross-entropy of its logits summed over
  pixels, its training loss's rec term; on grey levels that is a loss, not a
  density over ``x``, so it has no bits per dimension.
* **Bits per dimension** (:func:`bits_per_dim`): pixels are 8-bit integers
  ``k``; the model's density is over ``x = k / 255``. With uniform
  dequantization ``y = (k + u) / 255``, ``u ~ U[0, 1)^D``, Jensen's inequality
  gives ``-log P(k) <= E_u[-log p(y)] + D * log(255)``. For the Gaussian
  decoder ``E_u`` is exact in closed form (:func:`dequantized_sse`), so the
  bound needs no extra sampling; it is converted with
  ``bpd = (nelbo_dequantized + D * log(255)) / (D * log(2))``.
"""
import numpy as np

from .archs import LIKELIHOODS
from .data import PIXEL_SCALE, to_float
from .errors import ConfigError
from .layers import Sigmoid, reparam_forward, sigmoid_forward
from .losses import HISTORY_KEYS, bce_with_logits, kl_per_dim as _kl_per_dim, kl_per_image
from .probes import _as_2d, _flat

ACTIVE_THRESHOLD = 0.01
DECODER_VARIANCE = 0.5

# --------------------------------------------------------------------------
# the test loss and the codes of a set of images
# --------------------------------------------------------------------------

def mean_loss(model, images, seed_seq, batch_size=100, beta=None):
    """Mean test loss, reconstruction and KL over ``images`` (uint8 NHWC).

    The reparameterization noise comes from ``seed_seq`` afresh on every
    call, so the same model always gets the same numbers.
    """
    check_uint8_images(images, model.image_shape, "images")
    if len(images) == 0:
        raise ConfigError("mean_loss needs at least one image, got none")
    if not _is_count(batch_size) or batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    rng = np.random.default_rng(seed_seq)
    totals, n = dict.fromkeys(HISTORY_KEYS, 0.0), len(images)
    for i in range(0, n, batch_size):
        x = to_float(images[i:i + batch_size], model.dtype)  # (B, H, W, C)
        eps = rng.standard_normal((len(x), model.arch.latent), dtype=model.dtype)
        r = model.loss(x, eps, beta=beta, backward=False)
        for k in HISTORY_KEYS:
            totals[k] += r[k] * len(x)
    return {k: v / n for k, v in totals.items()}


def check_uint8_images(images, image_shape, what="images"):
    """Raise ConfigError unless ``images`` is a uint8 array of shape (N, *image_shape)."""
    shape = tuple(image_shape)
    if not isinstance(images, np.ndarray) or images.ndim != 4 or images.shape[1:] != shape:
        got = getattr(images, "shape", type(images).__name__)
        raise ConfigError(f"{what}: expected a uint8 array of shape (N, {', '.join(map(str, shape))}), "
                          f"got {got}")
    if images.dtype != np.uint8:
        raise ConfigError(f"{what}: expected uint8 pixels 0..255, got dtype {images.dtype}")


def encode_all(model, images, batch_size=200):
    """mu and logvar of every image (uint8 NHWC): two (N, L) arrays."""
    check_uint8_images(images, model.image_shape, "images")
    if not _is_count(batch_size) or batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if len(images) == 0:
        empty = np.zeros((0, model.arch.latent), model.dtype)
        return empty, empty.copy()
    mus, logvars = [], []
    for i in range(0, len(images), batch_size):
        mu, logvar = model.encode(to_float(images[i:i + batch_size], model.dtype))
        mus.append(mu)
        logvars.append(logvar)
    return np.concatenate(mus), np.concatenate(logvars)


def _is_count(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


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
    """Per-image terms of the negative ELBO under the model's decoder likelihood.

    One ``z = mu + exp(logvar / 2) * eps`` per image, with ``eps`` drawn from
    ``numpy.random.default_rng(seed)`` batch by batch exactly as
    :func:`mean_loss` draws it, so passing the run's evaluation
    seed (``streams(cfg.seed)[3]``) gives the same samples as its test loss.
    Gaussian decoder: ``-log p(x | z) = SSE / (2 variance) + const``;
    Bernoulli decoder: the binary cross-entropy of the logits
    (:func:`tinyvae.losses.bce_with_logits`), which is not a density over
    continuous pixels, so its ``nelbo_dequantized`` is NaN.

    Parameters
    ----------
    model : tinyvae.models.VAE
    images : (N, H, W, C) uint8
    seed : int or numpy.random.SeedSequence
    batch_size : images per forward pass (keep <= 200 for memory)
    variance : the Gaussian decoder's fixed variance (1/2 is what squared error implies)

    Returns
    -------
    dict of (N,) float64 arrays: ``sse`` (squared error of the decoder's mean
    image, the Gaussian training loss's rec term), ``sse_dequantized``
    (:func:`dequantized_sse`), ``rec_nll`` (``-log p(x | z)``, nats), ``kl``
    (weight 1), ``nelbo`` (``rec_nll + kl``, nats; Gaussian: of the density
    of ``x = pixels / scale``) and ``nelbo_dequantized`` (nats, averaged over
    the dequantization noise; NaN for a Bernoulli decoder);
    and the encoder's ``mu`` and ``logvar``, (N, L) each in the model's dtype
    """
    rng = np.random.default_rng(seed)
    n = len(images)
    d = int(np.prod(model.image_shape))
    sse, sse_dq, rec_nll, kl = (np.empty(n) for _ in range(4))        # (N,) each
    mus = np.empty((n, model.arch.latent), dtype=model.dtype)             # (N, L)
    logvars = np.empty((n, model.arch.latent), dtype=model.dtype)         # (N, L)
    gaussian = model.likelihood == "gaussian"
    for i in range(0, n, batch_size):
        x = to_float(images[i:i + batch_size], model.dtype)            # (B, H, W, C)
        eps = rng.standard_normal((len(x), model.arch.latent), dtype=model.dtype)  # (B, L)
        mu, logvar = model.encode(x)                                    # (B, L) twice
        mus[i:i + len(x)], logvars[i:i + len(x)] = mu, logvar
        z, _ = reparam_forward(mu, logvar, eps)                         # (B, L)
        out = model.decode_output(z)                                    # (B, H, W, C)
        xhat = out if gaussian else sigmoid_forward(out)[0]             # (B, H, W, C)
        diff = (xhat - x).reshape(len(x), -1).astype(np.float64)        # (B, D)
        sse[i:i + len(x)] = np.einsum("nd,nd->n", diff, diff)
        sse_dq[i:i + len(x)] = dequantized_sse(x, xhat, scale)
        if not gaussian:
            rec_nll[i:i + len(x)] = bce_with_logits(out, x)
        kl[i:i + len(x)] = kl_per_image(mu.astype(np.float64), logvar.astype(np.float64))  # (B,)
    if gaussian:
        const = gaussian_nll_const(d, variance)
        rec_nll = sse / (2 * variance) + const
        rec_dq = sse_dq / (2 * variance) + const
    else:
        rec_dq = np.full(n, np.nan)
    return {"sse": sse, "sse_dequantized": sse_dq, "rec_nll": rec_nll, "kl": kl,
            "nelbo": rec_nll + kl, "nelbo_dequantized": rec_dq + kl,
            "mu": mus, "logvar": logvars}


def negative_elbo_nats(model, images, seed, batch_size=100, variance=DECODER_VARIANCE):
    """Mean ``nelbo`` of :func:`negative_elbo_terms` in nats per image (KL weight 1)."""
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
# importance-weighted estimate of log p(x) (the IWAE bound)
# --------------------------------------------------------------------------

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
    log_w = np.empty((k, len(mu)))                          # (k, N)
    for j in range(k):
        eps = rng.standard_normal(mu.shape)                 # (N, L)
        z, _ = reparam_forward(mu, logvar, eps)             # (N, L)
        log_q = -0.5 * np.sum(eps * eps + np.log(2 * np.pi) + logvar, axis=1)   # (N,)
        log_prior = -0.5 * np.sum(z * z + np.log(2 * np.pi), axis=1)            # (N,)
        log_w[j] = log_likelihood(x, z) + log_prior - log_q
    return log_mean_exp(log_w, axis=0)                      # (N,)


def decoder_log_likelihood(model, likelihood=None, variance=DECODER_VARIANCE):
    """``log p(x | z)`` of a VAE's decoder as a function ``(x, z) -> (N,)`` nats.

    ``"gaussian"``: ``N(x; decode(z), variance I)``, the density the squared
    error implies (as :func:`negative_elbo_terms`). ``"bernoulli"``: pixels
    are Bernoulli with the decoder's logits (for a Gaussian-trained model, its
    output before the final Sigmoid; :func:`tinyvae.losses.bce_with_logits`).
    None: the likelihood the model was trained with.
    ``x`` : (N, H, W, C) floats in [0, 1].
    """
    likelihood = model.likelihood if likelihood is None else likelihood
    if likelihood not in LIKELIHOODS:
        raise ConfigError(f"likelihood must be one of {', '.join(LIKELIHOODS)}, got {likelihood!r}")
    d = int(np.prod(model.image_shape))

    def gaussian(x, z):
        diff = (model.decode(z) - x).reshape(len(x), -1).astype(np.float64)   # (N, D)
        return -np.einsum("nd,nd->n", diff, diff) / (2 * variance) - gaussian_nll_const(d, variance)

    def bernoulli(x, z):
        if model.likelihood == "bernoulli":
            return -bce_with_logits(model.decode_output(z), x)
        if not isinstance(model.decoder[-1], Sigmoid):
            raise ConfigError("the decoder must end in a Sigmoid layer")
        h = z.astype(model.dtype)                           # (N, L)
        for layer in model.decoder[:-1]:
            h = layer.forward(h)                            # -> logits (N, H, W, C)
        return -bce_with_logits(h, x)

    return gaussian if likelihood == "gaussian" else bernoulli


def iwae_log_px(model, images, k, seed, likelihood=None, batch_size=100,
                variance=DECODER_VARIANCE):
    """Mean importance-weighted estimate of ``log p(x)`` per image, and its standard error.

    Parameters
    ----------
    model : tinyvae.models.VAE
    images : (N, H, W, C) uint8; the density is over ``x = pixels / 255``
        (like ``nelbo`` of :func:`negative_elbo_terms`, not dequantized)
    k : samples from ``q(z | x)`` per image (1: the ELBO; ~100: a much tighter bound)
    seed : int or numpy.random.SeedSequence for the samples
    likelihood : "gaussian" (fixed ``variance``), "bernoulli" or None for the model's
        (see :func:`decoder_log_likelihood`)
    batch_size : images per pass

    Returns
    -------
    (mean, standard error of the mean over images), nats
    """
    log_lik = decoder_log_likelihood(model, likelihood, variance)
    rng = np.random.default_rng(seed)
    per_image = np.concatenate([
        importance_weighted_log_px(model.encode, log_lik, to_float(images[i:i + batch_size], model.dtype),
                                   k, rng)
        for i in range(0, len(images), batch_size)])        # (N,)
    se = per_image.std(ddof=1) / np.sqrt(len(per_image)) if len(per_image) > 1 else float("nan")
    return float(per_image.mean()), float(se)
