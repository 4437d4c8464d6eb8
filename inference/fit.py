"""The one training loop: SVI on an ELBO module with a torch optimizer (Pyro's svi_torch.py)."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import pyro
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from tqdm import tqdm

from zoo.base import ChecksTrainingData, HasEpochSchedule, data_size, plate_nesting

from .distributed import DistContext, context
from .elbo import LeanTrace_ELBO

__all__ = [
    "FitConfig",
    "History",
    "TrainStep",
    "TrainingDiverged",
    "fit",
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
    """The loss became NaN or inf; the model holds its last good state."""


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
            (None: never stop early). The best weights are restored at the end either way.
        seed: seeds torch and Pyro; the same seed gives the same weights on the CPU.
        device: ``auto``, ``cpu``, ``cuda[:N]`` or ``mps``. Under torchrun, each rank takes
            ``cuda:LOCAL_RANK`` or the CPU (see :mod:`inference.distributed`).
        quiet: no progress bar (it is also off when stderr is not a terminal).
        warmup_epochs: hook for models with a KL warm-up (passed to ``model.set_epoch``).
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
    seed: int = 0
    device: str = "auto"
    quiet: bool = False


@dataclass
class History:
    """What :func:`fit` did: one row per epoch (epoch, loss, val, lr, seconds)."""

    rows: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None
    best_val: float | None = None
    stopped: str = "completed"  # completed | early_stopping | diverged
    seconds: float = 0.0

    def column(self, key: str) -> list[float]:
        return [r[key] for r in self.rows if key in r]


def seed_everything(seed: int) -> None:
    """Seeds Python, torch and Pyro's RNGs."""
    pyro.set_rng_seed(seed)


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


