# %% [markdown]
# # Lesson 5 — Transposed convolution, upsampling, and the decoder's sizes
#
# The encoder shrinks a 28x28 image to 5x5 with convolutions and pooling;
# the decoder must grow it back. It uses two layers:
#
# * **transposed convolution**: a convolution is linear in its input,
#   `y = M x` for some big sparse matrix `M`. The transposed convolution is
#   `x' = Mᵀ y` — the *adjoint*, with the same weights. A 'valid' 3x3 conv
#   takes 12 -> 10, so its transpose takes 10 -> 12.
# * **nearest-neighbour upsampling**: every pixel becomes a 2x2 block.
#
# Run it: `python -m lessons.l05_transposed_conv --out /tmp/l05`.
# Exercise (lesson 1 says how): `conv_transpose_one_image`.

# %%
import pathlib
import sys

HERE = pathlib.Path(__file__).parent if "__file__" in globals() else pathlib.Path.cwd()
sys.path.insert(0, str(HERE.resolve().parent))    # the repository root: runs from any folder

import matplotlib.pyplot as plt
import numpy as np

from lessons._common import savefig, setup
from tinyvae import layers as L
from tinyvae.errors import ConfigError
from tinyvae.gradcheck import check_gradient, rel_error
from tinyvae.layers import (conv2d_backward, conv2d_forward, conv_transpose2d_backward,
                            conv_transpose2d_forward, upsample_backward, upsample_forward)
from tinyvae.models import VAE
from tinyvae.reference import conv_transpose2d_naive

args = setup("l05_transposed_conv")
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. A convolution is a matrix
#
# Feed the conv every basis image `e_k` (one pixel 1, the rest 0): column `k`
# of `M` is the output. For a 4x4 one-channel input and a 3x3 'valid'
# filter, `M` is 4 x 16 (four output pixels, each reading nine inputs).
# Do the same with `conv_transpose2d_forward` and *the same `w`*: we get a
# 16 x 4 matrix, and it is exactly `Mᵀ`.

# %%
w = rng.standard_normal((3, 3, 1, 1))                     # (KH, KW, C=1, F=1)
zero = np.zeros(1)
basis_in = np.eye(16).reshape(16, 4, 4, 1)                # 16 images, (16, 4, 4, 1)
basis_out = np.eye(4).reshape(4, 2, 2, 1)                 # 4 images, (4, 2, 2, 1)
M = conv2d_forward(basis_in, w, zero)[0].reshape(16, 4).T                  # (4, 16)
Mt = conv_transpose2d_forward(basis_out, w, zero)[0].reshape(4, 16).T      # (16, 4)
print(f"conv matrix M {M.shape}, transposed-conv matrix {Mt.shape}; "
      f"|Mt - M.T| max = {np.abs(Mt - M.T).max():.1e}")
assert np.allclose(Mt, M.T, rtol=0, atol=1e-15)

fig, axes = plt.subplots(1, 2, figsize=(9, 4), layout="constrained",
                         gridspec_kw={"width_ratios": [4, 1.4]})
lim = np.abs(M).max()
axes[0].imshow(M, cmap="RdBu", vmin=-lim, vmax=lim)
axes[0].set_title("conv2d 4x4 -> 2x2 as a matrix M (4 x 16)")
axes[0].set_xlabel("input pixel")
axes[0].set_ylabel("output pixel")
axes[1].imshow(Mt, cmap="RdBu", vmin=-lim, vmax=lim)
axes[1].set_title("conv_transpose2d\n2x2 -> 4x4 (16 x 4) = Mᵀ")
axes[1].set_xticks(range(4))
savefig(fig, args.out, "l05_conv_as_matrix")

# %% [markdown]
# ## 2. The adjoint, in general
#
# Without building matrices: `<conv(x), y> = <x, convT(y)>` for every `x`
# and `y` (bias 0), with channels, stride and padding. Weights use Keras'
# layout, so *one* array `w : (KH, KW, C, F)` serves the conv `C -> F` and its
# transpose `F -> C`. With stride 2 several input sizes shrink to the same
# output (7 and 8 both give 3 with a 3x3 'valid' filter); `out_hw` says
# which one the transpose should produce.

