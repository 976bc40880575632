# %% [markdown]
# # Lesson 4 — Max-pooling, its arg-max gradient, and checks that lie
#
# Max-pooling keeps the largest value of each `p x p` window (stride `p`),
# halving the image for `p = 2`:
#
# $$\text{out}[n,i,j,c] = \max_{0 \le d_i, d_j < p} x[n,\ i p + d_i,\ j p + d_j,\ c]$$
#
# The max is piecewise linear: near a point where one entry is strictly the
# largest, `out` *is* that entry. So the gradient is 1 for the winner and 0
# for the rest: **the backward pass routes each `dout` to its window's
# arg-max.** Where two entries tie there is no derivative at all — and a
# finite-difference check there reports a failure although the code is right.
#
# Run it: `python -m lessons.l04_maxpool --out /tmp/l04`.
# Exercises (lesson 1 says how): `maxpool_one_image` and `maxpool_one_image_backward`.

# %%
import pathlib
import sys

HERE = pathlib.Path(__file__).parent if "__file__" in globals() else pathlib.Path.cwd()
sys.path.insert(0, str(HERE.resolve().parent))    # the repository root: runs from any folder

import matplotlib.pyplot as plt
import numpy as np

from lessons._common import savefig, setup
from tinyvae.gradcheck import check_gradient, numerical_gradient_array, rel_error
from tinyvae.layers import maxpool_backward, maxpool_forward, relu_backward, relu_forward
from tinyvae.reference import maxpool_naive

args = setup("l04_maxpool")
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. Forward and backward as loops
#
# The loop remembers, for each output, *where* the maximum was (the first
# one in row-major order if several are equal); the backward loop sends each
# upstream gradient there. The package stores the same thing compactly: an
# `int8` index `di * p + dj` per output.

