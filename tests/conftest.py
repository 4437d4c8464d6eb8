"""Test settings: Pyro validation on, warnings are errors (pyproject), fresh seeds and stores."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pyro  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

# tiny models: one thread avoids contention (and CLI subprocesses get OMP_NUM_THREADS=1)
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _pyro_state():
    pyro.enable_validation(True)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    # module-local params: nothing may leak into the global store
    assert not list(pyro.get_param_store().keys()), "a parameter leaked into the param store"


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", help="device for device tests (cpu, cuda)")


@pytest.fixture
def device(request) -> torch.device:
    from inference import resolve_device

    return resolve_device(request.config.getoption("--device"))
