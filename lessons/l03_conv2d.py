# %% [markdown]
# # Lesson 3 — Convolution: the loop, im2col, and the numba kernel
#
# A convolutional layer slides a small filter over the image and takes a
# dot product at every position. In NHWC layout, with weights
# `w : (KH, KW, C, F)` (Keras' layout) and stride `s`,
#
# $$\text{out}[n, i, j, f] = b[f] + \sum_{k_i, k_j, c} x[n,\ i s + k_i,\ j s + k_j,\ c]\; w[k_i, k_j, c, f]$$
#
# (deep learning's "convolution" is a cross-correlation: the filter is not
# flipped). We write it as loops, turn it into one matrix product (im2col),
# derive the backward pass, check it, and time the numba kernels.
#
# Run it: `python -m lessons.l03_conv2d --out /tmp/l03`.
# Exercises (lesson 1 says how): `conv2d_one_image` and `conv2d_one_image_backward`.

# %%
import pathlib
import sys

HERE = pathlib.Path(__file__).parent if "__file__" in globals() else pathlib.Path.cwd()
sys.path.insert(0, str(HERE.resolve().parent))    # the repository root: runs from any folder

import time

import matplotlib.pyplot as plt
import numpy as np

from lessons._common import find_data, savefig, setup
from tinyvae import kernels
from tinyvae.bench import time_calls
from tinyvae.geometry import conv_geometry
from tinyvae.gradcheck import check_gradient, rel_error
from tinyvae.layers import conv2d_backward, conv2d_forward
from tinyvae.reference import conv2d_naive

args = setup("l03_conv2d")
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. The loop
#
# One image, 'valid' (no padding), stride `s`: six nested loops, exactly the
# sum above. The output is `Ho x Wo` with `Ho = (H - KH) // s + 1`: at stride
# 1 a 3x3 filter takes a 28x28 image to 26x26. `tinyvae.reference.conv2d_naive` is the
# package's own definition (with padding and stride); the layer
# `conv2d_forward` must match both.

# %%
# exercise
def conv2d_one_image(x, w, b, s=1):
    """'valid', stride s: x (H, W, C), w (KH, KW, C, F), b (F,) -> (Ho, Wo, F), Ho = (H-KH)//s + 1."""
    H, W, C = x.shape
    KH, KW, _, F = w.shape
    Ho, Wo = (H - KH) // s + 1, (W - KW) // s + 1
    out = np.zeros((Ho, Wo, F))                           # (Ho, Wo, F)
    for i in range(Ho):
        for j in range(Wo):
            for f in range(F):
                acc = b[f]
                for ki in range(KH):
                    for kj in range(KW):
                        for c in range(C):
                            acc += x[i * s + ki, j * s + kj, c] * w[ki, kj, c, f]
                out[i, j, f] = acc
    return out


x = rng.standard_normal((2, 7, 6, 3))                    # (N, H, W, C)
w = rng.standard_normal((3, 3, 3, 4))                    # (KH, KW, C, F)
b = rng.standard_normal(4)                               # (F,)
loop = np.stack([conv2d_one_image(xn, w, b) for xn in x])  # (N, 5, 4, F)
out, cache = conv2d_forward(x, w, b)                     # (N, 5, 4, F)
print(f"output shape {out.shape}; layer vs our loop {rel_error(out, loop):.1e}, "
      f"vs reference.conv2d_naive {rel_error(out, conv2d_naive(x, w, b)):.1e}  (expect ~1e-16)")
assert out.shape == (2, 5, 4, 4) and rel_error(out, loop) < 1e-12

# %% [markdown]
# ### A picture: an edge filter sliding over a digit
#
# The filter `[[1, 0, -1], [2, 0, -2], [1, 0, -1]]` (Sobel's) answers "is it
# brighter on the left than on the right here?". Slide it over a digit with
# our loop: each output pixel is the dot product of the filter with the 3x3
# window under it (the box), and the output lights up on the digit's
# steep edges: positive (blue) where the left of the window is brighter, on
# a stroke's right edge, and negative (red) on its left edge. (A 'valid'
# output pixel `(i, j)` is the window whose top-left corner is input `(i, j)`.)

