"""Every layer of a conv VAE as a pair of pure functions.

The contract (CS231n, llm.c)::

    out, cache = thing_forward(x, *params)
    dx, *dparams = thing_backward(dout, cache)

``cache`` holds whatever the backward pass needs; nothing else is stored
anywhere. Layout is NHWC: images are ``(N, H, W, C)``. Weights follow Keras:
dense ``(D_in, D_out)``, conv ``(KH, KW, C_in, C_out)``, transposed conv
``(KH, KW, C_out, C_in)`` -- that is, a transposed conv uses *the same array*
as the forward conv it is the adjoint of. Every function keeps the dtype of
its input: float32 for training, float64 for gradient checks.

The fast kernels come from :mod:`tinyvae.kernels`; pass ``backend="numpy"``
(or set ``TINYVAE_KERNELS=numpy``) for the NumPy reference path.

The layer objects at the bottom only wrap these pairs for :mod:`tinyvae.models`.
"""
import numpy as np

from . import kernels
from .geometry import conv_geometry, conv_transpose_geometry


# --------------------------------------------------------------------------
# dense, activations, reshapes
# --------------------------------------------------------------------------

def dense_forward(x, w, b):
    """Affine map ``out = x @ w + b``.

    x : (N, D), w : (D, M), b : (M,)  ->  out : (N, M)
    """
    out = x @ w + b                       # (N, M)
    return out, (x, w)


def dense_backward(dout, cache, dw=None):
    """dout : (N, M) -> dx (N, D), dw (D, M), db (M,)

    ``dw``, optional: a C-contiguous (D, M) array the weight gradient is
    written into and returned (its old values are overwritten, not added
    to). :class:`Dense` passes its own ``grads["w"]``, so that a training
    step does not allocate a fresh weight-sized array: for the deep model's
    4608 x 1024 layers, 19 MB each, that meant about 750 page faults and
    2-3 ms a step.
    """
    x, w = cache
    dx = (w @ dout.T).T                   # (N, D): dout @ w.T, computed the way round
    #                                       that OpenBLAS runs ~15% faster
    dw = np.matmul(x.T, dout, out=dw)     # (D, M)
    db = dout.sum(axis=0)                 # (M,)
    return dx, dw, db


def relu_forward(x, backend=None):
    """``max(x, 0)`` elementwise; any shape."""
    out = kernels.relu_forward(x, backend)  # same shape as x
    return out, (out, backend)


def relu_backward(dout, cache):
    """The gradient passes where the output was positive: ``dout * (out > 0)``."""
    out, backend = cache
    dx = kernels.relu_backward(dout, out, backend)  # same shape as dout
    return dx


def sigmoid_forward(x):
    """``1 / (1 + exp(-x))``, computed without overflow for large ``|x|``."""
    e = np.exp(-np.abs(x))                # in (0, 1], never overflows
    out = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
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


# --------------------------------------------------------------------------
# convolution and its adjoint
# --------------------------------------------------------------------------

def conv2d_forward(x, w, b, stride=1, padding="valid", backend=None):
    """2-D cross-correlation, as im2col followed by one matrix product.

    Parameters
    ----------
    x : (N, H, W, C)
    w : (KH, KW, C, F)
    b : (F,)
    stride : int or (sh, sw)
    padding : 'valid' or 'same' (TensorFlow's rule, see :mod:`tinyvae.geometry`)

    Returns
    -------
    out : (N, Ho, Wo, F)
    cache : for :func:`conv2d_backward`
    """
    N, H, W, C = x.shape
    KH, KW, _, F = w.shape
    out_hw, pad, stride = conv_geometry((H, W), (KH, KW), stride, padding)
    cols = kernels.im2col(x, KH, KW, stride, pad, out_hw, backend)  # (N*Ho*Wo, KH*KW*C)
    out = cols @ w.reshape(KH * KW * C, F)                          # (N*Ho*Wo, F)
    kernels.bias_add(out, b, backend)                               # out += b, in place
    out = out.reshape(N, out_hw[0], out_hw[1], F)                   # (N, Ho, Wo, F)
    return out, (x.shape, cols, w, stride, pad, out_hw, backend)


def conv2d_backward(dout, cache, need_dx=True):
    """dout : (N, Ho, Wo, F) -> dx (N, H, W, C), dw (KH, KW, C, F), db (F,)

    With ``need_dx=False`` (a network's first layer: nobody needs the
    gradient of the image) ``dx`` is not computed and None is returned.
    """
    x_shape, cols, w, stride, pad, out_hw, backend = cache
    KH, KW, C, F = w.shape
    dout2 = dout.reshape(-1, F)                                     # (N*Ho*Wo, F)
    db = kernels.bias_grad(dout2, backend)                          # (F,)
    dw = (cols.T @ dout2).reshape(w.shape)                          # (KH, KW, C, F)
    if not need_dx:
        return None, dw, db
    dcols = dout2 @ w.reshape(KH * KW * C, F).T                     # (N*Ho*Wo, KH*KW*C)
    dx = kernels.col2im(dcols, x_shape, KH, KW, stride, pad, out_hw, backend)  # (N, H, W, C)
    return dx, dw, db


