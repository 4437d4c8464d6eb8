"""The one training loop: SVI on an ELBO module with a torch optimizer (Pyro's svi_torch.py)."""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyro
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from tqdm import tqdm

from zoo.base import ChecksTrainingData, HasEpochSchedule, data_size, plate_nesting
from zoo.config import ConfigError

from .distributed import DistContext, context
from .elbo import LeanTrace_ELBO

__all__ = [
    "FitConfig",
    "History",
    "TrainStep",
    "TrainingDiverged",
    "fit",
    "fit_config",
    "make_elbo",
    "seed_everything",
]

# "trace" is Trace_ELBO's estimator (same loss and gradients) without its per-step bookkeeping
ELBOS = {
    "trace": LeanTrace_ELBO,
    "meanfield": TraceMeanField_ELBO,
    "pyro_trace": Trace_ELBO,
}


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf, or exploded; the model holds its last good state.

    Attributes:
        epoch: the epoch that failed.
        kept_epoch: the epoch whose weights the model was given back (None: the start of
            the failing epoch, so no epoch's end state was good).
    """

    def __init__(self, message: str, epoch: int = 0, kept_epoch: int | None = None):
        super().__init__(message)
        self.epoch, self.kept_epoch = epoch, kept_epoch


@dataclass
class FitConfig:
    """Options of :func:`fit`.

    Arguments:
        epochs: passes over the training data.
        batch_size: minibatch size (the data term is scaled to the full data set); under
            torchrun, per rank: a step sees ``world_size * batch_size`` points.
        lr: Adam's learning rate (the peak rate with ``schedule="onecycle"``).
        weight_decay: Adam's (decoupled, AdamW) weight decay.
        schedule: ``none``, ``onecycle`` or ``cosine`` learning-rate schedule over all steps.
        elbo: ``trace`` (Trace_ELBO's loss and gradients, computed by
            :class:`inference.elbo.LeanTrace_ELBO`), ``meanfield`` (TraceMeanField_ELBO,
            analytic KL) or ``pyro_trace`` (pyro's Trace_ELBO itself). Pyro's JitTrace_ELBO is
            not offered: it looks parameters up in the global param store, and zoo models keep
            theirs in the module; the lean ``trace`` removes the overhead it was for.
        num_particles: ELBO particles per step (vectorized).
        clip_norm: clip the gradient's global norm to this (None: no clipping).
        patience: stop when the validation score has not improved for this many epochs
            (>= 1; None: never stop early). The best weights are restored at the end either way.
        seed: seeds torch, Pyro, Python and NumPy at the start, so the same seed gives the same
            weights on the CPU; None (the default) leaves the RNGs as the caller set them
            (the epoch permutations then draw their seed from torch's global RNG, agreed on
            by all ranks under torchrun).
        device: ``auto``, ``cpu``, ``cuda[:N]`` or ``mps``. Under torchrun, each rank takes
            ``cuda:LOCAL_RANK`` or the CPU (see :mod:`inference.distributed`).
        quiet: no progress bar (it is also off when stderr is not a terminal).
        explode_factor: stop as diverged when an epoch's training loss per data point rises
            more than ``explode_factor * max(1, |best|)`` above the best epoch's loss so far
            (None: never); the loss is in nats, so the default 100 flags only a blow-up.

    Models with a KL warm-up read the epoch through their ``set_epoch(epoch, epochs)`` hook.
    """

    epochs: int = 100
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: Literal["none", "onecycle", "cosine"] = "none"
    elbo: Literal["trace", "meanfield", "pyro_trace"] = "trace"
    num_particles: int = 1
    clip_norm: float | None = 10.0
    patience: int | None = 20
    seed: int | None = None
    device: str = "auto"
    quiet: bool = False
    explode_factor: float | None = 100.0

    def validate(self) -> None:
        from zoo.config import ConfigError

        def bad(what: str, value: Any) -> ConfigError:
            return ConfigError(f"FitConfig.{what}; got {value!r}")

        if self.epochs < 1:
            raise bad("epochs must be >= 1", self.epochs)
        if self.batch_size < 1:
            raise bad("batch_size must be >= 1", self.batch_size)
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise bad("lr must be a finite number > 0", self.lr)
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise bad("weight_decay must be a finite number >= 0", self.weight_decay)
        if self.num_particles < 1:
            raise bad("num_particles must be >= 1", self.num_particles)
        if self.clip_norm is not None and not (self.clip_norm > 0):
            raise bad("clip_norm must be > 0 (or None: no clipping)", self.clip_norm)
        if self.patience is not None and self.patience < 1:
            raise bad("patience must be >= 1 (or None: never stop early)", self.patience)
        if self.explode_factor is not None and not (self.explode_factor > 0):
            raise bad("explode_factor must be > 0 (or None)", self.explode_factor)
        if self.elbo not in ELBOS:
            raise bad(f"elbo must be one of {', '.join(ELBOS)}", self.elbo)


@dataclass
class History:
    """What :func:`fit` did: one row per epoch (epoch, loss, val, lr, seconds)."""

    rows: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None
    best_val: float | None = None
    stopped: str = "completed"  # completed | early_stopping | diverged | interrupted
    seconds: float = 0.0
    #: the options the run used (the model's default_fit merged in)
    config: FitConfig | None = None

    def column(self, key: str) -> list[float]:
        return [r[key] for r in self.rows if key in r]


def seed_everything(seed: int) -> None:
    """Seeds Python, NumPy, torch and Pyro's RNGs."""
    pyro.set_rng_seed(seed)


def fit_config(model=None, config: FitConfig | None = None, **overrides: Any) -> FitConfig:
    """The options :func:`fit` uses: ``config`` if given, else the defaults updated with the
    model's ``default_fit``; then ``overrides`` on top (each checked by name and type).

    Example:
        >>> fit_config(model, epochs=5).elbo  # the ELBO of the model's own default_fit
    """
    from zoo.base import HasDefaultFit
    from zoo.config import make_config  # the config checker is shared with the models

    if config is None:
        defaults = model.default_fit if isinstance(model, HasDefaultFit) else {}
        config = make_config(FitConfig, dict(defaults or {}))
    return make_config(FitConfig, overrides, base=config)


def make_elbo(kind: str = "trace", num_particles: int = 1, max_plate_nesting: int = 1):
    """An ELBO object of the given kind; several particles are vectorized."""
    if kind not in ELBOS:
        raise ValueError(f"unknown elbo {kind!r}; choose one of {', '.join(ELBOS)}")
    kwargs: dict[str, Any] = {"num_particles": num_particles}
    if num_particles > 1:
        kwargs.update(vectorize_particles=True, max_plate_nesting=max_plate_nesting)
    return ELBOS[kind](**kwargs)


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _make_scheduler(optimizer, schedule: str, lr: float, total_steps: int):
    if schedule == "none":
        return None
    if schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps)
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    raise ValueError(f"unknown schedule {schedule!r}; choose none, onecycle or cosine")


def _make_optimizer(params: list[torch.Tensor], lr: float, weight_decay: float):
    # The fused kernel updates every weight in one pass; on a small MLP the default
    # implementation's per-tensor Python loop costs about as much as the forward pass.
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, ValueError):  # a device or dtype without the fused kernel
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