# %%
data_dir = find_data("mnist")
if data_dir is not None:                                 # a real digit when the data is there
    from tinyvae.data import load
    digit = load("mnist", "test", data_dir)[0][0, :, :, 0] / 255.0          # (28, 28), a 7
    source = "MNIST test image 0"
else:                                                     # else a drawn 7 of the same size
    digit = np.zeros((28, 28))
    digit[6:9, 6:22], digit[8:23, 17:20] = 1.0, 1.0
    source = "a drawn 7 (set TINYVAE_DATA_DIR for a real MNIST digit)"
sobel = np.array([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]]).reshape(3, 3, 1, 1)   # (KH, KW, C, F)
edges = conv2d_one_image(digit[:, :, None], sobel, np.zeros(1))[:, :, 0]    # (26, 26)
i0, j0 = np.unravel_index(np.argmax(edges), edges.shape)  # where the filter answers most
window = digit[i0:i0 + 3, j0:j0 + 3]                      # (3, 3) under the filter there
print(f"edge filter over {source}: output {edges.shape}, largest {edges[i0, j0]:.2f} at ({i0}, {j0}) "
      f"= sum(window * filter) = {np.sum(window * sobel[:, :, 0, 0]):.2f}")
assert abs(edges[i0, j0] - np.sum(window * sobel[:, :, 0, 0])) < 1e-12

fig, axes = plt.subplots(1, 4, figsize=(14, 3.6), layout="constrained",
                         gridspec_kw={"width_ratios": [1, 1, 0.55, 1]})
axes[0].imshow(digit, cmap="gray")
axes[0].add_patch(plt.Rectangle((j0 - 0.5, i0 - 0.5), 3, 3, fill=False, ec="r", lw=2))
axes[0].set_title(f"input 28x28, window at ({i0}, {j0})")
r0, c0 = max(0, i0 - 2), max(0, j0 - 2)                   # a 7x7 neighbourhood, values written in
crop = digit[r0:r0 + 7, c0:c0 + 7]
axes[1].imshow(crop, cmap="gray", vmin=0, vmax=1)
for (r, c), v in np.ndenumerate(crop):
    axes[1].text(c, r, f"{v:.1f}", ha="center", va="center", fontsize=8, color="r" if v < 0.5 else "k")
axes[1].add_patch(plt.Rectangle((j0 - c0 - 0.5, i0 - r0 - 0.5), 3, 3, fill=False, ec="r", lw=2))
axes[1].set_title("the window, pixel by pixel")
axes[2].imshow(sobel[:, :, 0, 0], cmap="RdBu", vmin=-2, vmax=2)
for (r, c), v in np.ndenumerate(sobel[:, :, 0, 0]):
    axes[2].text(c, r, f"{v:+.0f}", ha="center", va="center", fontsize=12)
axes[2].set_title("the 3x3 filter")
lim = np.abs(edges).max()
axes[3].imshow(edges, cmap="RdBu", vmin=-lim, vmax=lim)
axes[3].plot(j0, i0, "s", mfc="none", mec="k", ms=8)
axes[3].set_title(f"output 26x26: {edges[i0, j0]:.2f} at ({i0}, {j0})")
for ax in axes:
    ax.set_xticks([])
    ax.set_yticks([])
savefig(fig, args.out, "l03_edge_filter")

# %% [markdown]
# ## 2. Padding and stride
#
# TensorFlow's rules (`tinyvae.geometry`): 'valid' gives
# `Ho = (H - KH) // s + 1`; 'same' gives `Ho = ceil(H / s)` and pads with
# zeros, the smaller half on top and left. The VAE only uses 'valid' stride
# 1, but the layer does all of them, and the reference loop agrees.

