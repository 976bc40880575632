"""tinyvae against PyTorch: the same VAEs, the same training step, interleaved timings.

Needs PyTorch, which is *not* a tinyvae dependency: ``pip install torch==2.13.0``
(the CPU build). Run from the repository root::

    python benchmarks/compare_torch.py                 # 4 pairs x threads {1, 2}, ~3 minutes
    python benchmarks/compare_torch.py --pairs simple/mnist --threads 1 --json

The torch model is built from tinyvae's ``ARCHS`` description (conv channels,
dense sizes, latent size, beta), in NCHW::

    encoder: [Conv2d(3x3, valid) -> ReLU -> MaxPool2d(2)] per conv, Flatten,
             [Linear -> ReLU] per dense, Linear heads for mu and logvar
    decoder: [Linear -> ReLU] per dense reversed, Linear(flat) -> ReLU, Unflatten,
             [Upsample(2, nearest) -> ConvTranspose2d(3x3) -> ReLU] per conv reversed
             (the first keeps the channel count of the reshape),
             ConvTranspose2d(image channels, 3x3) -> Sigmoid

Glorot-uniform weights and zero biases (``xavier_uniform_``; Keras' fans for a
transposed conv sum to the same bound), loss = sum of squared errors over
pixels + beta * KL, mean over the batch, Adam lr 1e-4, eps 1e-7. For the
timings the torch model gets a *copy of tinyvae's initial weights*
(transposed to NCHW, the flatten order permuted), and the script checks that
the two give the same loss and gradients on one batch, so both time the very
same computation. Parameter counts must be equal or the script stops.

Timing: for each pair and thread count, blocks of tinyvae steps and blocks of
torch steps alternate in this one process (warm-up first), and the medians
are compared; a burst of load from elsewhere on a shared machine then hits
both alike. A step is forward + loss + backward + Adam update on a fixed
batch of 50 (data preparation is not timed, for either).
"""
import argparse
import json
import os
import sys
import time

import numpy as np

try:
    import torch
    from torch import nn
except ImportError:                                   # pragma: no cover
    sys.exit("compare_torch.py needs PyTorch, which tinyvae does not depend on: "
             "pip install torch==2.13.0")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib as bench  # noqa: E402  (puts the repository root on sys.path too)
from tinyvae.threads import thread_limit  # noqa: E402
from tinyvae.errors import TinyVAEError  # noqa: E402
from tinyvae.models import get_arch  # noqa: E402


# --------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------

class TorchVAE(nn.Module):
    """tinyvae's conv VAE for ``arch`` (a name in ARCHS or an Arch), in PyTorch, NCHW."""

    def __init__(self, arch, image_shape):
        super().__init__()
        arch = get_arch(arch)
        self.arch = arch
        H, W, C = image_shape
        enc, c_in, h, w = [], C, H, W
        for c in arch.convs:
            enc += [nn.Conv2d(c_in, c, 3), nn.ReLU(), nn.MaxPool2d(2)]
            c_in, h, w = c, (h - 2) // 2, (w - 2) // 2
        self.conv_out = (c_in, h, w)                   # e.g. (64, 5, 5) for MNIST
        flat = c_in * h * w
        enc.append(nn.Flatten())
        d_in = flat
        for d in arch.dense:
            enc += [nn.Linear(d_in, d), nn.ReLU()]
            d_in = d
        self.encoder = nn.Sequential(*enc)
        self.mu = nn.Linear(d_in, arch.latent)
        self.logvar = nn.Linear(d_in, arch.latent)
        dec, d_in = [], arch.latent
        for d in reversed(arch.dense):
            dec += [nn.Linear(d_in, d), nn.ReLU()]
            d_in = d
        dec += [nn.Linear(d_in, flat), nn.ReLU(), nn.Unflatten(1, self.conv_out)]
        c_in = self.conv_out[0]
        for c in reversed(arch.convs):
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.ConvTranspose2d(c_in, c, 3), nn.ReLU()]
            c_in = c
        dec += [nn.ConvTranspose2d(c_in, C, 3), nn.Sigmoid()]
        self.decoder = nn.Sequential(*dec)
        for m in self.param_layers():
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)

    def param_layers(self):
        """Conv, transposed conv and linear layers in tinyvae's order (encoder, mu, logvar, decoder)."""
        kinds = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
        return ([m for m in self.encoder if isinstance(m, kinds)] + [self.mu, self.logvar]
                + [m for m in self.decoder if isinstance(m, kinds)])

    def forward(self, x, eps):
        """x : (N, C, H, W), eps : (N, latent) -> xhat, mu, logvar."""
        h = self.encoder(x)
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.exp(0.5 * logvar) * eps
        return self.decoder(z), mu, logvar