# %%
for H, s, pad in ((8, 1, "valid"), (8, 2, "same"), (7, 2, "valid"), (9, 2, "same")):
    x = rng.standard_normal((2, H, H, 3))                 # (N, H, W, C)
    w = rng.standard_normal((3, 3, 3, 5))                 # (KH, KW, C, F)
    cx = conv2d_forward(x, w, np.zeros(5), s, pad)[0]     # (N, Ho, Wo, F)
    y = rng.standard_normal(cx.shape)
    ty = conv_transpose2d_forward(y, w, np.zeros(3), s, pad, out_hw=(H, H))[0]  # (N, H, W, C)
    lhs, rhs = np.sum(cx * y), np.sum(x * ty)
    print(f"{H}x{H} stride {s} {pad:5s}: conv -> {cx.shape[1]}x{cx.shape[2]}, "
          f"<conv x, y> = {lhs:+.8f}, <x, convT y> = {rhs:+.8f}")
    assert abs(lhs - rhs) < 1e-10 * max(1, abs(lhs))

# %% [markdown]
# ## 3. What the transpose does: every input pixel paints the filter
#
# Reading `Mᵀ` row by row: input pixel `(i, j)` of the transposed conv adds
# `w[ki, kj] @ y[i, j]` to output pixel `(i s + ki, j s + kj)` — it paints a
# weighted copy of the filter. That is the same scatter as the `dx` loop of
# conv2d's backward pass (lesson 3), and indeed **conv2d's input gradient is
# the transposed conv of `dout`**, and the other way round.

# %%
# exercise
def conv_transpose_one_image(y, w, s=1):
    """'valid': y (H, W, F) -> ((H-1)s + KH, (W-1)s + KW, C), painting w @ y[i, j] per pixel."""
    KH, KW, C, F = w.shape
    Ho, Wo = (y.shape[0] - 1) * s + KH, (y.shape[1] - 1) * s + KW
    painted = np.zeros((Ho, Wo, C))                       # (Ho, Wo, C)
    for (i, j), _ in np.ndenumerate(y[:, :, 0]):
        painted[i * s:i * s + KH, j * s:j * s + KW] += w @ y[i, j]   # (KH, KW, C, F) @ (F,)
    return painted


y = rng.standard_normal((2, 5, 5, 4))                     # (N, H, W, F)
w = rng.standard_normal((3, 3, 2, 4))                     # (KH, KW, C, F): 4 -> 2 channels
b = rng.standard_normal(2)                                # (C,)
for s in (1, 2):
    out, cache = conv_transpose2d_forward(y, w, b, s)     # (N, 7, 7, C) at stride 1, (N, 11, 11, C) at 2
    loop = np.stack([conv_transpose_one_image(yn, w, s) for yn in y]) + b
    print(f"stride {s}: 5x5 -> {out.shape[1]}x{out.shape[2]}; layer vs our loop "
          f"{rel_error(out, loop):.1e}, vs reference {rel_error(out, conv_transpose2d_naive(y, w, b, s)):.1e}")
    assert rel_error(out, loop) < 1e-12

# the gradients are each other's forward passes
x = rng.standard_normal((2, 7, 7, 2))                     # (N, H, W, C)
out, cache = conv2d_forward(x, w, np.zeros(4))            # (N, 5, 5, F)
dout = rng.standard_normal(out.shape)
dx = conv2d_backward(dout, cache)[0]                      # (N, 7, 7, C)
print(f"conv2d's dx vs conv_transpose2d(dout): {rel_error(dx, conv_transpose2d_forward(dout, w, np.zeros(2))[0]):.1e}")
assert rel_error(dx, conv_transpose2d_forward(dout, w, np.zeros(2))[0]) < 1e-12
out_t, cache_t = conv_transpose2d_forward(y, w, b)        # (N, 7, 7, C)
dt = rng.standard_normal(out_t.shape)
dy, dw, db = conv_transpose2d_backward(dt, cache_t)       # (N, 5, 5, F)
print(f"conv_transpose2d's dx vs conv2d(dout): {rel_error(dy, conv2d_forward(dt, w, np.zeros(4))[0]):.1e}")
assert rel_error(dy, conv2d_forward(dt, w, np.zeros(4))[0]) < 1e-12

