"""The forecaster's path distributions (teacher-forced log density, autoregressive sampling;
one network's, or a deep ensemble's) and the calendar positions of time labels."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from torch import Tensor

__all__ = ["EnsemblePath", "ForecastPath", "calendar_position"]


def calendar_position(time: Any, freq: str, period: int) -> Tensor:
    """Each step's position in the period, from its time label, so slices of one data agree.

    The position in the next calendar unit up (month of year for ``M``, quarter for ``Q``,
    hour of day for ``h``, half hour for ``30min``, weekday for ``D``) modulo ``period``;
    integer time labels are used as they are.
    """
    t = np.asarray(time)
    if np.issubdtype(t.dtype, np.datetime64):
        unit = {"M": "M", "Q": "M", "h": "h", "30min": "m", "D": "D"}.get(freq, "D")
        n = t.astype(f"datetime64[{unit}]").astype(np.int64)
        if freq == "Q":
            n = n // 3
        elif freq == "30min":
            n = n // 30
        elif unit == "D":
            n = n + 3  # 1970-01-01 was a Thursday: 0 is Monday
    else:
        n = t.astype(np.int64)
    return torch.as_tensor(np.mod(n, period), dtype=torch.float32)


class ForecastPath(dist.TorchDistribution):
    """p(y_{t+1:t+T} | context) of a batch of series: the RNN's autoregressive path distribution.

    ``log_prob`` runs the RNN over the true path (teacher forcing); ``sample`` feeds each step's
    draw back as the next step's lag, so a batch ``[S, N]`` (a plate of samples around the
    model) carries its own RNN states and gives ``[S, N, T]`` paths. ``member`` says which of
    the model's networks (ensemble members) it runs.
    """

    arg_constraints = {}
    has_rsample = False

    def __init__(self, model, state, history, features, scale, validate_args=None, member=0):
        self.model, self.state, self.history, self.features, self.scale = (
            model, state, history, features, scale,
        )  # fmt: skip
        self.member = int(member)
        super().__init__(scale.shape, features.shape[-2:-1], validate_args=validate_args)

    @property
    def support(self):
        head = self.model.head
        base = constraints.nonnegative_integer if head.kind == "count" else constraints.real
        base = constraints.positive if head.log else base
        return constraints.independent(base, 1)

    def expand(self, batch_shape, _instance=None):
        b = torch.Size(batch_shape)
        state = tuple(s.expand(*b, *s.shape[-2:]) for s in self.state)
        return ForecastPath(
            self.model,
            state,
            self.history.expand(*b, -1),
            self.features.expand(*b, *self.features.shape[-2:]),
            self.scale.expand(b),
            member=self.member,
        )

    def _flat(self):
        state = tuple(s.reshape(-1, *s.shape[-2:]).transpose(0, 1).contiguous() for s in self.state)
        return (
            state,
            self.history.reshape(-1, self.history.shape[-1]),
            self.features.reshape(-1, *self.features.shape[-2:]),
            self.scale.reshape(-1),
        )

    def log_prob(self, value: Tensor) -> Tensor:
        shape = torch.broadcast_shapes(value.shape[:-1], self.batch_shape)
        d = self.expand(shape) if shape != self.batch_shape else self
        state, history, features, scale = d._flat()
        y = value.expand(*shape, -1).reshape(len(scale), -1)
        z = torch.cat([history, y / scale[:, None]], -1)
        step = self.model.path_dist(state, z, features, scale, member=self.member)
        return step.log_prob(y).sum(-1).reshape(shape)

    def sample_rows(self, rows: Tensor | None = None) -> Tensor:
        """Paths ``[B, T]`` of the flattened batch's ``rows`` (all of them when None)."""
        state, z, features, scale = self._flat()
        if rows is not None:
            state = tuple(s[:, rows] for s in state)
            z, features, scale = z[rows], features[rows], scale[rows]
        path = []
        with torch.no_grad():
            for h in range(features.shape[1]):
                step, state = self.model.step_dist(
                    state, z, features[:, h : h + 1], scale, member=self.member
                )
                y = step.sample()[:, 0]
                path.append(y)
                z = torch.cat([z, (y / scale)[:, None]], -1)
        return torch.stack(path, -1)

    def sample(self, sample_shape=()):
        sample_shape = torch.Size(sample_shape)
        d = self.expand(sample_shape + self.batch_shape) if sample_shape else self
        return d.sample_rows().reshape(*d.batch_shape, self.event_shape[0])


class EnsemblePath(dist.TorchDistribution):
    """A deep ensemble's path distribution: ``paths``, one :class:`ForecastPath` per member.

    Given ``member`` (indices broadcasting with the batch), row ``i`` is the path of member
    ``member[i]``: its ``log_prob`` is that member's and its draws are that member's. Without,
    it is the members' uniform mixture: ``log_prob`` is the log of the mean of the members'
    densities, and each draw picks its member uniformly (the pooled paths of a deep
    ensemble, Lakshminarayanan et al. 2017).
    """

    arg_constraints = {}
    has_rsample = False

    def __init__(self, paths, member: Tensor | None = None, validate_args=None):
        self.paths, self.member = list(paths), member
        batch = self.paths[0].batch_shape
        if member is not None:
            batch = torch.broadcast_shapes(member.shape, batch)
        super().__init__(batch, self.paths[0].event_shape, validate_args=validate_args)

    @property
    def support(self):
        return self.paths[0].support

    @property
    def scale(self) -> Tensor:
        """Each series' scale (the members share it: it is read off the context)."""
        return self.paths[0].scale.expand(self.batch_shape)

    def given(self, member: Tensor) -> EnsemblePath:
        """The same members, row ``i`` drawn by member ``member[i]``."""
        return EnsemblePath(self.paths, member)

    def expand(self, batch_shape, _instance=None):
        b = torch.Size(batch_shape)
        member = None if self.member is None else self.member.expand(b)
        return EnsemblePath([p.expand(b) for p in self.paths], member)

    def log_prob(self, value: Tensor) -> Tensor:
        lp = torch.stack([p.log_prob(value) for p in self.paths])  # [K, *shape]
        if self.member is None:
            return lp.logsumexp(0) - math.log(len(self.paths))
        shape = torch.broadcast_shapes(lp.shape[1:], self.member.shape)
        index = self.member.long().expand(shape)
        return lp.expand(len(self.paths), *shape).gather(0, index[None])[0]

    def sample(self, sample_shape=()):
        sample_shape = torch.Size(sample_shape)
        d = self.expand(sample_shape + self.batch_shape) if sample_shape else self
        batch, horizon = d.batch_shape, self.event_shape[0]
        if d.member is None:
            member = torch.randint(len(self.paths), batch, device=self.scale.device)
        else:
            member = d.member.to(self.scale.device)
        member = member.reshape(-1)
        out = self.scale.new_zeros(member.numel(), horizon)
        for k, path in enumerate(d.paths):
            rows = (member == k).nonzero()[:, 0]
            if len(rows):
                out[rows] = path.sample_rows(rows)
        return out.reshape(*batch, horizon)
