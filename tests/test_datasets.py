"""Offline datasets: the toy problem's exact density, splits, and refusing bad data."""

from __future__ import annotations

import math

import pytest
import torch

import zoo
from zoo.datasets import load_dataset, toy_log_prob, toy_sample


def test_toy_true_density_integrates_to_one_and_matches_the_reference_nll():
    y = torch.linspace(-8, 8, 4001)
    for x0 in (-3.0, 0.0, 2.5):
        p = toy_log_prob(torch.full_like(y, x0)[:, None], y).exp()
        assert float(torch.trapezoid(p, y)) == pytest.approx(1.0, abs=1e-6)
    g = torch.Generator().manual_seed(1)
    x, y = toy_sample(200_000, g)
    assert float(-toy_log_prob(x, y).mean()) == pytest.approx(0.490, abs=0.01)


def test_toy_split_is_seeded_and_sized():
    a, b = load_dataset("toy", seed=3), load_dataset("toy", seed=3)
    torch.testing.assert_close(a.train.x, b.train.x)
    assert len(a.train) == 2000 and len(a.test) >= 20000
    assert not torch.equal(load_dataset("toy", seed=4).train.x, a.train.x)


def test_diabetes_is_standardized_on_train():
    d = load_dataset("diabetes")
    assert d.input_dim == 10
    assert float(d.train.y.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(d.train.y.std()) == pytest.approx(1.0, abs=1e-4)
    assert len(d.train) + len(d.val) + len(d.test) == 442


@pytest.mark.parametrize("name", ["breast_cancer", "digits", "wine", "iris"])
def test_classification_sets_have_every_class_in_every_split(name):
    d = load_dataset(name)
    for split in (d.train, d.val, d.test):
        assert set(split.y.tolist()) == set(range(d.num_classes))


def test_stratified_split_partitions_keeps_proportions_and_the_old_sizes():
    from sklearn.datasets import load_digits

    from zoo.datasets.sklearn_sets import _stratified_split

    y = torch.as_tensor(load_digits().target)
    counts = torch.bincount(y)
    tr, va, te = _stratified_split(y, (0.1, 0.2), seed=5)
    assert sorted(torch.cat([tr, va, te]).tolist()) == list(range(len(y)))  # a partition
    # sizes: per class round(fraction * count), summed (what the loaders always gave)
    assert (len(va), len(te)) == (
        sum(round(0.1 * int(c)) for c in counts),
        sum(round(0.2 * int(c)) for c in counts),
    )
    for part, f in ((va, 0.1), (te, 0.2)):  # each class within one of its share
        assert (torch.bincount(y[part], minlength=10) - f * counts).abs().max() <= 1.0
    again = _stratified_split(y, (0.1, 0.2), seed=5)
    assert all(torch.equal(a, b) for a, b in zip((tr, va, te), again, strict=True))
    assert not torch.equal(_stratified_split(y, (0.1, 0.2), seed=6)[1], va)
    tr0, va0, te0 = _stratified_split(y, (0.0, 0.2), seed=5)  # no validation split
    assert len(va0) == 0 and len(tr0) + len(te0) == len(y)


def test_unknown_dataset_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown dataset 'nope'; choose one of toy"):
        load_dataset("nope")


def test_bad_training_data_is_refused_before_training():
    model = zoo.build("regression")
    x = torch.randn(10, 1)
    y = torch.randn(10)
    with pytest.raises(zoo.DataError, match="contains NaN or inf"):
        model.check_data(torch.where(torch.arange(10)[:, None] == 4, math.nan, x), y)
    with pytest.raises(zoo.DataError, match="x has 10 rows but y has 9"):
        model.check_data(x, y[:9])
    with pytest.raises(zoo.DataError, match=r"shape \[N, features\]"):
        model.check_data(x[:, 0], y)
    with pytest.raises(zoo.DataError, match="2 features per row but the model expects 1"):
        model.check_data(torch.randn(10, 2), y)


def test_loaders_refuse_unknown_options_and_name_the_valid_ones():
    with pytest.raises(zoo.ConfigError, match=r"'toy' takes no option 'n_trian'; .* n_train"):
        load_dataset("toy", n_trian=5)
    with pytest.raises(zoo.ConfigError, match="'diabetes' takes no option 'data_dir'"):
        load_dataset("diabetes", data_dir="/tmp")
    assert "data_dir" in zoo.datasets.dataset_options("mnist")
