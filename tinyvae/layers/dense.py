"""Layers on vectors: dense, activations, reshapes, the reparameterization trick."""
import numpy as np

from .. import kernels


def dense_forward(x, w, b):
    """Affine map ``out = x @ w + b``.

    x : (N, D), w : (D, M), b : (M,)  ->  out : (N, M)
    """
    out = x @ w + b                       # (N, M)
    return out, (x, w)


def dense_backward(dout, cache, dw=None):
    """dout : (N, M) -> dx (N, D), dw (D, M), db (M,)

    ``dw``, optional: a C-contiguous (D, M) array to write the weight
    gradient into (overwritten, not added to); it is also returned.
    """
    x, w = cache
    dx = (w @ dout.T).T                   # (N, D): dout @ w.T, the faster way round for BLAS
    dw = np.matmul(x.T, dout, out=dw)     # (D, M)
    db = dout.sum(axis=0)                 # (M,)
    return dx, dw, db


def relu_forward(x, backend=None):
    """``max(x, 0)`` elementwise (NaN stays NaN); any shape."""
    out = kernels.relu(x, backend=backend)  # same shape as x
    return out, (out, backend)


def relu_backward(dout, cache):
    """The gradient passes where the output was positive: ``dout * (out > 0)``."""
    out, backend = cache
    dx = kernels.relu_grad(dout, out, backend=backend)  # same shape as dout
    return dx


def sigmoid_forward(x):
    """``1 / (1 + exp(-x))``, computed without overflow for large ``|x|``:
    ``1 / (1 + e)`` where ``x >= 0`` and ``e / (1 + e)`` elsewhere, ``e = exp(-|x|)``."""
    e = np.exp(-np.abs(x))                # in (0, 1], never overflows
    pos = x >= 0                          # same shape as x
    num = pos + e * ~pos                  # 1 where x >= 0, else e: exact, and no branch per element
    out = (num / (1 + e)).astype(x.dtype, copy=False)
    return out, out


def sigmoid_backward(dout, cache):
    """``d sigmoid = s * (1 - s)``."""
    s = cache
    dx = dout * s * (1 - s)               # same shape as dout
    return dx


def flatten_forward(x):
    """(N, H, W, C) -> (N, H*W*C), row-major as NumPy stores it."""
    out = x.reshape(x.shape[0], -1)       # (N, H*W*C)
    return out, x.shape


def flatten_backward(dout, cache):
    """(N, H*W*C) -> (N, H, W, C)"""
    return dout.reshape(cache)


def reshape_forward(x, shape):
    """(N, prod(shape)) -> (N, *shape); the decoder's inverse of flatten."""
    out = x.reshape((x.shape[0],) + tuple(shape))  # (N, *shape)
    return out, x.shape


def reshape_backward(dout, cache):
    """(N, *shape) -> (N, prod(shape))"""
    return dout.reshape(cache)


def reparam_forward(mu, logvar, eps):
    """Sample ``z ~ N(mu, exp(logvar))`` as ``z = mu + exp(0.5 * logvar) * eps``.

    ``logvar`` is the log of the *variance*; the standard deviation is
    ``exp(0.5 * logvar)``. ``eps ~ N(0, I)`` is drawn by the caller (with its
    own ``rng``) and kept in the cache, so the layer is a pure function.

    mu, logvar, eps : (N, L) -> z : (N, L)
    """
    std = np.exp(0.5 * logvar)            # (N, L)
    z = mu + std * eps                    # (N, L)
    return z, (std, eps)


def reparam_backward(dz, cache):
    """dz : (N, L) -> dmu (N, L), dlogvar (N, L).

    ``dz/dmu = 1`` and ``dz/dlogvar = 0.5 * std * eps``.
    """
    std, eps = cache
    dmu = dz                              # (N, L)
    dlogvar = dz * 0.5 * std * eps        # (N, L)
    return dmu, dlogvar
