"""Training: the loop, test evaluation, checkpoints, resume.

The study's protocol is the default: Adam with lr 1e-4, batches of 50 drawn
in a fresh seeded order each epoch, 10 epochs, float32, pixels / 255.

Reproducibility: ``seed`` determines everything. It is split with
:class:`numpy.random.SeedSequence` into independent streams for the initial
weights, the data subsets, the training stream (each epoch's shuffle and
every batch's reparameterization noise) and the evaluation noise. The
training stream's state is saved in every checkpoint, so a resumed run
continues bit-exactly where it stopped (see :mod:`tinyvae.checkpoint`).
"""
import json
import math
import os
import signal
import time
from dataclasses import asdict, dataclass, field, fields

import numpy as np
from tqdm.auto import tqdm

from . import checkpoint as ckpt
from .data import load
from .errors import CheckpointError, ConfigError, Interrupted, TrainingDiverged
from .kernels import get_backend
from .models import VAE, get_arch, image_shape_of
from .optim import Adam

CHECKPOINT = "checkpoint.npz"
METRICS = "metrics.json"
HISTORY_KEYS = ("loss", "rec", "kl")


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in every checkpoint).

    ``train_subset`` / ``test_subset``: use only that many images, chosen at
    random with the seed (None: all). ``checkpoint_every``: also checkpoint
    every that many steps (0: only at the end of each epoch).
    """
    model: str = "simple"
    dataset: str = "mnist"
    epochs: int = 10
    batch_size: int = 50
    lr: float = 1e-4
    seed: int = 0
    train_subset: int | None = None
    test_subset: int | None = None
    checkpoint_every: int = 0

    def validate(self):
        """Raise ConfigError naming the first bad field and what is accepted."""
        get_arch(self.model)
        image_shape_of(self.dataset)
        for name, low in (("epochs", 1), ("batch_size", 1), ("checkpoint_every", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise ConfigError(f"{name} must be an integer >= {low}, got {v!r}")
        for name in ("train_subset", "test_subset"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
                raise ConfigError(f"{name} must be a positive integer or None, got {v!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not (
                math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be a finite number > 0, got {self.lr!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {self.seed!r}")
        return self


@dataclass
class Result:
    """What :func:`train` returns: the model, per-batch history, per-epoch test numbers, metrics."""
    model: VAE
    history: dict
    epochs: list
    metrics: dict
    out_dir: str | None = None
    data: dict = field(default_factory=dict, repr=False)


def to_float(images, dtype=np.float32):
    """uint8 images -> floats in [0, 1] (pixels / 255), same shape."""
    return np.divide(images, 255, dtype=dtype)           # (N, H, W, C)


def streams(seed):
    """Independent RNGs for init, subsets, training and evaluation from one seed."""
    init, subset, training, evaluation = np.random.SeedSequence(seed).spawn(4)
    return (np.random.default_rng(init), np.random.default_rng(subset),
            np.random.default_rng(training), evaluation)


def load_data(cfg, data_dir=None):
    """Train and test images (uint8 NHWC) and labels for ``cfg``, subsets applied."""
    _, subset_rng, _, _ = streams(cfg.seed)
    out = {}
    for split, k in (("train", cfg.train_subset), ("test", cfg.test_subset)):
        x, y = load(cfg.dataset, split, data_dir)
        if k is not None and k < len(x):
            idx = np.sort(subset_rng.choice(len(x), size=k, replace=False))
            x, y = x[idx], y[idx]
        out[split] = (x, y)
    return out


def evaluate(model, images, seed_seq, batch_size=100, beta=None):
    """Mean test loss, reconstruction and KL over ``images`` (uint8 NHWC).

    The reparameterization noise comes from ``seed_seq`` afresh on every
    call, so the same model always gets the same numbers.
    """
    rng = np.random.default_rng(seed_seq)
    totals, n = dict.fromkeys(HISTORY_KEYS, 0.0), len(images)
    for i in range(0, n, batch_size):
        x = to_float(images[i:i + batch_size], model.dtype)  # (B, H, W, C)
        eps = rng.standard_normal((len(x), model.arch.latent), dtype=model.dtype)
        r = model.loss(x, eps, beta=beta, backward=False)
        for k in HISTORY_KEYS:
            totals[k] += r[k] * len(x)
    return {k: v / n for k, v in totals.items()}


def encode_all(model, images, batch_size=200):
    """mu and logvar of every image (uint8 NHWC): two (N, L) arrays."""
    mus, logvars = [], []
    for i in range(0, len(images), batch_size):
        mu, logvar = model.encode(to_float(images[i:i + batch_size], model.dtype))
        mus.append(mu)
        logvars.append(logvar)
    return np.concatenate(mus), np.concatenate(logvars)


class Trainer:
    """One training run: model, optimizer, RNG stream, position and history.

    Use :func:`train`; this class exists so that the loop, checkpointing and
    resuming can be read separately.
    """

    def __init__(self, cfg, data, out_dir=None, backend=None):
        self.cfg, self.out_dir = cfg.validate(), out_dir
        self.x_train, self.x_test = data["train"][0], data["test"][0]
        n = len(self.x_train)
        if cfg.batch_size > n:
            raise ConfigError(f"batch_size {cfg.batch_size} is larger than the {n} training images")
        init_rng, _, self.rng, self.eval_seed = streams(cfg.seed)
        self.model = VAE(cfg.model, image_shape_of(cfg.dataset), init_rng, np.float32, backend)
        self.opt = Adam(cfg.lr, backend=backend)
        self.steps_per_epoch = -(-n // cfg.batch_size)
        self.epoch, self.step, self.perm, self.seconds, self.done = 0, 0, None, 0.0, False
        self.history = {k: [] for k in HISTORY_KEYS}
        self.epochs = []
        self._signal = None

    # ---- checkpoints -----------------------------------------------------

    @property
    def checkpoint_path(self):
        return os.path.join(self.out_dir, CHECKPOINT) if self.out_dir else None

    def save(self):
        """Checkpoint the whole state atomically (refusing a non-finite model)."""
        if not self.out_dir:
            return
        for name, p in self.model.params.items():
            if not np.all(np.isfinite(p)):
                raise TrainingDiverged(f"parameter {name} is not finite; the last good checkpoint "
                                       f"{self.checkpoint_path} is kept")
        arrays = {f"param/{k}": v for k, v in self.model.params.items()}
        arrays.update({f"adam/{k}": v for k, v in self.opt.state_dict().items()})
        arrays.update({f"history/{k}": np.asarray(v, dtype=np.float64) for k, v in self.history.items()})
        arrays.update({f"epochs/{k}": np.asarray([e[k] for e in self.epochs], dtype=np.float64)
                       for k in HISTORY_KEYS})
        arrays.update({
            "state/epoch": np.array(self.epoch), "state/step": np.array(self.step),
            "state/perm": np.asarray(self.perm if self.perm is not None else [], dtype=np.int64),
            "state/rng": ckpt.json_array(self.rng.bit_generator.state),
            "state/seconds": np.array(self.seconds), "state/done": np.array(int(self.done)),
            "meta/config": ckpt.json_array(asdict(self.cfg)),
        })
        ckpt.save_arrays(self.checkpoint_path, arrays)

    def restore(self, path):
        """Load a checkpoint of this same run (same model, data, batch size, seed)."""
        a = ckpt.load_arrays(path)
        stored_cfg = ckpt.read_json_array(a, "meta/config", path)
        mine = asdict(self.cfg)
        for k in ("model", "dataset", "batch_size", "lr", "seed", "train_subset", "test_subset"):
            if stored_cfg.get(k) != mine[k]:
                raise CheckpointError(f"{path} is from another run: its {k} is {stored_cfg.get(k)!r}, "
                                      f"this run's is {mine[k]!r}; use another --out or the same settings")
        params = ckpt.check_params(a, self.model.params, path)
        try:
            for k, v in params.items():
                self.model.params[k][...] = v
            self.opt.load_state_dict({k[len("adam/"):]: v for k, v in a.items() if k.startswith("adam/")})
            if set(self.opt.m) != set(self.model.params):
                raise CheckpointError(f"{path}: optimizer state does not match the model")
            self.history = {k: a[f"history/{k}"].tolist() for k in HISTORY_KEYS}
            self.epochs = [dict(zip(HISTORY_KEYS, vals)) for vals in
                           zip(*(a[f"epochs/{k}"].tolist() for k in HISTORY_KEYS))]
            self.epoch, self.step = int(a["state/epoch"]), int(a["state/step"])
            perm = a["state/perm"]
            self.perm = perm if perm.size else None
            self.rng.bit_generator.state = ckpt.read_json_array(a, "state/rng", path)
            self.seconds, self.done = float(a["state/seconds"]), bool(a["state/done"])
        except (KeyError, ValueError, TypeError) as e:
            raise CheckpointError(f"{path} is incomplete or inconsistent ({type(e).__name__}: {e})") from None
        if self.perm is not None and (self.perm.shape != (len(self.x_train),) or self.step > self.steps_per_epoch):
            raise CheckpointError(f"{path}: its batch position does not fit this run's data")
        if self.done and self.epoch < self.cfg.epochs:
            self.done = False                               # asked for more epochs than were run

    # ---- the loop ----------------------------------------------------------

    def _on_signal(self, signum, frame):
        self._signal = signum

    def fit(self, progress=True):
        """Train until ``cfg.epochs`` are done; checkpoint each epoch and on SIGINT/SIGTERM."""
        cfg, model = self.cfg, self.model
        handlers = {}
        try:
            for s in (signal.SIGINT, signal.SIGTERM):
                handlers[s] = signal.signal(s, self._on_signal)
        except ValueError:                                  # not the main thread
            pass
        try:
            while self.epoch < cfg.epochs:
                self._run_epoch(progress)
            self.done = True
            self.save()
        finally:
            for s, h in handlers.items():
                signal.signal(s, h)

    def _run_epoch(self, progress):
        cfg, model, B = self.cfg, self.model, self.cfg.batch_size
        if self.perm is None:
            self.perm = self.rng.permutation(len(self.x_train))
        bar = tqdm(total=self.steps_per_epoch, initial=self.step, disable=not progress,
                   desc=f"{cfg.model}/{cfg.dataset} epoch {self.epoch + 1}/{cfg.epochs}",
                   unit="batch", dynamic_ncols=True, leave=True)
        t0 = time.perf_counter()
        try:
            while self.step < self.steps_per_epoch:
                if self._signal is not None:
                    self._stop()
                idx = self.perm[self.step * B:(self.step + 1) * B]
                x = to_float(self.x_train[idx])                       # (B, H, W, C)
                eps = self.rng.standard_normal((len(idx), model.arch.latent), dtype=np.float32)
                r = model.loss(x, eps)
                if not all(math.isfinite(r[k]) for k in HISTORY_KEYS):
                    raise TrainingDiverged(
                        f"the loss became {r['loss']} (rec {r['rec']}, kl {r['kl']}) at epoch "
                        f"{self.epoch + 1}, step {self.step + 1} (global step {len(self.history['loss']) + 1}); "
                        f"training stopped" + (f" and the last good checkpoint {self.checkpoint_path} is kept"
                                               if self.checkpoint_path else "")
                        + ". Try a smaller learning rate.")
                self.opt.step(model.params, model.grads)
                for k in HISTORY_KEYS:
                    self.history[k].append(r[k])
                self.step += 1
                bar.update(1)
                if self.step % 10 == 0 or self.step == self.steps_per_epoch:
                    bar.set_postfix(loss=f"{r['loss']:.2f}", rec=f"{r['rec']:.2f}", kl=f"{r['kl']:.2f}")
                if cfg.checkpoint_every and len(self.history["loss"]) % cfg.checkpoint_every == 0:
                    self.seconds += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    self.save()
        finally:
            bar.close()
            self.seconds += time.perf_counter() - t0
        t0 = time.perf_counter()
        test = evaluate(model, self.x_test, self.eval_seed)
        self.seconds += time.perf_counter() - t0
        self.epochs.append(test)
        if progress:
            tqdm.write(f"epoch {self.epoch + 1}: test loss {test['loss']:.3f} "
                       f"(rec {test['rec']:.3f}, kl {test['kl']:.3f})")
        self.epoch, self.step, self.perm = self.epoch + 1, 0, None
        self.save()
        if self._signal is not None:
            self._stop()

    def _stop(self):
        self.save()
        name = signal.Signals(self._signal).name
        where = f"epoch {self.epoch + 1}, step {self.step}"
        hint = (f"; checkpoint saved to {self.checkpoint_path}. Resume with the same command and --resume"
                if self.checkpoint_path else " (no --out, so nothing was saved)")
        raise Interrupted(f"stopped by {name} at {where}{hint}", 128 + self._signal)

    def metrics(self):
        """The run's summary numbers (what metrics.json holds)."""
        last = self.epochs[-1] if self.epochs else dict.fromkeys(HISTORY_KEYS, float("nan"))
        return {
            "model": self.cfg.model, "dataset": self.cfg.dataset, "epochs": self.epoch,
            "steps": len(self.history["loss"]), "seconds": round(self.seconds, 3),
            "test_loss": last["loss"], "test_rec": last["rec"], "test_kl": last["kl"],
            "epoch_test": self.epochs, "config": asdict(self.cfg),
            "n_train": len(self.x_train), "n_test": len(self.x_test),
        }


