"""Layer objects: each wraps one forward/backward pair and holds its weights."""
import numpy as np

from ..geometry import conv_geometry, conv_transpose_geometry
from .conv import (conv2d_backward, conv2d_forward, conv_transpose2d_backward,
                   conv_transpose2d_forward, maxpool_backward, maxpool_forward, upsample_backward,
                   upsample_conv_transpose2d_backward, upsample_conv_transpose2d_forward,
                   upsample_forward)
from .dense import (dense_backward, dense_forward, flatten_backward, flatten_forward,
                    relu_backward, relu_forward, reshape_backward, reshape_forward,
                    sigmoid_backward, sigmoid_forward)


def glorot_uniform(rng, shape, fan_in, fan_out, dtype):
    """Keras' default initialiser: U(-a, a) with ``a = sqrt(6 / (fan_in + fan_out))``."""
    a = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-a, a, size=shape).astype(dtype)


class Layer:
    """A thin wrapper around one forward/backward pair.

    ``params`` and ``grads`` are dicts with identical keys, filled once in
    ``__init__``. ``forward`` keeps the cache of the last call. The grads
    contract: ``backward`` writes every gradient *into* the array ``grads``
    already holds (overwritten, never accumulated, never replaced by a new
    array), so whoever keeps a reference to ``grads[k]`` -- the model's
    ``grads`` dict, an optimizer -- always sees the latest gradient, and a
    step allocates no weight-sized arrays.
    """

    def __init__(self):
        self.params, self.grads, self.cache = {}, {}, None
        self.name = type(self).__name__.lower()

    def _keep(self, **grads):
        """Write each computed gradient into the array of ``self.grads`` with its key."""
        for k, g in grads.items():
            if g is not self.grads[k]:            # a weight gradient written in place already is
                self.grads[k][...] = g

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
        dx, dw, db = dense_backward(dout, self.cache, dw=self.grads["w"])
        self._keep(w=dw, b=db)
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
        dx, dw, db = conv2d_backward(dout, self.cache, self.need_dx, dw=self.grads["w"])
        self._keep(w=dw, b=db)
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
        dx, dw, db = conv_transpose2d_backward(dout, self.cache, dw=self.grads["w"])
        self._keep(w=dw, b=db)
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
        dx, dw, db = upsample_conv_transpose2d_backward(dout, self.cache, dw=self.grads["w"])
        self._keep(w=dw, b=db)
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
