"""Data-parallel scaling on the CPU: samples/s of the same VAE epoch on 1 and 2 processes.

Each contender is a fresh ``torchrun --standalone --nproc_per_node=P`` job (gloo, one thread
per process, ``OMP_NUM_THREADS=1``) running this file, which trains the zoo's default ``vae``
(as ``train.py --model vae`` builds it) through ``inference.fit`` on the MNIST training
images, with no validation, and reports the median training seconds per epoch after the
first. With P processes each rank takes 1/P of every epoch (DistributedSampler):

- same global batch: each rank's batch is ``B / P``, so an epoch has the same steps on the
  same number of points per step as one process (the same optimization, made faster);
- same per-rank batch: each rank keeps ``B`` (a step sees ``P * B`` points, half the steps).

Scaling efficiency = (samples/s on P processes) / (P x samples/s on 1). A 1-process,
2-thread run says what the second core gives without DDP. On a 2-core machine shared with
other jobs the figures are noisy and 2 processes do not get 2 free cores: they are reported
as measured, not judged against a target.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["run"]


def _launch(args, procs: int, batch: int, threads: int, epochs: int, limit: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        cmd += [f"--nproc_per_node={procs}", __file__, str(out), args.data_dir]
        cmd += [str(batch), str(epochs), str(limit), str(args.seed)]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
        wall = time.perf_counter()
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"torchrun with {procs} processes failed:\n{r.stderr[-3000:]}")
        result = json.loads(out.read_text())
        result["job_seconds"] = time.perf_counter() - wall
        return result


def run(args) -> dict:
    quick = args.quick
    # 4,096 of the 8,000 training images keep the 2-thread row (slow on a loaded machine) short
    epochs, limit = (2, 512) if quick else (4, 4096)
    import zoo

    batch = int(zoo.MODELS["vae"].default_fit.get("batch_size", 128))
    contenders = [
        ("1 process, 1 thread", 1, batch, 1),
        ("2 processes, same global batch", 2, batch // 2, 1),
        ("2 processes, same per-rank batch", 2, batch, 1),
        ("1 process, 2 threads (no DDP)", 1, batch, 2),
    ]
    print(
        f"zoo vae on {limit or 'all'} MNIST training images, {epochs} epochs per job (median "
        f"epoch after the first), gloo, {os.cpu_count()} CPU cores (shared with other jobs)"
    )
    print(f"{'contender':<36}{'batch/rank':>11}{'s/epoch':>9}{'samples/s':>11}{'efficiency':>12}")
    rows: dict[str, dict] = {}
    for label, procs, b, threads in contenders:
        r = rows[label] = {"procs": procs, "batch_per_rank": b, "threads": threads}
        r.update(_launch(args, procs, b, threads, epochs, limit))
        r["efficiency"] = r["samples_per_s"] / (
            procs * rows["1 process, 1 thread"]["samples_per_s"]
        )
        eff = f"{r['efficiency']:.2f}" if procs > 1 else "-"
        print(
            f"{label:<36}{b:>11}{r['epoch_seconds']:>9.3f}{r['samples_per_s']:>11.0f}{eff:>12}",
            flush=True,
        )
    print(
        "efficiency = samples/s on P processes / (P x samples/s of 1 process, 1 thread); "
        "measured, not judged (2 shared cores)"
    )
    return {"epochs": epochs, "rows": rows, "passed": None}


def _worker(out: str, data_dir: str, batch: int, epochs: int, limit: int, seed: int) -> None:
    """One rank of a torchrun job: fit the default vae, rank 0 writes the timings."""
    sys.path.insert(0, str(ROOT))
    import torch

    import zoo
    from inference import fit
    from inference.distributed import context, shutdown

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    ctx = context("cpu")
    data = zoo.datasets.load_dataset("mnist", seed=seed, data_dir=data_dir)
    train = data.train
    if limit:
        train = type(train)(train.x[:limit], train.y[:limit])
    cls = zoo.MODELS["vae"]
    model = zoo.build("vae", **cls.data_overrides(data))
    opts = {**cls.default_fit, "epochs": epochs, "batch_size": batch, "seed": seed, "quiet": True}
    history = fit(model, train, None, device="cpu", **opts)
    ends = [0.0] + [row["seconds"] for row in history.rows]
    per_epoch = [b - a for a, b in zip(ends[:-1], ends[1:], strict=True)][1:]
    seconds = statistics.median(per_epoch)
    if ctx.is_rank0:
        result = {"n": len(train), "epoch_seconds": seconds, "samples_per_s": len(train) / seconds}
        Path(out).write_text(json.dumps(result))
    shutdown()


if __name__ == "__main__":
    out, data_dir, batch, epochs, limit, seed = sys.argv[1:7]
    _worker(out, data_dir, int(batch), int(epochs), int(limit), int(seed))
