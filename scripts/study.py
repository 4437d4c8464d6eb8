"""The seed study: MSE, Gaussian, Student-t and MDN on the multimodal toy problem vs the truth.

    python scripts/study.py                       # writes reports/study/ (about a minute)
    python scripts/study.py --out DIR --quick     # a few epochs: checks that everything runs

Every model is trained with one seed through ``inference.fit`` with its family's
``default_fit`` and scored on held-out data by ``inference.evaluate``. The report folder gets
``table.md`` and ``metrics.json`` (held-out NLL, gap to the true NLL, CRPS, RMSE, 90% coverage,
calibration error, training time) and the figures, each with the truth beside the models:
``bands.png`` (data with mean +- 2 sd), ``density.png`` (p(y | x) as heat maps) and
``slices.png`` (predictive samples at a few x with the true density over them).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pyro  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import zoo  # noqa: E402
from inference import evaluate, fit, predict  # noqa: E402
from inference.plots import _subplots  # noqa: E402
from inference.plots_density import conditional_density_heatmaps  # noqa: E402

CONTENDERS = {  # label -> (registered name, config overrides)
    "MSE": ("mse", {}),
    "Gaussian": ("regression", {}),
    "Student-t": ("regression", {"likelihood": "studentt"}),
    "MDN": ("mdn", {}),
}
SLICES = (-3.0, -1.0, 0.0, 1.5, 3.0)
COLUMNS = (  # metrics.json key, table header, format
    ("nll", "NLL", ".3f"),
    ("nll_gap", "gap to truth", ".3f"),
    ("crps", "CRPS", ".3f"),
    ("rmse", "RMSE", ".3f"),
    ("coverage_90", "90% coverage", ".3f"),
    ("ece_quantile", "calibration error", ".3f"),
    ("seconds", "train s", ".1f"),
)


def train_all(data, seed: int, quick: bool) -> dict[str, tuple]:
    """Fits every contender with one seed; returns label -> (model, metrics)."""
    out = {}
    for label, (name, overrides) in CONTENDERS.items():
        pyro.set_rng_seed(seed)  # the same initial weights whatever ran before
        model = zoo.build(name, **overrides)
        opts = {"epochs": 2} if quick else {}  # fit merges the model's default_fit itself
        start = time.perf_counter()
        fit(model, data.train, data.val, quiet=True, seed=seed, device="cpu", **opts)
        seconds = time.perf_counter() - start
        metrics = evaluate(model, data.test, true_log_prob=data.true_log_prob)
        out[label] = (model, {**metrics, "seconds": seconds})
        print(f"{label:<10} NLL {metrics['nll']:.3f}  ({seconds:.1f} s)", flush=True)
    return out


def markdown_table(metrics: dict[str, dict], true_nll: float, n_test: int) -> str:
    head = "| model | " + " | ".join(h for _, h, _ in COLUMNS) + " |"
    lines = [head, "|---" * (len(COLUMNS) + 1) + "|"]
    for label, m in metrics.items():
        cells = " | ".join(format(m[k], f) for k, _, f in COLUMNS)
        lines.append(f"| {label} | {cells} |")
    lines.append(f"| truth | {true_nll:.3f} | 0 |  |  | 0.900 | 0 |  |")
    note = (
        f"\nHeld-out metrics on {n_test} test points of the toy problem (mean per point; NLL in "
        "nats). Calibration error: mean absolute gap between the nominal and observed coverage "
        "of central intervals.\n"
    )
    return "\n".join(lines) + "\n" + note


# --- figures -----------------------------------------------------------------------------
def _grid(quick: bool) -> tuple[torch.Tensor, torch.Tensor]:
    n = 60 if quick else 240
    return torch.linspace(-4, 4, n), torch.linspace(-3.5, 4.5, n)


@torch.no_grad()
def model_density(model, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """p(y | x) on a grid, ``[len(ys), len(xs)]``, from the exact predictive distribution."""
    d = model.predictive_distribution(xs[:, None])
    return d.log_prob(ys[:, None]).exp()


def true_density(data, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    xx = xs[None, :].expand(len(ys), -1)
    yy = ys[:, None].expand(-1, len(xs))
    return data.true_log_prob(xx.reshape(-1, 1), yy.reshape(-1)).exp().reshape(xx.shape).float()


def grid_moments(density: torch.Tensor, ys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and sd over y of densities ``[H, W]`` on the grid ys (renormalized per column)."""
    w = density / density.sum(0, keepdim=True)
    mean = (w * ys[:, None]).sum(0)
    var = (w * (ys[:, None] - mean) ** 2).sum(0)
    return mean, var.sqrt()


