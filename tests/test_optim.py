"""Adam (acceptance check 5): textbook trajectories, a convex problem, state round trips, bad rates.

The reference formulas are written out here, independently of tinyvae:

Keras' "efficient" form (Kingma & Ba 2015, end of section 2)::

    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
    lr_t = lr sqrt(1 - b2^t) / (1 - b1^t);  p -= lr_t m / (sqrt(v) + eps)

Algorithm 1 of the paper (equal to the above when eps = 0)::

    m_hat = m / (1 - b1^t);  v_hat = v / (1 - b2^t);  p -= lr m_hat / (sqrt(v_hat) + eps)
"""
import io
import math

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from tinyvae.errors import ConfigError
from tinyvae.optim import Adam

BACKENDS = ("numpy", "numba")
SHAPES = {"w": (3, 4), "b": (5,), "k": (2, 1, 3, 2)}


def grad_sequence(T, seed=0, dtype=np.float64):
    """T steps of gradients for every parameter; magnitudes vary by orders, signs flip."""
    rng = np.random.default_rng(seed)
    seq = []
    for t in range(T):
        scale = 10.0 ** rng.uniform(-3, 1)
        seq.append({k: (scale * rng.standard_normal(s)).astype(dtype) for k, s in SHAPES.items()})
    return seq


def initial_params(seed=1, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}


def textbook_efficient(p0, grads, lr, b1, b2, eps):
    """Trajectory of Keras' form, in float64 with Python scalars; list of dicts, one per step."""
    p = {k: v.astype(np.float64) for k, v in p0.items()}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(x) for k, x in p.items()}
    traj = []
    for t, g in enumerate(grads, start=1):
        lr_t = lr * math.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t)
        for k in p:
            gk = g[k].astype(np.float64)
            m[k] = b1 * m[k] + (1.0 - b1) * gk
            v[k] = b2 * v[k] + (1.0 - b2) * gk * gk
            p[k] = p[k] - lr_t * m[k] / (np.sqrt(v[k]) + eps)
        traj.append({k: x.copy() for k, x in p.items()})
    return traj


def textbook_algorithm1(p0, grads, lr, b1, b2, eps):
    """Trajectory of Algorithm 1 (bias-corrected moments)."""
    p = {k: v.astype(np.float64) for k, v in p0.items()}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(x) for k, x in p.items()}
    traj = []
    for t, g in enumerate(grads, start=1):
        for k in p:
            gk = g[k].astype(np.float64)
            m[k] = b1 * m[k] + (1.0 - b1) * gk
            v[k] = b2 * v[k] + (1.0 - b2) * gk * gk
            m_hat = m[k] / (1.0 - b1 ** t)
            v_hat = v[k] / (1.0 - b2 ** t)
            p[k] = p[k] - lr * m_hat / (np.sqrt(v_hat) + eps)
        traj.append({k: x.copy() for k, x in p.items()})
    return traj


def run_adam(opt, p0, grads):
    params = {k: v.copy() for k, v in p0.items()}
    arrays = {k: id(v) for k, v in params.items()}
    traj = []
    for g in grads:
        opt.step(params, g)
        assert {k: id(v) for k, v in params.items()} == arrays    # updated in place
        traj.append({k: x.copy() for k, x in params.items()})
    return traj


