"""Run by torchrun from tests/test_distributed.py, one process per rank (gloo, CPU).

python -m torch.distributed.run --nproc_per_node=2 tests/ddp_worker.py step OUT
    one DDP training step per model (bnn, mdn) with per-rank batch b; each rank saves its
    gradients and parameters to OUT/step-RANK.pt (and those of the same step with a wrong
    plate scale), then a short fit with an overflow injected on rank 1 only, recording how it ended.
python -m torch.distributed.run --nproc_per_node=2 tests/ddp_worker.py train OUT FAULT ARGS...
    scripts/train.py ARGS, unchanged but for two spies: each rank saves its trained weights to
    OUT/weights-RANK.pt; FAULT ``raise:K`` makes rank 1's K-th training step raise (and record
    the time it did in OUT/fault-time), ``none`` does nothing.
    ARGS may hold several runs separated by ``::``, trained one after the other in one job;
    run K > 0 saves OUT/weights-RANK-runK.pt (a series run: its first fit's, the holdout's).
    Each rank writes its exit code to OUT/exit-RANK.
python -m torch.distributed.run --nproc_per_node=2 tests/ddp_worker.py step+train OUT none ARGS...
    both in one job (one start of the processes is most of a test's time on 2 cores).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path

import pyro
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import zoo  # noqa: E402
from inference import TrainingDiverged, fit  # noqa: E402
from inference.distributed import DistContext, context, shutdown  # noqa: E402
from inference.fit import FitConfig, TrainStep, make_elbo  # noqa: E402
from zoo.base import data_size  # noqa: E402

#: per-rank batch, full training-set size (the plate's size), ELBO of each model
BATCH, NUM_DATA = 16, 1000
MODELS = {"bnn": ("trace", {"hidden": 8, "depth": 1}), "mdn": ("trace", {"hidden": 8})}


def step_problem(name: str, world: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The concatenated batch of ``world * BATCH`` points, the same in every process."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(world * BATCH, 1, generator=g)
    return x, torch.sin(2 * x[:, 0]) + 0.3 * torch.randn(world * BATCH, generator=g)


class PlateSize(torch.nn.Module):
    """A loss module whose plate ``data`` has ``size`` points, whatever the step says."""

    def __init__(self, loss_fn: torch.nn.Module, size: int):
        super().__init__()
        self.loss_fn, self.size = loss_fn, size

    def forward(self, x, y):
        with data_size(self.size):
            return self.loss_fn(x, y)


def one_step(name: str, ctx: DistContext, world: int, plate_size: int = NUM_DATA) -> dict:
    """One :class:`TrainStep` on this rank's rows of the batch, with the ELBO of ``fit``.

    The ELBO's noise is seeded the same in every process (``fit`` seeds it per rank): with it,
    the ranks' steps and one process's step draw the same latent weights, and only the plate's
    scale can make them differ.
    """
    kind, tiny = MODELS[name]
    pyro.set_rng_seed(0)
    model = zoo.build(name, input_dim=1, **tiny)
    x, y = step_problem(name, world)
    loss_fn = make_elbo(kind)(model, model.guide)
    model.train()
    with data_size(NUM_DATA):
        loss_fn(x[:BATCH], y[:BATCH])  # warm-up: the AutoGuide's lazy parameters
    loss_fn = ctx.wrap(loss_fn, seed=0)
    if plate_size != NUM_DATA:
        loss_fn = PlateSize(loss_fn, plate_size)
    pyro.set_rng_seed(7)
    step = TrainStep(loss_fn, NUM_DATA, FitConfig(lr=1e-2, clip_norm=None))
    rows = slice(ctx.rank * BATCH, (ctx.rank + 1) * BATCH) if ctx.enabled else slice(None)
    loss = step(x[rows], y[rows])
    named = dict(model.named_parameters())
    return {
        "loss": float(loss),
        "grads": {k: p.grad.detach().clone() for k, p in named.items()},
        "params": {k: p.detach().clone() for k, p in named.items()},
    }


def overflow_on_one_rank(ctx: DistContext) -> str:
    """A short fit in which rank 1's targets overflow in epoch 2: how did fit end here?"""
    pyro.set_rng_seed(0)
    model = zoo.build("mdn", input_dim=1, hidden=8)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 1, generator=g)
    y = torch.sin(x[:, 0])
    real_call = TrainStep.__call__
    calls = [0]

    def poisoned(self, xb, yb):
        calls[0] += 1
        if ctx.rank == 1 and calls[0] == 5:  # epoch 2 of 4 steps per epoch
            yb = yb * 1e30  # a wild outlier: the loss is inf, then the weights NaN
        return real_call(self, xb, yb)

    TrainStep.__call__ = poisoned
    try:
        fit(model, (x, y), epochs=3, batch_size=16, quiet=True, dist=ctx)
    except TrainingDiverged as e:
        return f"diverged: {e}"
    finally:
        TrainStep.__call__ = real_call
    return "completed"