def bands_figure(models, data, path: Path, quick: bool) -> Path:
    xs, ys = _grid(quick)
    panels = {"truth": grid_moments(true_density(data, xs, ys), ys)}
    for label, model in models.items():
        with torch.no_grad():
            d = model.predictive_distribution(xs[:, None])
            panels[label] = (d.mean, d.stddev)
    fig, axes = _subplots(1, len(panels), figsize=(3.4 * len(panels), 3.2), sharey=True)
    for ax, (label, (mean, sd)) in zip(axes, panels.items(), strict=True):
        ax.scatter(data.train.x[:, 0], data.train.y, s=2, alpha=0.3, color="C7")
        ax.fill_between(xs, mean - 2 * sd, mean + 2 * sd, alpha=0.3, color="C0")
        ax.plot(xs, mean, color="C0")
        ax.set(title=label, xlabel="x", ylim=(ys[0], ys[-1]))
    axes[0].set_ylabel("y (mean +- 2 sd)")
    return _save(fig, path)


def density_figure(models, data, path: Path, quick: bool) -> Path:
    xs, ys = _grid(quick)
    maps = {"truth": true_density(data, xs, ys)}
    maps.update({label: model_density(m, xs, ys) for label, m in models.items()})
    return conditional_density_heatmaps(xs, ys, maps, path, title="p(y | x)")


def slices_figure(models, data, path: Path, quick: bool, num_samples: int) -> Path:
    x = torch.tensor(SLICES)[:, None]
    ys = torch.linspace(-3.5, 4.5, 400)
    truth = data.true_log_prob(x.repeat_interleave(len(ys), 0), ys.repeat(len(x))).exp()
    truth = truth.reshape(len(x), len(ys))
    fig, axes = _subplots(
        len(models), len(SLICES), figsize=(2.6 * len(SLICES), 2.0 * len(models)), sharex=True
    )
    for row, (label, model) in zip(axes, models.items(), strict=True):
        pyro.set_rng_seed(0)
        samples = predict(model, x, num_samples=num_samples, quantiles=()).samples
        for j, ax in enumerate(row):
            ax.hist(samples[:, j], bins=60, range=(-3.5, 4.5), density=True, color="C0", alpha=0.6)
            ax.plot(ys, truth[j], color="k", lw=1.2, label="truth")
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(label)
            if row is axes[0]:
                ax.set_title(f"x = {SLICES[j]:g}")
    axes[0][0].legend(loc="upper left", fontsize=7)
    fig.suptitle("predictive samples (histograms) and the true p(y | x)")
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default="reports/study", help="report folder (created)")
    p.add_argument("--quick", action="store_true", help="2 epochs and small sizes: a smoke run")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and of the training")
    args = p.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = zoo.datasets.load_toy(seed=args.seed, n_test=2_000 if args.quick else 20_000)
    true_nll = data.true_nll()
    trained = train_all(data, args.seed, args.quick)
    models = {label: m for label, (m, _) in trained.items()}
    metrics = {label: m for label, (_, m) in trained.items()}

    table = markdown_table(metrics, true_nll, len(data.test))
    (out / "table.md").write_text("# Seed study: the multimodal toy problem\n\n" + table)
    record = {"seed": args.seed, "true_nll": true_nll, "n_test": len(data.test), "models": metrics}
    (out / "metrics.json").write_text(json.dumps(record, indent=2, default=float) + "\n")
    bands_figure(models, data, out / "bands.png", args.quick)
    density_figure(models, data, out / "density.png", args.quick)
    slices_figure(models, data, out / "slices.png", args.quick, 500 if args.quick else 4000)
    print("\n" + table)
    print(f"report written to {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
