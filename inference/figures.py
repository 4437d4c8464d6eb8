"""The registry of plots a model may ask for by name in ``figures(dataset)``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from zoo.base import HasFigures

from . import plots, plots_density, plots_images, uncertainty

__all__ = ["PLOTS", "model_figures"]

#: Plot name -> function ``fn(**kwargs, path=...) -> Path``; a family's ``figures(dataset)``
#: returns ``{file stem: (plot name, kwargs)}`` with names from here.
PLOTS: dict[str, Callable[..., Path]] = {
    "calibration_curve": plots.calibration_curve,
    "reliability_diagram": plots.reliability_diagram,
    "prediction_intervals": plots.prediction_intervals,
    "pit_histogram": plots.pit_histogram,
    "training_curve": plots.training_curve,
    "confusion_matrix": plots.confusion_matrix,
    "image_grid": plots_images.image_grid,
    "scatter_2d": plots_images.scatter_2d,
    "density_heatmaps": plots_density.density_heatmaps,
    "samples_over_data": plots_density.samples_over_data,
    "conditional_density_heatmaps": plots_density.conditional_density_heatmaps,
    "uncertainty_1d": uncertainty.uncertainty_1d,
}


def model_figures(model, dataset, run_dir: str | Path) -> list[Path]:
    """Writes the figures a model describes through ``model.figures(dataset)`` (see
    :class:`zoo.base.HasFigures`) into ``run_dir``; a model without the hook has none."""
    if not isinstance(model, HasFigures):
        return []
    out = []
    for name, (plot, kwargs) in model.figures(dataset).items():
        if plot not in PLOTS:
            raise KeyError(
                f"{type(model).__name__}.figures asks for an unknown plot {plot!r}; "
                f"register it in inference.figures.PLOTS (known: {', '.join(PLOTS)})"
            )
        out.append(PLOTS[plot](**kwargs, path=Path(run_dir) / f"{name}.png"))
    return out
