"""Adam, written out.

Keras' form of Adam, as the study used (Kingma & Ba 2015, end of section 2,
the "efficient" ordering)::

    t  <- t + 1
    m  <- beta1 * m + (1 - beta1) * g
    v  <- beta2 * v + (1 - beta2) * g**2
    lr_t = lr * sqrt(1 - beta2**t) / (1 - beta1**t)
    p  <- p - lr_t * m / (sqrt(v) + eps)

With ``eps = 0`` this is exactly Algorithm 1 of the paper
(``m_hat / sqrt(v_hat)``); with ``eps > 0`` the epsilon sits outside the
bias correction, as in Keras and TensorFlow. Defaults are Keras':
``beta1=0.9, beta2=0.999, eps=1e-7``.
"""
import numpy as np

from . import kernels
from .errors import ConfigError


class Adam:
    """Adam with state keyed by parameter name.

    Parameters
    ----------
    lr : float, learning rate (> 0)
    beta1, beta2 : float in [0, 1)
    eps : float >= 0
    backend : kernel backend for the fused update (None: ``$TINYVAE_KERNELS``)
    """

    def __init__(self, lr=1e-4, beta1=0.9, beta2=0.999, eps=1e-7, backend=None):
        if not lr > 0 or not np.isfinite(lr):
            raise ConfigError(f"learning rate must be a positive number, got {lr!r}")
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ConfigError(f"beta1 and beta2 must lie in [0, 1), got {beta1!r}, {beta2!r}")
        if not eps >= 0:
            raise ConfigError(f"eps must be >= 0, got {eps!r}")
        self.lr, self.beta1, self.beta2, self.eps = float(lr), float(beta1), float(beta2), float(eps)
        self.backend = backend
        self.t = 0
        self.m, self.v = {}, {}

    def step(self, params, grads):
        """Update every array in ``params`` in place from ``grads`` (same keys)."""
        self.t += 1
        lr_t = self.lr * np.sqrt(1.0 - self.beta2 ** self.t) / (1.0 - self.beta1 ** self.t)
        for name, p in params.items():
            if name not in self.m:
                self.m[name] = np.zeros_like(p)
                self.v[name] = np.zeros_like(p)
            kernels.adam_update(p, grads[name], self.m[name], self.v[name],
                                lr_t, self.beta1, self.beta2, self.eps, backend=self.backend)

    def state_dict(self, copy=True):
        """Arrays and numbers that restore this optimizer exactly (see load_state_dict).

        With ``copy=True`` the arrays are a snapshot; ``copy=False`` returns the
        live moment arrays, which the next :meth:`step` changes in place (for a
        caller that writes them out at once, such as a checkpoint).
        """
        state = {"t": np.array(self.t, dtype=np.int64)}
        for name in self.m:
            state[f"m/{name}"] = self.m[name].copy() if copy else self.m[name]
            state[f"v/{name}"] = self.v[name].copy() if copy else self.v[name]
        return state

    def load_state_dict(self, state):
        """Inverse of :meth:`state_dict`."""
        self.t = int(state["t"])
        self.m = {k[2:]: np.array(v) for k, v in state.items() if k.startswith("m/")}
        self.v = {k[2:]: np.array(v) for k, v in state.items() if k.startswith("v/")}
