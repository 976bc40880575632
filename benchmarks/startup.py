"""Start-up time of ``python -m tinyvae train``: from launching the process to its first step.

A child interpreter runs ``tinyvae.cli.main`` (what ``python -m tinyvae``
runs) with ``VAE.loss`` and ``Adam.step`` wrapped -- in the child, by this
benchmark -- to note the wall-clock time when the first step starts and
ends; then it exits.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from tinyvae.errors import ConfigError

_STARTUP_CHILD = r"""
import json, os, sys, time
import tinyvae.models as M, tinyvae.optim as O
marks = {}
_loss, _step = M.VAE.loss, O.Adam.step
def loss(self, *a, **k):
    marks.setdefault("first_step_start", time.time())
    return _loss(self, *a, **k)
def step(self, *a, **k):
    r = _step(self, *a, **k)
    marks["first_step_end"] = time.time()
    sys.stdout.write("\nSTARTUP " + json.dumps(marks) + "\n"); sys.stdout.flush()
    os._exit(0)
M.VAE.loss, O.Adam.step = loss, step
from tinyvae.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _run_timed(cmd, env):
    t0 = time.time()
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t1 = time.time()
    return t0, t1, p


def measure_startup(model="simple", dataset="mnist", data_dir=None, repeats=3, cold=True):
    """Seconds from launching ``python -m tinyvae train ...`` to its first training step.

    The child runs ``tinyvae.cli.main`` (what ``python -m tinyvae`` runs) with
    ``VAE.loss`` and ``Adam.step`` wrapped to note the wall-clock time when
    the first step starts and when it ends, then exits. ``warm``: the numba
    cache in place (one untimed run first fills it); ``cold``: an empty
    ``NUMBA_CACHE_DIR``, so every kernel is compiled. Also times
    ``import numpy`` and ``import tinyvae.train`` alone.
    """
    env = dict(os.environ)
    if data_dir:
        env["TINYVAE_DATA_DIR"] = str(data_dir)
    with tempfile.TemporaryDirectory() as tmp:
        def once(extra_env=None, i=0):
            out = os.path.join(tmp, f"run{i}")
            cmd = [sys.executable, "-c", _STARTUP_CHILD, "train", "--model", model, "--dataset", dataset,
                   "--epochs", "1", "--out", out, "--no-progress"]
            t0, t1, p = _run_timed(cmd, {**env, **(extra_env or {})})
            marks = [line for line in p.stdout.splitlines() if line.startswith("STARTUP ")]
            if not marks:
                msg = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
                raise ConfigError(f"the start-up run did not reach a training step: {msg}")
            m = json.loads(marks[-1][len("STARTUP "):])
            return {"to_first_step": m["first_step_start"] - t0,
                    "first_step_done": m["first_step_end"] - t0, "total": t1 - t0}

        result = {"model": model, "dataset": dataset}
        if cold:
            result["cold"] = once({"NUMBA_CACHE_DIR": os.path.join(tmp, "numba-cache")}, 100)
        once(i=101)                                               # make sure the cache is warm
        warm = [once(i=i) for i in range(repeats)]
        result["warm"] = {k: statistics.median(w[k] for w in warm) for k in warm[0]}
        result["warm_runs"] = warm
        for label, code in (("python_startup", "pass"), ("import_numpy", "import numpy"),
                            ("import_tinyvae_train", "import tinyvae.train")):
            ts = []
            for _ in range(repeats):
                t0, t1, p = _run_timed([sys.executable, "-c", code], env)
                ts.append(t1 - t0)
            result[label] = statistics.median(ts)
    return result


def format_startup(s):
    w = s["warm"]
    lines = [f"start-up of `python -m tinyvae train --model {s['model']} --dataset {s['dataset']}` "
             f"(seconds, median of {len(s['warm_runs'])} runs, warm numba cache):",
             f"  to the first training step     {w['to_first_step']:6.2f}   (target < 3 s)",
             f"  first step done                {w['first_step_done']:6.2f}"]
    if "cold" in s:
        c = s["cold"]
        lines.append(f"  cold cache: first step start   {c['to_first_step']:6.2f}, "
                     f"first step done {c['first_step_done']:.2f}")
    lines.append(f"  for scale: python alone {s['python_startup']:.2f}, import numpy "
                 f"{s['import_numpy']:.2f}, import tinyvae.train {s['import_tinyvae_train']:.2f}")
    return "\n".join(lines)
