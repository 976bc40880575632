"""Hot loops, twice: a numba fast path and a plain NumPy reference.

Each kernel exists as ``name_numpy`` (vectorised NumPy, the reference) and
``name_numba`` (``@njit(cache=True)``, the fast path), with the same
arguments and results; tests run both and compare them. The public
``name(*args, backend=None)`` picks one from :data:`KERNELS`:

* ``backend="numba"`` or ``backend="numpy"`` explicitly, or
* ``backend=None``: the environment variable ``TINYVAE_KERNELS`` (read at
  call time), else ``"numba"``.

Layout is NHWC: images ``(N, H, W, C)``, conv weights ``(KH, KW, C_in, C_out)``.
The naive loops that define what the kernels compute live in
:mod:`tinyvae.reference`; the layers built on them in :mod:`tinyvae.layers`.

Topics: :mod:`.unfold` (im2col, col2im), :mod:`.upsample` (the same over a
nearest-upsampled grid), :mod:`.pool` (max-pool), :mod:`.adam` (the Adam
update), :mod:`.relu`, :mod:`.bias` (the bias add and its gradient);
:mod:`.split` shares a kernel's outer loop among threads. A kernel is here
only if it saves a few per cent of a training step
(benchmarks/kernel_savings.py).
"""
import os

from ..errors import ConfigError
from .adam import adam_update_numba, adam_update_numpy
from .bias import bias_add_numba, bias_add_numpy, bias_grad_numba, bias_grad_numpy
from .pool import (maxpool_backward_numba, maxpool_backward_numpy, maxpool_forward_numba,
                   maxpool_forward_numpy)
from .relu import relu_grad_numba, relu_grad_numpy, relu_numba, relu_numpy
from .split import kernel_threads, run_split  # noqa: F401 (re-exported)
from .unfold import col2im_numba, col2im_numpy, im2col_numba, im2col_numpy
from .upsample import col2im_up_numba, col2im_up_numpy, im2col_up_numba, im2col_up_numpy

BACKENDS = ("numba", "numpy")
"""Kernel backends: the numba fast path and the NumPy reference."""

KERNELS = {                                     # name: (fast path, reference)
    "im2col": (im2col_numba, im2col_numpy),
    "col2im": (col2im_numba, col2im_numpy),
    "im2col_up": (im2col_up_numba, im2col_up_numpy),
    "col2im_up": (col2im_up_numba, col2im_up_numpy),
    "maxpool_forward": (maxpool_forward_numba, maxpool_forward_numpy),
    "maxpool_backward": (maxpool_backward_numba, maxpool_backward_numpy),
    "adam_update": (adam_update_numba, adam_update_numpy),
    "relu": (relu_numba, relu_numpy),
    "relu_grad": (relu_grad_numba, relu_grad_numpy),
    "bias_add": (bias_add_numba, bias_add_numpy),
    "bias_grad": (bias_grad_numba, bias_grad_numpy),
}


def get_backend(backend=None):
    """Resolve ``backend`` (None -> ``$TINYVAE_KERNELS`` -> ``"numba"``); ConfigError if unknown."""
    if backend is None:
        backend = os.environ.get("TINYVAE_KERNELS") or "numba"
    if backend not in BACKENDS:
        raise ConfigError(f"unknown kernel backend {backend!r}; accepted: {', '.join(BACKENDS)}")
    return backend


def pick(name, backend=None):
    """The function that runs kernel ``name`` on ``backend``."""
    fast, reference = KERNELS[name]
    return fast if get_backend(backend) == "numba" else reference


def _dispatcher(name):
    """``name(*args, backend=None)``: ``pick(name, backend)(*args)``."""
    def run(*args, backend=None):
        return pick(name, backend)(*args)
    run.__name__ = run.__qualname__ = name
    run.__doc__ = (f"``{name}(*args, backend=None)``: :func:`{name}_numpy` (see its arguments) "
                   f"or :func:`{name}_numba`, as :func:`get_backend` resolves ``backend``.")
    return run


im2col, col2im = _dispatcher("im2col"), _dispatcher("col2im")
im2col_up, col2im_up = _dispatcher("im2col_up"), _dispatcher("col2im_up")
maxpool_forward, maxpool_backward = _dispatcher("maxpool_forward"), _dispatcher("maxpool_backward")
adam_update = _dispatcher("adam_update")
relu, relu_grad = _dispatcher("relu"), _dispatcher("relu_grad")
bias_add, bias_grad = _dispatcher("bias_add"), _dispatcher("bias_grad")