def check_out_dir(out_dir):
    """Create ``out_dir`` if needed and make sure it is writable (ConfigError if not)."""
    try:
        os.makedirs(out_dir, exist_ok=True)
        probe = os.path.join(out_dir, ".tinyvae-write-test")
        with open(probe, "w") as f:
            f.write("ok")
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"output folder {out_dir!r} is not writable ({e.strerror or e}); "
                          f"pass a writable folder with --out") from None


def train(cfg, out_dir=None, data=None, data_dir=None, resume=False, progress=True, backend=None):
    """Train one VAE; the whole study's runs are built from this.

    Parameters
    ----------
    cfg : TrainConfig
    out_dir : folder for ``checkpoint.npz`` and ``metrics.json`` (None: keep nothing)
    data : optional ``{"train": (images, labels), "test": (images, labels)}``
        (uint8 NHWC); by default loaded with :func:`tinyvae.data.load`
    resume : continue from ``out_dir/checkpoint.npz`` if it exists
    progress : show tqdm progress bars
    backend : kernel backend (None: ``$TINYVAE_KERNELS``, default numba)

    Returns
    -------
    Result
    """
    cfg.validate()
    get_backend(backend)
    if out_dir:
        check_out_dir(out_dir)
    if data is None:
        data = load_data(cfg, data_dir)
    trainer = Trainer(cfg, data, out_dir, backend)
    path = trainer.checkpoint_path
    if resume and path and os.path.exists(path):
        trainer.restore(path)
        if progress:
            tqdm.write(f"resuming {cfg.model}/{cfg.dataset} from {path} at epoch {trainer.epoch + 1}, "
                       f"step {trainer.step}" if not trainer.done else f"{path}: run already finished")
    elif out_dir and not resume and path and os.path.exists(path):
        raise ConfigError(f"{path} already exists; pass --resume to continue that run, "
                          f"or choose another --out")
    if not trainer.done:
        trainer.fit(progress)
    metrics = trainer.metrics()
    if out_dir:
        tmp = os.path.join(out_dir, METRICS + ".tmp")
        with open(tmp, "w") as f:
            json.dump(metrics, f, indent=2)
        os.replace(tmp, os.path.join(out_dir, METRICS))
    history = {k: np.asarray(v) for k, v in trainer.history.items()}
    return Result(trainer.model, history, trainer.epochs, metrics, out_dir, data)


def config_fields():
    """Names of :class:`TrainConfig`'s fields (for the CLI and run_all)."""
    return [f.name for f in fields(TrainConfig)]
