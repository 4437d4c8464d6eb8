"""Train any registered zoo model, evaluate it on the test split and write a run folder.

python scripts/train.py --model regression --set likelihood=studentt hidden=128
python scripts/train.py --list
torchrun --nproc_per_node=2 scripts/train.py --model vae --dataset mnist --data-dir DIR

Under torchrun every rank trains (data-parallel, inference.distributed); rank 0 alone writes
the run folder, evaluates and prints.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import inference.distributed as distributed  # noqa: E402
import zoo  # noqa: E402
from inference import FitConfig, TrainingDiverged, evaluate, fit, seed_everything, write_plots  # noqa: E402
from inference.calibrate import before_after, check_temperature_model, fit_temperature  # noqa: E402
from inference.cli import (  # noqa: E402
    Parser,
    fail,
    run_cli,
    summary_line,
    write_history,
    write_json,
)


def make_parser() -> Parser:
    p = Parser(description="Train a pyro-zoo model by SVI and evaluate it.")
    p.add_argument("--model", help="registered model name (see --list)")
    p.add_argument("--list", action="store_true", help="list the registered models and exit")
    p.add_argument("--dataset", help="dataset name (default: the model's own)")
    p.add_argument("--data-dir", help="folder of files for datasets read from disk (MNIST)")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the data split")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--schedule", choices=["none", "onecycle", "cosine"])
    p.add_argument("--elbo", choices=["trace", "meanfield", "pyro_trace"])
    p.add_argument("--particles", type=int, help="ELBO particles per step")
    p.add_argument("--patience", type=int, help="early-stopping patience in epochs (0: off)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-samples", type=int, default=200, help="predictive samples for metrics")
    p.add_argument("--out", help="run folder (default runs/MODEL-DATASET-TIME)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--temperature-scaling",
        action="store_true",
        help="classifiers: fit one temperature on the validation split after training",
    )
    p.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="model config overrides, e.g. --set likelihood=studentt hidden=128",
    )
    return p


def list_models() -> str:
    width = max(map(len, zoo.MODELS))
    return "\n".join(f"{n:<{width}}  {c.description}" for n, c in zoo.MODELS.items())


def fit_options(args, cls) -> dict:
    opts = dict(getattr(cls, "default_fit", {}))
    for key in ("epochs", "batch_size", "lr", "schedule", "elbo", "patience"):
        value = getattr(args, key)
        if value is not None:
            opts[key] = value
    if args.particles is not None:
        opts["num_particles"] = args.particles
    if opts.get("patience") == 0:
        opts["patience"] = None
    opts.update(seed=args.seed, device=args.device, quiet=args.quiet)
    return opts


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    if args.num_samples < 40:
        fail("--num-samples must be at least 40 (the 95% interval needs 2 / (1 - 0.95) draws)")
    if args.list:
        print(list_models())
        return 0
    if not args.model:
        fail("--model is required (or --list to see the models)")
    if args.model not in zoo.MODELS:
        fail(f"unknown model {args.model!r}; choose one of {', '.join(zoo.MODELS)}")
    cls = zoo.MODELS[args.model]
    overrides = zoo.parse_overrides(args.set)
    dataset_name = args.dataset or cls.default_dataset
    data_kwargs = {"data_dir": args.data_dir} if args.data_dir else {}
    data = zoo.datasets.load_dataset(dataset_name, seed=args.data_seed, **data_kwargs)
    overrides = {**cls.data_overrides(data), **overrides}
    seed_everything(args.seed)  # the initial weights follow --seed too
    model = zoo.build(args.model, **overrides)
    if args.temperature_scaling:
        check_temperature_model(model)
    opts = fit_options(args, cls)
    fit_config = zoo.make_config(FitConfig, opts)
    hint = distributed.launch_hint(args.device)
    if hint:
        print(hint, file=sys.stderr)
    ctx = distributed.context(args.device)  # under torchrun: starts the process group

    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = Path(args.out or f"runs/{args.model}-{dataset_name}-{stamp}")
    if ctx.is_rank0:
        run_dir.mkdir(parents=True, exist_ok=True)
    extra = {
        "dataset": dataset_name,
        "data_seed": args.data_seed,
        "data_kwargs": data_kwargs,
        "fit": dataclasses.asdict(fit_config),
    }

    def checkpoint(m, row):
        zoo.save(m, run_dir, extra={**extra, "epoch": row["epoch"]})

    try:
        history = fit(model, data.train, data.val, fit_config, on_improve=checkpoint, dist=ctx)
    except TrainingDiverged as e:
        fail(f"{e}; the last good checkpoint is in {run_dir}", code=1)
    distributed.shutdown()
    if not ctx.is_rank0:  # the other ranks' work ends with training
        return 0
    before = None
    if args.temperature_scaling:  # post hoc; the temperature is a buffer, saved just below
        before = evaluate(model, data.test, num_samples=args.num_samples)
        scaled = fit_temperature(model, data.val)
    zoo.save(model, run_dir, extra={**extra, "epoch": history.best_epoch})
    write_history(run_dir / "history.csv", history.rows)
    seed_everything(args.seed)  # the metrics' draws are reproducible from the checkpoint
    metrics = evaluate(
        model, data.test, num_samples=args.num_samples, true_log_prob=data.true_log_prob
    )
    metrics.update(
        train_seconds=history.seconds,
        epochs_run=len(history.rows),
        best_epoch=history.best_epoch,
        stopped=history.stopped,
    )
    if before is not None:
        metrics.update(before_after(before, scaled))
    write_json(run_dir / "metrics.json", metrics)
    write_plots(model, data, run_dir, history, num_samples=args.num_samples)
    print(f"{args.model} on {dataset_name}: {summary_line(metrics)}")
    if before is not None:
        print(f"{scaled.summary}; before it: {summary_line(before)}")
    print(f"run folder: {run_dir}")
    return 0


if __name__ == "__main__":
    run_cli(main)