class TrainStep:
    """One training step of :func:`fit`: the ELBO per data point, backward, clip, AdamW.

    Arguments:
        loss_fn: an ELBO module ``elbo(model, guide)``; its parameters are optimized.
        num_data: the training-set size n: each batch stands for n points
            (:func:`zoo.base.data_size`, entered around the loss only) and the step minimizes
            ``loss_fn(x, y) / n``, so the learning rate does not depend on n.
        config: the :class:`FitConfig` (lr, weight_decay, clip_norm, schedule).
        total_steps: steps in the whole run, for the learning-rate schedule.

    Calling it returns the loss per data point, detached and never read on the host, so an
    accelerator is not synchronized on every step (:func:`fit` checks the losses once per
    epoch).

    Example:
        >>> step = TrainStep(make_elbo()(model, model.guide), len(x), FitConfig(lr=1e-3))
        >>> losses = [step(xb, yb) for xb, yb in batches]
    """

    def __init__(self, loss_fn, num_data: int, config: FitConfig, total_steps: int = 1):
        self.loss_fn = loss_fn
        self.num_data = num_data
        self.clip_norm = config.clip_norm
        self.params = [p for p in loss_fn.parameters() if p.requires_grad]
        self.optimizer = _make_optimizer(self.params, config.lr, config.weight_decay)
        self.scheduler = _make_scheduler(self.optimizer, config.schedule, config.lr, total_steps)

    def __call__(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        with data_size(self.num_data):  # the minibatch scale lives in the step only
            loss = self.loss_fn(x, y) / self.num_data
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip_norm, foreach=True)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return loss.detach()


