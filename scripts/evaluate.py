"""Reload a run folder and recompute its metrics and plots on the test split.

python scripts/evaluate.py runs/regression-toy-20261122-120000 [--num-samples 500]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import zoo  # noqa: E402
from inference import evaluate, resolve_device, seed_everything, write_plots  # noqa: E402
from inference.cli import Parser, fail, run_cli, summary_line, write_json  # noqa: E402
from inference.forecast_summary import fan_chart, summarize_paths  # noqa: E402
from inference.forecasting import SpreadCalibration, holdout, holdout_scores  # noqa: E402
from inference.runs import lock_run_dir, release_run_dirs  # noqa: E402
from zoo.io import read_config  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    finally:
        release_run_dirs()


def _main(argv: list[str] | None = None) -> int:
    p = Parser(description="Recompute a run's test metrics and plots from its checkpoint.")
    p.add_argument("run_dir")
    p.add_argument("--device", default="auto")
    p.add_argument("--num-samples", type=int, default=200)
    p.add_argument("--out", help="where to write metrics and plots (default: the run folder)")
    p.add_argument("--seed", type=int, default=0, help="seeds the predictive draws (default 0)")
    args = p.parse_args(argv)
    if args.num_samples < 40:
        fail("--num-samples must be at least 40 (the 95% interval needs 2 / (1 - 0.95) draws)")
    meta = read_config(args.run_dir)
    device = resolve_device(args.device)
    model = zoo.load(args.run_dir, map_location=device)
    data = zoo.datasets.load_dataset(
        meta.get("dataset", model.default_dataset),
        seed=meta.get("data_seed", 0),
        **meta.get("data_kwargs", {}),
    )
    out = Path(args.out or args.run_dir)
    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() == Path(args.run_dir).resolve():
        # its plots and metrics_eval.json go into the run folder: not while a run writes there
        # (--out elsewhere scores a live run's best checkpoint)
        lock_run_dir(out)
    seed_everything(args.seed)  # the same command gives the same scores
    if isinstance(data, zoo.datasets.SeriesData):  # the held-out horizon of every series
        history, future = holdout(data)
        # the factor of a finished run (older runs kept it under the option's own name); an
        # interrupted run has none yet and is scored as its best checkpoint forecasts
        cal = meta.get("interval_factor", meta.get("interval_calibration"))
        spread = SpreadCalibration(**cal) if isinstance(cal, dict) else None
        metrics, paths = holdout_scores(
            model, history, future, data.period, args.num_samples, spread
        )
        write_json(out / "metrics_eval.json", metrics)
        fan_chart(history.values, summarize_paths(paths), out / "forecast.png",
                  truth=future.values, names=data.names)  # fmt: skip
        print(f"{meta['model']} on {meta.get('dataset')}: {summary_line(metrics)}")
        if spread is not None:
            print(f"{spread.describe(len(future))}: {summary_line(metrics['calibrated'])}")
        return 0
    metrics = evaluate(
        model, data.test, num_samples=args.num_samples, true_log_prob=data.true_log_prob
    )
    write_json(out / "metrics_eval.json", metrics)
    write_plots(model, data, out, num_samples=args.num_samples)
    print(f"{meta['model']} on {meta.get('dataset')}: {summary_line(metrics)}")
    return 0


if __name__ == "__main__":
    run_cli(main)
