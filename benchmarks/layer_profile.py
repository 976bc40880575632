"""Where a training step's time goes: every layer's forward and backward timed apart.

The library has no timing code. :func:`timed` wraps one layer object's
``forward`` and ``backward`` from the outside (instance attributes that
shadow the methods, removed again by :func:`untimed`), so the model runs its
usual code and each call adds its seconds to a dict.
"""
import time

import numpy as np

from tinyvae.bench import BATCH, StepRunner, layer_flops
from tinyvae.kernels import get_backend, kernel_threads
from tinyvae.losses import kl_loss, sse_loss
from tinyvae.threads import thread_limit


def timed(layer, timings):
    """Make ``layer.forward`` and ``layer.backward`` add their seconds to
    ``timings[(layer.name, "forward" | "backward")]``."""
    for phase in ("forward", "backward"):
        def run(arg, method=getattr(layer, phase), key=(layer.name, phase)):
            t0 = time.perf_counter()
            out = method(arg)
            timings[key] = timings.get(key, 0.0) + time.perf_counter() - t0
            return out
        setattr(layer, phase, run)


def untimed(layer):
    """Undo :func:`timed`: the class's methods show through again."""
    del layer.forward, layer.backward


def time_loss_terms(runner, n):
    """Seconds per call of the loss functions alone (sse + KL), on the runner's shapes."""
    rng = np.random.default_rng(1)
    xhat = rng.random(runner.x.shape, dtype=np.float32)
    mu = rng.standard_normal(runner.eps.shape, dtype=np.float32)
    logvar = 0.1 * rng.standard_normal(runner.eps.shape, dtype=np.float32)
    t0 = time.perf_counter()
    for _ in range(n):
        sse_loss(xhat, runner.x)
        kl_loss(mu, logvar)
    return (time.perf_counter() - t0) / n


def profile(arch, dataset, threads=None, steps=10, warmup=3, backend=None, batch=BATCH):
    """Where one training step's time goes.

    Returns a dict with ``ms_step`` (mean of the profiled steps) and ``rows``:
    ``(label, ms per step, % of step, GFLOP/s or None)`` sorted by time, with
    every layer's forward and backward (see :func:`timed`), the Adam
    update, the loss functions (timed apart on the same shapes) and
    ``other``: what is left (reparameterization, Python overhead, ...).
    """
    r = StepRunner(arch, dataset, batch, backend)
    flops = {row["name"]: row for row in layer_flops(r.model, batch)}
    with thread_limit(threads):
        n_threads = kernel_threads()
        r.time_steps(warmup)
        timings = {}
        layers = [layer for _, layer in r.model.named_layers()]
        for layer in layers:
            timed(layer, timings)
        adam = total = 0.0
        for _ in range(steps):
            t0 = time.perf_counter()
            r.model.loss(r.x, r.eps)
            t1 = time.perf_counter()
            r.opt.step(r.model.params, r.model.grads)
            t2 = time.perf_counter()
            adam += t2 - t1
            total += t2 - t0
        for layer in layers:
            untimed(layer)
        loss_s = time_loss_terms(r, steps)
    ms_step = 1e3 * total / steps
    rows = []
    for (name, phase), s in timings.items():
        ms = 1e3 * s / steps
        f = flops.get(name, {}).get(phase)
        rows.append((f"{name} {phase}", ms, f / 1e6 / ms if f else None))
    rows.append(("adam update", 1e3 * adam / steps, None))
    rows.append(("loss terms (sse + kl, timed apart)", 1e3 * loss_s, None))
    rest = ms_step - sum(row[1] for row in rows)
    rows.append(("other (reparam, python, ...)", rest, None))
    rows.sort(key=lambda row: -row[1])
    return {"model": arch, "dataset": dataset, "threads": n_threads, "batch": batch,
            "backend": get_backend(backend), "steps": steps, "ms_step": ms_step,
            "rows": [(lab, ms, 100.0 * ms / ms_step, gf) for lab, ms, gf in rows]}


def _kind(label):
    """``"enc3_conv2d backward"`` -> ``"conv2d backward"``; other labels unchanged."""
    head, _, phase = label.rpartition(" ")
    if phase in ("forward", "backward") and "_" in head:
        return f"{head.split('_', 1)[1]} {phase}"
    return label


def by_kind(p):
    """The profile's rows summed per layer kind and phase, sorted by time."""
    acc = {}
    for lab, ms, pct, _ in p["rows"]:
        k = _kind(lab)
        a = acc.setdefault(k, [0.0, 0.0])
        a[0] += ms
        a[1] += pct
    return sorted(((k, ms, pct) for k, (ms, pct) in acc.items()), key=lambda r: -r[1])


def format_profile(p, top=25):
    """The profile as text: the ``top`` rows, the rest summed, then the totals per layer kind."""
    lines = [f"profile {p['model']}/{p['dataset']}, batch {p['batch']}, {p['threads']} thread(s), "
             f"{p['backend']}: {p['ms_step']:.1f} ms/step (mean of {p['steps']} steps)"]
    rows = p["rows"]
    width = max(len(r[0]) for r in rows) + 2
    lines.append(f"  {'layer / part':<{width}}{'ms/step':>9}{'%':>7}{'GFLOP/s':>9}")
    for lab, ms, pct, gf in rows[:top]:
        gfs = f"{gf:9.1f}" if gf else f"{'':>9}"
        lines.append(f"  {lab:<{width}}{ms:9.2f}{pct:7.1f}{gfs}")
    if len(rows) > top:
        rest = rows[top:]
        lines.append(f"  {f'({len(rest)} more rows)':<{width}}{sum(r[1] for r in rest):9.2f}"
                     f"{sum(r[2] for r in rest):7.1f}")
    lines.append("  by kind: " + ", ".join(f"{k} {pct:.0f}%" for k, ms, pct in by_kind(p) if pct >= 0.5))
    return "\n".join(lines)
