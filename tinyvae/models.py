"""The study's three conv VAEs, each built from one short description.

An :class:`Arch` names the encoder's conv channels and dense sizes, the
latent size and the KL weight ``beta``. :class:`VAE` turns it into layers:

encoder, for each conv channel count ``c``::

    Conv2D(c, 3x3, valid) -> ReLU -> MaxPool2D(2)

then ``Flatten -> [Dense(d) -> ReLU] for d in dense`` and two heads,
``Dense(latent)`` for ``mu`` and ``Dense(latent)`` for ``logvar``.

decoder, the mirror image::

    [Dense(d) -> ReLU] for d in reversed(dense) -> Dense(flat) -> ReLU -> Reshape
    -> [Upsample2D(2) -> ConvTranspose2D(c, 3x3, valid) -> ReLU] for c in reversed(convs),
       the first of them keeping the channel count of the reshape; each upsample
       and the transposed conv after it run as one fused layer
       (:class:`tinyvae.layers.UpsampleConvTranspose2D`), 4x cheaper
    -> ConvTranspose2D(image channels, 3x3, valid) -> Sigmoid (Gaussian decoder only)

The Gaussian decoder (the paper's) outputs pixel values in (0, 1) and is
trained with squared error; the Bernoulli decoder (``likelihood="bernoulli"``)
outputs logits and is trained with binary cross-entropy on them.

Sizes come out exact: MNIST 5 -> 10 -> 12 -> 24 -> 26 -> 28,
CIFAR-10 6 -> 12 -> 14 -> 28 -> 30 -> 32. Weights are Glorot-uniform and
biases zero (Keras' defaults).
"""

import numpy as np

from . import layers as L
from .archs import ARCHS, IMAGE_SHAPES, LIKELIHOODS, Arch, check_beta, get_arch, image_shape_of  # noqa: F401 (re-exported)
from .errors import ConfigError
from .losses import bce_with_logits_loss, kl_loss, sse_loss


def _forward(layers, x):
    for layer in layers:
        x = layer.forward(x)
    return x


def _backward(layers, dout):
    for layer in reversed(layers):
        dout = layer.backward(dout)
    return dout