def conv_transpose2d_forward(x, w, b, stride=1, padding="valid", backend=None, out_hw=None):
    """Transposed convolution: the adjoint of :func:`conv2d_forward` (without bias).

    Each input pixel's channel vector is multiplied into a whole
    ``KH x KW x C`` patch (one matrix product), and col2im adds the
    overlapping patches up. 'valid' stride 1 grows H and W by KH-1 and KW-1.

    Parameters
    ----------
    x : (N, H, W, F)
    w : (KH, KW, C, F)  -- Keras' Conv2DTranspose layout: output channels third
    b : (C,)
    out_hw : (Ho, Wo), optional; with stride > 1 picks among the output sizes
        the adjoint conv maps back to (H, W) (see :mod:`tinyvae.geometry`)

    Returns
    -------
    out : (N, Ho, Wo, C)
    cache : for :func:`conv_transpose2d_backward`
    """
    N, H, W, F = x.shape
    KH, KW, C, _ = w.shape
    out_hw, pad, stride = conv_transpose_geometry((H, W), (KH, KW), stride, padding, out_hw)
    x2 = x.reshape(N * H * W, F)                                    # (N*H*W, F)
    cols = x2 @ w.reshape(KH * KW * C, F).T                         # (N*H*W, KH*KW*C)
    out_shape = (N, out_hw[0], out_hw[1], C)
    out = kernels.col2im(cols, out_shape, KH, KW, stride, pad, (H, W), backend)  # (N, Ho, Wo, C)
    kernels.bias_add(out, b, backend)                               # out += b, in place
    return out, (x2, w, stride, pad, (H, W), backend)


def conv_transpose2d_backward(dout, cache):
    """dout : (N, Ho, Wo, C) -> dx (N, H, W, F), dw (KH, KW, C, F), db (C,)"""
    x2, w, stride, pad, in_hw, backend = cache
    KH, KW, C, F = w.shape
    N = dout.shape[0]
    db = kernels.bias_grad(dout.reshape(-1, C), backend)            # (C,)
    dcols = kernels.im2col(dout, KH, KW, stride, pad, in_hw, backend)  # (N*H*W, KH*KW*C)
    dx = (dcols @ w.reshape(KH * KW * C, F)).reshape(N, in_hw[0], in_hw[1], F)  # (N, H, W, F)
    dw = (dcols.T @ x2).reshape(w.shape)                            # (KH, KW, C, F)
    return dx, dw, db


def upsample_conv_transpose2d_forward(x, w, b, factor=2, backend=None):
    """Nearest upsampling by ``factor`` followed by a 3x3-style transposed conv
    (stride 1, 'valid'), fused: equal to ``conv_transpose2d_forward(
    upsample_forward(x, factor)[0], w, b)`` but ``factor**2`` times cheaper,
    because the upsampled image repeats every pixel of ``x`` and the matrix
    product can therefore run on ``x`` itself.

    Parameters
    ----------
    x : (N, H, W, F), *before* upsampling
    w : (KH, KW, C, F)
    b : (C,)

    Returns
    -------
    out : (N, f*H + KH - 1, f*W + KW - 1, C)
    cache : for :func:`upsample_conv_transpose2d_backward`
    """
    N, H, W, F = x.shape
    KH, KW, C, _ = w.shape
    x2 = x.reshape(N * H * W, F)                                    # (N*H*W, F)
    cols = x2 @ w.reshape(KH * KW * C, F).T                         # (N*H*W, KH*KW*C)
    out_shape = (N, factor * H + KH - 1, factor * W + KW - 1, C)
    out = kernels.col2im_up(cols, out_shape, KH, KW, factor, (H, W), backend)  # (N, Ho, Wo, C)
    kernels.bias_add(out, b, backend)                               # out += b, in place
    return out, (x2, w, factor, (H, W), backend)


def upsample_conv_transpose2d_backward(dout, cache):
    """dout : (N, Ho, Wo, C) -> dx (N, H, W, F), dw (KH, KW, C, F), db (C,)"""
    x2, w, factor, in_hw, backend = cache
    KH, KW, C, F = w.shape
    N = dout.shape[0]
    db = kernels.bias_grad(dout.reshape(-1, C), backend)            # (C,)
    dcols = kernels.im2col_up(dout, KH, KW, factor, in_hw, backend)  # (N*H*W, KH*KW*C)
    dx = (dcols @ w.reshape(KH * KW * C, F)).reshape(N, in_hw[0], in_hw[1], F)  # (N, H, W, F)
    dw = (dcols.T @ x2).reshape(w.shape)                            # (KH, KW, C, F)
    return dx, dw, db