def vae_loss(xhat, x, mu, logvar, beta):
    """Sum of squared errors over pixels + beta * KL, both averaged over the batch."""
    n = x.shape[0]
    rec = ((xhat - x) ** 2).sum() / n
    kl = 0.5 * (mu * mu + torch.exp(logvar) - 1.0 - logvar).sum() / n
    return rec + beta * kl, rec, kl


def make_adam(model, lr=1e-4):
    """Adam as the study used it: lr 1e-4, betas (0.9, 0.999), eps 1e-7.

    (PyTorch adds eps to sqrt(v_hat), Keras/tinyvae to sqrt(v) before the bias
    correction; with eps = 1e-7 the difference is negligible.)
    """
    return torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-7)


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def tinyvae_n_params(tv_model):
    return sum(p.size for p in tv_model.params.values())


# --------------------------------------------------------------------------
# tinyvae (NHWC, Keras layouts) <-> torch (NCHW)
# --------------------------------------------------------------------------

def _layer_arrays(tv_model, torch_model):
    """Pairs (tinyvae layer, torch module) in order, checked to be of matching kinds."""
    from tinyvae import layers as L
    tv = [layer for _, layer in tv_model.named_layers() if layer.params]
    th = torch_model.param_layers()
    if len(tv) != len(th):
        raise SystemExit(f"layer counts differ: tinyvae {len(tv)}, torch {len(th)}")
    for a, b in zip(tv, th):
        ok = ((isinstance(a, L.Conv2D) and type(b) is nn.Conv2d)
              or (isinstance(a, L.ConvTranspose2D) and type(b) is nn.ConvTranspose2d)
              or (isinstance(a, L.Dense) and type(b) is nn.Linear))
        if not ok:
            raise SystemExit(f"layer kinds differ: tinyvae {a!r}, torch {b}")
    return list(zip(tv, th))


def to_torch_weight(tv_layer, torch_layer, arr, conv_out, role):
    """One tinyvae weight or bias (or its gradient) in torch's layout.

    ``role``: "flatten_in" for the first dense after the encoder's flatten
    (its rows are (h, w, c) in tinyvae, (c, h, w) in torch), "unflatten_out"
    for the decoder's dense to the reshape (its columns likewise), else None.
    """
    c, h, w = conv_out
    if arr.ndim == 4:                      # conv (KH,KW,C,F) -> (F,C,KH,KW); convT (KH,KW,Co,Ci) -> (Ci,Co,KH,KW)
        return arr.transpose(3, 2, 0, 1)
    if arr.ndim == 2:                      # dense (D, M) -> (M, D)
        if role == "flatten_in":
            arr = arr.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(c * h * w, -1)
        elif role == "unflatten_out":
            arr = arr.reshape(-1, h, w, c).transpose(0, 3, 1, 2).reshape(-1, c * h * w)
        return arr.T
    if role == "unflatten_out":            # bias of the dense to the reshape
        return arr.reshape(h, w, c).transpose(2, 0, 1).reshape(-1)
    return arr


def _roles(pairs, torch_model):
    from tinyvae import layers as L
    flat = int(np.prod(torch_model.conv_out))
    roles, seen_flatten_in = [], False
    for tv, _ in pairs:
        role = None
        if isinstance(tv, L.Dense):
            D, M = tv.params["w"].shape
            if D == flat and not seen_flatten_in:
                role, seen_flatten_in = "flatten_in", True
            elif M == flat:
                role = "unflatten_out"
        roles.append(role)
    return roles


def copy_weights(tv_model, torch_model):
    """Load tinyvae's current weights into the torch model (exactly, float32)."""
    pairs = _layer_arrays(tv_model, torch_model)
    with torch.no_grad():
        for (tv, th), role in zip(pairs, _roles(pairs, torch_model)):
            for k, p in (("w", th.weight), ("b", th.bias)):
                a = to_torch_weight(tv, th, tv.params[k], torch_model.conv_out, role)
                if tuple(a.shape) != tuple(p.shape):
                    raise SystemExit(f"shape mismatch for {tv.name}.{k}: {a.shape} vs {tuple(p.shape)}")
                p.copy_(torch.from_numpy(np.ascontiguousarray(a)))


