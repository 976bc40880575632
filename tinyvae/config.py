"""What defines a training run: its settings, its random streams, its data.

The study's protocol is the default: Adam with lr 1e-4, batches of 50,
10 epochs. ``seed`` determines everything: :func:`streams` splits it with
:class:`numpy.random.SeedSequence` into independent streams for the initial
weights, the data subsets, the training stream (each epoch's shuffle and
every batch's reparameterization noise) and the evaluation noise.
"""
import math
from dataclasses import dataclass

import numpy as np

from .archs import LIKELIHOODS, check_beta, get_arch, image_shape_of
from .data import load
from .errors import ConfigError
from .evaluate import check_uint8_images


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in every checkpoint).

    ``train_subset`` / ``test_subset``: use only that many images, chosen at
    random with the seed (None: all). ``checkpoint_every``: also checkpoint
    every that many steps (0: only at the end of each epoch). ``beta``: the KL
    weight (None: the architecture's, 0.5 for deep and 1 otherwise).
    ``likelihood``: the decoder's, ``"gaussian"`` (squared error, the paper's)
    or ``"bernoulli"`` (binary cross-entropy on logits).
    """
    model: str = "simple"
    dataset: str = "mnist"
    epochs: int = 10
    batch_size: int = 50
    lr: float = 1e-4
    seed: int = 0
    train_subset: int | None = None
    test_subset: int | None = None
    checkpoint_every: int = 0
    beta: float | None = None
    likelihood: str = "gaussian"

    def validate(self):
        """Raise ConfigError naming the first bad field and what is accepted."""
        for name in ("model", "dataset"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"{name} must be a name (str), got {getattr(self, name)!r}")
        get_arch(self.model)
        image_shape_of(self.dataset)
        for name, low in (("epochs", 1), ("batch_size", 1), ("checkpoint_every", 0)):
            v = getattr(self, name)
            if not _is_int(v) or v < low:
                raise ConfigError(f"{name} must be an integer >= {low}, got {v!r}")
        for name in ("train_subset", "test_subset"):
            v = getattr(self, name)
            if v is not None and (not _is_int(v) or v < 1):
                raise ConfigError(f"{name} must be a positive integer or None, got {v!r}")
        if not _is_number(self.lr) or not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be a finite number > 0, got {self.lr!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {self.seed!r}")
        for name in ("epochs", "batch_size", "checkpoint_every", "seed", "train_subset", "test_subset"):
            if getattr(self, name) is not None:                # NumPy numbers -> plain ones (JSON)
                setattr(self, name, int(getattr(self, name)))
        self.lr = float(self.lr)
        self.beta = check_beta(self.beta)
        if self.likelihood not in LIKELIHOODS:
            raise ConfigError(f"likelihood must be one of {', '.join(LIKELIHOODS)}, got {self.likelihood!r}")
        return self

    def effective_beta(self):
        """The KL weight this run trains with: ``beta``, or the architecture's."""
        return get_arch(self.model).beta if self.beta is None else self.beta


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_number(v):
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def streams(seed):
    """Independent RNGs for init, subsets, training and evaluation from one seed."""
    init, subset, training, evaluation = np.random.SeedSequence(seed).spawn(4)
    return (np.random.default_rng(init), np.random.default_rng(subset),
            np.random.default_rng(training), evaluation)


def select_subsets(full, cfg):
    """``cfg``'s train and test subsets of ``full = {"train": (x, y), "test": (x, y)}``,
    drawn with the seed's subset stream (all images where a subset is None)."""
    _, subset_rng, _, _ = streams(cfg.seed)
    out = {}
    for split, k in (("train", cfg.train_subset), ("test", cfg.test_subset)):
        x, y = full[split]
        if k is not None and k < len(x):
            idx = np.sort(subset_rng.choice(len(x), size=k, replace=False))
            x, y = x[idx], y[idx]
        out[split] = (x, y)
    return out


def load_data(cfg, data_dir=None):
    """Train and test images (uint8 NHWC) and labels for ``cfg``, subsets applied."""
    return select_subsets({split: load(cfg.dataset, split, data_dir) for split in ("train", "test")}, cfg)


def check_data(data, image_shape):
    """Raise ConfigError unless ``data`` is ``{"train": (images, labels), "test": (images, labels)}``."""
    if not isinstance(data, dict) or not {"train", "test"} <= set(data):
        raise ConfigError('data must be a dict {"train": (images, labels), "test": (images, labels)}, '
                          f"got {type(data).__name__}")
    for split in ("train", "test"):
        part = data[split]
        if not isinstance(part, (tuple, list)) or len(part) != 2:
            raise ConfigError(f'data["{split}"] must be a pair (images, labels)')
        check_uint8_images(part[0], image_shape, f'data["{split}"] images')
        if len(part[0]) == 0:
            raise ConfigError(f'data["{split}"] has no images')