HYPERS = [
    dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-7),      # Keras' defaults
    dict(lr=0.05, beta1=0.5, beta2=0.9, eps=1e-3),
    dict(lr=0.2, beta1=0.0, beta2=0.99, eps=1e-8),        # RMSProp-like: no momentum
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("hyper", HYPERS, ids=lambda h: "lr{lr}-b1{beta1}-b2{beta2}-eps{eps}".format(**h))
def test_trajectory_equals_textbook_formula(hyper, backend):
    T = 40
    p0, grads = initial_params(), grad_sequence(T)
    got = run_adam(Adam(backend=backend, **hyper), p0, grads)
    want = textbook_efficient(p0, grads, hyper["lr"], hyper["beta1"], hyper["beta2"], hyper["eps"])
    for t in range(T):
        for k in SHAPES:
            assert_allclose(got[t][k], want[t][k], rtol=1e-12, atol=1e-14, err_msg=f"step {t + 1}, {k}")
    # the trajectory moved: not a vacuous comparison
    assert all(np.abs(got[-1][k] - p0[k]).max() > hyper["lr"] for k in SHAPES)


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_trajectory_follows_the_formula(backend):
    hyper = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-7)
    T = 30
    p0, grads = initial_params(dtype=np.float32), grad_sequence(T, dtype=np.float32)
    got = run_adam(Adam(backend=backend, **hyper), p0, grads)
    want = textbook_efficient(p0, grads, **hyper_args(hyper))
    for k in SHAPES:
        assert got[-1][k].dtype == np.float32
        # float32 rounding over 30 steps of size <= lr: absolute 1e-5 on O(1) values
        assert_allclose(got[-1][k], want[-1][k], rtol=1e-5, atol=1e-5)


def hyper_args(h):
    return dict(lr=h["lr"], b1=h["beta1"], b2=h["beta2"], eps=h["eps"])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("b1,b2", [(0.9, 0.999), (0.5, 0.9), (0.0, 0.99)])
def test_eps_zero_equals_algorithm_1(b1, b2, backend):
    T, lr = 40, 0.01
    p0, grads = initial_params(seed=3), grad_sequence(T, seed=4)
    got = run_adam(Adam(lr=lr, beta1=b1, beta2=b2, eps=0.0, backend=backend), p0, grads)
    want = textbook_algorithm1(p0, grads, lr, b1, b2, 0.0)
    for t in range(T):
        for k in SHAPES:
            assert_allclose(got[t][k], want[t][k], rtol=1e-12, atol=1e-14, err_msg=f"step {t + 1}, {k}")


def test_eps_sits_outside_the_bias_correction():
    """With eps > 0 the two forms differ (Keras' eps is not bias-corrected): the check is sharp."""
    T, lr = 5, 0.01
    p0, grads = initial_params(seed=3), grad_sequence(T, seed=4)
    got = run_adam(Adam(lr=lr, eps=1e-3, backend="numpy"), p0, grads)
    alg1 = textbook_algorithm1(p0, grads, lr, 0.9, 0.999, 1e-3)
    assert max(np.abs(got[-1][k] - alg1[-1][k]).max() for k in SHAPES) > 1e-6


@pytest.mark.parametrize("backend", BACKENDS)
def test_minimises_a_convex_quadratic(backend):
    """f(p) = 0.5 (p - c)^T A (p - c), A SPD with condition number 10: Adam reaches c within 1e-6."""
    rng = np.random.default_rng(0)
    n = 5
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = Q @ np.diag(np.linspace(1.0, 10.0, n)) @ Q.T
    c = rng.standard_normal(n)
    f = lambda p: 0.5 * (p - c) @ A @ (p - c)
    params = {"p": np.zeros(n)}
    opt = Adam(lr=0.05, backend=backend)
    f0 = f(params["p"])
    for _ in range(400):
        opt.step(params, {"p": A @ (params["p"] - c)})
    assert np.abs(params["p"] - c).max() < 1e-6
    assert f(params["p"]) < 1e-10 * f0


# ----------------------------------------------------------------------------- state

def npz_round_trip(state):
    """What a checkpoint does: write the arrays to .npz bytes and read them back."""
    buf = io.BytesIO()
    np.savez(buf, **state)
    buf.seek(0)
    with np.load(buf) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("via_npz", [False, True], ids=["dict", "npz"])