# --------------------------------------------------------------------------
# pooling and upsampling
# --------------------------------------------------------------------------

def maxpool_forward(x, pool=2, backend=None):
    """Max over ``pool x pool`` windows, stride ``pool``; odd sizes floor (13 -> 6).

    x : (N, H, W, C) -> out : (N, H // pool, W // pool, C)
    """
    out, arg = kernels.maxpool_forward(x, pool, backend)            # (N, Ho, Wo, C) twice
    return out, (arg, x.shape, pool, backend)


def maxpool_backward(dout, cache):
    """Each window's gradient goes to its arg-max (first on ties); dx : (N, H, W, C)."""
    arg, x_shape, pool, backend = cache
    return kernels.maxpool_backward(dout, arg, x_shape, pool, backend)


def upsample_forward(x, factor=2):
    """Nearest-neighbour upsampling: each pixel becomes a ``factor x factor`` block.

    x : (N, H, W, C) -> out : (N, H*factor, W*factor, C)
    """
    N, H, W, C = x.shape
    out = np.broadcast_to(x[:, :, None, :, None, :], (N, H, factor, W, factor, C))
    out = out.reshape(N, H * factor, W * factor, C)                 # (N, 2H, 2W, C)
    return out, factor


def upsample_backward(dout, cache):
    """Sum the gradient over each block: dout (N, 2H, 2W, C) -> dx (N, H, W, C)."""
    f = cache
    N, H2, W2, C = dout.shape
    dx = dout.reshape(N, H2 // f, f, W2 // f, f, C).sum(axis=(2, 4))  # (N, H, W, C)
    return dx


# --------------------------------------------------------------------------
# the reparameterization trick
# --------------------------------------------------------------------------

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


# --------------------------------------------------------------------------
# layer objects: params and grads dicts with identical keys
# --------------------------------------------------------------------------

def glorot_uniform(rng, shape, fan_in, fan_out, dtype):
    """Keras' default initialiser: U(-a, a) with ``a = sqrt(6 / (fan_in + fan_out))``."""
    a = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-a, a, size=shape).astype(dtype)


class Layer:
    """A thin wrapper around one forward/backward pair.

    ``params`` and ``grads`` are dicts with identical keys. ``forward`` keeps
    the cache of the last call; ``backward`` *overwrites* every entry of
    ``grads`` (it never accumulates), so the backward pass itself is the one
    place where gradients are reset. Most layers assign fresh arrays;
    :class:`Dense` writes its weight gradient into the array it already holds.
    """

    def __init__(self):
        self.params, self.grads, self.cache = {}, {}, None
        self.name = type(self).__name__.lower()

    def output_shape(self, in_shape):
        """Shape of one example's output, given one example's input shape."""
        return in_shape

    def __repr__(self):
        return type(self).__name__


