"""The few things every lesson needs and none of them teaches.

* :func:`setup` reads the command line (``--out DIR``, ``--full``,
  ``--threads N``), picks the figure folder and pins the thread count;
* :func:`savefig` writes one PNG there and says where;
* ``to_float`` (pixels / 255) is imported here for every lesson, so that
  where it lives in the package is one line;
* :func:`need_data` finds the real data (downloading it once if missing) or exits
  with a clear message;
  :func:`find_data` finds it or returns None.

In a notebook (Jupyter, VS Code) the command line is the kernel's; unknown
arguments are ignored, so the defaults apply.
"""
import argparse
import os
import sys
import tempfile
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules:          # a script: draw into files, never open windows
    matplotlib.use("Agg")

import matplotlib.pyplot as plt             # noqa: E402  (after choosing the backend)
import numba                                # noqa: E402

from tinyvae.threads import set_threads     # noqa: E402
from tinyvae.data import to_float           # noqa: E402,F401  (the lessons import it from here: one place)

OUT_ENV = "TINYVAE_LESSON_OUT"


def setup(name, argv=None):
    """Parse the lesson's arguments; return them with ``out`` a ready folder.

    ``--out DIR``: where figures go (default ``$TINYVAE_LESSON_OUT``, else a
    fresh temporary folder). ``--full``: full-size runs instead of the quick
    defaults. ``--threads N`` (default 1): numba and BLAS threads. The
    lessons' arrays are small, and on a busy machine numba's and BLAS's
    thread pools spinning against each other cost far more than they give.
    """
    p = argparse.ArgumentParser(prog=f"python -m lessons.{name}",
                                description=f"tinyvae course, {name}")
    p.add_argument("--out", default=None,
                   help=f"folder for the figures (default ${OUT_ENV}, else a temporary folder)")
    p.add_argument("--full", action="store_true", help="full-size data and training (slow)")
    p.add_argument("--threads", type=int, default=1, help="numba and BLAS threads (default 1, at least 1)")
    args, _ = p.parse_known_args(argv)
    out = args.out or os.environ.get(OUT_ENV)
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
    else:
        out = tempfile.mkdtemp(prefix=f"tinyvae-{name}-")
    args.out = Path(out)
    set_threads(max(1, min(args.threads, numba.config.NUMBA_NUM_THREADS)))
    print(f"[{name}] figures go to {args.out}" + ("  (--full)" if args.full else ""))
    return args


def savefig(fig, out, name):
    """Save ``fig`` as ``out/name.png``, print the path, return it."""
    path = Path(out) / f"{name}.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    if matplotlib.get_backend().lower() == "agg":
        plt.close(fig)
    print(f"saved {path}")
    return path


def _missing(dataset):
    from tinyvae import data
    root = data.resolve_data_dir()
    return root, [root / rel for rel in data.OFFICIAL_URLS[dataset] if not (root / rel).is_file()]


def find_data(dataset):
    """The data dir holding ``dataset``'s files, or None (for lessons that can do without)."""
    root, missing = _missing(dataset)
    return None if missing else root


def need_data(dataset):
    """The data dir holding ``dataset``'s files, downloaded once if missing; or exit(2) saying why."""
    from tinyvae.download import ensure
    from tinyvae.errors import TinyVAEError
    try:
        ensure([dataset], log=print)
    except TinyVAEError as e:
        sys.exit(f"This lesson needs the real {dataset} data.\n{e}")
    return _missing(dataset)[0]