def _first_bad(losses: list[torch.Tensor]) -> tuple[int, float] | None:
    """Index and value of the first non-finite loss (one host read per epoch)."""
    if not losses:
        return None
    stacked = torch.stack(losses)
    bad = ~torch.isfinite(stacked)
    if not bool(bad.any()):
        return None
    i = int(bad.nonzero()[0, 0])
    return i, float(stacked[i])


def _params_finite(params: list[torch.Tensor]) -> bool:
    # one host read for all weights, not one per tensor
    return not params or bool(torch.stack([torch.isfinite(p).all() for p in params]).all())


def _step_or_diverge(step: TrainStep, x: torch.Tensor, y: torch.Tensor | None):
    """One step; None when it could not be taken because the loss is not finite.

    With validation on, a distribution built from NaN or inf parameters raises ValueError
    before any loss exists: the step counts as diverged only if the loss, recomputed without
    validation, is indeed not finite (or the weights are not); any other error propagates.
    """
    try:
        return step(x, y)
    except ValueError:
        with torch.no_grad(), pyro.validation_enabled(False):
            try:
                finite = bool(torch.isfinite(step.loss_fn(x, y)))
            except Exception:
                finite = True  # fails for another reason too: not a divergence
        if finite and _params_finite(step.params):
            raise
        return None