def main_step(out: Path) -> None:
    ctx = context("cpu")
    result = {name: one_step(name, ctx, ctx.world_size) for name in MODELS}
    # the bug the test must catch: each rank scaling its shard to the shard's size
    result["wrong_scale"] = {
        name: one_step(name, ctx, ctx.world_size, NUM_DATA // ctx.world_size) for name in MODELS
    }
    result["overflow_on_rank_1"] = overflow_on_one_rank(ctx)
    torch.save(result, out / f"step-{ctx.rank}.pt")


def main_train(out: Path, fault: str, argv: list[str]) -> None:
    spec = importlib.util.spec_from_file_location("train_script", ROOT / "scripts" / "train.py")
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    rank = int(os.environ["RANK"])
    runs = [[]]
    for arg in argv:  # "::" separates the runs
        if arg == "::":
            runs.append([])
        else:
            runs[-1].append(arg)
    current = [0]

    def spy_fit(model, *args, **kwargs):
        history = fit(model, *args, **kwargs)
        tag = f"-run{current[0]}" if current[0] else ""
        torch.save(model.state_dict(), out / f"weights-{rank}{tag}.pt")
        return history

    train.fit = spy_fit
    import inference.forecasting as forecasting

    def spy_forecast_fit(model, *args, **kwargs):  # a series run's first fit: the holdout's
        history = fit(model, *args, **kwargs)
        path = out / f"weights-{rank}-run{current[0]}.pt"
        if not path.exists():
            torch.save(model.state_dict(), path)
        return history

    forecasting.fit = spy_forecast_fit
    # one process group for all the runs: the worker ends it (a group started anew after
    # destroy_process_group on torchrun's store would wait for stale keys)
    train.distributed.shutdown = lambda: None
    if fault.startswith("raise:") and rank == 1:
        k, calls, real_call = int(fault.partition(":")[2]), [0], TrainStep.__call__

        def failing(self, xb, yb):
            calls[0] += 1
            if calls[0] == k:
                (out / "fault-time").write_text(repr(time.time()))
                raise RuntimeError("injected failure on rank 1")
            return real_call(self, xb, yb)

        TrainStep.__call__ = failing

    def every_run() -> int:
        for current[0], args in enumerate(runs):
            code = train.main(args)
            if code:
                return code
        return 0

    try:
        train.run_cli(every_run)
    except SystemExit as e:
        (out / f"exit-{rank}").write_text(str(e.code))
        raise


if __name__ == "__main__":
    mode, out = sys.argv[1], Path(sys.argv[2])
    try:
        if mode.startswith("step"):
            main_step(out)  # train.py then finds the process group started
        if mode.endswith("train"):
            main_train(out, sys.argv[3], sys.argv[4:])  # run_cli ends it with SystemExit
    finally:
        # end the group on every way out: a process that exits with gloo's threads still
        # running can abort at teardown ("terminate called without an active exception",
        # seen once on a loaded machine in the resume test)
        shutdown()
