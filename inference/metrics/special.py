"""Special functions torch lacks: the regularized incomplete beta and the Student-t CDF."""

from __future__ import annotations

import torch
from torch import Tensor

__all__: list[str] = []


def _betainc(a: Tensor, b: Tensor, x: Tensor, xc: Tensor, max_iter: int = 2000) -> Tensor:
    """Regularized incomplete beta I_x(a, b), xc = 1 - x (Lentz continued fraction, NR 6.4)."""
    # The fraction converges fast only for x < (a + 1) / (a + b + 2); use I_x(a,b) = 1 - I_xc(b,a).
    flip = x > (a + 1) / (a + b + 2)
    a, b, x, xc = (torch.where(flip, u, v) for u, v in ((b, a), (a, b), (xc, x), (x, xc)))
    eps, tiny = torch.finfo(x.dtype).eps, torch.finfo(x.dtype).tiny / torch.finfo(x.dtype).eps
    log_front = torch.lgamma(a + b) - torch.lgamma(a) - torch.lgamma(b) + a * x.log() + b * xc.log()
    c = torch.ones_like(x)
    d = 1 - (a + b) * x / (a + 1)
    d = 1 / torch.where(d.abs() < tiny, tiny, d)
    h = d.clone()
    for m in range(1, max_iter + 1):
        for aa in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1 + aa * d
            d = 1 / torch.where(d.abs() < tiny, tiny, d)
            c = 1 + aa / c
            c = torch.where(c.abs() < tiny, tiny, c)
            delta = c * d
            h = h * delta
        if m % 8 == 0 and bool(((delta - 1).abs() < 4 * eps).all()):  # one sync per 8 steps
            break
    out = torch.exp(log_front) * h / a
    return torch.where(flip, 1 - out, out)


def _student_t_cdf(z: Tensor, df: Tensor) -> Tensor:
    """CDF of the standard Student-t with `df` degrees of freedom (torch has none)."""
    df = torch.as_tensor(df, dtype=z.dtype, device=z.device).expand_as(z)
    z2 = z * z
    tail = 0.5 * _betainc(df / 2, torch.full_like(z, 0.5), df / (df + z2), z2 / (df + z2))
    return torch.where(z > 0, 1 - tail, tail)
