"""Layers on images: convolution, its adjoint (the transposed convolution), the
two fused with an upsampling, max-pool and nearest upsampling. NHWC throughout."""
import numpy as np

from .. import kernels
from ..geometry import conv_geometry, conv_transpose_geometry


def _weight_grad(a, b, dw, w_shape):
    """``a @ b`` reshaped to ``w_shape``; written into and returned as ``dw``
    (a C-contiguous array of that shape) when one is given."""
    if dw is None:
        return (a @ b).reshape(w_shape)
    if not dw.flags.c_contiguous:
        raise ValueError("dw must be C-contiguous, or its reshape would be a copy")
    np.matmul(a, b, out=dw.reshape(a.shape[0], b.shape[1]))        # a view: the product lands in dw
    return dw


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
    cols = kernels.im2col(x, KH, KW, stride, pad, out_hw, backend=backend)  # (N*Ho*Wo, KH*KW*C)
    out = cols @ w.reshape(KH * KW * C, F)                          # (N*Ho*Wo, F)
    kernels.bias_add(out, b, backend=backend)                       # out += b, in place
    out = out.reshape(N, out_hw[0], out_hw[1], F)                   # (N, Ho, Wo, F)
    return out, (x.shape, cols, w, stride, pad, out_hw, backend)


def conv2d_backward(dout, cache, need_dx=True, dw=None):
    """dout : (N, Ho, Wo, F) -> dx (N, H, W, C), dw (KH, KW, C, F), db (F,)

    With ``need_dx=False`` (a network's first layer: nobody needs the
    gradient of the image) ``dx`` is not computed and None is returned.
    ``dw``, optional: the array to write the weight gradient into.
    """
    x_shape, cols, w, stride, pad, out_hw, backend = cache
    KH, KW, C, F = w.shape
    dout2 = dout.reshape(-1, F)                                     # (N*Ho*Wo, F)
    db = kernels.bias_grad(dout2, backend=backend)                  # (F,)
    dw = _weight_grad(cols.T, dout2, dw, w.shape)                   # (KH, KW, C, F)
    if not need_dx:
        return None, dw, db
    dcols = dout2 @ w.reshape(KH * KW * C, F).T                     # (N*Ho*Wo, KH*KW*C)
    dx = kernels.col2im(dcols, x_shape, KH, KW, stride, pad, out_hw, backend=backend)  # (N, H, W, C)
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
    out = kernels.col2im(cols, out_shape, KH, KW, stride, pad, (H, W), backend=backend)  # (N, Ho, Wo, C)
    kernels.bias_add(out, b, backend=backend)                       # out += b, in place
    return out, (x2, w, stride, pad, (H, W), backend)


def conv_transpose2d_backward(dout, cache, dw=None):
    """dout : (N, Ho, Wo, C) -> dx (N, H, W, F), dw (KH, KW, C, F), db (C,)

    ``dw``, optional: the array to write the weight gradient into.
    """
    x2, w, stride, pad, in_hw, backend = cache
    KH, KW, C, F = w.shape
    N = dout.shape[0]
    db = kernels.bias_grad(dout.reshape(-1, C), backend=backend)    # (C,)
    dcols = kernels.im2col(dout, KH, KW, stride, pad, in_hw, backend=backend)  # (N*H*W, KH*KW*C)
    dx = (dcols @ w.reshape(KH * KW * C, F)).reshape(N, in_hw[0], in_hw[1], F)  # (N, H, W, F)
    dw = _weight_grad(dcols.T, x2, dw, w.shape)                     # (KH, KW, C, F)
    return dx, dw, db


def upsample_conv_transpose2d_forward(x, w, b, factor=2, backend=None):
    """Nearest upsampling by ``factor`` followed by a transposed conv (stride 1,
    'valid'), fused: equal to ``conv_transpose2d_forward(upsample_forward(x,
    factor)[0], w, b)`` but ``factor**2`` times cheaper, because the upsampled
    image repeats every pixel of ``x``, so the matrix product can run on ``x``.

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
    out = kernels.col2im_up(cols, out_shape, KH, KW, factor, (H, W), backend=backend)  # (N, Ho, Wo, C)
    kernels.bias_add(out, b, backend=backend)                       # out += b, in place
    return out, (x2, w, factor, (H, W), backend)


def upsample_conv_transpose2d_backward(dout, cache, dw=None):
    """dout : (N, Ho, Wo, C) -> dx (N, H, W, F), dw (KH, KW, C, F), db (C,)

    ``dw``, optional: the array to write the weight gradient into.
    """
    x2, w, factor, in_hw, backend = cache
    KH, KW, C, F = w.shape
    N = dout.shape[0]
    db = kernels.bias_grad(dout.reshape(-1, C), backend=backend)    # (C,)
    dcols = kernels.im2col_up(dout, KH, KW, factor, in_hw, backend=backend)  # (N*H*W, KH*KW*C)
    dx = (dcols @ w.reshape(KH * KW * C, F)).reshape(N, in_hw[0], in_hw[1], F)  # (N, H, W, F)
    dw = _weight_grad(dcols.T, x2, dw, w.shape)                     # (KH, KW, C, F)
    return dx, dw, db


def maxpool_forward(x, pool=2, backend=None):
    """Max over ``pool x pool`` windows, stride ``pool``; odd sizes floor (13 -> 6).

    x : (N, H, W, C) -> out : (N, H // pool, W // pool, C)
    """
    out, arg = kernels.maxpool_forward(x, pool, backend=backend)    # (N, Ho, Wo, C) twice
    return out, (arg, x.shape, pool, backend)


def maxpool_backward(dout, cache):
    """Each window's gradient goes to its arg-max (first on ties); dx : (N, H, W, C)."""
    arg, x_shape, pool, backend = cache
    return kernels.maxpool_backward(dout, arg, x_shape, pool, backend=backend)


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
