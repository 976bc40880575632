"""Command line: ``python -m tinyvae {train,summary,fetch,bench,explore} ...``.

Every error tinyvae raises on purpose (:class:`tinyvae.errors.TinyVAEError`)
is printed as one message and ends the program with status 2, without a
traceback; argparse does the same for malformed flags. A run stopped by
Ctrl-C or SIGTERM saves its checkpoint and exits with 130 or 143.
"""
import argparse
import json
import shlex
import sys

from . import explore
from .errors import ConfigError, Interrupted, TinyVAEError
from .threads import default_threads, thread_limit
from .archs import ARCHS, IMAGE_SHAPES, LIKELIHOODS


def positive_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def nonnegative_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return v


def positive_float(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (v > 0 and v != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return v


def nonnegative_float(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not (v >= 0 and v != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return v


def check_backend(name):
    """ConfigError naming the flag unless ``name`` (or, for None, ``$TINYVAE_KERNELS``) is a kernel backend."""
    from .kernels import get_backend
    try:
        get_backend(name)
    except ConfigError as e:
        raise ConfigError(f"--backend (or $TINYVAE_KERNELS): {e}") from None


def add_train_args(p, threads_help="pin numba and BLAS to this many threads (default: the cores "
                                   "that other work leaves free, from the load average)"):
    """The flags shared by ``train`` and ``run_all.py``'s per-run settings."""
    p.add_argument("--seed", type=nonnegative_int, default=0, help="random seed (default 0)")
    p.add_argument("--data-dir", default=None,
                   help="folder with mnist/ and cifar10/ (default $TINYVAE_DATA_DIR, else ~/.cache/tinyvae)")
    p.add_argument("--threads", type=positive_int, default=None, help=threads_help)
    p.add_argument("--backend", default=None,
                   help="kernels: numba (fast, default) or numpy (the reference); "
                        "also settable as $TINYVAE_KERNELS")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--no-download", action="store_true",
                   help="never download a missing dataset (default: download it once into the data dir)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint in --out, if there is one (bit-exact with the "
                        "same --backend and --threads; after a divergence a smaller --lr is accepted)")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m tinyvae",
        description="Convolutional VAEs from scratch in NumPy: train, inspect, fetch data, benchmark, "
                    "explore a latent space.",
        epilog="Errors print one message and exit with status 2. "
               "Run 'python -m tinyvae COMMAND --help' for a command's flags.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    t = sub.add_parser("train", help="train one VAE and write checkpoint.npz and metrics.json",
                       description="Train one VAE with the study's protocol (Adam lr 1e-4, batch 50, "
                                   "10 epochs). Writes OUT/checkpoint.npz (every epoch, every "
                                   "--checkpoint-every steps, and on Ctrl-C) and OUT/metrics.json.")
    t.add_argument("--model", choices=list(ARCHS), default="simple", help="VAE variant (default simple)")
    t.add_argument("--dataset", choices=list(IMAGE_SHAPES), default="mnist", help="default mnist")
    t.add_argument("--epochs", type=positive_int, default=10, help="default 10")
    t.add_argument("--batch-size", type=positive_int, default=50, help="default 50")
    t.add_argument("--lr", type=positive_float, default=1e-4, help="Adam learning rate (default 1e-4)")
    t.add_argument("--train-subset", type=positive_int, default=None,
                   help="train on this many images chosen with the seed (default all)")
    t.add_argument("--test-subset", type=positive_int, default=None,
                   help="evaluate on this many test images (default all)")
    t.add_argument("--checkpoint-every", type=nonnegative_int, default=0,
                   help="also checkpoint every N steps (default 0: each epoch only)")
    t.add_argument("--beta", type=nonnegative_float, default=None,
                   help="KL weight, >= 0 (default the model's: 0.5 for deep, 1 otherwise)")
    t.add_argument("--likelihood", choices=list(LIKELIHOODS), default="gaussian",
                   help="decoder: gaussian (squared error, the paper's; default) or bernoulli "
                        "(binary cross-entropy on logits)")
    t.add_argument("--out", required=True, help="output folder (created if needed)")
    add_train_args(t)

    s = sub.add_parser("summary", help="print a model's layers, output shapes and parameter counts")
    s.add_argument("model", choices=list(ARCHS), help="VAE variant: " + ", ".join(ARCHS))
    s.add_argument("--dataset", choices=list(IMAGE_SHAPES), default="mnist", help="default mnist")

    f = sub.add_parser("fetch", help="download datasets now (train and run_all.py fetch what they need)")
    f.add_argument("dataset", nargs="+", choices=list(IMAGE_SHAPES), help="dataset(s): " + ", ".join(IMAGE_SHAPES))
    f.add_argument("--data-dir", default=None,
                   help="where to put them (default $TINYVAE_DATA_DIR, else ~/.cache/tinyvae)")

    b = sub.add_parser("bench", help="time full training steps (see benchmarks/bench_step.py)",
                       add_help=False)
    b.add_argument("rest", nargs=argparse.REMAINDER, help="the benchmark's own flags")
    explore.add_parser(sub)
    return parser


def cmd_train(args):
    import os
    from .config import TrainConfig
    from .download import ensure
    from .runs import check_out_dir, printable
    from .train import train
    cfg = TrainConfig(model=args.model, dataset=args.dataset, epochs=args.epochs,
                      batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                      train_subset=args.train_subset, test_subset=args.test_subset,
                      checkpoint_every=args.checkpoint_every, beta=args.beta,
                      likelihood=args.likelihood).validate()
    check_backend(args.backend)
    check_out_dir(args.out, create=False)
    ensure([cfg.dataset], args.data_dir, download=not args.no_download, log=_say)
    threads, why = default_threads(args.threads)
    _say(f"training {cfg.model}/{cfg.dataset} (KL weight {cfg.effective_beta():g}, {cfg.likelihood} decoder) "
         f"on {why}")
    with thread_limit(threads):
        result = train(cfg, out_dir=args.out, data_dir=args.data_dir, resume=args.resume,
                       progress=not args.no_progress, backend=args.backend)
    m = result.metrics
    print(printable(f"{m['model']}/{m['dataset']}: {m['epochs']} epoch{'s' if m['epochs'] != 1 else ''}, "
                    f"{m['steps']} steps in {m['seconds']:.1f} s; "
                    f"test loss {m['test_loss']:.3f} (rec {m['test_rec']:.3f}, kl {m['test_kl']:.3f}); "
                    f"wrote {os.path.join(args.out, 'metrics.json')}"))
    return 0


def cmd_summary(args):
    import numpy as np
    from .models import VAE
    model = VAE(args.model, IMAGE_SHAPES[args.dataset], np.random.default_rng(0))
    print(model.summary())
    return 0


def cmd_fetch(args):
    from .data import resolve_data_dir
    from .download import ensure
    paths = ensure(list(dict.fromkeys(args.dataset)), args.data_dir, log=_say)
    print(json.dumps({"datasets": args.dataset, "data_dir": str(resolve_data_dir(args.data_dir)),
                      "downloaded": [str(p) for p in paths]}, indent=2))
    return 0


def _say(msg):
    print(f"tinyvae: {msg}", file=sys.stderr, flush=True)


def cmd_bench(args):
    try:
        from .bench import main as bench_main
    except ModuleNotFoundError as e:
        if e.name != f"{__package__}.bench":
            raise
        raise ConfigError("the bench command is not available in this installation "
                          "(tinyvae/bench.py is missing); see benchmarks/bench_step.py") from None
    return bench_main(args.rest)


def resume_command(argv):
    """The command line that resumes the run started with ``argv`` (train's arguments)."""
    argv = list(argv)
    if "--resume" not in argv:
        argv.append("--resume")
    return shlex.join([sys.executable, "-m", "tinyvae"] + argv)


COMMANDS = {"train": cmd_train, "summary": cmd_summary, "fetch": cmd_fetch, "bench": cmd_bench,
            "explore": explore.run}


def main(argv=None):
    """Entry point; returns the exit status."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:                    # its flags are bench.py's own: pass them on untouched
        args = argparse.Namespace(command="bench", rest=argv[1:])
    else:
        args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except Interrupted as e:
        print(f"tinyvae: {e}", file=sys.stderr)
        if args.command == "train":
            print(f"tinyvae: to resume: {resume_command(argv)}", file=sys.stderr)
        return e.exit_code
    except TinyVAEError as e:
        print(f"tinyvae: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:                         # disk full, permissions, ... outside tinyvae's checks
        if isinstance(e, BrokenPipeError):
            sys.stderr.close()
            return 0
        print(f"tinyvae: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tinyvae: interrupted; nothing more was saved (the last checkpoint, if any, is whole: "
              "--resume continues from it)", file=sys.stderr)
        return 130
