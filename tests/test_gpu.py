"""The GPU paths: the benchmark's code on tiny CPU sizes, and host syncs on ``--device cuda``.

``pytest --device cuda tests/test_gpu.py`` runs the CUDA test on a GPU; without one it is skipped.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pyro
import pytest
import torch

import zoo
from benchmarks.gpu import host_syncs
from inference.fit import FitConfig, TrainStep, make_elbo

ROOT = Path(__file__).resolve().parent.parent
MNIST = ROOT.parent / "shared" / "data" / "mnist"


@pytest.mark.skipif(not MNIST.is_dir(), reason="needs ../shared/data/mnist")
def test_gpu_benchmark_runs_at_tiny_sizes_on_the_cpu(capsys):
    from benchmarks import gpu

    args = argparse.Namespace(quick=True, device="cpu", seed=0, data_dir=str(MNIST))
    result = gpu.run(args)
    assert result["passed"] is None  # never judged off a GPU
    assert [m["batch"] for m in result["mdn"]] == [256, 8192]
    assert result["vae"]["zoo_s"] > 0 and result["vae"]["plain_s"] > 0
    assert result["crps"]["mean_crps"] > 0
    assert "not judged" in capsys.readouterr().out


def test_the_fit_step_makes_no_host_synchronization(device):
    if device.type != "cuda":
        pytest.skip("needs --device cuda")
    pyro.enable_validation(False)  # validation reads every distribution's arguments on the host
    try:
        pyro.set_rng_seed(0)
        model = zoo.build("mdn", hidden=64).to(device)
        x = torch.randn(4096, 1, device=device)
        y = torch.sin(x[:, 0])
        model.num_data = len(x)
        loss_fn = make_elbo("trace")(model, model.guide)
        loss_fn(x[:256], y[:256])
        step = TrainStep(loss_fn, len(x), FitConfig(lr=1e-3, clip_norm=10.0))
        batches = [torch.randint(0, len(x), (256,), device=device) for _ in range(4)]
        step(x[batches[0]], y[batches[0]])  # warm-up: lazy optimizer state
        syncs, losses = host_syncs(lambda: [step(x[idx], y[idx]) for idx in batches])
        assert not syncs, syncs
        assert torch.isfinite(torch.stack(losses)).all()
        # positive control: the filter catches a real synchronization
        assert len(host_syncs(losses[0].item)[0]) == 1
    finally:
        pyro.enable_validation(True)
