"""The epistemic / aleatoric decomposition against closed forms and sampled mixtures."""

from __future__ import annotations

import math

import pyro.distributions as dist
import pytest
import torch

from inference.uncertainty import class_uncertainty, decompose, regression_uncertainty


def test_regression_split_is_the_law_of_total_variance():
    g = torch.Generator().manual_seed(0)
    locs = torch.randn(50, 3, generator=g)  # 50 draws, 3 points
    scales = 0.2 + torch.rand(50, 3, generator=g)
    u = regression_uncertainty(dist.Normal(locs, scales))
    torch.testing.assert_close(u.mean, locs.mean(0))
    torch.testing.assert_close(u.epistemic, locs.var(0, unbiased=False))
    torch.testing.assert_close(u.aleatoric, scales.pow(2).mean(0))
    # the mixture's variance, from samples of the mixture itself
    mix = dist.MixtureSameFamily(
        dist.Categorical(logits=torch.zeros(3, 50)), dist.Normal(locs.T, scales.T)
    )
    samples = mix.sample((200_000,))
    torch.testing.assert_close(u.total, samples.var(0), rtol=0.02, atol=0)
    torch.testing.assert_close(u.std, u.total.sqrt())


def test_regression_split_with_vector_targets_and_one_draw():
    d = dist.Normal(torch.zeros(1, 4, 2), torch.ones(1, 4, 2)).to_event(1)
    u = decompose(d)
    assert u.mean.shape == (4, 2)
    assert torch.equal(u.epistemic, torch.zeros(4, 2))
    assert torch.equal(u.aleatoric, torch.ones(4, 2))


def test_class_split_known_answers():
    # two confident draws that disagree: all the entropy is epistemic (log 2)
    probs = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    u = class_uncertainty(probs)
    assert float(u.total[0]) == pytest.approx(math.log(2))
    assert float(u.aleatoric[0]) == pytest.approx(0.0)
    assert float(u.mutual_information[0]) == pytest.approx(math.log(2))
    # draws that agree on a uniform distribution: all aleatoric, no mutual information
    u = class_uncertainty(torch.full((5, 1, 4), 0.25))
    assert float(u.total[0]) == pytest.approx(math.log(4))
    assert float(u.expected_entropy[0]) == pytest.approx(math.log(4))
    assert float(u.epistemic[0]) == pytest.approx(0.0, abs=1e-6)


def test_class_split_from_distributions():
    logits = torch.randn(30, 7, 3)
    u = decompose(dist.Categorical(logits=logits))
    torch.testing.assert_close(u.probs.sum(-1), torch.ones(7))
    assert (u.epistemic >= 0).all() and (u.total <= math.log(3) + 1e-6).all()
    ub = decompose(dist.Bernoulli(logits=torch.randn(30, 7)))
    assert ub.probs.shape == (7, 2)
    assert (ub.total >= ub.aleatoric - 1e-6).all()


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="batch \\[S, N\\]"):
        regression_uncertainty(dist.Normal(torch.zeros(3), 1.0))
    with pytest.raises(ValueError, match="probs must be"):
        class_uncertainty(torch.ones(3))
