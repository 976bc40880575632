"""The framework reference: train the same VAE in PyTorch and report its test loss.

tinyvae's one-epoch simple/MNIST test loss is checked against this number.
Needs PyTorch (not a tinyvae dependency: ``pip install torch==2.13.0``) and the
data (``TINYVAE_DATA_DIR=/work/shared/data`` or ``--data-dir``)::

    python benchmarks/torch_reference_epoch.py                     # simple/mnist, 1 epoch, seed 0
    python benchmarks/torch_reference_epoch.py --seed 1 --epochs 2 --json
    python benchmarks/torch_reference_epoch.py --train-subset 5000  # quicker

The run follows tinyvae's protocol step for step (see tinyvae/train.py): the
same seed is split into the same streams, so the torch model starts from
*tinyvae's* initial weights (Glorot-uniform, zero biases; ``--torch-init``
uses torch's own ``xavier_uniform_`` with ``torch.manual_seed(seed)``
instead), sees the batches of 50 in the same order with the same
reparameterization noise, and is evaluated like ``tinyvae.evaluate.mean_loss``:
mean over the test set (batches of 100) of loss, rec and KL with z sampled
with the same evaluation noise. What differs is only the arithmetic
(PyTorch's kernels, NCHW) and PyTorch's placement of Adam's eps, so with the
same seed the two test losses should agree to within the spread across
seeds.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

try:
    import torch
except ImportError:                                   # pragma: no cover
    sys.exit("torch_reference_epoch.py needs PyTorch, which tinyvae does not depend on: "
             "pip install torch==2.13.0")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, os.pardir))

from compare_torch import TorchVAE, copy_weights, make_adam, vae_loss  # noqa: E402
from tinyvae.threads import thread_limit  # noqa: E402
from tinyvae.errors import TinyVAEError  # noqa: E402
from tinyvae.models import ARCHS, IMAGE_SHAPES, VAE  # noqa: E402
from tinyvae.losses import HISTORY_KEYS  # noqa: E402
from tinyvae.data import to_float  # noqa: E402
from tinyvae.config import TrainConfig, load_data, streams  # noqa: E402


def nchw(images_uint8):
    """uint8 NHWC -> float32 torch NCHW in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(to_float(images_uint8).transpose(0, 3, 1, 2)))


def evaluate(model, images, seed_seq, beta, batch_size=100):
    """Mean test loss, rec and KL over ``images``, as tinyvae.evaluate.mean_loss computes them."""
    rng = np.random.default_rng(seed_seq)
    totals, n = dict.fromkeys(HISTORY_KEYS, 0.0), len(images)
    with torch.no_grad():
        for i in range(0, n, batch_size):
            x = nchw(images[i:i + batch_size])
            eps = torch.from_numpy(rng.standard_normal((len(x), model.arch.latent), dtype=np.float32))
            xhat, mu, logvar = model(x, eps)
            loss, rec, kl = vae_loss(xhat, x, mu, logvar, beta)
            for k, v in (("loss", loss), ("rec", rec), ("kl", kl)):
                totals[k] += v.item() * len(x)
    return {k: v / n for k, v in totals.items()}