class Dense(Layer):
    def __init__(self, d_in, d_out, rng, dtype=np.float32):
        super().__init__()
        self.params = {"w": glorot_uniform(rng, (d_in, d_out), d_in, d_out, dtype),
                       "b": np.zeros(d_out, dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

    def forward(self, x):
        out, self.cache = dense_forward(x, self.params["w"], self.params["b"])
        return out

    def backward(self, dout):
        dx, self.grads["w"], self.grads["b"] = dense_backward(dout, self.cache, dw=self.grads["w"])
        return dx

    def output_shape(self, in_shape):
        return (self.params["w"].shape[1],)

    def __repr__(self):
        return f"Dense({self.params['w'].shape[1]})"


class Conv2D(Layer):
    """Conv layer; ``need_dx=False`` skips the input gradient (first layers)."""

    def __init__(self, c_in, c_out, rng, kernel=3, stride=1, padding="valid",
                 dtype=np.float32, backend=None, need_dx=True):
        super().__init__()
        self.need_dx = need_dx
        fan_in, fan_out = kernel * kernel * c_in, kernel * kernel * c_out
        self.params = {"w": glorot_uniform(rng, (kernel, kernel, c_in, c_out), fan_in, fan_out, dtype),
                       "b": np.zeros(c_out, dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.stride, self.padding, self.backend = stride, padding, backend

    def forward(self, x):
        out, self.cache = conv2d_forward(x, self.params["w"], self.params["b"],
                                         self.stride, self.padding, self.backend)
        return out

    def backward(self, dout):
        dx, self.grads["w"], self.grads["b"] = conv2d_backward(dout, self.cache, self.need_dx)
        return dx

    def output_shape(self, in_shape):
        KH, KW, _, F = self.params["w"].shape
        (Ho, Wo), _, _ = conv_geometry(in_shape[:2], (KH, KW), self.stride, self.padding)
        return (Ho, Wo, F)

    def __repr__(self):
        KH, KW, _, F = self.params["w"].shape
        return f"Conv2D({F}, {KH}x{KW}, {self.padding})"


class ConvTranspose2D(Layer):
    def __init__(self, c_in, c_out, rng, kernel=3, stride=1, padding="valid",
                 dtype=np.float32, backend=None):
        super().__init__()
        # Keras computes fans of Conv2DTranspose from its (KH, KW, C_out, C_in) kernel
        fan_in, fan_out = kernel * kernel * c_out, kernel * kernel * c_in
        self.params = {"w": glorot_uniform(rng, (kernel, kernel, c_out, c_in), fan_in, fan_out, dtype),
                       "b": np.zeros(c_out, dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.stride, self.padding, self.backend = stride, padding, backend

    def forward(self, x):
        out, self.cache = conv_transpose2d_forward(x, self.params["w"], self.params["b"],
                                                   self.stride, self.padding, self.backend)
        return out

    def backward(self, dout):
        dx, self.grads["w"], self.grads["b"] = conv_transpose2d_backward(dout, self.cache)
        return dx

    def output_shape(self, in_shape):
        KH, KW, C, _ = self.params["w"].shape
        (Ho, Wo), _, _ = conv_transpose_geometry(in_shape[:2], (KH, KW), self.stride, self.padding)
        return (Ho, Wo, C)

    def __repr__(self):
        KH, KW, C, _ = self.params["w"].shape
        return f"ConvTranspose2D({C}, {KH}x{KW}, {self.padding})"


class UpsampleConvTranspose2D(ConvTranspose2D):
    """``Upsample2D(factor)`` then ``ConvTranspose2D`` (stride 1, 'valid'), fused.

    Same parameters, initialisation and results as the two layers in a row
    (the tests check this), ``factor**2`` times fewer multiply-adds.
    """

    def __init__(self, c_in, c_out, rng, kernel=3, factor=2, dtype=np.float32, backend=None):
        super().__init__(c_in, c_out, rng, kernel, 1, "valid", dtype, backend)
        self.factor = factor

    def forward(self, x):
        out, self.cache = upsample_conv_transpose2d_forward(x, self.params["w"], self.params["b"],
                                                            self.factor, self.backend)
        return out

    def backward(self, dout):
        dx, self.grads["w"], self.grads["b"] = upsample_conv_transpose2d_backward(dout, self.cache)
        return dx

    def output_shape(self, in_shape):
        H, W, F = in_shape
        return super().output_shape((H * self.factor, W * self.factor, F))


class MaxPool2D(Layer):
    def __init__(self, pool=2, backend=None):
        super().__init__()
        self.pool, self.backend = pool, backend

    def forward(self, x):
        out, self.cache = maxpool_forward(x, self.pool, self.backend)
        return out

    def backward(self, dout):
        return maxpool_backward(dout, self.cache)

    def output_shape(self, in_shape):
        H, W, C = in_shape
        return (H // self.pool, W // self.pool, C)


class Upsample2D(Layer):
    def __init__(self, factor=2):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        out, self.cache = upsample_forward(x, self.factor)
        return out

    def backward(self, dout):
        return upsample_backward(dout, self.cache)

    def output_shape(self, in_shape):
        H, W, C = in_shape
        return (H * self.factor, W * self.factor, C)


class ReLU(Layer):
    def __init__(self, backend=None):
        super().__init__()
        self.backend = backend

    def forward(self, x):
        out, self.cache = relu_forward(x, self.backend)
        return out

    def backward(self, dout):
        return relu_backward(dout, self.cache)


class Sigmoid(Layer):
    def forward(self, x):
        out, self.cache = sigmoid_forward(x)
        return out

    def backward(self, dout):
        return sigmoid_backward(dout, self.cache)


class Flatten(Layer):
    def forward(self, x):
        out, self.cache = flatten_forward(x)
        return out

    def backward(self, dout):
        return flatten_backward(dout, self.cache)

    def output_shape(self, in_shape):
        return (int(np.prod(in_shape)),)


class Reshape(Layer):
    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x):
        out, self.cache = reshape_forward(x, self.shape)
        return out

    def backward(self, dout):
        return reshape_backward(dout, self.cache)

    def output_shape(self, in_shape):
        return self.shape

    def __repr__(self):
        return f"Reshape{self.shape}"
