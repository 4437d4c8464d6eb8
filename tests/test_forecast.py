"""The forecast family: heads, scaling inside the distribution, paths, hooks, summaries, CLI."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pyro.infer import Predictive, Trace_ELBO

import zoo
from inference.forecast_summary import fan_chart, summarize_paths
from inference.forecasting import forecast_split, holdout
from zoo.base import SupportsForecast
from zoo.datasets import SeriesData
from zoo.forecast import SKIP_OUTPUTS, calendar_position
from zoo.forecast_heads import OUTPUTS, QuantileDistribution, make_head
from zoo.likelihoods import TargetError

ROOT = Path(__file__).resolve().parent.parent
TINY = {"hidden": 8, "layers": 1, "context_length": 4, "horizon": 3, "period": 4}


def tiny(**kw) -> zoo.Forecaster:
    return zoo.build("forecast", **{**TINY, **kw})


def series(n=3, t=40, period=4, kind="continuous", cov=0, seed=0) -> SeriesData:
    g = torch.Generator().manual_seed(seed)
    steps = torch.arange(t, dtype=torch.float32)
    level = 10 + 40 * torch.rand(n, 1, generator=g)
    v = level * (1 + 0.3 * torch.sin(2 * math.pi * steps / period)) + torch.randn(n, t, generator=g)
    v = v.clamp(min=0).round() if kind == "count" else v
    return SeriesData(
        "synthetic", v, period=period, freq="M", horizon=3, kind=kind,
        names=[f"s{i}" for i in range(n)], time=np.datetime64("2000-01", "M") + np.arange(t),
        covariates=torch.randn(n, t, cov, generator=g) if cov else None,
        covariate_names=[f"c{i}" for i in range(cov)],
    )  # fmt: skip


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("rnn", ["gru", "lstm"])
def test_every_head_trains_and_samples_paths(output, rnn):
    model = tiny(output=output, rnn=rnn, num_covariates=1)
    x = model.example_inputs(6)
    y = Predictive(model, num_samples=1)(x)["obs"][0]
    loss = Trace_ELBO()(model, model.guide)(x, y)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters())
    paths = Predictive(model, num_samples=9, parallel=True)(x)["obs"]
    assert paths.shape == (9, 6, 3) and torch.isfinite(paths).all()
    if model.target_kind == "count":
        assert (paths >= 0).all() and (paths == paths.round()).all()


@pytest.mark.parametrize("output", OUTPUTS)
def test_the_held_out_nll_is_named_for_what_the_head_scores(output):
    # the quantile head's log_prob is its pinball loss as asymmetric-Laplace densities: a
    # quasi-likelihood over 13 levels, reported apart from the densities of the other heads
    from inference.evaluate import forecast_path_metrics

    model = tiny(output=output)
    x = model.example_inputs(5)
    y = Predictive(model, num_samples=1)(x)["obs"][0]
    out = forecast_path_metrics(model, x, y, 40)
    key = "quasi_nll" if output == "quantile" else "nll"
    assert math.isfinite(out[key]) and ({"nll", "quasi_nll"} - {key}).isdisjoint(out)


@pytest.mark.parametrize(
    "output, skip, log",
    [(o, False, False) for o in OUTPUTS]
    + [(o, s, True) for o in SKIP_OUTPUTS for s in (False, True)]
    + [(o, True, False) for o in SKIP_OUTPUTS],
)
def test_path_log_prob_is_the_sum_of_autoregressive_step_densities(output, skip, log):
    # log_prob (teacher forcing in one RNN call) and sample (one step at a time) must agree
    model = tiny(output=output, seasonal_skip=skip, log_target=log).eval()
    x = model.example_inputs(5)
    with torch.no_grad():
        d = model.predictive_distribution(x)
        y = d.sample()
        state, z, features, scale = d._flat()
        total = torch.zeros(5)
        for h in range(y.shape[1]):
            step, state = model.step_dist(state, z, features[:, h : h + 1], scale)
            total += step.log_prob(y[:, h : h + 1])[:, 0]
            z = torch.cat([z, (y[:, h] / scale)[:, None]], -1)
        torch.testing.assert_close(d.log_prob(y), total, rtol=1e-4, atol=1e-4)


def test_seasonal_skip_centres_each_step_on_the_value_one_period_back():
    model = tiny(output="normal", seasonal_skip=True).eval()
    with torch.no_grad():
        model.proj.weight.zero_()
        model.proj.bias.zero_()  # the network predicts no change: the seasonal naive path
    x = model.example_inputs(6)
    d = model.predictive_distribution(x)
    y = d.sample()
    state, z, features, scale = d._flat()
    zz = torch.cat([z, y / scale[:, None]], -1)
    step = model.path_dist(state, zz, features, scale)
    period, p = model.config.period, model.past_length
    lagged = torch.cat([x[:, :p, 0], y], -1)[:, p - period : p - period + y.shape[1]]
    half = torch.full_like(lagged, 0.5)
    torch.testing.assert_close(step.icdf(half), lagged)
    plain = tiny(output="normal").eval()
    plain.load_state_dict(model.state_dict())
    step = plain.path_dist(state, zz, features, scale)
    torch.testing.assert_close(step.icdf(half), torch.zeros_like(lagged))  # control: no skip


def test_log_target_is_a_log_normal_in_data_units_with_positive_paths():
    # an independent reference: Normal over log(y / scale) is LogNormal(loc + log scale, sigma)
    head = make_head("normal", log=True)
    out = torch.randn(40, head.num_outputs)
    scale = 3 + torch.rand(40)
    d = head(out, scale)
    base = head.likelihood(out)  # the Normal of the log of the scaled value
    assert isinstance(base, torch.distributions.Normal)
    ref = torch.distributions.LogNormal(base.loc + scale.log(), base.scale)
    y = ref.sample((7,))
    torch.testing.assert_close(d.log_prob(y), ref.log_prob(y))
    model = tiny(output="studentt", log_target=True).eval()
    paths = Predictive(model, num_samples=50, parallel=True)(model.example_inputs(6))["obs"]
    assert paths.shape == (50, 6, 3) and (paths > 0).all()


def test_log_target_with_seasonal_skip_centres_on_the_value_one_period_back():
    model = tiny(output="normal", seasonal_skip=True, log_target=True).eval()
    with torch.no_grad():
        model.proj.weight.zero_()
        model.proj.bias.zero_()  # no log change: the median is the seasonal naive path
    x = model.example_inputs(6)
    d = model.predictive_distribution(x)
    y = d.sample()
    state, z, features, scale = d._flat()
    step = model.path_dist(state, torch.cat([z, y / scale[:, None]], -1), features, scale)
    period, p = model.config.period, model.past_length
    lagged = torch.cat([x[:, :p, 0], y], -1)[:, p - period : p - period + y.shape[1]]
    torch.testing.assert_close(step.icdf(torch.full_like(lagged, 0.5)), lagged)


def test_log_target_refuses_non_positive_values_and_outputs_without_a_location():
    model = tiny(output="studentt", log_target=True)
    x = model.example_inputs(4)
    y = torch.ones(4, 3)
    y[3, 2] = 0.0
    with pytest.raises(TargetError, match=r"must be positive.*row 3, step 2 has 0.0"):
        model.check_data(x, y)
    x[2, 1, 0] = -1.0
    with pytest.raises(TargetError, match=r"must be positive.*row 2, step 1 has -1.0"):
        model.check_data(x, torch.ones(4, 3))
    s = series()
    s.values[2, 7] = -0.5
    with pytest.raises(zoo.DataError, match="positive values.*series 's2' has -0.5 at position 7"):
        model.training_windows(s)
    for output in ("quantile", "binned", "poisson", "negbinomial"):
        with pytest.raises(ValueError, match="log_target needs one of the outputs"):
            tiny(output=output, log_target=True)


def test_data_turns_log_target_on_for_positive_series_without_covariates():
    over = zoo.Forecaster.data_overrides
    assert over(series())["log_target"] == "auto"
    assert "log_target" not in over(series(cov=1))  # covariates: off (elecdemand, measured)
    assert "log_target" not in over(series(kind="count"))
    s = series()
    s.values[0, 3] = 0.0
    assert "log_target" not in over(s)
    # "auto" is on for the outputs with a location, off for the others, whatever the user picks
    assert tiny(log_target="auto").log_target and not tiny().log_target
    model = tiny(log_target="auto", output="quantile")
    assert not model.log_target and not model.head.log
    with pytest.raises(ValueError, match="log_target"):
        tiny(log_target="maybe")
    with pytest.raises(ValueError, match="log_target must be true, false or 'auto'"):
        zoo.forecast.ForecastConfig(log_target="maybe").validate()


@pytest.mark.parametrize("kw", [{"output": "quantile"}, {"output": "poisson"}, {"period": 1}])
def test_seasonal_skip_is_refused_where_it_has_no_meaning(kw):
    with pytest.raises(ValueError, match="seasonal_skip"):
        tiny(**{"seasonal_skip": True, **kw})
    with pytest.raises(ValueError, match="seasonal_skip"):
        zoo.build("forecast", period=12, context_length=4, lags=[1], seasonal_skip=True)


def test_parallel_and_sequential_predictive_draw_from_the_same_paths():
    model = tiny(output="normal").eval()
    x = model.example_inputs(4)
    torch.manual_seed(1)
    a = Predictive(model, num_samples=4000, parallel=True)(x)["obs"]
    b = Predictive(model, num_samples=400, parallel=False)(x)["obs"]
    assert a.shape == (4000, 4, 3) and b.shape == (400, 4, 3)
    se = a.std(0) / math.sqrt(400)
    assert ((a.mean(0) - b.mean(0)).abs() < 5 * se).all()


@pytest.mark.parametrize(
    "name, log",
    [(n, False) for n in ("normal", "studentt", "mixture", "quantile", "binned")]
    + [(n, True) for n in SKIP_OUTPUTS],
)
def test_continuous_heads_undo_the_scale_in_the_distribution(name, log):
    head = make_head(name, log=log)
    out = torch.randn(50, head.num_outputs)
    torch.manual_seed(0)
    unit = head(out, torch.ones(50))
    unit_draws = unit.sample((20,))
    torch.manual_seed(0)
    scaled = head(out, torch.full((50,), 7.0))
    # the same outputs and draws at 7 times the scale: 7 times the value, density / 7 (the
    # quantile head's quasi-likelihood is a product of one density per level)
    torch.testing.assert_close(scaled.sample((20,)), 7 * unit_draws)
    per = len(head.levels) if name == "quantile" else 1
    torch.testing.assert_close(
        scaled.log_prob(7 * unit_draws), unit.log_prob(unit_draws) - per * math.log(7.0)
    )


@pytest.mark.parametrize("name", ["negbinomial", "poisson"])
def test_count_heads_multiply_the_mean_by_the_scale(name):
    head = make_head(name)
    out = torch.randn(50, head.num_outputs)
    torch.testing.assert_close(
        head(out, torch.full((50,), 7.0)).mean, 7 * head(out, torch.ones(50)).mean
    )


def test_quantile_head_is_pinball_loss_and_samples_its_quantiles():
    levels = torch.tensor([0.1, 0.5, 0.9])
    q = torch.tensor([[-1.0, 0.0, 2.0]])
    s = torch.tensor([3.0])
    d = QuantileDistribution(q * s, levels, s)
    y = torch.tensor([[-5.0], [0.5], [9.0]])
    pinball = sum(
        ((y[:, 0] - q[0, k] * 3) * (levels[k] - (y[:, 0] < q[0, k] * 3).float())) for k in range(3)
    )
    lp = d.expand(torch.Size([3])).log_prob(y[:, 0])
    # log_prob = -pinball / scale + a constant that does not depend on y
    const = lp + pinball / 3
    torch.testing.assert_close(const, const[:1].expand(3))
    draws = d.sample((200000,))[:, 0]
    for k in range(3):
        assert float(torch.quantile(draws, levels[k])) == pytest.approx(
            float(q[0, k] * 3), abs=0.05
        )
    # the tails are unbounded, beyond the outermost levels
    assert draws.min() < -3.0 and draws.max() > 6.0


def test_binned_head_is_a_density_in_data_units():
    head = make_head("binned", num_bins=50, bin_range=(-2.0, 3.0))
    d = head(torch.randn(1, 50), torch.tensor([4.0]))
    dy = 20.0 / 100000
    grid = -8.0 + dy * (torch.arange(100000, dtype=torch.float64) + 0.5)  # bin midpoints
    mass = d.log_prob(grid[:, None].float()).double().exp().sum() * dy
    assert float(mass) == pytest.approx(1.0, abs=1e-3)
    draws = d.sample((5000,))
    assert draws.min() >= -8.0 and draws.max() <= 12.0


def test_count_heads_refuse_negative_and_fractional_targets_with_row_and_step():
    model = tiny(output="negbinomial")
    x = model.example_inputs(4)
    y = torch.ones(4, 3)
    y[2, 1] = -1.0
    with pytest.raises(TargetError, match=r"non-negative integers.*row 2, step 1 has -1.0"):
        model.check_data(x, y)
    x[1, 0, 0] = float("nan")
    with pytest.raises(zoo.DataError, match="NaN or inf at row 1, step 0"):
        model.check_data(x, torch.ones(4, 3))
    s = series(kind="count")
    s.values[1, 5] = -2.0
    with pytest.raises(zoo.DataError, match="series 's1' has -2.0 at position 5"):
        model.training_windows(s)


def test_hooks_windows_and_forecast_inputs():
    data = series(n=3, t=40, cov=2)
    model = zoo.build("forecast", **{**TINY, **zoo.Forecaster.data_overrides(data)})
    assert isinstance(model, SupportsForecast)
    assert model.config.num_covariates == 2 and model.config.period == 4
    x, y = model.training_windows(data)
    p = model.past_length
    assert x.shape[1:] == (p + 3, 4) and y.shape == (len(x), 3)
    assert (x[:, p:, 0] == 0).all()  # the targets to forecast are not in the inputs
    # the most recent window ends at the last step
    per_series = len(x) // 3
    torch.testing.assert_close(y[per_series - 1], data.values[0, -3:])
    history, future = holdout(data, 5)
    split = forecast_split(model, history, future)
    assert split.x.shape == (3, p + 5, 4)
    # calendar positions of the future steps are those of the held-out steps
    full = calendar_position(data.time, "M", 4)
    torch.testing.assert_close(split.x[0, -5:, 1], full[-5:])
    torch.testing.assert_close(split.x[:, -5:, 2:], future.covariates)
    paths = Predictive(model, num_samples=6, parallel=True)(split.x)["obs"]
    assert paths.shape == (6, 3, 5)
    with pytest.raises(zoo.DataError, match="pass future_covariates"):
        model.forecast_inputs(history, 5)
    with pytest.raises(zoo.DataError, match="too short for a forecast"):
        model.forecast_inputs(data.slice(0, p - 1), 2, torch.zeros(3, 2, 2))


@pytest.mark.parametrize("history", [0, 2, 10, 25, 1000])
def test_train_history_keeps_the_windows_targets_in_the_last_steps(history):
    data = series(n=2, t=40)
    # each value is its position + 1, so a window's first target tells where it starts
    data.values = torch.arange(1, 41, dtype=torch.float32).expand(2, -1).clone()
    model = tiny(train_history=history, max_windows=1000)
    x, y = model.training_windows(data)
    first = (y[:, 0] - 1).long()
    p, h = model.past_length, model.config.horizon
    assert int(first.max()) == 40 - h  # the most recent window is always there
    lowest = p if history in (0, 1000) else max(p, 40 - max(history, h))
    assert int(first.min()) == lowest
    assert len(first.unique()) == 40 - h - lowest + 1  # every start in range, none outside
    with pytest.raises(ValueError, match="train_history must be >= 0"):
        tiny(train_history=-1)


def test_crps_validation_scores_fixed_autoregressive_draws_and_leaves_the_rng_alone():
    from inference.metrics import crps_samples

    data = series(n=3, t=40)
    model = tiny(val_metric="crps", val_samples=50)
    history, future = holdout(data, 6)
    split = forecast_split(model, history, future)
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    score = model.val_score(split.x, split.y)
    torch.testing.assert_close(torch.rand(3), before)  # the caller's stream goes on untouched
    assert model.val_score(split.x, split.y) == score  # the same draws every call
    torch.manual_seed(0)
    d = model.predictive_distribution(split.x)
    paths = d.sample((50,))  # [S, N, H], fed back step by step
    ref = crps_samples(paths.reshape(50, -1), split.y.reshape(-1)).reshape(3, 6)
    assert score == pytest.approx(float((ref / d.scale[:, None]).mean()), rel=1e-5)
    # the teacher-forced score is a different number on the same weights
    nll = tiny(val_metric="nll")
    nll.load_state_dict(model.state_dict())
    assert nll.val_score(split.x, split.y) != pytest.approx(score, rel=1e-2)
    # the scores report the NLL as the NLL whatever early-stopped the model
    from inference.evaluate import forecast_path_metrics

    m = forecast_path_metrics(model, split.x, split.y, num_samples=20, chunk_size=20)
    assert m["nll"] == pytest.approx(nll.val_score(split.x, split.y), rel=1e-6)
    with pytest.raises(ValueError, match="val_metric must be"):
        tiny(val_metric="mse")


def _member(ensemble, k: int, **kw) -> zoo.Forecaster:
    """Member ``k`` of ``ensemble`` as a model of its own (its weights under a single's keys)."""
    single = tiny(**kw)
    state = {}
    for key, value in ensemble.state_dict().items():
        if key.startswith(("member_rnns.", "member_projs.")):
            group, index, rest = key.split(".", 2)
            if int(index) == k - 1:
                state[f"{group[len('member_') : -1]}.{rest}"] = value
        elif k == 0 or not key.startswith(("rnn.", "proj.")):
            state[key] = value
    single.load_state_dict(state)
    return single


@pytest.mark.parametrize("output", ["studentt", "negbinomial", "quantile"])
def test_an_ensemble_trains_each_member_on_its_own_likelihood(output):
    # the ELBO with q(member) uniform is the mean of the members' log likelihoods, computed
    # exactly: the loss and every member's gradient are those of the member fitted alone / K
    torch.manual_seed(0)
    ens = tiny(members=3, output=output)
    x = ens.example_inputs(7)
    y = Predictive(ens, num_samples=1)(x)["obs"][0]
    loss = Trace_ELBO().differentiable_loss(ens, ens.guide, x, y)
    loss.backward()
    singles = [_member(ens, k, output=output) for k in range(3)]
    alone = [Trace_ELBO().differentiable_loss(m, m.guide, x, y) for m in singles]
    torch.testing.assert_close(loss, sum(alone) / 3)
    alone[2].backward()
    grads = dict(ens.named_parameters())
    for name, p in singles[2].named_parameters():
        if name.startswith(("rnn.", "proj.")):
            group, rest = name.split(".", 1)
            mine = grads[f"member_{group}s.1.{rest}"].grad
            torch.testing.assert_close(mine, p.grad / 3)
    # members start from their own initializations; member 0 is what a single model draws
    torch.manual_seed(5)
    one = tiny(output=output)
    torch.manual_seed(5)
    first = tiny(members=3, output=output)
    torch.testing.assert_close(first.proj.weight, one.proj.weight)
    assert not torch.equal(first.member_projs[0].weight, first.proj.weight)


def test_an_ensembles_paths_are_its_members_paths_pooled():
    ens = tiny(members=3, output="normal").eval()
    with torch.no_grad():
        for k, proj in enumerate([ens.proj, *ens.member_projs]):
            proj.weight.zero_()
            proj.bias.zero_()
            proj.bias[0] = 10.0 * (k + 1)  # member k's location: 10 (k + 1) scaled units
    x = ens.example_inputs(5)
    torch.manual_seed(0)
    for parallel in (True, False):
        out = Predictive(ens, guide=ens.guide, num_samples=600, parallel=parallel)(x)
        assert out["obs"].shape == (600, 5, 3) and out["member"].shape == (600, 5)
        scale = ens.predictive_distribution(x).scale
        level = (out["obs"] / scale[:, None]).mean(-1)
        # every path is the path of the member drawn for it, and the members are drawn evenly
        torch.testing.assert_close(level.div(10).round() - 1, out["member"].float())
        share = torch.stack([(out["member"] == k).float().mean() for k in range(3)])
        assert ((share - 1 / 3).abs() < 0.04).all()
    # the predictive density is the members' mixture: the mean of their densities
    y = out["obs"][0]
    d = ens.predictive_distribution(x)
    members = torch.stack([_member(ens, k, output="normal").predictive_distribution(x).log_prob(y)
                           for k in range(3)])  # fmt: skip
    torch.testing.assert_close(d.log_prob(y), members.exp().mean(0).log())
    given = d.given(torch.tensor([2, 0, 1, 1, 0]))
    torch.testing.assert_close(given.log_prob(y), members.T[range(5), [2, 0, 1, 1, 0]])
    with pytest.raises(ValueError, match="members must be >= 1"):
        tiny(members=0)


def test_an_ensemble_fits_saves_and_scores_like_a_single_model(tmp_path):
    from inference import fit
    from inference.evaluate import forecast_path_metrics

    data = series(n=3, t=40)
    ens = tiny(members=2)
    history, future = holdout(data, 3)
    split = forecast_split(ens, history, future)
    hist = fit(ens, ens.training_windows(history), split, epochs=3, quiet=True, device="cpu")
    assert len(hist.rows) == 3 and all(math.isfinite(r["val"]) for r in hist.rows)
    zoo.save(ens, tmp_path)
    loaded = zoo.load(tmp_path)
    assert loaded.members == 2
    torch.manual_seed(0)
    a = forecast_path_metrics(ens, split.x, split.y, 50)
    torch.manual_seed(0)
    b = forecast_path_metrics(loaded, split.x, split.y, 50)
    assert a == b and math.isfinite(a["nll"]) and math.isfinite(a["crps"])


def test_calendar_positions_follow_the_time_labels():
    months = np.datetime64("2001-03", "M") + np.arange(5)
    assert calendar_position(months, "M", 12).tolist() == [2, 3, 4, 5, 6]
    quarters = np.datetime64("1998-01", "M") + 3 * np.arange(5)
    assert calendar_position(quarters, "Q", 4).tolist() == [0, 1, 2, 3, 0]
    days = np.datetime64("2024-01-01") + np.arange(3)  # a Monday
    assert calendar_position(days, "D", 7).tolist() == [0, 1, 2]


def test_summary_matches_numpy_and_counts_exceedances():
    torch.manual_seed(0)
    paths = torch.randn(500, 3, 4, dtype=torch.float64) * torch.arange(1.0, 4.0)[:, None] + 10
    s = summarize_paths(paths)
    a = paths.double().numpy()
    np.testing.assert_allclose(s.mean.numpy(), a.mean(0))
    lo, hi = s.intervals[0.9]
    np.testing.assert_allclose(lo.numpy(), np.quantile(a, 0.05, axis=0))
    np.testing.assert_allclose(hi.numpy(), np.quantile(a, 0.95, axis=0))
    thr = torch.tensor([[10.0], [11.0], [9.0]])
    np.testing.assert_allclose(s.exceedance(thr).numpy(), (a > thr.numpy()).mean(0))
    assert set(s.intervals) == {0.5, 0.8, 0.9, 0.95}


def test_fan_chart_writes_a_png(tmp_path):
    paths = torch.randn(100, 2, 5)
    out = fan_chart(torch.randn(2, 20), summarize_paths(paths), tmp_path / "forecast.png",
                    truth=torch.randn(2, 5), names=["a", "b"])  # fmt: skip
    assert out.stat().st_size > 5000


def test_fits_a_seasonal_series_better_than_the_mean(tmp_path):
    # the true model's own data: a seasonal series with noise 1, about 90% of it covered
    from inference import fit, predict

    data = series(n=8, t=60, seed=3)
    history, future = holdout(data, 4)
    torch.manual_seed(0)
    model = zoo.build("forecast", hidden=16, layers=1, context_length=8, horizon=4, period=4)
    fit(model, model.training_windows(history), epochs=60, lr=1e-2, quiet=True, device="cpu")
    paths = predict(model, forecast_split(model, history, future).x, 400).samples
    err = (paths.median(0).values - future.values).abs().mean()
    naive = (history.values.mean(1, keepdim=True) - future.values).abs().mean()
    assert err < 0.5 * naive


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "error::UserWarning", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train.py"), "--model", "forecast", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


BAD = [
    (["--dataset", "us_employment", "--data-args", "series=CEU1011330001,CEU0500000001"],
     "has NaN or inf values at position 0"),
    (["--dataset", "visnights", "--data-args", "horizon=80"], "horizon 80 must be between 1"),
    (["--dataset", "visnights", "--data-args", "horizon=70"], "held-out horizon 70 leaves 6"),
    (["--dataset", "airpassengers", "--set", "context_length=140"], "context_length 140"),
    (["--dataset", "visnights", "--set", "output=poisson"], "needs non-negative integer counts"),
    (["--dataset", "visnights", "--set", "output=weibull"], "output 'weibull' is unknown"),
    (["--dataset", "airpassengers", "--calibration-points", "-1"],
     "--calibration-points must be >= 0"),
    (["--dataset", "airpassengers", "--data-args", "horizon=12.5"],
     "horizon must be a whole number of steps; got '12.5'"),
    (["--dataset", "airpassengers", "--baselines", "seasonal_naive,bogus"],
     "--baselines: unknown baseline(s) ['bogus']; choose from"),
    (["--dataset", "airpassengers", "--backtest-windows", "-1"], "--backtest-windows must be >= 0"),
    *[(["--dataset", "airpassengers", "--calibration-growth", g],
       "--calibration-growth must lie in [0, 2]") for g in ("nan", "-0.5", "inf")],
]  # fmt: skip


@pytest.mark.parametrize(("args", "message"), BAD)
def test_bad_series_input_exits_2_with_one_line(args, message, tmp_path):
    r = run(*args, "--epochs", "1", "--out", str(tmp_path / "r"), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.stderr
    assert not (tmp_path / "r").exists()  # refused before a run folder was made


def train_airpassengers(tmp_path, name: str, *args: str, epochs: int = 1):
    """A small AirPassengers run: its folder, the finished process and its metrics."""
    out = tmp_path / name
    small = ("--set", "hidden=8", "layers=1")  # --set takes the rest: it goes last
    r = run("--dataset", "airpassengers", "--epochs", str(epochs), "--quiet", "--num-samples",
            "40", "--out", str(out), *args, *small, cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return out, r, json.loads((out / "metrics.json").read_text())


def test_train_writes_fan_chart_backtest_and_baseline_table(tmp_path):
    out, r, m = train_airpassengers(
        tmp_path, "run", "--backtest-windows", "1", "--baselines", "seasonal_naive", epochs=2
    )
    assert m["kind"] == "forecast" and m["horizon"] == 36 and len(m["per_horizon"]["crps"]) == 36
    assert set(m["backtest"]) == {"num_windows", "model", "seasonal_naive"}
    assert len(m["backtest"]["model"]["per_horizon"]["wql"]) == 36
    assert "| seasonal_naive |" in (out / "baselines.md").read_text()
    assert (out / "forecast.png").stat().st_size > 5000
    assert "rolling-origin backtest" in r.stdout
    # the run is calibrated, and the factor travels with the weights to scripts/evaluate.py
    # its factor rests on the model's forecast of the last 12 months and, as 12 points are
    # too few, a second model's forecasts of the last 24 (held out of its training; 24 months
    # are a quarter of the 108 the holdout leaves)
    assert m["calibration"]["factor"] > 0 and m["calibration"]["points"] == 12 + 24
    assert m["calibrated"]["coverage_90"] >= 0 and "crps" in m["calibrated"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    e = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "evaluate.py"), str(out), "--num-samples", "40"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert e.returncode == 0, e.stderr
    again = json.loads((out / "metrics_eval.json").read_text())
    assert again["calibration"] == m["calibration"]
    assert again["calibrated"]["crps"] == pytest.approx(m["calibrated"]["crps"], rel=0.25)
    # seeded: the same command gives the same scores, and the fan chart is redrawn
    e = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "evaluate.py"), str(out), "--num-samples", "40",
         "--out", str(tmp_path / "again")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert e.returncode == 0, e.stderr
    assert json.loads((tmp_path / "again" / "metrics_eval.json").read_text()) == again
    assert (tmp_path / "again" / "forecast.png").stat().st_size > 5000
    # 36 months forecast, 12 validated: past them the factor grows as sqrt(h / 12); a factor
    # saved before it could grow (no "growth" in config.json) is applied as it was then, flat
    assert m["calibration"]["steps"] == 12 and m["calibration"]["growth"] == 0.5
    config = json.loads((out / "config.json").read_text())
    assert config["interval_factor"] == m["calibration"]
    del config["interval_factor"]["growth"]
    (out / "config.json").write_text(json.dumps(config))
    e = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "evaluate.py"), str(out), "--num-samples", "40",
         "--out", str(tmp_path / "old")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert e.returncode == 0, e.stderr
    old = json.loads((tmp_path / "old" / "metrics_eval.json").read_text())
    assert old["calibration"]["growth"] == 0
    assert old["crps"] == again["crps"]  # the same raw draw: the calibrated widths compare
    new_w, old_w = (r["calibrated"]["per_horizon"]["width_90"] for r in (again, old))
    assert new_w[:12] == old_w[:12]  # max(factor, 1) on the validated months, either way
    # later, the widths scale by max(f sqrt(h / 12), 1) / max(f, 1) exactly, but where the
    # widened 5% quantile falls below 0 (this 2-epoch model is vague), positive paths are
    # clamped: a little less widened
    f = m["calibration"]["factor"]

    def grown(h):
        return max(f * math.sqrt(h / 12), 1) / max(f, 1)

    ratios = [new_w[h - 1] / (old_w[h - 1] * grown(h)) for h in range(13, 37)]
    assert all(0.95 < r < 1 + 1e-5 for r in ratios), ratios
    assert sum(abs(r - 1) < 1e-5 for r in ratios) >= 12, ratios


def test_train_calibration_points_0_calibrates_on_the_models_own_validation_only(tmp_path):
    out, _, m = train_airpassengers(
        tmp_path, "own", "--backtest-windows", "0", "--calibration-points", "0"
    )
    assert m["calibration"]["points"] == 12  # the last 12 months, no second model
    assert json.loads((out / "config.json").read_text())["calibration_points"] == 0


def test_train_without_interval_calibration_scores_the_raw_paths_only(tmp_path):
    out, _, m = train_airpassengers(
        tmp_path, "raw", "--backtest-windows", "0", "--no-interval-calibration"
    )
    assert "calibrated" not in m and "calibration" not in m and "backtest" not in m
    config = json.loads((out / "config.json").read_text())
    assert config["interval_calibration"] is False and config["interval_factor"] is None
