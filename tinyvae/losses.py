"""The two terms of the VAE loss, each with its gradient.

Per image: squared error summed over every pixel and channel, plus
``beta`` times the KL divergence summed over latent dimensions. Both are
averaged over the batch, as the study did.

The KL term uses the same meaning of ``logvar`` as
:func:`tinyvae.layers.reparam_forward`: ``logvar = log sigma^2``, so
``KL(N(mu, sigma^2) || N(0, 1)) = 0.5 * (mu^2 + sigma^2 - 1 - log sigma^2)``
per dimension.
"""
import numpy as np


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
