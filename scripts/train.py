"""Train any registered zoo model, evaluate it on the test split and write a run folder.

python scripts/train.py --model regression --set likelihood=studentt hidden=128
python scripts/train.py --resume runs/regression-toy-20261122-120000   # after Ctrl-C or a kill
python scripts/train.py --model forecast --dataset visnights   # series: holdout fit + backtest
python scripts/train.py --list
torchrun --nproc_per_node=2 scripts/train.py --model vae --dataset mnist --data-dir DIR

Under torchrun every rank trains (data-parallel, inference.distributed); rank 0 alone writes
the run folder, evaluates and prints.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

import inference.distributed as distributed  # noqa: E402
import zoo  # noqa: E402
from inference import FitConfig, TrainingDiverged, evaluate, fit, seed_everything, write_plots  # noqa: E402
from inference.backtest import WindowStore  # noqa: E402
from inference.calibrate import before_after, check_temperature_model, fit_temperature  # noqa: E402
from inference.checkpoint import load_training_state, save_training_state  # noqa: E402
from inference.cli import USER_ERRORS, Parser, fail, run_cli, summary_line, write_json  # noqa: E402
from inference.fit import fit_config  # noqa: E402
from inference.forecasting import (  # noqa: E402
    BACKTEST_DIR,
    BEYOND_GROWTH,
    CALIBRATION_POINTS,
    SpreadCalibration,
    baselines,
    forecast_run,
)
from inference.runs import (  # noqa: E402
    HistoryWriter,
    create_run_dir,
    discard_unless_checkpointed,
    finished,
    lock_run_dir,
    release_run_dirs,
    remove_run_folder,
    stale_temp_files,
)
from inference.signals import StopSignals  # noqa: E402
from zoo.base import SupportsForecast  # noqa: E402


def make_parser() -> Parser:
    p = Parser(description="Train a pyro-zoo model by SVI and evaluate it.")
    p.add_argument("--model", help="registered model name (see --list)")
    p.add_argument("--list", action="store_true", help="list the registered models and exit")
    p.add_argument("--dataset", help="dataset name (default: the model's own)")
    p.add_argument("--data-dir", help="folder of files for datasets read from disk (MNIST)")
    p.add_argument("--data-seed", type=int, help="seed of the data split (default 0)")
    p.add_argument(
        "--data-args",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="dataset loader arguments, e.g. --data-args horizon=12 impute=true",
    )
    p.add_argument(
        "--backtest-windows",
        type=int,
        help="series data: rolling-origin backtest windows for the model and baselines "
        "(0: off; default 3)",
    )
    p.add_argument(
        "--baselines",
        help="series data: comma-separated baselines (seasonal_naive, ets, pyro_structural; "
        "default seasonal_naive,ets)",
    )
    p.add_argument(
        "--interval-calibration",
        action=argparse.BooleanOptionalAction,
        help="series data: widen or narrow the forecasts' intervals by the split-conformal"
        " factor of the validation forecast (default on)",
    )
    p.add_argument(
        "--calibration-points",
        type=int,
        help="series data: where the validation forecast has fewer points, fit a second model"
        f" holding out that many for the calibration (0: never; default {CALIBRATION_POINTS})",
    )
    p.add_argument(
        "--calibration-growth",
        type=float,
        metavar="G",
        help="series data: forecasts longer than the validation forecast get its factor grown"
        f" as (h / validated steps) ** G past them (0: flat; default {BEYOND_GROWTH})",
    )
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--schedule", choices=["none", "onecycle", "cosine"])
    p.add_argument("--elbo", choices=["trace", "meanfield", "pyro_trace"])
    p.add_argument("--particles", type=int, help="ELBO particles per step")
    p.add_argument("--patience", type=int, help="early-stopping patience in epochs (0: off)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--seed", type=int, help="seed of the weights and the training (default 0)")
    p.add_argument("--num-samples", type=int, help="predictive samples for metrics (default 200)")
    p.add_argument("--out", help="run folder (default runs/MODEL-DATASET-TIME, made unique)")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    p.add_argument(
        "--checkpoint-every",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="seconds between resumable checkpoints (0: every epoch; default 10)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--temperature-scaling",
        action="store_true",
        help="classifiers: fit one temperature on the validation split after training",
    )
    p.add_argument(
        "--set",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="model config overrides, e.g. --set likelihood=studentt hidden=128 (repeatable)",
    )
    return p


def list_models() -> str:
    width = max(map(len, zoo.MODELS))
    return "\n".join(f"{n:<{width}}  {c.description}" for n, c in zoo.MODELS.items())


#: Options of the run itself (not of fit), kept in its description: a resumed run keeps them.
RUN_ARGS = {"num_samples": 200}
SERIES_ARGS = {
    "backtest_windows": 3,
    "baselines": "seasonal_naive,ets",
    "interval_calibration": True,
    "calibration_points": CALIBRATION_POINTS,
    "calibration_growth": BEYOND_GROWTH,
}
#: what a series run recorded before an option existed ran with (its description lacks it)
SERIES_BEFORE = {"calibration_growth": 0.0}

FIT_ARGS = {
    "epochs": "epochs",
    "batch_size": "batch_size",
    "lr": "lr",
    "schedule": "schedule",
    "elbo": "elbo",
    "patience": "patience",
    "particles": "num_particles",
    "seed": "seed",
}


def fit_options(args) -> dict:
    """The FitConfig fields given on the command line (the model's default_fit fills the rest)."""
    opts = {key: getattr(args, a) for a, key in FIT_ARGS.items() if getattr(args, a) is not None}
    if opts.get("patience") == 0:
        opts["patience"] = None
    opts.setdefault("seed", 0)  # --seed's default: runs are reproducible unless asked otherwise
    return opts


def resumed_plan(args) -> tuple[dict, dict]:
    """The run description of ``--resume DIR``; any option given that differs is refused."""
    state = load_training_state(args.resume)
    run, meta = state.get("run") or {}, state["model_meta"]
    if state.get("stopped") is not None and finished(Path(args.resume)):
        fail(f"the run in {args.resume} already finished ({state['stopped']}); nothing to resume")
    if not run:
        fail(f"{args.resume} was not written by train.py (its state has no run description)")
    if any(key in run for key in SERIES_ARGS):  # a series run, perhaps from before an option
        run = {**SERIES_BEFORE, **run}
    diff = []
    if args.model is not None and args.model != meta["model"]:
        diff.append(f"--model {args.model} (the run's is {meta['model']})")
    for arg, key in (("dataset", "dataset"), ("data_seed", "data_seed")):
        if getattr(args, arg) is not None and getattr(args, arg) != run.get(key):
            diff.append(f"--{arg.replace('_', '-')} {getattr(args, arg)} (the run's is {run[key]})")
    ran = run.get("data_kwargs") or {}
    for key, value in data_kwargs(args).items():
        if value != ran.get(key, loader_default(run["dataset"], key)):
            flag = "--data-dir " if key == "data_dir" else f"--data-args {key}="
            had = f"the run's is {ran[key]}" if key in ran else "the run used the default"
            diff.append(f"{flag}{value} ({had})")
    for key in (*RUN_ARGS, *SERIES_ARGS):
        value = getattr(args, key)
        if value is not None and key in run and value != run[key]:
            diff.append(f"{option(key, value)} (the run's is {option(key, run[key], False)})")
        setattr(args, key, run.get(key, value))
    wanted = zoo.make_config(
        zoo.MODELS[meta["model"]].Config,
        zoo.parse_overrides(args.set),
        base=zoo.MODELS[meta["model"]].Config(**meta["config"]),
    )
    for key, value in sorted(vars(wanted).items()):
        if value != meta["config"].get(key):
            diff.append(f"--set {key}={value} (the run's is {meta['config'].get(key)})")
    given = {k: v for a, k in FIT_ARGS.items() if (v := getattr(args, a)) is not None}
    if given.get("patience") == 0:
        given["patience"] = None
    for key, value in given.items():
        if value != run["fit"].get(key):
            diff.append(f"--{key.replace('_', '-')} {value} (the run's is {run['fit'].get(key)})")
    if diff:
        fail(f"--resume {args.resume}: a resumed run keeps its options; drop {', '.join(diff)}")
    return state, run


def option(key: str, value, flag: bool = True) -> str:
    """``--key value`` as given on the command line (``--key`` / ``--no-key`` for a switch)."""
    name = key.replace("_", "-")
    if isinstance(value, bool):
        return f"--{'' if value else 'no-'}{name}"
    return f"--{name} {value}" if flag else str(value)


def baseline_names(args) -> tuple[str, ...]:
    """The ``--baselines`` names, in order."""
    return tuple(b for b in args.baselines.split(",") if b)


def data_kwargs(args) -> dict:
    """The dataset loader's arguments given on the command line (--data-dir, --data-args)."""
    out = {"data_dir": args.data_dir} if args.data_dir else {}
    out.update(parse_values(zoo.parse_overrides(args.data_args)))
    return out


def loader_default(dataset: str, key: str):
    """The default of the dataset loader's argument ``key`` (None if it has none)."""
    param = inspect.signature(zoo.datasets.DATASETS[dataset]).parameters.get(key)
    return None if param is None or param.default is inspect.Parameter.empty else param.default


def main(argv: list[str] | None = None) -> int:
    # from the start: a SIGINT / SIGTERM while the data loads stops training at its first step
    with StopSignals() as stop:
        return run(make_parser().parse_args(argv), stop)


def run(args, stop: StopSignals) -> int:
    """One training run from parsed arguments; the run folder is this process's until it ends."""
    try:
        return _run(args, stop)
    finally:
        release_run_dirs()  # the run folder's lock (lock_run_dir)


def _run(args, stop: StopSignals) -> int:
    if args.num_samples is not None and args.num_samples < 40:
        fail("--num-samples must be at least 40 (the 95% interval needs 2 / (1 - 0.95) draws)")
    if args.calibration_points is not None and args.calibration_points < 0:
        fail("--calibration-points must be >= 0 (0 calibrates on the model's own validation only)")
    g = args.calibration_growth
    if g is not None and not 0 <= g <= 2:  # NaN fails both
        fail(f"--calibration-growth must lie in [0, 2] (0.5: a random walk's; 0: flat); got {g}")
    if args.list:
        print(list_models())
        return 0
    state = None
    if args.resume:
        if args.out or args.overwrite:
            fail("--resume continues in its own folder; drop --out / --overwrite")
        if Path(args.resume).is_file():  # its train_state.pt named: the run is its folder
            args.resume = str(Path(args.resume).parent)
        state, run = resumed_plan(args)
        name, dataset_name = state["model_meta"]["model"], run["dataset"]
        data_seed, loader_kwargs = run["data_seed"], run["data_kwargs"]
    else:
        if not args.model:
            fail("--model is required (or --list to see the models, --resume to continue a run)")
        if args.model not in zoo.MODELS:
            fail(f"unknown model {args.model!r}; choose one of {', '.join(zoo.MODELS)}")
        name = args.model
        dataset_name = args.dataset or zoo.MODELS[name].default_dataset
        data_seed = args.data_seed if args.data_seed is not None else 0
        loader_kwargs = data_kwargs(args)
        if args.data_dir and "data_dir" not in zoo.datasets.dataset_options(dataset_name):
            readers = [
                d for d in zoo.datasets.DATASETS if "data_dir" in zoo.datasets.dataset_options(d)
            ]
            fail(f"--data-dir is read only by {', '.join(readers)}; {dataset_name} does not use it")
    cls = zoo.MODELS[name]
    data = zoo.datasets.load_dataset(dataset_name, seed=data_seed, **loader_kwargs)
    series = isinstance(data, zoo.datasets.SeriesData)
    for key, default in {**RUN_ARGS, **(SERIES_ARGS if series else {})}.items():
        if getattr(args, key) is None:
            setattr(args, key, default)
    if series:  # before anything trains: a bad name would only show after the fit
        if args.backtest_windows < 0:
            fail(f"--backtest-windows must be >= 0 (0: no backtest); got {args.backtest_windows}")
        try:
            baselines(baseline_names(args))
        except ValueError as e:
            fail(f"--baselines: {e}")
    if state is not None:
        overrides = state["model_meta"]["config"]
        model = zoo.build(name, **overrides)
        fit_cfg = zoo.make_config(
            FitConfig, {"device": args.device, "quiet": args.quiet}, base=FitConfig(**run["fit"])
        )
    else:
        overrides = {**cls.data_overrides(data), **zoo.parse_overrides(args.set)}
        opts = fit_options(args)
        seed_everything(opts["seed"])  # the initial weights follow --seed too
        model = zoo.build(name, **overrides)
        fit_cfg = fit_config(model, **opts, device=args.device, quiet=args.quiet)
    if args.temperature_scaling:
        check_temperature_model(model)
    hint = distributed.launch_hint(args.device)
    if hint:
        print(hint, file=sys.stderr)
    ctx = distributed.context(args.device)  # under torchrun: starts the process group

    refused = None  # rank 0 alone takes the folder; under torchrun the others must hear of it
    try:
        if state is not None or not ctx.is_rank0:  # the other ranks write nothing
            run_dir, created = Path(args.resume or args.out or "runs"), False
            if state is not None and ctx.is_rank0:  # one process at a time resumes a folder
                lock_run_dir(run_dir)
        else:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            default = f"runs/{name}-{dataset_name}-{stamp}"
            run_dir, created = create_run_dir(args.out, default, args.overwrite)
    except USER_ERRORS as e:
        refused = e
    if ctx.enabled and ctx.all_sum(torch.tensor([float(refused is not None)]))[0] > 0:
        distributed.shutdown()  # on every rank: one that exits with gloo's threads up can abort
        if refused is None:  # rank 0 says why, in one line; here nothing more to say
            raise SystemExit(2)
    if refused is not None:
        raise refused
    extra = {
        "dataset": dataset_name,
        "data_seed": data_seed,
        "data_kwargs": loader_kwargs,
        "fit": dataclasses.asdict(fit_cfg),
        **{k: getattr(args, k) for k in (*RUN_ARGS, *(SERIES_ARGS if series else ()))},
    }
    saved: dict = dict(state["run"].get("saved") or {}) if state is not None else {}

    def save_best(m, row):
        zoo.save(m, run_dir, extra={**extra, "epoch": row["epoch"]})
        saved.update(epoch=row["epoch"], val=row.get("val"))

    def save_state(s):
        save_training_state(run_dir, {**s, "run": {**extra, "saved": dict(saved)}})

    try:
        rows = state["rows"] if state else None
        hooks = dict(  # every run's fit: the best model, history.csv, resumable state, signals
            on_improve=save_best,
            on_epoch=HistoryWriter(run_dir / "history.csv", rows) if ctx.is_rank0 else None,
            checkpoint=save_state,
            checkpoint_every=args.checkpoint_every,
            resume=state,
            should_stop=stop.requested,
        )
        if series:
            return train_series(
                args, name, model, data, run_dir, fit_cfg, overrides, extra, hooks, stop, ctx
            )
        history = fit(model, data.train, data.val, fit_cfg, **hooks, dist=ctx)
    except TrainingDiverged as e:
        if not ctx.is_rank0:
            fail(str(e), 1)
        if saved:
            val = f", val {saved['val']:.4g}" if saved.get("val") is not None else ""
            fail(f"{e}; the last good checkpoint (epoch {saved['epoch']}{val}) is in {run_dir}", 1)
        if state is None and discard_unless_checkpointed(run_dir, created):
            fail(f"{e}; no checkpoint was written, so no run folder was kept", 1)
        fail(f"{e}; no model checkpoint was written to {run_dir}", 1)
    except BaseException:
        if state is None and ctx.is_rank0:  # a new run's leftovers; a resumed run keeps its state
            discard_unless_checkpointed(run_dir, created)
        raise
    distributed.shutdown()
    if not ctx.is_rank0:  # the other ranks' work ends with training
        return stop.exit_code if history.stopped == "interrupted" and stop.signum else 0
    if history.stopped == "interrupted":
        return interrupted(run_dir, stop, history.rows, history.best_epoch, history.seconds)
    before = None
    if args.temperature_scaling:  # post hoc; the temperature is a buffer, saved just below
        before = evaluate(model, data.test, num_samples=args.num_samples)
        scaled = fit_temperature(model, data.val)
    zoo.save(model, run_dir, extra={**extra, "epoch": history.best_epoch})
    seed_everything(fit_cfg.seed or 0)  # the metrics' draws are reproducible from the checkpoint
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
    print(f"{name} on {dataset_name}: {summary_line(metrics)}")
    if before is not None:
        print(f"{scaled.summary}; before it: {summary_line(before)}")
    print(f"run folder: {run_dir}")
    return 0


def interrupted(run_dir, stop, rows, best_epoch, seconds, when: str | None = None) -> int:
    """A stopped run: ``metrics.json`` says so, one line says how to resume; the exit code."""
    write_json(
        run_dir / "metrics.json",
        {
            "stopped": "interrupted",
            "signal": stop.name,
            "epochs_run": len(rows),
            "best_epoch": best_epoch,
            "train_seconds": seconds,
        },
    )
    last = rows[-1]["epoch"] if rows else 0
    relaunch = distributed.relaunch_command()
    # one process stops after a step; under torchrun every rank stops at an epoch's end
    kept = "mid-epoch steps kept" if relaunch.startswith("python") else "every rank stopped there"
    when = when or f"after epoch {last} ({kept})"
    print(
        f"{stop.name or 'stop'} {when}; resume with: {relaunch} --resume {run_dir}",
        file=sys.stderr,
    )
    return stop.exit_code if stop.signum is not None else 1


def parse_values(items: dict[str, str]) -> dict:
    """Loader arguments from the command line: booleans, numbers and comma lists converted."""
    out = {}
    for key, value in items.items():
        low = value.lower()
        if low in ("true", "false"):
            out[key] = low == "true"
        elif "," in value:
            out[key] = [v for v in value.split(",") if v]
        else:
            try:
                out[key] = int(value)
            except ValueError:
                out[key] = value
    return out


def train_series(
    args, name, model, data, run_dir, fit_cfg, overrides, extra, hooks, stop, ctx
) -> int:
    """Series data: fit on the history, score the held-out horizon, backtest against baselines.

    The holdout fit takes every run's ``hooks``: it is checkpointed, stops at the end of a step
    on SIGINT / SIGTERM and resumes exactly. Once the fit has ended no step polls, so a signal
    stops the run at once; ``--resume`` skips the finished fit (its best weights and RNG states
    come back from ``train_state.pt``, nothing is retrained), scores the holdout again, reads the
    backtest windows that had finished back from ``backtest/`` and refits only the others, and
    ends where the uninterrupted run would. Under torchrun the holdout fit is data-parallel
    and rank 0 alone does the rest (:func:`inference.forecasting.forecast_run`).
    """
    if not isinstance(model, SupportsForecast):
        fail(f"model {name!r} does not forecast series (no SupportsForecast hooks)")
    hooks = dict(hooks)
    on_improve, save_state = hooks.pop("on_improve"), hooks["checkpoint"]
    state = hooks["resume"]
    fit_ended = state is not None and state["stopped"] is not None

    def checkpoint(s):
        nonlocal fit_ended
        save_state(s)
        if s["stopped"] is not None:  # the fit has ended and is saved: no step polls after it
            fit_ended = True
            stop.interrupt_now()

    try:
        if fit_ended:
            stop.interrupt_now()
        metrics = forecast_run(
            model,
            data,
            run_dir,
            lambda history: zoo.build(name, **overrides),  # the backtest's refits
            fit_cfg,
            checkpoint=on_improve,
            num_samples=args.num_samples,
            backtest_windows=args.backtest_windows,
            baseline_names=baseline_names(args),
            seed=fit_cfg.seed,
            calibrate=args.interval_calibration,
            calibration_points=args.calibration_points,
            calibration_growth=args.calibration_growth,
            fit_kwargs={**hooks, "checkpoint": checkpoint},
            dist=ctx,
        )
        if not ctx.is_rank0:  # its part, the holdout fit, is done; rank 0 writes everything
            return stop.exit_code if metrics["stopped"] == "interrupted" and stop.signum else 0
        if metrics["stopped"] == "interrupted":
            s = load_training_state(run_dir)
            return interrupted(run_dir, stop, s["rows"], s["best_epoch"], s["seconds"])
        # the factor travels with the weights, so scripts/evaluate.py scores what the run did
        spread = {"interval_factor": metrics.get("calibration")}  # beside the run's options
        zoo.save(model, run_dir, extra={**extra, "epoch": metrics["best_epoch"], **spread})
        table = metrics.pop("baseline_table", None)
        write_json(run_dir / "metrics.json", metrics)
        # finished: the backtest's saved windows (and any temp file a kill left) are not needed
        remove_run_folder(run_dir, BACKTEST_DIR)
        for f in stale_temp_files(run_dir):
            f.unlink(missing_ok=True)
    except KeyboardInterrupt:
        if not fit_ended or stop.signum is None:  # inside the fit: as for every run
            raise
        s = load_training_state(run_dir)
        last = s["rows"][-1]["epoch"] if s["rows"] else 0
        done = WindowStore(run_dir / BACKTEST_DIR).count()
        kept = ", ".join(f"{n} {k}" for n, k in done.items()) or "none"
        when = (
            f"after the fit had ended (epoch {last}), in its scores or backtest (finished"
            f" backtest windows kept: {kept})"
        )
        return interrupted(run_dir, stop, s["rows"], s["best_epoch"], s["seconds"], when)
    print(f"{name} on {data.name}: {summary_line(metrics)}")
    if "calibrated" in metrics:
        spread = SpreadCalibration(**metrics["calibration"])
        print(f"{spread.describe(data.horizon)}: {summary_line(metrics['calibrated'])}")
    if table:
        windows = metrics["backtest"]["num_windows"]
        print(f"rolling-origin backtest, {windows} window(s) of {data.horizon} steps:\n{table}")
    print(f"run folder: {run_dir}")
    return 0


if __name__ == "__main__":
    run_cli(main)
