"""Small synthetic datasets for tests that must run without the real data."""
import gzip

import numpy as np


def tiny_data(n_train=30, n_test=10, seed=0):
    """``{"train": (images, labels), "test": ...}`` of random 28x28x1 uint8 images."""
    rng = np.random.default_rng(seed)
    return {split: (rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8), rng.integers(0, 10, n))
            for split, n in (("train", n_train), ("test", n_test))}


def idx_gz(array):
    """``array`` (uint8) as a gzipped IDX file's bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    return gzip.compress(header + array.astype(">u1").tobytes(), compresslevel=1)


def write_mnist_dir(root, n_train=40, n_test=10, seed=0):
    """A synthetic data dir in the official MNIST layout (random pixels)."""
    rng = np.random.default_rng(seed)
    (root / "mnist").mkdir(parents=True, exist_ok=True)
    for (images, labels), n in ((("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"), n_train),
                                (("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"), n_test)):
        (root / "mnist" / images).write_bytes(idx_gz(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)))
        (root / "mnist" / labels).write_bytes(idx_gz(rng.integers(0, 10, n, dtype=np.uint8)))
    return root
