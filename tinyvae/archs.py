"""The study's three VAE variants as plain data (no numba import, so the
command line can list them instantly). :mod:`tinyvae.models` builds them."""
import math
import numbers
from dataclasses import dataclass

from .data import IMAGE_SHAPES
from .errors import ConfigError


@dataclass(frozen=True)
class Arch:
    """One VAE variant: encoder conv channels, encoder dense sizes, latent size, KL weight."""
    name: str
    convs: tuple
    dense: tuple
    latent: int
    beta: float


ARCHS = {
    "simple": Arch("simple", convs=(32, 64), dense=(256, 64), latent=2, beta=1.0),
    "highdim": Arch("highdim", convs=(32, 64), dense=(256, 64), latent=16, beta=1.0),
    "deep": Arch("deep", convs=(32, 128), dense=(1024, 256, 32), latent=2, beta=0.5),
}


LIKELIHOODS = ("gaussian", "bernoulli")    # the decoder's: squared error (the paper's) or cross-entropy


def get_arch(name):
    """The :class:`Arch` called ``name``, or a ConfigError listing the names."""
    if isinstance(name, Arch):
        return name
    if name not in ARCHS:
        raise ConfigError(f"unknown model {name!r}; accepted: {', '.join(ARCHS)}")
    return ARCHS[name]


def check_beta(beta):
    """``beta`` as a float (None stays None: the architecture's), or a ConfigError.

    A KL weight is a finite number >= 0 (NumPy numbers count; bools and strings do not).
    """
    if beta is None:
        return None
    if not (isinstance(beta, numbers.Real) and not isinstance(beta, bool)
            and math.isfinite(beta) and beta >= 0):
        raise ConfigError(f"beta must be a finite number >= 0 or None, got {beta!r}")
    return float(beta)


def image_shape_of(dataset):
    """``(H, W, C)`` of a dataset's images, or a ConfigError listing the datasets."""
    if dataset not in IMAGE_SHAPES:
        raise ConfigError(f"unknown dataset {dataset!r}; accepted: {', '.join(IMAGE_SHAPES)}")
    return IMAGE_SHAPES[dataset]