def fit(
    model,
    train,
    val=None,
    config: FitConfig | None = None,
    *,
    on_improve: Callable[[Any, dict], None] | None = None,
    dist: DistContext | None = None,
    **overrides: Any,
) -> History:
    """Trains ``model`` by SVI on its guide and returns the :class:`History`.

    Arguments:
        model: a zoo model (``forward(x, y)`` is the Pyro model, ``model.guide`` its guide).
        train: the training split, anything with ``.x`` and ``.y`` (or an ``(x, y)`` pair).
        val: the validation split for early stopping (optional).
        config: a :class:`FitConfig`; keyword overrides are applied on top.
        on_improve: called as ``on_improve(model, row)`` whenever the validation score
            improves (or after each epoch without validation): the place to save a checkpoint,
            so a run that fails later keeps its last good one. Called on rank 0 only.
        dist: the :class:`inference.distributed.DistContext`; by default derived from the
            environment: under torchrun, data-parallel SVI with DDP (one process otherwise).

    Raises:
        TrainingDiverged: the loss became NaN or inf. The model is left with its last good
            weights (the best validated ones, else the start of the failing epoch); under
            torchrun every rank raises it in the same epoch (the losses are all-reduced), or,
            when validation finds NaN weights inside a step, at once (weights not restored).

    Example:
        >>> history = fit(model, data.train, data.val, epochs=200, lr=3e-3)
    """
    from zoo.config import make_config  # the config checker is shared with the models

    cfg = make_config(FitConfig, overrides, base=config)
    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.lr <= 0:
        raise ValueError("epochs and batch_size must be >= 1 and lr > 0")
    ctx = dist or context(cfg.device)
    device = ctx.device
    seed_everything(cfg.seed)

    x, y = _unpack(train)
    x, y = model.check_data(x, y)
    if isinstance(model, ChecksTrainingData):  # checks of the training split only (all classes)
        model.check_training_data(x, y)
    if val is not None:
        xv, yv = model.check_data(*_unpack(val))
    model.to(device)
    x, y = x.to(device), (y.to(device) if y is not None else None)
    if val is not None:
        xv, yv = xv.to(device), (yv.to(device) if yv is not None else None)
    if model.target_is_input:
        y = x
        if val is not None:
            yv = xv
    n = len(x)
    # each rank's minibatch stands for the whole data set (TrainStep's data_size(n))
    order = ctx.order(n, cfg.seed)
    m = len(order)  # this rank's points per epoch (n on one process)
    batch_size = min(cfg.batch_size, m)
    steps_per_epoch = math.ceil(m / batch_size)

    elbo = make_elbo(cfg.elbo, cfg.num_particles, plate_nesting(model))
    loss_fn = elbo(model, model.guide)
    model.train()
    # one call creates lazily initialized parameters (AutoGuides) before the optimizer sees them
    with data_size(n):
        loss_fn(x[:batch_size], y[:batch_size] if y is not None else None)
    loss_fn = ctx.wrap(loss_fn, cfg.seed)  # DDP under torchrun
    step = TrainStep(loss_fn, n, cfg, cfg.epochs * steps_per_epoch)
    optimizer = step.optimizer
    sizes = torch.tensor(
        [min(batch_size, m - i * batch_size) for i in range(steps_per_epoch)],
        dtype=torch.float64,
        device=device,
    )

    history = History()
    best_state = None
    bad_epochs = 0
    generator = torch.Generator(device="cpu").manual_seed(cfg.seed)
    quiet = cfg.quiet or not sys.stderr.isatty() or not ctx.is_rank0
    bar = tqdm(range(1, cfg.epochs + 1), disable=quiet, desc=type(model).__name__, leave=False)
    start = time.perf_counter()
    for epoch in bar:
        if isinstance(model, HasEpochSchedule):
            model.set_epoch(epoch, cfg.epochs)
        epoch_start_state = _state(model) if best_state is None else None
        model.train()
        perm = order.indices(epoch, generator).to(device)
        losses: list[torch.Tensor] = []
        failed = None
        for i in range(steps_per_epoch):
            idx = perm[i * batch_size : (i + 1) * batch_size]
            yb = y[idx] if y is not None else None
            try:
                losses.append(step(x[idx], yb))
            except ValueError as e:
                # with validation on, NaN parameters are caught when a distribution is built
                if "invalid values" not in str(e):
                    raise
                if ctx.enabled:  # the other ranks may be in DDP's all-reduce: end the job
                    raise TrainingDiverged(
                        f"{ctx.label()}the weights became NaN or inf at epoch {epoch}, step "
                        f"{len(losses) + 1} (a distribution's parameters had invalid values). "
                        "Try a smaller --lr, gradient clipping or a different seed"
                    ) from e
                failed = (len(losses), float("nan"))
                break
        # losses are read once per epoch; a NaN step is undone below with the whole epoch
        failed = _first_bad(losses) or failed
        if failed is None or ctx.enabled:  # distributed, every rank ran every step
            # one all-reduce per epoch: the loss summed over the ranks (NaN if one diverged)
            sums = ctx.all_sum(
                torch.stack([(torch.stack(losses).double() * sizes).sum(), sizes.sum()])
            )
            if failed is None and not math.isfinite(float(sums[0])):
                failed = (-1, float(sums[0]))  # another rank's loss
        if failed is not None:
            model.load_state_dict(best_state or epoch_start_state)
            history.stopped = "diverged"
            history.seconds = time.perf_counter() - start
            bar.close()
            where = f"epoch {epoch}, " + (
                f"step {failed[0] + 1}" if failed[0] >= 0 else "on another rank"
            )
            kept = f"best epoch {history.best_epoch}" if best_state else f"start of {epoch}"
            raise TrainingDiverged(
                f"{ctx.label()}loss became {failed[1]} at {where}; kept the weights of the {kept}. "
                "Try a smaller --lr, gradient clipping or a different seed"
            )
        row = {"epoch": epoch, "loss": float(sums[0] / sums[1])}
        row["lr"] = optimizer.param_groups[0]["lr"]
        if val is not None:
            model.eval()
            with torch.no_grad():  # every rank scores; the mean decides for all of them
                row["val"] = ctx.mean(float(model.val_score(xv, yv)))
        row["seconds"] = time.perf_counter() - start
        history.rows.append(row)
        improved = val is None or (
            math.isfinite(row["val"])
            and (history.best_val is None or row["val"] < history.best_val)
        )
        if improved:
            history.best_epoch, history.best_val = epoch, row.get("val")
            best_state = _state(model)
            bad_epochs = 0
            if on_improve is not None and ctx.is_rank0:
                on_improve(model, row)
        else:
            bad_epochs += 1
        bar.set_postfix(loss=f"{row['loss']:.4f}", val=f"{row.get('val', float('nan')):.4f}")
        if val is not None and cfg.patience is not None and bad_epochs >= cfg.patience:
            history.stopped = "early_stopping"
            break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    history.seconds = time.perf_counter() - start
    return history


def _unpack(split) -> tuple[torch.Tensor, torch.Tensor | None]:
    if hasattr(split, "x"):
        return split.x, getattr(split, "y", None)
    x, y = split
    return x, y