# %%
for H, K, s, pad in ((28, 3, 1, "valid"), (13, 3, 1, "valid"), (28, 3, 1, "same"),
                     (28, 3, 2, "same"), (7, 3, 2, "valid"), (8, 4, 2, "same")):
    (Ho, _), (pt, _), _ = conv_geometry((H, H), (K, K), s, pad)
    print(f"{H:2d}x{H:<2d} {K}x{K} stride {s} {pad:5s} -> {Ho:2d}x{Ho:<2d} (pad top {pt})")
for s, pad in ((2, "same"), (2, "valid"), (1, "same")):
    err = rel_error(conv2d_forward(x, w, b, s, pad)[0], conv2d_naive(x, w, b, s, pad))
    print(f"stride {s} {pad}: layer vs reference {err:.1e}")
    assert err < 1e-12

# %% [markdown]
# ## 3. im2col: a convolution is one matrix product
#
# Copy every window into a row: a matrix with one row per output pixel
# `(n, i, j)` and one column per `(ki, kj, c)`. Then the convolution is
# `cols @ w.reshape(KH*KW*C, F)`, a single call to BLAS. Here is the matrix
# for a 4x4 one-channel image whose pixels are numbered 0..15 and a 2x2
# filter: row `(i, j)` lists the four pixels of the window at `(i, j)`.

# %%
tiny = np.arange(16.0).reshape(1, 4, 4, 1)               # (1, 4, 4, 1) pixel k has value k
cols = kernels.im2col_numpy(tiny, 2, 2, (1, 1), (0, 0), (3, 3))  # (9, 4)
print("im2col of a 4x4 image, 2x2 windows (rows: output pixels, columns: ki, kj):")
print(cols.astype(int))
assert cols.shape == (9, 4) and list(cols[4]) == [5, 6, 9, 10]   # window at (1, 1)

KH, KW, C, F = w.shape
cols = kernels.im2col(x, KH, KW, (1, 1), (0, 0), (5, 4))          # (N*Ho*Wo, KH*KW*C)
by_matmul = (cols @ w.reshape(KH * KW * C, F) + b).reshape(out.shape)
print(f"cols {cols.shape} @ w {(KH * KW * C, F)}: vs the loop {rel_error(by_matmul, loop):.1e}")
assert rel_error(by_matmul, loop) < 1e-12

# %% [markdown]
# ## 4. The backward pass, derived
#
# Differentiate the sum, at any stride `s`. `b[f]` appears once in every
# output of channel `f`; `w[ki, kj, c, f]` multiplies `x[n, i s+ki, j s+kj, c]`
# in every output `(n, i, j, f)`; and `x[n, p, q, c]` appears in every output
# whose window covers `(p, q)`:
#
# $$\frac{\partial L}{\partial b[f]} = \sum_{n,i,j} \text{dout}[n,i,j,f], \qquad
#   \frac{\partial L}{\partial w[k_i,k_j,c,f]} = \sum_{n,i,j} x[n, i s+k_i, j s+k_j, c]\,\text{dout}[n,i,j,f]$$
# $$\frac{\partial L}{\partial x[n,p,q,c]} = \sum_{\substack{i s + k_i = p \\ j s + k_j = q}} \sum_f \text{dout}[n,i,j,f]\, w[k_i,k_j,c,f]$$
#
# The last sum is awkward to gather, easy to *scatter*: every output pixel
# sends `w[ki, kj] @ dout[i, j]` back to the input pixel `(i s + ki, j s + kj)`
# it read. ('same' padding is the same loop on the zero-padded image, with
# the pad's rows cut off `dx` at the end.) In im2col
# terms: `dw = cols.T @ dout`, `dcols = dout @ W.T`, and `dx = col2im(dcols)`,
# where **col2im scatter-adds rows back into an image: it is the adjoint
# (transpose) of im2col**, `<im2col(x), Y> = <x, col2im(Y)>`.

