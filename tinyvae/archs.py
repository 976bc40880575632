"""The study's three VAE variants as plain data (no numba import, so the
command line can list them instantly). :mod:`tinyvae.models` builds them."""
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


def image_shape_of(dataset):
    """``(H, W, C)`` of a dataset's images, or a ConfigError listing the datasets."""
    if dataset not in IMAGE_SHAPES:
        raise ConfigError(f"unknown dataset {dataset!r}; accepted: {', '.join(IMAGE_SHAPES)}")
    return IMAGE_SHAPES[dataset]