def test_state_dict_round_trip_continues_identically(backend, via_npz):
    hyper = dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-7)
    p0, grads = initial_params(), grad_sequence(30)
    # reference: 30 uninterrupted steps
    ref = run_adam(Adam(backend=backend, **hyper), p0, grads)
    # interrupted after 12 steps, restored into a fresh optimizer, continued
    opt = Adam(backend=backend, **hyper)
    params = {k: v.copy() for k, v in p0.items()}
    for g in grads[:12]:
        opt.step(params, g)
    state = opt.state_dict()
    assert int(state["t"]) == 12
    assert set(state) == {"t"} | {f"{mv}/{k}" for mv in "mv" for k in SHAPES}
    saved_params = {k: v.copy() for k, v in params.items()}
    if via_npz:
        state = npz_round_trip(state)
    fresh = Adam(backend=backend, **hyper)
    fresh.load_state_dict(state)
    assert fresh.t == 12
    resumed = run_adam(fresh, saved_params, grads[12:])
    for t, snap in enumerate(resumed, start=12):
        for k in SHAPES:
            assert_array_equal(snap[k], ref[t][k], err_msg=f"step {t + 1}, {k}")


def test_state_dict_is_a_snapshot():
    """A state taken at step t restores step t, even if the optimizer steps on before loading."""
    hyper = dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-7, backend="numpy")
    p0, grads = initial_params(), grad_sequence(8)
    opt = Adam(**hyper)
    params = {k: v.copy() for k, v in p0.items()}
    for g in grads[:4]:
        opt.step(params, g)
    state = opt.state_dict()
    saved = {k: np.array(v) for k, v in state.items()}        # deep copy at step 4
    saved_params = {k: v.copy() for k, v in params.items()}
    for g in grads[4:]:                                        # the original keeps training
        opt.step(params, g)
    for k in saved:
        assert_array_equal(state[k], saved[k], err_msg=f"state_dict()[{k!r}] changed after later steps")
    a, b = Adam(**hyper), Adam(**hyper)
    a.load_state_dict(state)
    b.load_state_dict(saved)
    assert_array_equal(run_adam(a, saved_params, grads[4:])[-1]["w"],
                       run_adam(b, saved_params, grads[4:])[-1]["w"])


def test_load_state_dict_copies():
    """Loading does not tie the optimizer to the caller's arrays."""
    opt = Adam(lr=0.1, backend="numpy")
    params = {"w": np.ones(3)}
    opt.step(params, {"w": np.ones(3)})
    state = {k: np.array(v) for k, v in opt.state_dict().items()}
    other = Adam(lr=0.1, backend="numpy")
    other.load_state_dict(state)
    before = state["m/w"].copy()
    other.step({"w": np.ones(3)}, {"w": np.ones(3)})
    assert_array_equal(state["m/w"], before)


# ----------------------------------------------------------------------------- configuration

@pytest.mark.parametrize("lr", [0, 0.0, -1e-3, -1, float("nan"), float("inf")])
def test_bad_learning_rate_raises(lr):
    with pytest.raises(ConfigError, match="learning rate"):
        Adam(lr=lr)


@pytest.mark.parametrize("kw", [dict(beta1=1.0), dict(beta1=-0.1), dict(beta2=1.0), dict(beta2=1.5),
                                dict(eps=-1e-8)], ids=lambda k: next(iter(k)) + "=" + str(next(iter(k.values()))))
def test_bad_betas_and_eps_raise(kw):
    with pytest.raises(ConfigError):
        Adam(lr=1e-3, **kw)


def test_good_config_is_accepted():
    opt = Adam(lr=1e-4)
    assert (opt.lr, opt.beta1, opt.beta2, opt.eps, opt.t) == (1e-4, 0.9, 0.999, 1e-7, 0)


def test_state_dict_without_copy_is_live():
    """``copy=False`` (the checkpoint's path) hands out the moment arrays themselves, equal to a snapshot."""
    opt = Adam(lr=0.1, backend="numpy")
    params = {"w": np.ones(3)}
    opt.step(params, {"w": np.ones(3)})
    live, snap = opt.state_dict(copy=False), opt.state_dict()
    assert live["m/w"] is opt.m["w"] and live["v/w"] is opt.v["w"]
    for k in snap:
        assert_array_equal(live[k], snap[k])
    opt.step(params, {"w": np.ones(3)})
    assert not np.array_equal(live["m/w"], snap["m/w"])
