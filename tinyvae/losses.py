"""The two terms of the VAE loss, each with its gradient.

Per image: squared error summed over every pixel and channel, plus
``beta`` times the KL divergence summed over latent dimensions; both are
averaged over the batch. The study's code took the *mean* over pixels
instead. tinyvae sums on purpose: the sum is a Gaussian negative
log-likelihood (variance 1/2) up to a constant, while the mean weighs the
KL like ``beta = D`` (784 for MNIST, 3072 for CIFAR-10) and collapses the
latent code (lesson 10 shows it). :func:`bce_with_logits_loss` is the
Bernoulli decoder's reconstruction term (``VAE(..., likelihood="bernoulli")``,
``train --likelihood bernoulli``), with the same reductions.

The KL term uses the same meaning of ``logvar`` as
:func:`tinyvae.layers.reparam_forward`: ``logvar = log sigma^2``, so
``KL(N(mu, sigma^2) || N(0, 1)) = 0.5 * (mu^2 + sigma^2 - 1 - log sigma^2)``
per dimension.
"""
import numpy as np

HISTORY_KEYS = ("loss", "rec", "kl")    # what a training step reports: the loss and its two terms


def sse_loss(xhat, x):
    """Squared error summed over pixels, averaged over the batch.

    Parameters
    ----------
    xhat, x : (N, H, W, C)

    Returns
    -------
    loss : float
    dxhat : (N, H, W, C), d loss / d xhat
    """
    N = x.shape[0]
    diff = xhat - x                                   # (N, H, W, C)
    loss = float(np.sum(diff * diff)) / N
    dxhat = (2.0 / N) * diff                          # (N, H, W, C)
    return loss, dxhat.astype(xhat.dtype, copy=False)


def kl_loss(mu, logvar):
    """KL(N(mu, exp(logvar)) || N(0, I)), summed over dims, averaged over the batch.

    Parameters
    ----------
    mu, logvar : (N, L)

    Returns
    -------
    loss : float
    dmu, dlogvar : (N, L)
    """
    N = mu.shape[0]
    var = np.exp(logvar)                              # (N, L)
    loss = float(np.sum(kl_terms(mu, logvar))) / N
    dmu = mu / N                                      # (N, L)
    dlogvar = 0.5 * (var - 1.0) / N                   # (N, L)
    return loss, dmu.astype(mu.dtype, copy=False), dlogvar.astype(mu.dtype, copy=False)


def kl_terms(mu, logvar):
    """KL of every latent dimension of every example: (N, L) twice -> (N, L) nats.

    ``0.5 * (mu^2 + sigma^2 - 1 - log sigma^2)`` with ``sigma^2 = exp(logvar)``.
    """
    return 0.5 * (mu * mu + np.exp(logvar) - 1.0 - logvar)      # (N, L)


def kl_per_image(mu, logvar):
    """KL of each example, summed over latent dimensions: (N, L) twice -> (N,)."""
    return np.sum(kl_terms(mu, logvar), axis=1)                 # (N,)


def kl_per_dim(mu, logvar):
    """KL of each latent dimension, averaged over the batch: (L,)."""
    return np.mean(kl_terms(mu, logvar), axis=0)                # (L,)


def bce_with_logits(logits, x):
    """Binary cross-entropy from logits, summed over each image's pixels: (N,) float64.

    ``softplus(l) - x * l = max(l, 0) - x * l + log(1 + exp(-|l|))`` per pixel,
    the Bernoulli ``-log p(x | z)`` with ``p = sigmoid(l)``; it never overflows
    and stays exact at extreme logits (``|l|`` of 1e4). ``x`` may be grey
    levels in [0, 1] (the usual relaxation of a Bernoulli).

    logits, x : (N, ...) -> (N,)
    """
    logits = np.asarray(logits)
    per_pixel = np.maximum(logits, 0) - x * logits + np.log1p(np.exp(-np.abs(logits)))
    return np.sum(per_pixel.reshape(len(logits), -1), axis=1, dtype=np.float64)   # (N,)


def bce_with_logits_loss(logits, x):
    """:func:`bce_with_logits` averaged over the batch, and its gradient.

    Parameters
    ----------
    logits : (N, H, W, C) the decoder's output before its sigmoid
    x : (N, H, W, C) targets in [0, 1]

    Returns
    -------
    loss : float
    dlogits : (N, H, W, C), d loss / d logits = (sigmoid(logits) - x) / N
    """
    N = x.shape[0]
    loss = float(np.sum(bce_with_logits(logits, x))) / N
    e = np.exp(-np.abs(logits))                       # (N, H, W, C) in (0, 1]: no overflow
    pos = logits >= 0                                 # (N, H, W, C)
    p = (pos + e * ~pos) / (1.0 + e)                  # sigmoid: 1/(1+e) or e/(1+e), no branch per element
    dlogits = (p - x) / N                             # (N, H, W, C)
    return loss, dlogits.astype(logits.dtype, copy=False)