y, w = y[:1, :3, :3, :3].copy(), w[..., :3].copy()        # a smaller case for finite differences
out_t, cache_t = conv_transpose2d_forward(y, w, b, 2)     # stride 2: (1, 7, 7, C)
dt = rng.standard_normal(out_t.shape)
dy, dw, db = conv_transpose2d_backward(dt, cache_t)
f = lambda: float(np.sum(conv_transpose2d_forward(y, w, b, 2)[0] * dt))   # noqa: E731
errs = [check_gradient(f, p, g) for p, g in ((y, dy), (w, dw), (b, db))]
print(f"conv_transpose2d stride 2 gradient check: dy {errs[0]:.1e}, dw {errs[1]:.1e}, db {errs[2]:.1e}  (expect < 1e-7)")
assert max(errs) < 1e-7

# %% [markdown]
# ## 4. Upsampling and its adjoint
#
# Nearest-neighbour upsampling copies each pixel into a 2x2 block
# (`np.repeat` along both axes says the same). Each input feeds four
# outputs, so the backward pass *sums* the gradient over each block.

# %%
x = rng.standard_normal((2, 3, 3, 2))                     # (N, H, W, C)
up, f_cache = upsample_forward(x, 2)                      # (N, 6, 6, C)
assert np.array_equal(up, np.repeat(np.repeat(x, 2, axis=1), 2, axis=2))
dup = rng.standard_normal(up.shape)
dx = upsample_backward(dup, f_cache)                      # (N, 3, 3, C)
print(f"upsample 3x3 -> {up.shape[1]}x{up.shape[2]}; <up(x), g> - <x, up_backward(g)> = "
      f"{np.sum(up * dup) - np.sum(x * dx):.1e}")
err = check_gradient(lambda: float(np.sum(upsample_forward(x, 2)[0] * dup)), x, dx)
print(f"upsample gradient check {err:.1e}  (expect < 1e-7)")
assert err < 1e-7

# %% [markdown]
# The decoder always upsamples right before a transposed conv, and the model
# fuses the two (`UpsampleConvTranspose2D`): the upsampled image repeats each
# pixel four times, so the matrix product can run on the small image and the
# painting step places each patch at `(2i + di, 2j + dj)` — four times fewer
# multiply-adds for the same numbers.

# %%
w = rng.standard_normal((3, 3, 2, 2))                     # (KH, KW, C, F)
two_steps = conv_transpose2d_forward(up, w, np.zeros(2))[0]               # (N, 8, 8, C)
fused = L.upsample_conv_transpose2d_forward(x, w, np.zeros(2), 2)[0]      # (N, 8, 8, C)
print(f"upsample then convT {two_steps.shape} vs fused {fused.shape}: rel error {rel_error(two_steps, fused):.1e}")
assert rel_error(two_steps, fused) < 1e-12

# %% [markdown]
# ## 5. Why the decoder's sizes come out exact
#
# The encoder: two rounds of 3x3 'valid' conv (−2) and 2x2 pooling (halve,
# rounding down): `H -> H-2 -> ⌊(H-2)/2⌋ -> ... -> h`. The decoder, after the
# dense layer reshapes to `h x h`: upsample (×2), transposed conv (+2),
# upsample, transposed conv, and a last transposed conv to the image's
# channels: `h -> 2h -> 2h+2 -> 4h+4 -> 4h+6 -> 4h+8`.
#
# * MNIST: 28 -> 26 -> 13 -> 11 -> 5, and back 5 -> 10 -> 12 -> 24 -> 26 -> 28;
# * CIFAR-10: 32 -> 30 -> 15 -> 13 -> 6, and back 6 -> 12 -> 14 -> 28 -> 30 -> 32.
#
# The pooling of 11 drops a row (lesson 4), yet `4·5 + 8 = 28`. In general
# `4h + 8` is a multiple of 4, so only multiples of 4 can come back; and they
# all do: for `H = 4h + 8` the encoder computes `H - 2 = 4h + 6`, halves it
# exactly to `2h + 3`, subtracts 2 to get the odd `2h + 1`, and the second
# pooling rounds that down to `h`. Other sizes do not round-trip, and the
# package refuses them. (Its message names the two datasets' shapes, but
# the model builds for any multiple of 4 from 12 up, with any channel
# count: 24x24, 36x36x3 and 32x32x1 all build below.)

