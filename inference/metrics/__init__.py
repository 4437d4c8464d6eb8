"""Proper scoring rules, calibration and sharpness metrics for predictive distributions.

One module per seam: `validation` (input checks), `sorting` (the one chunked sort of samples),
`special` (incomplete beta, Student-t CDF), `crps`, `discrete` (integer predictives: CDF
tables, the randomized PIT), `view` (a distribution or a sample set behind one interface),
`calibration` (quantiles, intervals, PIT, proportions, interval and pinball scores),
`regression` (NLL and the aggregate of scalar-target metrics), `multivariate` (energy score,
marginals per dimension), `classification`, `density` and `forecast` (scores of sample paths
[S, N, H]: MASE, wQL, MAPE, coverage, exceedance Brier). Every name is importable from
`inference.metrics` as before the split.
"""

from .calibration import (
    calibration_proportions,
    central_intervals,
    interval_coverage,
    interval_score,
    mean_absolute_calibration_error,
    miscalibration_area,
    pinball_loss,
    pit_values,
    predictive_quantiles,
    root_mean_squared_calibration_error,
)
from .classification import (
    accuracy,
    adaptive_ece,
    brier_score,
    classification_metrics,
    classwise_ece,
    expected_calibration_error,
    log_loss,
    reliability_data,
)
from .crps import (
    _student_t_cdf,  # noqa: F401  (tests cross-check it)
    crps,
    crps_beta,
    crps_gamma,
    crps_integer,
    crps_laplace,
    crps_lognormal,
    crps_normal,
    crps_normal_mixture,
    crps_poisson,
    crps_samples,
    crps_student_t,
)
from .density import (
    bits_per_dim,
    elbo_from_log_weights,
    iwae_bound,
    iwae_from_log_weights,
)
from .discrete import is_discrete, randomized_pit
from .forecast import (
    crps_paths,
    exceedance_brier,
    forecast_metrics,
    mean_weighted_quantile_loss,
    seasonal_scale,
    weighted_quantile_loss,
)
from .multivariate import energy_score, multivariate_metrics
from .regression import (
    nll,
    nll_from_log_likelihoods,
    regression_metrics,
)
from .sorting import _sorted_rows  # noqa: F401  (tests cross-check it)
from .validation import (
    DEFAULT_LEVELS,
    PredictiveLike,
)

__all__ = [
    "crps_paths",
    "exceedance_brier",
    "forecast_metrics",
    "mean_weighted_quantile_loss",
    "seasonal_scale",
    "weighted_quantile_loss",
    "DEFAULT_LEVELS",
    "PredictiveLike",
    "nll",
    "nll_from_log_likelihoods",
    "crps",
    "crps_normal",
    "crps_laplace",
    "crps_student_t",
    "crps_normal_mixture",
    "crps_samples",
    "predictive_quantiles",
    "central_intervals",
    "interval_coverage",
    "pit_values",
    "calibration_proportions",
    "mean_absolute_calibration_error",
    "root_mean_squared_calibration_error",
    "miscalibration_area",
    "interval_score",
    "pinball_loss",
    "regression_metrics",
    "energy_score",
    "multivariate_metrics",
    "is_discrete",
    "randomized_pit",
    "crps_lognormal",
    "crps_gamma",
    "crps_beta",
    "crps_poisson",
    "crps_integer",
    "accuracy",
    "log_loss",
    "brier_score",
    "reliability_data",
    "expected_calibration_error",
    "classwise_ece",
    "adaptive_ece",
    "classification_metrics",
    "bits_per_dim",
    "elbo_from_log_weights",
    "iwae_from_log_weights",
    "iwae_bound",
]