# %%
# exercise
def conv2d_one_image_backward(dout, x, w, s=1):
    """Scatter form of the sums above, 'valid', stride s: dout (Ho, Wo, F) -> dx (H, W, C), dw, db."""
    Ho, Wo, F = dout.shape
    KH, KW = w.shape[:2]
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    for i in range(Ho):
        for j in range(Wo):
            for ki in range(KH):
                for kj in range(KW):
                    dx[i * s + ki, j * s + kj] += w[ki, kj] @ dout[i, j]           # (C, F) @ (F,)
                    dw[ki, kj] += np.outer(x[i * s + ki, j * s + kj], dout[i, j])  # (C, F)
    return dx, dw, dout.sum(axis=(0, 1))


dout = rng.standard_normal(out.shape)                    # (N, Ho, Wo, F)
dx, dw, db = conv2d_backward(dout, cache)
per_image = [conv2d_one_image_backward(dout[n], x[n], w) for n in range(len(x))]
dx_loop = np.stack([p[0] for p in per_image])
dw_loop, db_loop = sum(p[1] for p in per_image), sum(p[2] for p in per_image)
print(f"backward vs loops: dx {rel_error(dx, dx_loop):.1e}, dw {rel_error(dw, dw_loop):.1e}, "
      f"db {rel_error(db, db_loop):.1e}")
assert max(rel_error(dx, dx_loop), rel_error(dw, dw_loop), rel_error(db, db_loop)) < 1e-12

out2, cache2 = conv2d_forward(x, w, b, 2)                # stride 2 'valid': (N, 3, 2, F)
dout2 = rng.standard_normal(out2.shape)
dx2 = conv2d_backward(dout2, cache2)[0]
dx2_loop = np.stack([conv2d_one_image_backward(dout2[n], x[n], w, 2)[0] for n in range(len(x))])
print(f"stride 2: dx vs the loop {rel_error(dx2, dx2_loop):.1e}")
assert rel_error(dx2, dx2_loop) < 1e-12

Y = rng.standard_normal(cols.shape)                      # any matrix shaped like cols
lhs = np.sum(cols * Y)
rhs = np.sum(x * kernels.col2im(Y, x.shape, KH, KW, (1, 1), (0, 0), (5, 4)))
print(f"adjoint test <im2col(x), Y> = {lhs:.10f}, <x, col2im(Y)> = {rhs:.10f}")
assert abs(lhs - rhs) < 1e-9 * abs(lhs)

# %% [markdown]
# And the independent check, with finite differences on every entry, for
# stride 1 'valid' and stride 2 'same' (padding and stride are where index
# bugs live). Expect below 1e-7.

# %%
for s, pad in ((1, "valid"), (2, "same")):
    out_s, cache_s = conv2d_forward(x, w, b, s, pad)
    g = rng.standard_normal(out_s.shape)
    dx, dw, db = conv2d_backward(g, cache_s)
    f = lambda: float(np.sum(conv2d_forward(x, w, b, s, pad)[0] * g))  # noqa: E731
    errs = [check_gradient(f, p, d) for p, d in ((x, dx), (w, dw), (b, db))]
    print(f"stride {s} {pad}: gradient check dx {errs[0]:.1e}, dw {errs[1]:.1e}, db {errs[2]:.1e}")
    assert max(errs) < 1e-7

# %% [markdown]
# ## 5. Fast kernels
#
# The matrix product is BLAS's job; what is left is building `cols` and
# scattering `dcols` back. `tinyvae.kernels` has both as vectorised NumPy
# (one strided copy per `(ki, kj)`) and as numba loops compiled to machine
# code (`backend="numba"`, the default). The first numba call compiles, or
# loads the compiled code cached on disk; later calls are fast.
#
# Timing on the VAE's first layer (28x28x1 -> 26x26x32, float32), per
# image, forward and backward. The Python loop (forward only) is thousands
# of times slower than either fast path (on the project's machine about
# 2,000x NumPy's and 3,800x numba's; the ratios below are this run's); how
# numba and NumPy compare with each other depends on the machine and the
# thread count.

