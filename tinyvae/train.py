"""Training: the loop, a test after each epoch, checkpoints, resume.

A run is defined by a :class:`tinyvae.config.TrainConfig`: Adam, batches
drawn in a fresh seeded order each epoch, float32, pixels / 255. The
training stream's state is saved in every checkpoint, so a resumed run
continues bit-exactly where it stopped (see :mod:`tinyvae.checkpoint`).
"""
import contextlib
import math
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np
from tqdm.auto import tqdm

from . import checkpoint as ckpt
from . import runs
from .archs import image_shape_of
from .config import TrainConfig, check_data, load_data, streams
from .data import images_sha256, to_float
from .errors import CheckpointError, ConfigError, Interrupted, TrainingDiverged
from .evaluate import mean_loss
from .heap import keep_freed_memory
from .kernels import get_backend
from .losses import HISTORY_KEYS
from .models import VAE
from .optim import Adam
from .threads import current_threads


@dataclass
class Result:
    """What :func:`train` returns: the model, per-batch history, per-epoch test numbers, metrics."""
    model: VAE
    history: dict
    test_history: list
    metrics: dict
    out_dir: str | None = None
    data: dict = field(default_factory=dict, repr=False)


class Trainer:
    """One training run: model, optimizer, RNG stream, position and history.

    Use :func:`train`; this class exists so that the loop, checkpointing and
    resuming can be read separately.

    State between batches: ``epoch`` (0-based epoch in progress), ``step``
    (batches done in it), ``perm`` (its shuffled order, None before it is
    drawn), the training stream ``rng``, the model and Adam state, and the
    histories. A checkpoint holds exactly this, so a resumed run continues
    bit-exactly; and ``changes`` (learning rates, backends and thread counts
    over the run, the last divergence) and the training images' sha256.
    """

    def __init__(self, cfg, data, out_dir=None, backend=None):
        if not isinstance(cfg, TrainConfig):
            raise ConfigError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
        self.cfg, self.out_dir = cfg.validate(), out_dir
        check_data(data, image_shape_of(cfg.dataset))
        self.x_train, self.x_test = data["train"][0], data["test"][0]
        n = len(self.x_train)
        if cfg.batch_size > n:
            raise ConfigError(f"batch_size {cfg.batch_size} is larger than the {n} training images; "
                              f"accepted: 1..{n}")
        init_rng, _, self.rng, self.eval_seed = streams(cfg.seed)
        self.model = VAE(cfg.model, image_shape_of(cfg.dataset), init_rng, np.float32, backend,
                         likelihood=cfg.likelihood, beta=cfg.beta)
        self.opt = Adam(cfg.lr, backend=backend)
        self.data_sha256 = images_sha256(self.x_train)                  # what a resume must match
        self.runtime = [get_backend(backend), current_threads()]
        self.changes = {"lr": [[0, cfg.lr]], "runtime": [[0, *self.runtime]], "diverged": None}
        self.saved_at = None                # global step of this run's checkpoint on disk
        self.steps_per_epoch = -(-n // cfg.batch_size)
        self.epoch, self.step, self.perm, self.seconds, self.done = 0, 0, None, 0.0, False
        self.history = {k: [] for k in HISTORY_KEYS}
        self.test_history = []
        self._signal = None
        self._t0 = None
        self.callback = None    # callback(trainer, event): event "step" after each batch, "epoch" after each test

    @property
    def global_step(self):
        """Batches trained so far, over all epochs."""
        return len(self.history["loss"])

    def where(self):
        """The position in words, e.g. ``epoch 2, step 5 of 20 (global step 25)``."""
        return (f"epoch {self.epoch + 1}, step {self.step} of {self.steps_per_epoch} "
                f"(global step {self.global_step})")

    # ---- checkpoints -----------------------------------------------------

    @property
    def checkpoint_path(self):
        return os.path.join(self.out_dir, runs.CHECKPOINT) if self.out_dir else None

    def _tick(self):
        """Add the time since the last tick to ``seconds`` (checkpoint writes are not counted)."""
        now = time.perf_counter()
        if self._t0 is not None:
            self.seconds += now - self._t0
        self._t0 = now

    def _diverged(self, what):
        """The TrainingDiverged error for ``what`` went wrong, saying what is kept and what to do."""
        if self.saved_at is None:
            kept = " (no --out, nothing is saved)" if not self.out_dir else \
                " before any checkpoint was written, so nothing is saved"
            return TrainingDiverged(f"{what}; training stopped{kept}. Try a smaller learning rate: "
                                    f"start again with a smaller --lr")
        return TrainingDiverged(f"{what}; training stopped and the last good checkpoint "
                                f"{self.checkpoint_path} (global step {self.saved_at}) is kept. Try a "
                                f"smaller learning rate: the same command with --resume and a smaller "
                                f"--lr continues from it (or start again with it in another --out)")

    def _check_finite(self):
        for what, arrays in (("parameter", self.model.params), ("Adam's first moment of", self.opt.m),
                             ("Adam's second moment of", self.opt.v)):
            for name, p in arrays.items():
                if not np.all(np.isfinite(p)):
                    raise self._diverged(f"{what} {name} is not finite at {self.where()}")

    def save(self):
        """Checkpoint the whole state atomically (refusing a non-finite model or optimizer)."""
        if not self.out_dir:
            return
        self._tick()
        self._check_finite()
        arrays = ckpt.pack_state({
            "params": self.model.params, "adam": self.opt.state_dict(copy=False),  # written now
            "history": self.history, "test_history": self.test_history, "epoch": self.epoch,
            "step": self.step, "perm": self.perm, "rng": self.rng.bit_generator.state,
            "seconds": self.seconds, "done": self.done, "config": asdict(self.cfg),
            "changes": self.changes, "data": {"train_sha256": self.data_sha256}})
        try:
            ckpt.save_arrays(self.checkpoint_path, arrays)
        except OSError as e:
            raise CheckpointError(f"cannot write the checkpoint {self.checkpoint_path} "
                                  f"({e.strerror or e}); the previous one, if any, is kept") from None
        self.saved_at = self.global_step
        self._t0 = time.perf_counter()

    def restore(self, path):
        """Load a checkpoint of this same run (same model, data, batch size, lr, seed).

        Everything is read and checked before anything is changed: a bad file
        raises CheckpointError and leaves the trainer as it was.
        """
        self.restore_arrays(ckpt.load_arrays(path), path)

    def restore_arrays(self, a, path="checkpoint"):
        """:meth:`restore` from arrays already read by :func:`tinyvae.checkpoint.load_arrays`."""
        stored_cfg = ckpt.check_resumable(a, path, asdict(self.cfg), self.data_sha256)
        s = ckpt.unpack_state(a, path, self.model.params, len(self.x_train), self.steps_per_epoch)
        done_epochs = s["epoch"] + (1 if s["step"] or s["perm"] is not None else 0)
        if done_epochs > self.cfg.epochs:
            raise CheckpointError(f"{path} has already trained {s['epoch']} epochs"
                                  + (f" and {s['step']} steps" if s["step"] else "")
                                  + f", more than this run's {self.cfg.epochs}; pass --epochs "
                                  f"{done_epochs} or more, or use another --out")
        for k, v in s["params"].items():
            self.model.params[k][...] = v
        self.opt.load_state_dict(s["adam"])
        self.history, self.test_history = s["history"], s["test_history"]
        self.epoch, self.step, self.perm = s["epoch"], s["step"], s["perm"]
        self.rng.bit_generator.state = s["rng"]
        self.seconds, self.done = s["seconds"], s["done"] and self.epoch >= self.cfg.epochs
        self.saved_at, step, changes = self.global_step, self.global_step, s["changes"]
        lrs, runtimes = changes.get("lr") or [[0, stored_cfg["lr"]]], changes.get("runtime") or []
        if self.cfg.lr != lrs[-1][1]:                   # allowed by check_resumable after a divergence
            lrs, changes["diverged"] = lrs + [[step, self.cfg.lr]], None
        if runtimes and runtimes[-1][1:] != self.runtime and not self.done:
            print(f"tinyvae: warning: {path} was trained with backend {runtimes[-1][1]} on "
                  f"{runtimes[-1][2]} thread(s), this run uses {self.runtime[0]} on {self.runtime[1]}: "
                  f"it continues, but not bit-exactly as one uninterrupted run (recorded in the "
                  f"checkpoint and metrics.json)", file=sys.stderr)
            runtimes = runtimes + [[step, *self.runtime]]
        self.changes = {"lr": lrs, "runtime": runtimes or [[0, *self.runtime]],
                        "diverged": changes.get("diverged")}

    # ---- the loop ----------------------------------------------------------

    def _on_signal(self, signum, frame):
        if self._signal is not None:        # asked twice: stop at once; the last checkpoint stays
            raise KeyboardInterrupt
        self._signal = signum

    def fit(self, progress=True):
        """Train until ``cfg.epochs`` are done; checkpoint each epoch and on SIGINT/SIGTERM.

        A signal is acted on between batches (and after an epoch's
        evaluation): the state is saved and :class:`Interrupted` raised. A
        second signal before that raises KeyboardInterrupt at once, without
        saving (checkpoint writes are atomic, so the last one stays whole).
        The previous signal handlers are put back however this ends.
        """
        handlers = {}
        try:
            for s in (signal.SIGINT, signal.SIGTERM):
                handlers[s] = signal.signal(s, self._on_signal)
        except ValueError:                                  # not the main thread
            pass
        self._t0 = time.perf_counter()
        try:
            with self._recording_divergence():
                while self.epoch < self.cfg.epochs:
                    self._run_epoch(progress)
                    if self._signal is not None and self.epoch < self.cfg.epochs:
                        self._stop()
                self.done = True
                self.save()
            self._tick()
        finally:
            for s, h in handlers.items():
                signal.signal(s, h if h is not None else signal.SIG_DFL)

    @contextlib.contextmanager
    def _recording_divergence(self):
        """On TrainingDiverged, mark the checkpoint kept on disk, so --resume may change --lr."""
        try:
            yield
        except TrainingDiverged:
            if self.saved_at is not None:
                try:
                    ckpt.mark_diverged(self.checkpoint_path, {"global_step": self.global_step + 1,
                                                              "lr": self.cfg.lr})
                except (OSError, CheckpointError):
                    pass                                    # the message still says what is kept
            raise

    def _run_epoch(self, progress):
        cfg, model, B = self.cfg, self.model, self.cfg.batch_size
        if self.perm is None:
            self.perm = self.rng.permutation(len(self.x_train))
        bar = tqdm(total=self.steps_per_epoch, initial=self.step, disable=not progress,
                   desc=f"{cfg.model}/{cfg.dataset} epoch {self.epoch + 1}/{cfg.epochs}",
                   unit="batch", dynamic_ncols=True, leave=True)
        try:
            while self.step < self.steps_per_epoch:
                if self._signal is not None:
                    self._stop()
                idx = self.perm[self.step * B:(self.step + 1) * B]
                x = to_float(self.x_train[idx])                       # (B, H, W, C)
                eps = self.rng.standard_normal((len(idx), model.arch.latent), dtype=np.float32)
                r = model.loss(x, eps)
                if not all(math.isfinite(r[k]) for k in HISTORY_KEYS):
                    raise self._diverged(
                        f"the loss became {r['loss']} (rec {r['rec']}, kl {r['kl']}) at epoch "
                        f"{self.epoch + 1}, step {self.step + 1} (global step {self.global_step + 1})")
                self.opt.step(model.params, model.grads)
                for k in HISTORY_KEYS:
                    self.history[k].append(r[k])
                self.step += 1
                bar.update(1)
                if self.step % 10 == 0 or self.step == self.steps_per_epoch:
                    bar.set_postfix(loss=f"{r['loss']:.2f}", rec=f"{r['rec']:.2f}", kl=f"{r['kl']:.2f}")
                if cfg.checkpoint_every and self.global_step % cfg.checkpoint_every == 0:
                    self.save()
                if self.callback is not None:
                    self.callback(self, "step")
        finally:
            bar.close()
        test = mean_loss(model, self.x_test, self.eval_seed)
        if not all(math.isfinite(test[k]) for k in HISTORY_KEYS):
            raise self._diverged(
                f"the test loss became {test['loss']} (rec {test['rec']}, kl {test['kl']}) after "
                f"epoch {self.epoch + 1} (global step {self.global_step})")
        self.test_history.append(test)
        if progress:
            tqdm.write(f"epoch {self.epoch + 1}: test loss {test['loss']:.3f} "
                       f"(rec {test['rec']:.3f}, kl {test['kl']:.3f})")
        self.epoch, self.step, self.perm = self.epoch + 1, 0, None
        self.save()
        if self.callback is not None:
            self.callback(self, "epoch")

    def _stop(self):
        self.save()
        name = signal.Signals(self._signal).name
        hint = (f"; checkpoint saved to {self.checkpoint_path}. Resume with the same command and --resume"
                if self.checkpoint_path else " (no --out, so nothing was saved)")
        raise Interrupted(f"stopped by {name} at {self.where()}{hint}", 128 + self._signal)

    def metrics(self):
        """The run's summary numbers (what metrics.json holds)."""
        last = self.test_history[-1] if self.test_history else dict.fromkeys(HISTORY_KEYS, float("nan"))
        return {
            "model": self.cfg.model, "dataset": self.cfg.dataset, "likelihood": self.cfg.likelihood,
            "beta": self.cfg.effective_beta(), "epochs": self.epoch,
            "steps": self.global_step, "seconds": round(self.seconds, 3),
            "test_loss": last["loss"], "test_rec": last["rec"], "test_kl": last["kl"],
            "epoch_test": self.test_history, "config": asdict(self.cfg),
            "n_train": len(self.x_train), "n_test": len(self.x_test),
            "train_images_sha256": self.data_sha256, "lr_history": self.changes["lr"],
            "runtime_history": self.changes["runtime"],
        }


def train(cfg, out_dir=None, data=None, data_dir=None, resume=False, progress=True, backend=None,
          callback=None):
    """Train one VAE; the whole study's runs are built from this.

    Parameters
    ----------
    cfg : TrainConfig
    out_dir : folder for ``checkpoint.npz`` and ``metrics.json`` (None: keep nothing)
    data : optional ``{"train": (images, labels), "test": (images, labels)}``
        (uint8 NHWC); by default loaded with :func:`tinyvae.data.load`
    resume : continue from ``out_dir/checkpoint.npz`` if it exists (a finished
        run only gets its ``metrics.json`` written again)
    progress : show tqdm progress bars
    backend : kernel backend (None: ``$TINYVAE_KERNELS``, default numba)
    callback : optional ``callback(trainer, event)``, called with the :class:`Trainer`
        after every batch (``event="step"``) and after every epoch's test and
        checkpoint (``"epoch"``); it must not change the trainer

    Returns
    -------
    Result

    Raises
    ------
    ConfigError : bad settings, data or output folder; an existing checkpoint without ``resume``
    DataError : data files missing or corrupt
    CheckpointError : the checkpoint to resume from is corrupt or from another run
    TrainingDiverged : the loss became NaN or infinite (the last good checkpoint, if
        any, is kept and marked so that ``resume`` with a smaller ``cfg.lr`` may continue it)
    Interrupted : SIGINT or SIGTERM (the checkpoint was saved first)

    With ``out_dir``, the run holds :func:`tinyvae.runs.lock` on it throughout:
    a second process training there gets ConfigError at once. Before its first
    step the process's malloc is told to keep freed memory
    (:func:`tinyvae.heap.keep_freed_memory`, for the rest of the process).
    """
    if not isinstance(cfg, TrainConfig):
        raise ConfigError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    cfg.validate()
    get_backend(backend)
    if out_dir is None:
        return _train(cfg, None, data, data_dir, resume, progress, backend, callback)
    runs.check_out_dir(out_dir)
    with runs.lock(out_dir) as out_dir:
        return _train(cfg, out_dir, data, data_dir, resume, progress, backend, callback)


def _train(cfg, out_dir, data, data_dir, resume, progress, backend, callback):
    """:func:`train`, with ``out_dir`` (if any) created and locked."""
    path = os.path.join(out_dir, runs.CHECKPOINT) if out_dir else None
    if path and not resume and os.path.exists(path):
        raise ConfigError(f"{path} already exists; pass --resume to continue that run, "
                          f"or choose another --out")
    if data is None:
        data = load_data(cfg, data_dir)
    trainer = Trainer(cfg, data, out_dir, backend)
    trainer.callback = callback
    if resume and path and os.path.exists(path):
        trainer.restore(path)
        if progress:
            tqdm.write(runs.printable(f"resuming {cfg.model}/{cfg.dataset} from {path} at {trainer.where()}"
                                      if not trainer.done else f"{path}: run already finished"))
    if not trainer.done:
        keep_freed_memory()                  # no page faults for each step's arrays (tinyvae.heap)
        trainer.fit(progress)
    metrics = trainer.metrics()
    if out_dir:
        runs.write_metrics(out_dir, metrics)
    history = {k: np.asarray(v) for k, v in trainer.history.items()}
    return Result(trainer.model, history, trainer.test_history, metrics, out_dir, data)