def fit(
    model,
    train,
    val=None,
    config: FitConfig | None = None,
    *,
    on_improve: Callable[[Any, dict], None] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    checkpoint: Callable[[dict], None] | None = None,
    checkpoint_every: float = 0.0,
    resume: dict | str | Any | None = None,
    should_stop: Callable[[], bool] | None = None,
    dist: DistContext | None = None,
    **overrides: Any,
) -> History:
    """Trains ``model`` by SVI on its guide and returns the :class:`History`.

    Arguments:
        model: a zoo model (``forward(x, y)`` is the Pyro model, ``model.guide`` its guide).
        train: the training split, anything with ``.x`` and ``.y`` (or an ``(x, y)`` pair).
        val: the validation split for early stopping (optional).
        config: a :class:`FitConfig` used as it is; without one the defaults are updated with
            the model's ``default_fit``. Keyword overrides are applied on top either way
            (see :func:`fit_config`).
        on_improve: called as ``on_improve(model, row)`` whenever the validation score
            improves (or after each epoch without validation): the place to save the best
            model, so a run that fails later keeps its last good one. Called on rank 0 only,
            as ``on_epoch`` and ``checkpoint`` are.
        on_epoch: called with each epoch's row (epoch, loss, val, lr, seconds) as it ends.
        checkpoint: called with the full training state (a dict of tensors and plain values,
            see :mod:`inference.checkpoint`) before the first step, at the end of an epoch at
            most every ``checkpoint_every`` seconds, after the last one, and when
            ``should_stop`` stops the run, e.g. ``lambda s: save_training_state(run_dir, s)``.
            Under torchrun only rank 0 calls it (the state holds rank 0's RNG states).
        resume: a state given to ``checkpoint`` (or the run folder / ``train_state.pt``
            holding one): training continues where it stopped and ends where the
            uninterrupted run would. The model, the options (but ``quiet`` and ``device``)
            and the training data must be those of the checkpoint.
        should_stop: polled after every step; when it returns True the run stops there,
            is checkpointed and returns with ``stopped="interrupted"``
            (:class:`inference.signals.StopSignals` turns SIGINT / SIGTERM into this). Under
            torchrun it is polled at the end of each epoch and all-reduced (any rank stops all).
        dist: the :class:`inference.distributed.DistContext`; by default derived from the
            environment: under torchrun, data-parallel SVI with DDP (one process otherwise).
            Under torchrun each rank's RNGs are seeded from the seed, the rank and the epoch
            at every epoch's start, so a resume with the same number of ranks is exact too.

    Raises:
        TrainingDiverged: the loss became NaN or inf, or exploded (``explode_factor``). The
            model is left with its last good weights (the best validated ones, else the
            start of the failing epoch); under torchrun every rank raises it in the same epoch
            (the losses are all-reduced), or, when validation finds NaN weights inside a step,
            at once (weights not restored).
        DataError, ConfigError, CheckpointError: bad data, options or resume state.

    Example:
        >>> history = fit(model, data.train, data.val, epochs=200, lr=3e-3)
    """
    from zoo.base import DataError
    from zoo.io import CheckpointError, describe

    from . import checkpoint as ckpt

    cfg = fit_config(model, config, **overrides)
    ctx = dist or context(cfg.device)
    device = ctx.device
    if isinstance(resume, str | Path):
        resume = ckpt.load_training_state(resume)
    if cfg.seed is not None:
        seed_everything(cfg.seed)

    x, y = _unpack(train)
    if len(x) == 0:
        raise DataError("the training split is empty; fit needs at least one row")
    x, y = model.check_data(x, y)
    if y is None and not model.target_is_input and model.metric_kind != "density":
        raise DataError(
            f"{type(model).__name__} is supervised ({model.metric_kind} targets) but no "
            "targets were given: pass (x, y) or a split with .y"
        )
    if isinstance(model, ChecksTrainingData):  # checks of the training split only (all classes)
        model.check_training_data(x, y)
    if val is not None:
        xv, yv = _unpack(val)
        if len(xv) == 0:
            raise DataError("the validation split is empty; pass val=None to train without one")
        xv, yv = model.check_data(xv, yv)
    model.to(device)
    x, y = x.to(device), (y.to(device) if y is not None else None)
    if val is not None:
        xv, yv = xv.to(device), (yv.to(device) if yv is not None else None)
    if model.target_is_input:
        y = x
        if val is not None:
            yv = xv
    n = len(x)
    seed = cfg.seed if cfg.seed is not None else int(torch.randint(2**31, ()))
    if cfg.seed is None and ctx.enabled:  # every rank must shuffle alike: agree on one seed
        seed = int(ctx.all_sum(torch.tensor([float(seed)]))[0]) % 2**31
    # each rank's minibatch stands for the whole data set (TrainStep's data_size(n))
    order = ctx.order(n, seed)
    m = len(order)  # this rank's points per epoch (n on one process)
    batch_size = min(cfg.batch_size, m)
    steps_per_epoch = math.ceil(m / batch_size)
    run_config = dataclasses.asdict(cfg)
    data = ckpt.data_summary(x, None if model.target_is_input else y)
    if resume is not None:
        diff = ckpt.config_differences(resume["fit"], run_config, ckpt.RESUMABLE_CHANGES)
        if diff:
            raise ConfigError(f"cannot resume with other options: {'; '.join(diff)}")
        diff = ckpt.config_differences(resume["data"], data)
        if diff:
            raise DataError(f"cannot resume on other training data: {'; '.join(diff)}")
        ran_on = resume.get("world_size")  # absent in states written before it was kept
        if ran_on is not None and ran_on != ctx.world_size:
            raise ConfigError(
                f"cannot resume on {ctx.world_size} process(es) a run trained on {ran_on}: its "
                "batches, steps per epoch and schedule depend on it; launch the resume as the "
                f"run was launched ({_launch(ran_on)})"
            )

    elbo = make_elbo(cfg.elbo, cfg.num_particles, plate_nesting(model))
    loss_fn = elbo(model, model.guide)
    model.train()
    # one call creates lazily initialized parameters (AutoGuides) before the optimizer sees them
    with data_size(n):
        loss_fn(x[:batch_size], y[:batch_size] if y is not None else None)
    loss_fn = ctx.wrap(loss_fn, seed)  # DDP under torchrun
    step = TrainStep(loss_fn, n, cfg, cfg.epochs * steps_per_epoch)
    optimizer = step.optimizer
    sizes = torch.tensor(
        [min(batch_size, m - i * batch_size) for i in range(steps_per_epoch)],
        dtype=torch.float64,
        device=device,
    )

    history = History(config=cfg)
    best_state = None
    best_loss = math.inf
    bad_epochs = 0
    generator = torch.Generator(device="cpu").manual_seed(seed)
    first_epoch, first_step, perm, losses = 1, 0, None, []
    epoch_start_state = None
    elapsed = 0.0
    if resume is not None:
        diff = ckpt.config_differences(resume["model_meta"], describe(model))
        if diff:
            raise CheckpointError(f"cannot resume another model: {'; '.join(diff)}")
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        if step.scheduler is not None:
            step.scheduler.load_state_dict(resume["scheduler"])
        best_state = resume["best_state"]
        epoch_start_state = resume["epoch_start_state"]
        best_loss, bad_epochs = resume["best_loss"], resume["bad_epochs"]
        history.rows = list(resume["rows"])
        history.best_epoch, history.best_val = resume["best_epoch"], resume["best_val"]
        elapsed = resume["seconds"]
        first_epoch, first_step = resume["epoch"], resume["step"]
        if resume.get("stopped") is not None:  # a finished run: nothing is left to train
            first_epoch, history.stopped = cfg.epochs + 1, resume["stopped"]
        if first_step:
            perm = resume["perm"].to(device)
            losses = [t.to(device) for t in resume["losses"]]
        ckpt.restore_rng(resume["rng"], generator)  # rank 0's; ctx.seed_epoch reseeds each rank

    def state_now(epoch: int, next_step: int, stopped: str | None = None) -> dict:
        return ckpt.clone_tensors(
            {
                "stopped": stopped,  # set when the run has finished (nothing left to resume)
                "epoch": epoch,
                "step": next_step,
                "perm": perm if next_step else None,
                "losses": list(losses) if next_step else [],
                "model": model.state_dict(),
                "best_state": best_state,
                "epoch_start_state": epoch_start_state if next_step else None,
                "optimizer": optimizer.state_dict(),
                "scheduler": step.scheduler.state_dict() if step.scheduler else None,
                "best_loss": best_loss,
                "bad_epochs": bad_epochs,
                "best_epoch": history.best_epoch,
                "best_val": history.best_val,
                "rows": history.rows,
                "seconds": elapsed + time.perf_counter() - start,
                "rng": ckpt.capture_rng(generator),
                "fit": run_config,
                "data": data,
                "world_size": ctx.world_size,
                "model_meta": describe(model),
            }
        )

    quiet = cfg.quiet or not sys.stderr.isatty() or not ctx.is_rank0
    if not ctx.is_rank0:  # rank 0 alone writes
        on_improve = on_epoch = checkpoint = None
    epochs = range(first_epoch, cfg.epochs + 1)
    bar = tqdm(epochs, disable=quiet, desc=type(model).__name__, leave=False)
    start = last_checkpoint = time.perf_counter()
    if checkpoint is not None and resume is None:
        # before any weights are saved, so a folder with a model checkpoint is always resumable
        checkpoint(state_now(1, 0))
    for epoch in bar:
        ctx.seed_epoch(seed, epoch)  # under torchrun: this rank's noise, the same after a resume
        if isinstance(model, HasEpochSchedule):
            model.set_epoch(epoch, cfg.epochs)
        model.train()
        if first_step == 0:
            epoch_start_state = _state(model) if best_state is None else None
            perm = order.indices(epoch, generator).to(device)
            losses = []
        failed = None
        stopped_at = None
        for i in range(first_step, steps_per_epoch):
            idx = perm[i * batch_size : (i + 1) * batch_size]
            loss = _step_or_diverge(step, x[idx], y[idx] if y is not None else None)
            if loss is None:
                if ctx.enabled:  # the other ranks may be in DDP's all-reduce: end the job
                    raise TrainingDiverged(
                        f"{ctx.label()}the weights became NaN or inf at epoch {epoch}, step "
                        f"{len(losses) + 1} (a distribution's parameters had invalid values). "
                        "Try a smaller --lr, gradient clipping or a different seed",
                        epoch=epoch,
                        kept_epoch=None,
                    )
                failed = (len(losses), float("nan"))
                break
            losses.append(loss)
            stop_here = should_stop is not None and not ctx.enabled and i + 1 < steps_per_epoch
            if stop_here and should_stop():
                stopped_at = i + 1
                break
        first_step = 0
        # losses are read once per epoch; a NaN step is undone below with the whole epoch
        failed = _first_bad(losses) or failed
        if failed is None and not _params_finite(step.params):
            failed = (len(losses) - 1, float("nan"))
        if stopped_at is None and (failed is None or ctx.enabled):
            # one all-reduce per epoch: the loss summed over the ranks (NaN if one diverged)
            sums = ctx.all_sum(
                torch.stack([(torch.stack(losses).double() * sizes).sum(), sizes.sum()])
            )
            if failed is None and not math.isfinite(float(sums[0])):
                failed = (-1, float(sums[0]))  # another rank's loss
        if failed is not None:
            model.load_state_dict(best_state or epoch_start_state)
            where = f"epoch {epoch}, " + (
                f"step {failed[0] + 1}" if failed[0] >= 0 else "on another rank"
            )
            what = f"{ctx.label()}loss became {failed[1]} at {where}"
            _diverged(history, bar, start, what, epoch)
        if stopped_at is not None:  # interrupted inside the epoch: resume at its next step
            if checkpoint is not None:
                checkpoint(state_now(epoch, stopped_at))
            history.stopped = "interrupted"
            break
        row = {"epoch": epoch, "loss": float(sums[0] / sums[1])}
        row["lr"] = optimizer.param_groups[0]["lr"]
        factor = cfg.explode_factor
        if factor is not None and row["loss"] - best_loss > factor * max(1.0, abs(best_loss)):
            model.load_state_dict(best_state or epoch_start_state)
            what = (
                f"{ctx.label()}loss exploded to {row['loss']:.4g} at epoch {epoch}, more than "
                f"{factor:g} x max(1, |best|) above the best epoch's {best_loss:.4g}"
            )
            _diverged(history, bar, start, what, epoch)
        best_loss = min(best_loss, row["loss"])
        if val is not None:
            model.eval()
            with torch.no_grad():  # every rank scores; the mean decides for all of them
                row["val"] = ctx.mean(float(model.val_score(xv, yv)))
        row["seconds"] = elapsed + time.perf_counter() - start
        history.rows.append(row)
        improved = val is None or (
            math.isfinite(row["val"])
            and (history.best_val is None or row["val"] < history.best_val)
        )
        if improved:
            history.best_epoch, history.best_val = epoch, row.get("val")
            best_state = _state(model)
            bad_epochs = 0
            if on_improve is not None:
                on_improve(model, row)
        else:
            bad_epochs += 1
        if on_epoch is not None:
            on_epoch(row)
        bar.set_postfix(loss=f"{row['loss']:.4f}", val=f"{row.get('val', float('nan')):.4f}")
        early = val is not None and cfg.patience is not None and bad_epochs >= cfg.patience
        interrupted = should_stop is not None and should_stop()
        if ctx.enabled:  # any rank's signal stops every rank
            interrupted = bool(ctx.all_sum(torch.tensor([float(interrupted)]))[0] > 0)
        now = time.perf_counter()
        last = epoch == cfg.epochs or early or interrupted
        if checkpoint is not None and (last or now - last_checkpoint >= checkpoint_every):
            done = "early_stopping" if early else "completed" if epoch == cfg.epochs else None
            checkpoint(state_now(epoch + 1, 0, done))
            last_checkpoint = now
        if early:
            history.stopped = "early_stopping"
            break
        if interrupted and epoch < cfg.epochs:
            history.stopped = "interrupted"
            break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    history.seconds = elapsed + time.perf_counter() - start
    return history


def _diverged(history: History, bar, start: float, what: str, epoch: int) -> None:
    history.stopped = "diverged"
    history.seconds = time.perf_counter() - start
    bar.close()
    kept = history.best_epoch
    where = f"the best epoch {kept}" if kept is not None else f"the start of epoch {epoch}"
    raise TrainingDiverged(
        f"{what}; kept the weights of {where}. Try a smaller --lr, gradient clipping or a "
        "different seed",
        epoch=epoch,
        kept_epoch=kept,
    )


def _launch(world_size: int) -> str:
    return f"torchrun --nproc_per_node={world_size}" if world_size > 1 else "one process"


def _unpack(split) -> tuple[torch.Tensor, torch.Tensor | None]:
    if hasattr(split, "x"):
        return split.x, getattr(split, "y", None)
    if not isinstance(split, tuple | list) or len(split) != 2:
        from zoo.base import DataError

        raise DataError(
            f"data must be a split with .x and .y or an (x, y) pair; got {type(split).__name__}"
        )
    x, y = split
    return x, y
