"""Data-parallel SVI on torch.distributed: the context :func:`inference.fit` trains under.

``torchrun --nproc_per_node=N scripts/train.py ...`` starts N processes with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` in their environment; :func:`context` reads them, starts the
process group (NCCL for CUDA ranks on ``cuda:LOCAL_RANK``, gloo on the CPU) and says which
rank this is. The pattern is Pyro's ``examples/svi_lightning.py`` on plain torch: the ELBO
module is wrapped in ``DistributedDataParallel`` after one warm-up call has created the lazy
guide parameters, a ``DistributedSampler`` shards every epoch, and each rank keeps the plate
``data`` at the size of the whole training set, so its minibatch stands for all the data and
the prior and KL terms keep their weight. DDP averages the ranks' gradients: one step on N
ranks of batch b is one single-process step on their concatenated batch of N * b points.

Failures end the job instead of hanging it: a rank that raises exits, and torchrun stops the
other workers (``--max-restarts 0``, its default); decisions taken each epoch (divergence,
validation, early stopping) use all-reduced numbers, so every rank takes them together; and
the process group has a timeout (:data:`TIMEOUT_ENV`, seconds) for launchers that do not
stop the other workers. Without torchrun's environment (or with one process) nothing here
starts: one process trains exactly as it always has.
"""

from __future__ import annotations

import datetime
import inspect
import os
from dataclasses import dataclass

import pyro
import torch
import torch.distributed as dist

from .device import DeviceError, resolve_device

__all__ = [
    "DistContext",
    "TIMEOUT_ENV",
    "context",
    "launch_hint",
    "relaunch_command",
    "shutdown",
]

#: Environment variable with the process group's timeout in seconds (default 300): how long a
#: rank waits in a collective for a peer that neither answers nor exits.
TIMEOUT_ENV = "ZOO_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 300.0


DDP = torch.nn.parallel.DistributedDataParallel
# Buffers are constants by the model contract (priors' parameters): DDP copies them from rank 0
# once when it is built and need not broadcast them before every step (torch 2.13 renamed the
# switch; the old name still works there but warns).
_NO_BUFFER_SYNC = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(DDP.__init__).parameters
    else {"broadcast_buffers": False}
)


def _world_from_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) without it."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as e:
        raise DeviceError(f"bad torchrun environment (RANK/WORLD_SIZE/LOCAL_RANK): {e}") from e
    return rank, world, local


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank among ``world_size`` and its device.

    With ``world_size == 1`` every method is the single-process identity (no DDP, the usual
    shuffle, no collectives).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_rank0(self) -> bool:
        return self.rank == 0

    # --- the hooks of fit ----------------------------------------------------------------
    def wrap(self, loss_fn: torch.nn.Module, seed: int) -> torch.nn.Module:
        """The warmed-up ELBO module, in DDP when distributed; then seeds this rank's noise.

        DDP copies rank 0's parameters and buffers to every rank when it is built; after it,
        each rank draws its own ELBO noise (seed + rank), so the ranks' gradient estimates are
        independent, as the N * b points of one single-process batch would be.
        """
        if not self.enabled:
            return loss_fn
        ids = [self.device.index] if self.device.type == "cuda" else None
        ddp = DDP(loss_fn, device_ids=ids, **_NO_BUFFER_SYNC)
        pyro.set_rng_seed(seed + 1_000_003 * self.rank)
        return ddp

    def seed_epoch(self, seed: int, epoch: int) -> None:
        """Seeds this rank's RNGs (its ELBO noise) from the seed, the rank and the epoch.

        Called at each epoch's start when distributed (a no-op on one process, whose RNG
        states are saved and restored instead): the state rank 0 saves holds only its own
        RNGs, and with this every rank's noise after a resume is the uninterrupted run's.
        """
        if self.enabled:
            pyro.set_rng_seed(seed + 1_000_003 * self.rank + epoch)

    def order(self, n: int, seed: int) -> EpochOrder:
        """This rank's share of the n training points, epoch by epoch."""
        return EpochOrder(n, self, seed)

    def all_sum(self, values: torch.Tensor) -> torch.Tensor:
        """Sums a tensor over the ranks (float64, on this rank's device); identity on one."""
        if not self.enabled:
            return values
        values = values.to(self.device, torch.float64).clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values

    def mean(self, value: float) -> float:
        """The mean over the ranks of one number (a validation score), the same on every rank."""
        if not self.enabled:
            return value
        return float(self.all_sum(torch.tensor([value], dtype=torch.float64))[0]) / self.world_size

    def label(self) -> str:
        """``"rank R of N: "`` for messages when distributed, else empty."""
        return f"rank {self.rank} of {self.world_size}: " if self.enabled else ""


