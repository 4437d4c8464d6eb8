"""The shared likelihoods: outputs, shapes, stable parameterizations, target checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zoo.likelihoods import LIKELIHOODS, TargetError, make_likelihood

VALID_TARGETS = {
    "normal": torch.tensor([-1.0, 0.0, 2.5]),
    "studentt": torch.tensor([-1.0, 0.0, 2.5]),
    "laplace": torch.tensor([-1.0, 0.0, 2.5]),
    "lognormal": torch.tensor([0.1, 1.0, 7.0]),
    "gamma": torch.tensor([0.1, 1.0, 7.0]),
    "poisson": torch.tensor([0.0, 3.0, 12.0]),
    "negbinomial": torch.tensor([0.0, 3.0, 12.0]),
    "beta": torch.tensor([0.1, 0.5, 0.9]),
    "bernoulli": torch.tensor([0.0, 1.0, 1.0]),
    "categorical": torch.tensor([0, 2, 1]),
}

INVALID_TARGETS = {
    "lognormal": (torch.tensor([1.0, -2.0, 3.0]), "must be positive; row 1 has -2.0"),
    "gamma": (torch.tensor([1.0, 0.0, 3.0]), "must be positive; row 1 has 0.0"),
    "poisson": (torch.tensor([1.0, 2.0, -1.5]), "non-negative integers; row 2 has -1.5"),
    "negbinomial": (torch.tensor([1.5, 2.0, 1.0]), "non-negative integers; row 0 has 1.5"),
    "beta": (torch.tensor([0.5, 1.0, 0.2]), "strictly between 0 and 1; row 1 has 1.0"),
    "bernoulli": (torch.tensor([0.0, 2.0, 1.0]), "must be 0 or 1; row 1 has 2.0"),
    "categorical": (torch.tensor([0, 3, 1]), r"labels in \[0, 2\]; row 1 has 3"),
}


def build(name, target_dim=1):
    kwargs = {"num_classes": 3} if name == "categorical" else {}
    return make_likelihood(name, target_dim, **kwargs)


@pytest.mark.parametrize("name", list(LIKELIHOODS))
def test_log_prob_is_finite_on_valid_targets_even_for_extreme_outputs(name):
    lik = build(name)
    y = lik.prepare_targets(VALID_TARGETS[name])
    for scale in (1.0, 30.0, -30.0):
        out = torch.full((3, lik.num_outputs), scale)
        d = lik(out)
        assert d.batch_shape == (3,) and d.event_shape == ()
        assert torch.isfinite(d.log_prob(y)).all(), (name, scale)


@pytest.mark.parametrize("name", list(INVALID_TARGETS))
def test_bad_targets_name_the_row(name):
    y, message = INVALID_TARGETS[name]
    with pytest.raises(TargetError, match=message):
        build(name).prepare_targets(y)


def test_poisson_message_matches_the_issue_example():
    y = torch.zeros(20)
    y[17] = -1.5
    with pytest.raises(
        TargetError, match=r"^poisson targets must be non-negative integers; row 17"
    ):
        build("poisson").prepare_targets(y)


def test_nan_targets_and_wrong_shapes_are_refused():
    with pytest.raises(TargetError, match="NaN or inf; row 1"):
        build("normal").prepare_targets(torch.tensor([0.0, float("nan")]))
    with pytest.raises(TargetError, match=r"shape \[3\]; got \[3, 2\]"):
        build("normal").prepare_targets(torch.zeros(3, 2))
    with pytest.raises(TargetError, match="integer class labels"):
        build("categorical").prepare_targets(torch.tensor([0.5, 1.0]))


def test_normal_matches_torch_reference():
    lik = build("normal")
    out = torch.randn(5, 2)
    y = torch.randn(5)
    ref = torch.distributions.Normal(out[:, 0], F.softplus(out[:, 1]) + 1e-4)
    torch.testing.assert_close(lik(out).log_prob(y), ref.log_prob(y))


def test_homoscedastic_normal_has_one_learned_scale():
    lik = make_likelihood("normal", homoscedastic=True, init_scale=2.0)
    assert lik.num_outputs == 1
    d = lik(torch.zeros(4, 1))
    torch.testing.assert_close(d.scale, torch.full((4,), 2.0 + 1e-4))
    assert [n for n, _ in lik.named_parameters()] == ["raw_scale"]


def test_studentt_df_is_learned_and_above_two():
    lik = build("studentt")
    assert lik.df > 2
    assert lik.raw_df.requires_grad


def test_vector_targets_have_event_shape():
    lik = build("laplace", target_dim=3)
    assert lik.num_outputs == 6
    d = lik(torch.randn(4, 6))
    assert d.batch_shape == (4,) and d.event_shape == (3,)
    assert lik.prepare_targets(torch.randn(4, 3)).shape == (4, 3)


def test_class_probabilities_come_from_logits():
    b = build("bernoulli")
    logits = torch.tensor([[-100.0], [0.0], [100.0]])
    probs = b.probs(logits)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3))
    assert torch.isfinite(b(logits).log_prob(torch.tensor([1.0, 0.0, 0.0]))).all()
    c = build("categorical")
    torch.testing.assert_close(c.probs(torch.randn(4, 3)).sum(-1), torch.ones(4))


def test_unknown_likelihood_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown likelihood 'cauchy'; choose one of normal"):
        make_likelihood("cauchy")