# %%
SPATIAL = (L.Conv2D, L.MaxPool2D, L.Reshape, L.Upsample2D, L.ConvTranspose2D)


def spatial_sizes(layers, shape):
    """Height after each layer that sets it (one example's shapes, no batch axis)."""
    sizes = []
    for layer in layers:
        if isinstance(layer, L.UpsampleConvTranspose2D):  # fused: the upsampled size first
            sizes.append(shape[0] * layer.factor)
        shape = layer.output_shape(shape)
        if isinstance(layer, SPATIAL):
            sizes.append(shape[0])
    return sizes


chains = {}
for name, image in (("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))):
    model = VAE("simple", image, rng)
    enc = spatial_sizes(model.encoder, model.image_shape)          # conv, pool, conv, pool
    dec = spatial_sizes(model.decoder, (model.arch.latent,))       # reshape, up, convT, up, convT, convT
    chains[name] = [image[0]] + enc + dec
    print(f"{name:8s} encoder {image[0]} -> {' -> '.join(map(str, enc))};  "
          f"decoder {' -> '.join(map(str, dec))}")
    assert dec[0] == enc[-1] and dec[-1] == image[0]
assert chains["mnist"][5:] == [5, 10, 12, 24, 26, 28]
assert chains["cifar10"][5:] == [6, 12, 14, 28, 30, 32]

print("  H  h = enc(H)  4h+8  round trip")
for H in range(24, 34):
    h = ((H - 2) // 2 - 2) // 2
    print(f"{H:3d} {h:6d} {4 * h + 8:9d}  {'yes' if 4 * h + 8 == H else ''}")
    assert (4 * h + 8 == H) == (H % 4 == 0)
try:
    VAE("simple", (30, 30, 1), rng)
    raise AssertionError("a 30x30 image should not fit the simple VAE")
except ConfigError as e:
    print(f"VAE for 30x30 images: ConfigError: {e}")
for shape in ((24, 24, 1), (36, 36, 3), (32, 32, 1)):
    m = VAE("simple", shape, rng)
    assert m.decode(np.zeros((1, 2), np.float32)).shape == (1, *shape)
    print(f"VAE for {shape} images: builds, decodes to {shape}")

# %%
fig, ax = plt.subplots(figsize=(8, 3.5))
steps = ["image", "conv", "pool", "conv", "pool", "reshape", "up", "convT", "up", "convT", "convT"]
for name, chain in chains.items():
    ax.plot(range(len(chain)), chain, "o-", label=name)
    for k, v in enumerate(chain):
        ax.annotate(str(v), (k, v), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
ax.set_xticks(range(len(steps)), steps)
ax.axvline(4.5, color="gray", ls=":")
ax.set_ylabel("height = width")
ax.set_title("spatial size through the simple VAE: encoder | decoder")
ax.legend()
savefig(fig, args.out, "l05_decoder_sizes")

# %% [markdown]
# ## What to remember
#
# * the transposed conv is the adjoint (`Mᵀ`) of the conv with the same weights,
#   and each one's input gradient is the other's forward pass;
# * upsampling copies, its backward sums;
# * 'valid' 3x3 layers change sizes by 2, so the decoder `4h + 8` inverts the
#   encoder exactly for sizes that are multiples of 4: 28 and 32.
#
# Next: lesson 6, sampling the latent code, and the KL term.
