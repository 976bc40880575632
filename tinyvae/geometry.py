"""Output sizes and padding of convolutions, TensorFlow's rules.

* ``'valid'``: no padding, ``Ho = (H - KH) // s + 1``.
* ``'same'``: ``Ho = ceil(H / s)``; the zero padding needed,
  ``max((Ho - 1) * s + KH - H, 0)``, is split with the smaller half on top
  (and on the left).

A transposed convolution is the adjoint of the convolution that maps *its
output* to *its input*, so its geometry is that of the forward conv read
backwards: ``'valid'`` gives ``Ho = (H - 1) * s + KH``, ``'same'`` gives
``Ho = H * s`` (other sizes that the stride maps back to H may be asked for).
"""
import numbers

from .errors import ConfigError

PADDINGS = ("valid", "same")


def _pair(v, name):
    if isinstance(v, numbers.Integral):
        v = (v, v)
    v = tuple(int(a) for a in v)
    if len(v) != 2 or min(v) < 1:
        raise ConfigError(f"{name} must be a positive int or a pair of them, got {v!r}")
    return v


def conv_geometry(in_hw, k_hw, stride=1, padding="valid"):
    """Geometry of a convolution.

    Parameters
    ----------
    in_hw : (H, W) input size
    k_hw : (KH, KW) kernel size
    stride : int or (sh, sw)
    padding : 'valid' or 'same'

    Returns
    -------
    (Ho, Wo), (pad_top, pad_left), (sh, sw)
    """
    (H, W), (KH, KW) = in_hw, k_hw
    sh, sw = _pair(stride, "stride")
    if padding == "valid":
        Ho, Wo = (H - KH) // sh + 1, (W - KW) // sw + 1
        pads = (0, 0)
    elif padding == "same":
        Ho, Wo = -(-H // sh), -(-W // sw)
        pads = (max((Ho - 1) * sh + KH - H, 0) // 2, max((Wo - 1) * sw + KW - W, 0) // 2)
    else:
        raise ConfigError(f"padding must be one of {PADDINGS}, got {padding!r}")
    if Ho < 1 or Wo < 1:
        raise ConfigError(f"a {KH}x{KW} '{padding}' convolution does not fit a {H}x{W} input")
    return (Ho, Wo), pads, (sh, sw)


def conv_transpose_geometry(in_hw, k_hw, stride=1, padding="valid", out_hw=None):
    """Geometry of a transposed convolution (same arguments and result as
    :func:`conv_geometry`; the pads are those of the adjoint forward conv).

    With stride > 1 several output sizes map back to the same input size
    (a stride-2 conv sends both 8 and 9 to 4); ``out_hw`` picks one, as
    TensorFlow's ``output_shape`` does. The default is Keras': ``(H-1)*s + KH``
    for 'valid', ``H*s`` for 'same'.
    """
    (H, W), (KH, KW) = in_hw, k_hw
    sh, sw = _pair(stride, "stride")
    if padding not in PADDINGS:
        raise ConfigError(f"padding must be one of {PADDINGS}, got {padding!r}")
    if out_hw is None:
        if padding == "valid":
            out_hw = ((H - 1) * sh + KH, (W - 1) * sw + KW)
        else:
            out_hw = (H * sh, W * sw)
    Ho, Wo = out_hw
    back, pads, _ = conv_geometry((Ho, Wo), (KH, KW), (sh, sw), padding)
    if back != (H, W):
        raise ConfigError(f"output size {Ho}x{Wo} is not one a {KH}x{KW} stride-{sh} "
                          f"'{padding}' transposed conv can make from {H}x{W}")
    return (Ho, Wo), pads, (sh, sw)