def run(cfg, data_dir=None, torch_init=False, log=sys.stdout):
    """Train the torch VAE with tinyvae's protocol; returns a dict of results."""
    data = load_data(cfg, data_dir)
    x_train, x_test = data["train"][0], data["test"][0]
    init_rng, _, rng, eval_seed = streams(cfg.seed)
    shape = IMAGE_SHAPES[cfg.dataset]
    if torch_init:
        torch.manual_seed(cfg.seed)
        model = TorchVAE(cfg.model, shape)
    else:
        model = TorchVAE(cfg.model, shape)
        copy_weights(VAE(cfg.model, shape, init_rng, np.float32), model)
    beta = model.arch.beta
    opt = make_adam(model, cfg.lr)
    B, n = cfg.batch_size, len(x_train)
    steps_per_epoch = -(-n // B)
    epochs, t_start = [], time.perf_counter()
    for epoch in range(cfg.epochs):
        perm = rng.permutation(n)
        t0, train_loss = time.perf_counter(), 0.0
        for step in range(steps_per_epoch):
            idx = perm[step * B:(step + 1) * B]
            x = nchw(x_train[idx])
            eps = torch.from_numpy(rng.standard_normal((len(idx), model.arch.latent), dtype=np.float32))
            opt.zero_grad(set_to_none=True)
            xhat, mu, logvar = model(x, eps)
            loss, _, _ = vae_loss(xhat, x, mu, logvar, beta)
            loss.backward()
            opt.step()
            train_loss += loss.item()
            if not np.isfinite(train_loss):
                raise SystemExit(f"the loss diverged at epoch {epoch + 1}, step {step + 1}")
        seconds = time.perf_counter() - t0
        test = evaluate(model, x_test, eval_seed, beta)
        test.update(epoch=epoch + 1, train_loss=train_loss / steps_per_epoch, seconds=seconds,
                    ms_step=1e3 * seconds / steps_per_epoch)
        epochs.append(test)
        print(f"epoch {epoch + 1}: test loss {test['loss']:.3f} (rec {test['rec']:.3f}, kl {test['kl']:.3f}); "
              f"train loss {test['train_loss']:.3f}; {seconds:.1f} s ({test['ms_step']:.1f} ms/step)",
              file=log, flush=True)
    last = epochs[-1]
    return {"framework": f"torch {torch.__version__}", "model": cfg.model, "dataset": cfg.dataset,
            "seed": cfg.seed, "epochs": cfg.epochs, "batch_size": B, "n_train": n, "n_test": len(x_test),
            "init": "torch" if torch_init else "tinyvae", "threads": torch.get_num_threads(),
            "test_loss": last["loss"], "test_rec": last["rec"], "test_kl": last["kl"],
            "seconds": time.perf_counter() - t_start, "epoch_test": epochs}


def main(argv=None):
    p = argparse.ArgumentParser(description="Train tinyvae's VAE in PyTorch with the study's protocol "
                                            "and print the test loss (the framework reference).")
    p.add_argument("--model", choices=list(ARCHS), default="simple")
    p.add_argument("--dataset", choices=list(IMAGE_SHAPES), default="mnist")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--train-subset", type=int, default=None, help="train on this many images (default all)")
    p.add_argument("--test-subset", type=int, default=None, help="evaluate on this many (default all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--threads", type=int, default=None, help="torch and BLAS threads (default: all)")
    p.add_argument("--torch-init", action="store_true",
                   help="torch's own Glorot init (torch.manual_seed(seed)) instead of tinyvae's weights")
    p.add_argument("--data-dir", default=None, help="default $TINYVAE_DATA_DIR")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")
    args = p.parse_args(argv)
    cfg = TrainConfig(model=args.model, dataset=args.dataset, epochs=args.epochs, batch_size=args.batch_size,
                      lr=args.lr, seed=args.seed, train_subset=args.train_subset,
                      test_subset=args.test_subset)
    log = sys.stderr if args.json else sys.stdout
    try:
        cfg.validate()
        if args.threads:
            torch.set_num_threads(args.threads)
        with thread_limit(args.threads):
            result = run(cfg, args.data_dir, args.torch_init, log)
    except TinyVAEError as e:
        print(f"torch_reference_epoch.py: error: {e}", file=sys.stderr)
        return 2
    print(f"torch reference {result['model']}/{result['dataset']}, {result['epochs']} epoch(s) on "
          f"{result['n_train']} images, seed {result['seed']}, {result['init']} init: test loss "
          f"{result['test_loss']:.3f} (rec {result['test_rec']:.3f}, kl {result['test_kl']:.3f}) "
          f"over {result['n_test']} test images; {result['seconds']:.0f} s", file=log)
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
