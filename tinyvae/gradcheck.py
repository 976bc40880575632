"""Finite-difference gradient checks, the CS231n way.

Centred differences with ``h = 1e-5`` in float64, compared with

    rel_error(a, b) = max |a - b| / max(1e-8, |a| + |b|)

(the maximum over entries of the elementwise relative error). Any layer becomes
a scalar function with the ``(out * dout).sum()`` trick: its gradient with
respect to an input is exactly what ``layer_backward(dout, cache)`` returns.
Inputs must avoid ReLU kinks and max-pool ties, where the function has no
derivative.
"""
import numpy as np


def rel_error(a, b):
    """Largest elementwise relative error between two arrays (1e-8 floor)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


def _indices(x, n_samples, rng):
    """All index tuples of x, or ``n_samples`` of them drawn with ``rng``."""
    if n_samples is None or n_samples >= x.size:
        return list(np.ndindex(x.shape))
    flat = rng.choice(x.size, size=n_samples, replace=False)
    return list(zip(*np.unravel_index(flat, x.shape)))


def numerical_gradient(f, x, h=1e-5, n_samples=None, rng=None):
    """Centred-difference gradient of a scalar function ``f()`` w.r.t. array ``x``.

    ``x`` is perturbed in place (and restored); ``f`` takes no argument and
    must read ``x``. With ``n_samples``, only that many entries (drawn with
    ``rng``) are computed and the rest of the result is NaN.

    Returns
    -------
    grad : array shaped like x
    """
    grad = np.full(x.shape, np.nan)                 # shaped like x
    for i in _indices(x, n_samples, rng):           # index tuples: works for any memory layout
        old = x[i]
        x[i] = old + h
        fp = f()
        x[i] = old - h
        fm = f()
        x[i] = old
        grad[i] = (fp - fm) / (2 * h)
    return grad


def numerical_gradient_array(f, x, dout, h=1e-5):
    """Gradient of ``sum(f() * dout)`` w.r.t. ``x``: checks an array-valued ``f``."""
    return numerical_gradient(lambda: float(np.sum(f() * dout)), x, h)


def check_gradient(f, x, analytic, h=1e-5, n_samples=None, rng=None):
    """``rel_error`` between ``analytic`` and the numerical gradient of ``f``
    at the entries compared (all, or ``n_samples`` drawn with ``rng``)."""
    num = numerical_gradient(f, x, h, n_samples, rng)
    mask = ~np.isnan(num)
    return rel_error(np.asarray(analytic)[mask], num[mask])