def check_equivalent(tv_model, torch_model, x, eps):
    """Loss and gradients of one batch from both; returns the largest relative differences."""
    r = tv_model.loss(x, eps)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    et = torch.from_numpy(eps)
    torch_model.zero_grad(set_to_none=True)
    xhat, mu, logvar = torch_model(xt, et)
    loss, rec, kl = vae_loss(xhat, xt, mu, logvar, tv_model.arch.beta)
    loss.backward()
    loss = loss.item()
    pairs = _layer_arrays(tv_model, torch_model)
    worst = 0.0
    for (tv, th), role in zip(pairs, _roles(pairs, torch_model)):
        for k, p in (("w", th.weight), ("b", th.bias)):
            g = to_torch_weight(tv, th, tv.grads[k], torch_model.conv_out, role)
            gt = p.grad.numpy()
            worst = max(worst, float(np.abs(g - gt).max() / (np.abs(gt).max() + 1e-12)))
    return {"loss_tinyvae": r["loss"], "loss_torch": loss,
            "loss_rel_diff": abs(r["loss"] - loss) / abs(loss),
            "grad_max_rel_diff": worst}


# --------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------

class TorchStepRunner:
    """A torch model + Adam + one fixed batch (the tinyvae runner's, in NCHW)."""

    def __init__(self, tv_runner):
        m = tv_runner.model
        self.model = TorchVAE(m.arch, m.image_shape)
        if n_params(self.model) != tinyvae_n_params(m):
            raise SystemExit(f"{m.arch.name}/{tv_runner.dataset}: parameter counts differ: tinyvae "
                             f"{tinyvae_n_params(m):,}, torch {n_params(self.model):,}")
        copy_weights(m, self.model)
        self.check = check_equivalent(m, self.model, tv_runner.x, tv_runner.eps)
        self.opt = make_adam(self.model)
        self.beta = m.arch.beta
        self.x = torch.from_numpy(np.ascontiguousarray(tv_runner.x.transpose(0, 3, 1, 2)))
        self.eps = torch.from_numpy(tv_runner.eps.copy())

    def step(self):
        self.opt.zero_grad(set_to_none=True)
        xhat, mu, logvar = self.model(self.x, self.eps)
        loss, _, _ = vae_loss(xhat, self.x, mu, logvar, self.beta)
        loss.backward()
        self.opt.step()

    def time_steps(self, n):
        return bench.time_calls(self.step, n)


def torch_sgemm(n=2048, repeats=5, min_seconds=0.2):
    """torch.mm float32 n^3 GFLOP/s, best of ``repeats`` samples (for scale: MKL vs OpenBLAS)."""
    a, b = torch.rand(n, n), torch.rand(n, n)
    c = torch.empty(n, n)
    torch.mm(a, b, out=c)
    t0 = time.perf_counter()
    torch.mm(a, b, out=c)
    inner = max(1, int(min_seconds / max(time.perf_counter() - t0, 1e-6)))
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            torch.mm(a, b, out=c)
        best = max(best, 2.0 * n ** 3 * inner / (time.perf_counter() - t0) / 1e9)
    return best