class VAE:
    """A conv VAE with hand-written forward and backward passes.

    Parameters
    ----------
    arch : str or Arch, one of ``ARCHS`` ("simple", "highdim", "deep")
    image_shape : (H, W, C) of the images, e.g. ``IMAGE_SHAPES["mnist"]``
    rng : numpy Generator used for the initial weights
    dtype : np.float32 for training, np.float64 for gradient checks
    backend : kernel backend, None for ``$TINYVAE_KERNELS`` (default numba)
    likelihood : "gaussian" (squared error, decoder ends in a Sigmoid) or
        "bernoulli" (cross-entropy, decoder outputs logits)
    beta : KL weight of :meth:`loss`, a finite number >= 0; None for the architecture's

    Attributes
    ----------
    params, grads : dicts with identical keys (``"enc0_conv2d.w"``, ...)
        holding the layers' own arrays: an optimizer that updates ``params``
        in place updates the model, and :meth:`backward` writes into
        ``grads`` (the grads contract of :class:`tinyvae.layers.Layer`).
        Copy an entry to keep it past the next backward pass.
    """

    def __init__(self, arch, image_shape, rng, dtype=np.float32, backend=None, likelihood="gaussian",
                 beta=None):
        self.arch = get_arch(arch)
        if likelihood not in LIKELIHOODS:
            raise ConfigError(f"likelihood must be one of {', '.join(LIKELIHOODS)}, got {likelihood!r}")
        self.likelihood = likelihood
        beta = check_beta(beta)
        self.beta = self.arch.beta if beta is None else beta
        self.image_shape = tuple(int(s) for s in image_shape)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ConfigError(f"dtype must be float32 or float64, got {self.dtype}")
        H, W, C = self.image_shape
        kw = dict(dtype=self.dtype)

        self.encoder, self.decoder = [], []
        shape, c_in = self.image_shape, C
        for c in self.arch.convs:                        # conv -> relu -> pool
            self.encoder += [L.Conv2D(c_in, c, rng, backend=backend, need_dx=bool(self.encoder), **kw),
                             L.ReLU(backend), L.MaxPool2D(2, backend=backend)]
            c_in = c
        self.encoder.append(L.Flatten())
        conv_out = self._shape_through(self.encoder[:-1], shape)   # e.g. (5, 5, 64)
        if min(conv_out) < 1:
            raise ConfigError(f"images of shape {self.image_shape} are too small for model {self.arch.name!r}")
        d_in = int(np.prod(conv_out))
        for d in self.arch.dense:                         # dense -> relu
            self.encoder += [L.Dense(d_in, d, rng, **kw), L.ReLU(backend)]
            d_in = d
        self.mu_head = L.Dense(d_in, self.arch.latent, rng, **kw)
        self.logvar_head = L.Dense(d_in, self.arch.latent, rng, **kw)

        d_in = self.arch.latent
        for d in reversed(self.arch.dense):
            self.decoder += [L.Dense(d_in, d, rng, **kw), L.ReLU(backend)]
            d_in = d
        self.decoder += [L.Dense(d_in, int(np.prod(conv_out)), rng, **kw), L.ReLU(backend),
                         L.Reshape(conv_out)]
        c_in = conv_out[2]
        for c in reversed(self.arch.convs):               # upsample -> convT -> relu, fused
            self.decoder += [L.UpsampleConvTranspose2D(c_in, c, rng, factor=2, backend=backend, **kw),
                             L.ReLU(backend)]
            c_in = c
        self.decoder.append(L.ConvTranspose2D(c_in, C, rng, backend=backend, **kw))
        if likelihood == "gaussian":
            self.decoder.append(L.Sigmoid())
        out = self._shape_through(self.decoder, (self.arch.latent,))
        if out != self.image_shape:
            raise ConfigError(f"model {self.arch.name!r} decodes to {out}, not to the image shape "
                              f"{self.image_shape}; accepted image shapes: "
                              f"{', '.join(map(str, IMAGE_SHAPES.values()))}")

        self.params, self.grads = {}, {}
        for name, layer in self.named_layers():
            layer.name = name
            for k in layer.params:
                self.params[f"{name}.{k}"] = layer.params[k]
                self.grads[f"{name}.{k}"] = layer.grads[k]

    # ---- structure ---------------------------------------------------------

    def named_layers(self):
        """``(name, layer)`` pairs in forward order, e.g. ``("enc0_conv2d", Conv2D(32, ...))``."""
        named = [(f"enc{i}_{type(l).__name__.lower()}", l) for i, l in enumerate(self.encoder)]
        named += [("mu_dense", self.mu_head), ("logvar_dense", self.logvar_head)]
        named += [(f"dec{i}_{type(l).__name__.lower()}", l) for i, l in enumerate(self.decoder)]
        return named

    @staticmethod
    def _shape_through(layers, shape):
        for layer in layers:
            shape = tuple(layer.output_shape(shape))
        return shape

    def summary(self):
        """A table of every layer, its output shape and parameter count."""
        rows, shape = [("input", self.image_shape, 0)], self.image_shape
        for name, layer in self.named_layers():
            if name.startswith(("mu", "logvar")):         # both heads read the encoder's output
                out = (self.arch.latent,)
            else:
                if name.startswith("dec0"):
                    shape = (self.arch.latent,)
                if isinstance(layer, L.UpsampleConvTranspose2D):   # fused: show both halves
                    H, W, C = shape
                    rows.append((f"{name} Upsample2D({layer.factor}), fused into the next row",
                                 (H * layer.factor, W * layer.factor, C), 0))
                out = shape = tuple(layer.output_shape(shape))
            rows.append((f"{name} {layer!r}", out, sum(p.size for p in layer.params.values())))
        total = sum(p.size for p in self.params.values())
        width = max(len(r[0]) for r in rows) + 2
        lines = [f"{self.arch.name} VAE, latent {self.arch.latent}, beta {self.beta}, {self.likelihood} decoder, "
                 f"images {self.image_shape}"]
        lines.append(f"{'layer':<{width}}{'output shape':<18}{'params':>10}")
        lines += [f"{a:<{width}}{str(b):<18}{c:>10,}" for a, b, c in rows]
        lines.append(f"{'total':<{width}}{'':<18}{total:>10,}")
        return "\n".join(lines)

    # ---- passes --------------------------------------------------------------

    def check_images(self, x):
        """Raise ConfigError unless ``x`` is a float batch of this model's images."""
        if not isinstance(x, np.ndarray) or x.ndim != 4 or x.shape[1:] != self.image_shape:
            shape = getattr(x, "shape", type(x).__name__)
            raise ConfigError(f"expected images of shape (N, {', '.join(map(str, self.image_shape))}), "
                              f"got {shape}")
        if x.dtype != self.dtype:
            raise ConfigError(f"expected images of dtype {self.dtype} (pixels / 255), got {x.dtype}")

    def encode(self, x):
        """x : (N, H, W, C) -> mu (N, L), logvar (N, L)."""
        self.check_images(x)
        h = _forward(self.encoder, x)                     # (N, D)
        return self.mu_head.forward(h), self.logvar_head.forward(h)  # (N, L) twice

    def check_latent(self, z, name="z", n=None):
        """Raise ConfigError unless ``z`` is an (N, L) array of numbers (N == n if given)."""
        L_ = self.arch.latent
        shape = getattr(z, "shape", None)
        if (not isinstance(z, np.ndarray) or z.ndim != 2 or shape[1] != L_
                or (n is not None and shape[0] != n) or z.dtype.kind not in "fiu"):
            want = f"({n if n is not None else 'N'}, {L_})"
            raise ConfigError(f"expected {name} of shape {want} holding numbers, got "
                              f"{shape if shape is not None else type(z).__name__}"
                              f"{'' if shape is None else ' ' + str(z.dtype)}")

    def decode(self, z):
        """z : (N, L) -> the decoder's mean image xhat (N, H, W, C) in (0, 1)."""
        out = self.decode_output(z)                      # (N, H, W, C)
        return out if self.likelihood == "gaussian" else L.sigmoid_forward(out)[0]

    def decode_output(self, z):
        """z : (N, L) -> the decoder's output (N, H, W, C): pixel means (Gaussian) or logits (Bernoulli)."""
        self.check_latent(z)
        return _forward(self.decoder, z.astype(self.dtype, copy=False))

    def forward(self, x, eps):
        """Encode, sample ``z = mu + exp(0.5 * logvar) * eps``, decode.

        x : (N, H, W, C); eps : (N, L) standard normal noise.
        Returns out (N, H, W, C) (:meth:`decode_output`), mu (N, L), logvar (N, L).
        """
        self.check_images(x)
        self.check_latent(eps, "eps", n=len(x))
        mu, logvar = self.encode(x)                      # (N, L) twice
        z, self._reparam_cache = L.reparam_forward(mu, logvar, eps.astype(self.dtype, copy=False))
        out = self.decode_output(z)                       # (N, H, W, C)
        return out, mu, logvar

    def backward(self, dxhat, dmu, dlogvar):
        """Back-propagate from the output and the latent statistics.

        dxhat : (N, H, W, C) gradient at the decoder output (:meth:`decode_output`);
        dmu, dlogvar : (N, L) gradients reaching mu and logvar directly (the KL term).
        Overwrites the arrays in :attr:`grads`.
        """
        dz = _backward(self.decoder, dxhat)                               # (N, L)
        dmu_z, dlogvar_z = L.reparam_backward(dz, self._reparam_cache)    # (N, L) twice
        dh = self.mu_head.backward(dmu + dmu_z)                           # (N, D)
        dh += self.logvar_head.backward(dlogvar + dlogvar_z)
        _backward(self.encoder, dh)

    def loss(self, x, eps, beta=None, backward=True):
        """The study's loss and (by default) its gradients.

        loss = rec + beta * KL, averaged over the batch, with rec the sum over
        pixels of (xhat - x)^2 (Gaussian) or of the binary cross-entropy of the
        logits (Bernoulli); ``beta`` defaults to :attr:`beta`.

        Returns
        -------
        dict with ``loss``, ``rec`` (reconstruction part) and ``kl`` (unweighted KL)
        """
        beta = self.beta if beta is None else beta
        out, mu, logvar = self.forward(x, eps)
        rec, dxhat = (sse_loss if self.likelihood == "gaussian" else bce_with_logits_loss)(out, x)
        kl, dmu, dlogvar = kl_loss(mu, logvar)
        if backward:
            self.backward(dxhat, beta * dmu, beta * dlogvar)
        return {"loss": rec + beta * kl, "rec": rec, "kl": kl}
