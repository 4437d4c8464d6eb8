"""predict, predictive_samples and evaluate check their inputs as fit does."""

from __future__ import annotations

import pytest
import torch

import zoo
from inference import evaluate, predict, predictive_samples

X = torch.randn(10, 1)

BAD_X = [
    (torch.tensor([[float("nan")]]), "x contains NaN or inf"),
    (torch.randn(10), r"x must have shape \[N, features\]; got \[10\]"),
    (torch.randn(10, 2), "x has 2 features per row but the model expects 1"),
    (torch.ones(10, 1, dtype=torch.long), "x must be a float tensor; got torch.int64"),
    (torch.randn(10, 1, dtype=torch.float64), "x is torch.float64 but the model computes in"),
    (torch.randn(0, 1), "x is empty"),
    (torch.randn(10, 1, 1), r"got \[10, 1, 1\] \(flatten it"),
]


@pytest.mark.parametrize(("x", "message"), BAD_X)
def test_predict_refuses_bad_x(x, message):
    model = zoo.build("regression", hidden=4)
    for call in (predict, predictive_samples):
        with pytest.raises(zoo.DataError, match=message):
            call(model, x, num_samples=5)


@pytest.mark.parametrize("num_samples", [0, -3, 2.5])
def test_predict_refuses_a_bad_number_of_samples(num_samples):
    with pytest.raises(zoo.ConfigError, match="num_samples must be an integer >= 1"):
        predict(zoo.build("regression", hidden=4), X, num_samples=num_samples)


def test_evaluate_takes_the_pairs_fit_takes_and_refuses_missing_targets():
    model = zoo.build("regression", hidden=4)
    y = torch.randn(10)
    m = evaluate(model, (X, y), num_samples=40)
    assert m["n"] == 10 and m["nll"] > 0
    with pytest.raises(zoo.DataError, match="evaluate needs targets y .* got y=None"):
        evaluate(model, (X, None))
    with pytest.raises(zoo.DataError, match=r"data must be a split with \.x and \.y or an"):
        evaluate(model, X)