def compare(pairs, threads, steps=20, warmup=3, rounds=5, batch=50, peak_n=2048, budget=30.0, log=None):
    """One result dict per (pair, thread count).

    ``budget``: seconds of timed blocks per pair and thread count, after which
    the current round is the last. The sgemm rate is sampled between rounds
    and the best sample is the peak (see :class:`benchlib.PeakSampler`).
    """
    results = []
    for n in threads:
        torch.set_num_threads(n)
        with thread_limit(n):
            square = bench.PeakSampler(peak_n, peak_n, peak_n)
            square(repeats=3, min_seconds=0.2)
            tpeak = torch_sgemm(peak_n)
            rows = []
            for model, dataset in pairs:
                tv = bench.StepRunner(model, dataset, batch)
                th = TorchStepRunner(tv)
                times = bench.run_interleaved([tv, th], steps, warmup, rounds, budget, square)
                a = bench.summarize(times[0], tv.flops)
                b = bench.summarize(times[1], tv.nominal_flops)
                r = {"model": model, "dataset": dataset, "threads": n, "batch": batch,
                     "params": tinyvae_n_params(tv.model), "steps": len(times[0]),
                     "tinyvae_ms": a["ms_step"], "tinyvae_ms_min": a["ms_min"], "tinyvae_ms_max": a["ms_max"],
                     "torch_ms": b["ms_step"], "torch_ms_min": b["ms_min"], "torch_ms_max": b["ms_max"],
                     "ratio": a["ms_step"] / b["ms_step"],
                     "gflop_step": a["gflop_step"], "gflop_nominal": b["gflop_step"],
                     "tinyvae_gflops": a["gflops"], "torch_gflops": b["gflops"],
                     "torch_sgemm_gflops": tpeak, "check": th.check}
                rows.append(r)
        for r in rows:                     # the best sgemm sample of this thread count is its peak
            r["sgemm_gflops"] = square.best
            r["tinyvae_pct_peak"] = 100 * r["tinyvae_gflops"] / square.best
            r["torch_pct_peak"] = 100 * r["torch_gflops"] / square.best
            if log:
                print(format_row(r), file=log, flush=True)
        results += rows
    return results


HEADER = (f"{'model/dataset':<17}{'thr':>4}{'tinyvae ms':>11}{'torch ms':>10}{'ratio':>7}"
          f"{'tv GF/s':>9}{'tv %pk':>8}{'th GF/s':>9}{'th %pk':>8}{'sgemm':>8}{'loss/grad diff':>17}")


def format_row(r):
    c = r["check"]
    return (f"{r['model'] + '/' + r['dataset']:<17}{r['threads']:>4}{r['tinyvae_ms']:11.1f}"
            f"{r['torch_ms']:10.1f}{r['ratio']:7.2f}{r['tinyvae_gflops']:9.1f}{r['tinyvae_pct_peak']:8.1f}"
            f"{r['torch_gflops']:9.1f}{r['torch_pct_peak']:8.1f}{r['sgemm_gflops']:8.1f}"
            f"{c['loss_rel_diff']:9.1e}{c['grad_max_rel_diff']:8.1e}")


def main(argv=None):
    p = argparse.ArgumentParser(description="Time tinyvae's and PyTorch's training steps of the same "
                                            "VAEs, interleaved in one process.")
    p.add_argument("--pairs", default="all", help="MODEL/DATASET,... or 'all' (the study's four)")
    p.add_argument("--threads", default="1,2", help="thread counts, comma-separated (default 1,2)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per framework (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    p.add_argument("--rounds", type=int, default=5, help="alternating blocks (default 5)")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--max-seconds", type=float, default=30.0,
                   help="per pair and thread count: stop after the round that passes this (default 30)")
    p.add_argument("--json", action="store_true", help="one JSON object per line on stdout, tables on stderr")
    args = p.parse_args(argv)
    try:
        pairs = bench.parse_pairs(args.pairs)
        threads = bench.parse_threads(args.threads)
    except TinyVAEError as e:
        p.error(str(e))
    log = sys.stderr if args.json else sys.stdout
    info = bench.machine_info()
    print(f"tinyvae vs torch {torch.__version__} (MKL-DNN {torch.backends.mkldnn.is_available()}), "
          f"batch {args.batch_size}, float32; {info['cpu']}, {info['cores']} cores; numpy BLAS "
          f"{bench.describe_blas(info)}", file=log)
    print("ms = median ms/step; ratio = tinyvae/torch; GF/s = GEMM GFLOP/s (tinyvae: what its fused layers "
          "compute, torch: the unfused architecture); %pk = of numpy's measured 2048^3 sgemm", file=log)
    print(HEADER, file=log, flush=True)
    results = compare(pairs, threads, args.steps, args.warmup, args.rounds, args.batch_size,
                      budget=args.max_seconds, log=log)
    info = bench.machine_info()
    if args.json:
        for r in results:
            r["machine"] = info
            r["torch"] = torch.__version__
            print(json.dumps(r), flush=True)
    tpk = {r["threads"]: r["torch_sgemm_gflops"] for r in results}
    print("torch.mm 2048^3 for scale: " + ", ".join(f"{t} thread(s) {g:.1f} GFLOP/s" for t, g in tpk.items()),
          file=log)
    print(f"numba threading layer: {info['numba_threading_layer']}", file=log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