class EpochOrder:
    """The order of the training points each epoch: a shuffle, sharded across the ranks.

    One process: ``torch.randperm(n, generator)``, as :func:`inference.fit` has always drawn
    it. Distributed: ``torch.utils.data.DistributedSampler`` with ``set_epoch``: the same
    shuffle (seed + epoch) on every rank, each taking every world-size-th index; the last
    indices repeat so that every rank has ``ceil(n / world_size)`` and the ranks run the same
    number of steps (a rank with a step fewer would leave the others waiting in DDP).
    """

    def __init__(self, n: int, ctx: DistContext, seed: int):
        self.n = n
        self.sampler = None
        if ctx.enabled:
            self.sampler = torch.utils.data.DistributedSampler(
                range(n), num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed
            )

    def __len__(self) -> int:
        return self.n if self.sampler is None else self.sampler.num_samples

    def indices(self, epoch: int, generator: torch.Generator) -> torch.Tensor:
        if self.sampler is None:
            return torch.randperm(self.n, generator=generator)
        self.sampler.set_epoch(epoch)
        return torch.tensor(list(self.sampler), dtype=torch.long)


def context(device: str | torch.device | None = "auto") -> DistContext:
    """This process's :class:`DistContext`, starting the process group under torchrun.

    Idempotent: the second call finds the group started. CUDA ranks take
    ``cuda:LOCAL_RANK`` and NCCL, all others gloo. ``device`` is the user's choice
    (``auto``, ``cpu``, ``cuda``); under torchrun an explicit ``cuda:N`` is an error, since
    the rank decides the GPU.
    """
    rank, world, local = _world_from_env()
    if world <= 1:
        return DistContext(device=resolve_device(device))
    spec = device if isinstance(device, torch.device) else str(device or "auto").strip().lower()
    if isinstance(spec, str) and spec.startswith("cuda:"):
        raise DeviceError(
            f"--device {spec} under torchrun: each rank takes cuda:LOCAL_RANK; pass --device cuda"
        )
    chosen = resolve_device(spec)
    if chosen.type == "cuda":
        count = torch.cuda.device_count()
        if local >= count:
            raise DeviceError(
                f"local rank {local} has no GPU: this node has {count}; "
                f"use --nproc_per_node={count} or fewer"
            )
        chosen = torch.device("cuda", local)
        torch.cuda.set_device(chosen)
    elif chosen.type != "cpu":
        raise DeviceError(f"distributed training runs on cpu or cuda, not {chosen.type}")
    if not dist.is_initialized():
        seconds = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))
        dist.init_process_group(
            backend="nccl" if chosen.type == "cuda" else "gloo",
            timeout=datetime.timedelta(seconds=seconds),
            # NCCL binds the group to this rank's GPU (no guessing from the rank)
            device_id=chosen if chosen.type == "cuda" else None,
        )
    return DistContext(dist.get_rank(), dist.get_world_size(), local, chosen)


def shutdown() -> None:
    """Ends the process group, if one was started (at the end of a successful run)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def launch_hint(device: str | None, script: str = "scripts/train.py") -> str | None:
    """One line saying how to use every GPU, when one process is about to use one of several.

    Returned (not printed) for ``--device cuda`` or ``auto`` outside torchrun on a machine
    with more than one visible GPU; None otherwise (one GPU, an explicit ``cuda:N``, torchrun).
    """
    spec = str(device or "auto").strip().lower()
    if "WORLD_SIZE" in os.environ or spec not in ("auto", "cuda"):
        return None
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count < 2:
        return None
    return (
        f"note: {count} GPUs are visible but one process trains on cuda:0 only; to use all "
        f"of them launch: torchrun --nproc_per_node={count} {script} ARGS (or pass "
        "--device cuda:0 to silence this)"
    )


def relaunch_command(script: str = "scripts/train.py") -> str:
    """How to launch ``script`` again as this process was launched (for a resume line).

    ``python SCRIPT`` on one process; under torchrun the same number of processes per node
    (with ``--standalone`` on one node; on several, with the job's rendezvous endpoint).
    """
    _, world, _ = _world_from_env()
    if world <= 1:
        return f"python {script}"
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    if per_node >= world:
        return f"torchrun --standalone --nproc_per_node={world} {script}"
    nodes = world // max(per_node, 1)
    flags = f"--nnodes={nodes} --nproc_per_node={per_node} --rdzv-endpoint=HOST:PORT"
    return f"torchrun {flags} {script}"
