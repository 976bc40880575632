"""Every layer of a conv VAE as a pair of pure functions, and the objects that hold their weights.

The contract (CS231n, llm.c)::

    out, cache = thing_forward(x, *params)
    dx, *dparams = thing_backward(dout, cache)

``cache`` holds whatever the backward pass needs; nothing else is stored
anywhere. Layout is NHWC: images are ``(N, H, W, C)``. Weights follow Keras:
dense ``(D_in, D_out)``, conv ``(KH, KW, C_in, C_out)``, transposed conv
``(KH, KW, C_out, C_in)`` -- that is, a transposed conv uses *the same array*
as the forward conv it is the adjoint of. Every function keeps the dtype of
its input: float32 for training, float64 for gradient checks. The backward
functions of weighted layers take an optional ``dw``, an array the weight
gradient is written into (see :class:`Layer` for why).

* :mod:`.dense`: dense, activations, reshapes, the reparameterization trick;
* :mod:`.conv`: convolution, transposed convolution, max-pool, upsampling;
* :mod:`.objects`: the layer objects :mod:`tinyvae.models` stacks.

The fast kernels come from :mod:`tinyvae.kernels`; pass ``backend="numpy"``
(or set ``TINYVAE_KERNELS=numpy``) for the NumPy reference path.
"""
from .conv import (conv2d_backward, conv2d_forward, conv_transpose2d_backward,  # noqa: F401
                   conv_transpose2d_forward, maxpool_backward, maxpool_forward,
                   upsample_backward, upsample_conv_transpose2d_backward,
                   upsample_conv_transpose2d_forward, upsample_forward)
from .dense import (dense_backward, dense_forward, flatten_backward, flatten_forward,  # noqa: F401
                    relu_backward, relu_forward, reparam_backward, reparam_forward,
                    reshape_backward, reshape_forward, sigmoid_backward, sigmoid_forward)
from .objects import (Conv2D, ConvTranspose2D, Dense, Flatten, Layer, MaxPool2D, ReLU,  # noqa: F401
                      Reshape, Sigmoid, Upsample2D, UpsampleConvTranspose2D, glorot_uniform)