# %%
def seconds(fn, repeat=3):
    return min(time_calls(fn, repeat))        # the best of `repeat` calls


N = 64 if args.full else 16
xb = rng.random((N, 28, 28, 1), dtype=np.float32)        # (N, 28, 28, 1)
wb = (0.1 * rng.standard_normal((3, 3, 1, 32))).astype(np.float32)
bb = np.zeros(32, np.float32)

t0 = time.perf_counter()
conv2d_backward(*conv2d_forward(xb[:1], wb, bb, backend="numba"))
print(f"first numba call (compile or cache load): {time.perf_counter() - t0:.2f} s")

times = {"loop (one image)": seconds(lambda: conv2d_one_image(xb[0], wb, bb), repeat=1)}
results = {}
for backend in ("numpy", "numba"):
    def step(backend=backend):
        o, c = conv2d_forward(xb, wb, bb, backend=backend)
        results[backend] = (o, *conv2d_backward(np.ones_like(o), c))
    times[f"{backend} fwd+bwd"] = seconds(step) / N
for name, t in times.items():
    print(f"{name:18s} {1e3 * t:9.3f} ms per image")
print(f"the loop (forward only) takes {times['loop (one image)'] / times['numpy fwd+bwd']:,.0f}x NumPy's "
      f"and {times['loop (one image)'] / times['numba fwd+bwd']:,.0f}x numba's forward + backward")
# float32 results: compare the largest difference with the largest value (an
# entrywise relative error is meaningless for outputs that happen to be near 0)
agree = max(np.abs(a - c).max() / np.abs(c).max() for a, c in zip(results["numpy"], results["numba"]))
vs_loop = np.abs(results["numba"][0][0] - conv2d_one_image(xb[0], wb, bb)).max()
print(f"numba vs numpy: largest difference {agree:.1e} of the largest value; "
      f"numba vs the loop (image 0): {vs_loop:.1e}  (float32 rounding, expect < 1e-5)")
assert agree < 1e-5 and vs_loop < 1e-5
assert times["loop (one image)"] > 20 * max(times["numpy fwd+bwd"], times["numba fwd+bwd"])

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), layout="constrained",
                         gridspec_kw={"width_ratios": [1, 1.6]})
ax = axes[0]
small = kernels.im2col_numpy(tiny, 2, 2, (1, 1), (0, 0), (3, 3))
ax.imshow(small, cmap="viridis", aspect="auto")
for (r, c), v in np.ndenumerate(small):
    ax.text(c, r, int(v), ha="center", va="center", color="w", fontsize=8)
ax.set_xticks(range(4), ["(0,0)", "(0,1)", "(1,0)", "(1,1)"])
ax.set_yticks(range(9), [f"({i},{j})" for i in range(3) for j in range(3)])
ax.set_xlabel("column: (ki, kj)")
ax.set_ylabel("row: output pixel (i, j)")
ax.set_title("im2col of a 4x4 image, 2x2 windows")
ax = axes[1]
ax.barh(list(times), [1e3 * t for t in times.values()], color=["gray", "C0", "C1"])
ax.set_xscale("log")
ax.set_xlabel("ms per image, 28x28x1 -> 26x26x32 (log scale)")
ax.set_title("conv2d: loop (forward) vs fast paths (fwd + bwd)")
savefig(fig, args.out, "l03_im2col_and_timing")

# %% [markdown]
# ## What to remember
#
# * conv = im2col + one matrix product; its backward is two matrix products
#   and col2im, the adjoint of im2col;
# * the scatter form of `dx` is the same loop as the forward, run backwards;
# * check stride and padding cases separately: that is where bugs live.
#
# Next: lesson 4, max-pooling (and a gradient check that lies).
