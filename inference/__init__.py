"""Training, device placement, predictive sampling and evaluation for any zoo model.

Nothing here names a model family: it works through the model contract (``forward(x, y)``
is the Pyro model, ``model.guide`` its guide, ``metric_kind`` says which metrics apply).
"""

from .device import DeviceError, resolve_device, to_device
from .evaluate import evaluate, write_plots
from .fit import FitConfig, History, TrainingDiverged, fit, make_elbo, seed_everything
from .predict import Prediction, log_likelihood, predict, predictive_samples

__all__ = [
    "DeviceError",
    "FitConfig",
    "History",
    "Prediction",
    "TrainingDiverged",
    "evaluate",
    "fit",
    "log_likelihood",
    "make_elbo",
    "predict",
    "predictive_samples",
    "resolve_device",
    "seed_everything",
    "to_device",
    "write_plots",
]