# %%
# exercise
def maxpool_one_image(x, p=2):
    """x : (H, W, C) -> out (H//p, W//p, C) and where[i, j, c] = (row, col) of the max."""
    H, W, C = x.shape
    out = np.zeros((H // p, W // p, C))                   # (Ho, Wo, C)
    where = {}
    for i in range(H // p):
        for j in range(W // p):
            for c in range(C):
                window = x[i * p:(i + 1) * p, j * p:(j + 1) * p, c]   # (p, p)
                k = int(np.argmax(window))                            # first max, row-major
                out[i, j, c] = window.flat[k]
                where[i, j, c] = (i * p + k // p, j * p + k % p)
    return out, where


# exercise
def maxpool_one_image_backward(dout, where, x_shape):
    """Send dout[i, j, c] to the input pixel that won window (i, j)."""
    dx = np.zeros(x_shape)                                # (H, W, C)
    for (i, j, c), (r, q) in where.items():
        dx[r, q, c] += dout[i, j, c]
    return dx


x = rng.standard_normal((2, 13, 13, 3))                   # (N, 13, 13, C): odd on purpose
for backend in ("numpy", "numba"):
    out, cache = maxpool_forward(x, 2, backend=backend)   # (N, 6, 6, C)
    dout = rng.standard_normal(out.shape)
    dx = maxpool_backward(dout, cache)                    # (N, 13, 13, C)
    loops = [maxpool_one_image(xn) for xn in x]
    out_loop = np.stack([o for o, _ in loops])
    dx_loop = np.stack([maxpool_one_image_backward(dout[n], loops[n][1], x.shape[1:]) for n in range(2)])
    print(f"{backend}: out {out.shape} vs loop {rel_error(out, out_loop):.0e}, vs reference "
          f"{rel_error(out, maxpool_naive(x)):.0e}; dx vs loop {rel_error(dx, dx_loop):.0e}")
    assert rel_error(out, out_loop) == 0 and rel_error(dx, dx_loop) == 0

# %% [markdown]
# A 13x13 input pools to 6x6: the windows stop at row and column 12, which
# are simply dropped — their gradient is exactly zero. (The VAE's MNIST
# encoder meets this: 11x11 pools to 5x5. Lesson 5 shows why the decoder
# still comes out at 28.) Every window passes back exactly one value.

# %%
print(f"gradient reaching the dropped last row and column: {np.abs(dx[:, 12, :, :]).max()}, "
      f"{np.abs(dx[:, :, 12, :]).max()}")
print(f"non-zero gradients per window: {np.count_nonzero(dx) / dout.size:.0f}")
assert not dx[:, 12].any() and not dx[:, :, 12].any() and np.count_nonzero(dx) == dout.size

# %% [markdown]
# ## 2. The gradient check — when it is honest
#
# Random normal inputs almost surely have no ties, and no two entries of a
# window within `h = 1e-5` of each other, so the max picks the same entry for
# `x ± h`: the check passes, rel error below 1e-7 (the max is linear there).

# %%
x = rng.standard_normal((2, 6, 6, 2))                     # (N, H, W, C)
out, cache = maxpool_forward(x, 2)
dout = rng.standard_normal(out.shape)
err = rel_error(maxpool_backward(dout, cache),
                numerical_gradient_array(lambda: maxpool_forward(x, 2)[0], x, dout))
print(f"random inputs: gradient check {err:.1e}  (expect < 1e-7)")
assert err < 1e-7

# %% [markdown]
# ## 3. Ties break the check
#
# Real inputs tie all the time: image pixels are multiples of 1/255 (MNIST's
# background is all exact zeros). Take a window `[[0.5, 0.5], [0.2, 0.5]]`.
# The backward pass gives the whole gradient to the first 0.5. The centred
# difference for *each* tied entry sees `max` rise by `h` when that entry
# goes up and stay put when it goes down: slope `h / 2h = 1/2` for all three.
# Neither is wrong — the function has no derivative there — but the check
# reports a rel error of **1.0**. The fix is not in the layer; it is in the
# test: draw inputs with no ties (and no near-ties, next section).

# %%
tie = np.array([[0.5, 0.5], [0.2, 0.5]]).reshape(1, 2, 2, 1)   # (1, 2, 2, 1)
out, cache = maxpool_forward(tie, 2)
one = np.ones_like(out)
analytic = maxpool_backward(one, cache)[0, :, :, 0]
numeric = numerical_gradient_array(lambda: maxpool_forward(tie, 2)[0], tie, one)[0, :, :, 0]
tie_err = rel_error(analytic, numeric)
print("window      ", tie[0, :, :, 0].tolist())
print("backward    ", analytic.tolist())
print("numerical   ", numeric.round(6).tolist())
print(f"check at a tie: rel error {tie_err:.2f}  (1.0: 'fails', though both are fine)")
assert tie_err > 0.5

# quantised, image-like inputs: a few grey levels, ties everywhere
x_img = rng.integers(0, 4, size=(2, 8, 8, 1)) / 3.0       # (N, 8, 8, 1) values 0, 1/3, 2/3, 1
out, cache = maxpool_forward(x_img, 2)
dout = rng.standard_normal(out.shape)
img_err = rel_error(maxpool_backward(dout, cache),
                    numerical_gradient_array(lambda: maxpool_forward(x_img, 2)[0], x_img, dout))
print(f"image-like inputs with 4 grey levels: gradient check {img_err:.2f}  (fails)")
assert img_err > 0.1

# %% [markdown]
# ## 4. Near-ties and kinks within `h`
#
# A check also lies when two entries are closer than `h`: with
# `[1.0, 1.0 + 1e-6]` and `h = 1e-5`, nudging the smaller one by `+h` makes
# it the max. The numerical slope comes out 0.45 where the true derivative
# is 0. The same happens with ReLU right next to its kink: at `x = 1e-6`
# the true slope is 1, the centred difference gives 0.55.
#
# The remedy in tests: inputs whose values are all distinct with gaps much
# larger than `h` (a shuffled `arange` works), and ReLU inputs kept off 0.

# %%
near = np.array([1.0, 1.0 + 1e-6, 0.0, 0.0]).reshape(1, 2, 2, 1)
out, cache = maxpool_forward(near, 2)
num_near = numerical_gradient_array(lambda: maxpool_forward(near, 2)[0], near, np.ones_like(out))
print(f"near-tie [1, 1 + 1e-6]: backward {maxpool_backward(np.ones_like(out), cache).ravel()[:2]}, "
      f"numerical {num_near.ravel()[:2].round(3)}")
assert abs(num_near.ravel()[0] - 0.45) < 0.01

k = np.array([1e-6])
relu_num = numerical_gradient_array(lambda: relu_forward(k)[0], k, np.ones(1))[0]
relu_ana = relu_backward(np.ones(1), relu_forward(k)[1])[0]
print(f"relu at x = 1e-6: backward {relu_ana}, numerical {relu_num:.3f}")
assert relu_ana == 1 and abs(relu_num - 0.55) < 0.01

# the remedy: distinct values, gaps of 0.01 >> h
x_ok = (rng.permutation(2 * 8 * 8) * 0.01).reshape(2, 8, 8, 1)  # (N, 8, 8, 1)
out, cache = maxpool_forward(x_ok, 2)
dout = rng.standard_normal(out.shape)
ok = check_gradient(lambda: float(np.sum(maxpool_forward(x_ok, 2)[0] * dout)), x_ok,
                    maxpool_backward(dout, cache))
print(f"shuffled arange inputs: gradient check {ok:.1e}  (passes, < 1e-7)")
assert ok < 1e-7

# %%
fig, axes = plt.subplots(1, 3, figsize=(9, 3), layout="constrained")
for ax, arr, title in zip(axes, (tie[0, :, :, 0], analytic, numeric),
                          ("window with a 3-way tie", "backward: first max gets 1",
                           "finite differences: 1/2 each")):
    ax.imshow(arr, cmap="Blues", vmin=0, vmax=1)
    for (r, c), v in np.ndenumerate(arr):
        ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=14,
                color="w" if v > 0.7 else "k")
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle(f"max-pool gradient at a tie: the check reports rel error {tie_err:.1f}")
savefig(fig, args.out, "l04_maxpool_tie")

# %% [markdown]
# ## What to remember
#
# * max-pool's backward routes `dout` to each window's arg-max (first on ties);
#   leftover rows of an odd-sized input get zero gradient;
# * at ties and kinks there is no derivative; a gradient check there says
#   "rel error 1" about correct code;
# * so checks use inputs with distinct, well-separated values.
#
# Next: lesson 5, transposed convolution and the decoder's sizes.
