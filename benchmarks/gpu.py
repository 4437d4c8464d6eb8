"""The GPU benchmark: ``python scripts/benchmark.py --device cuda --quick-gpu`` (< 8 min).

Side by side in one run, each with its peak GPU memory:

1. VAE seconds per epoch on the full MNIST test-set file (the 10,000 ``t10k`` images):
   the zoo's default ``vae`` through ``inference.fit`` against a plain-PyTorch loop of the
   same networks (``benchmarks.vae.PlainVAE``) and the same recipe (batch size, fused AdamW,
   schedule, gradient clipping), median epoch after the first;
2. the MDN SVI step (:class:`inference.fit.TrainStep`) against a plain-PyTorch step of the
   same network and recipe at batch sizes 256 and 8,192 (blocks of steps between two
   synchronizations),
   and the host synchronizations one zoo step makes, counted with
   ``torch.cuda.set_sync_debug_mode("warn")`` (validation off, as in a production run);
3. ``Predictive(parallel=True)`` throughput for the BNN (draws x points per second);
4. sample CRPS on 1,000,000 points x 1,000 samples (``inference.metrics.crps_samples``).

Targets (judged on a GPU only): fit's VAE epoch and MDN step within 1.10x of plain PyTorch,
and no host synchronization inside the step. ``--quick`` shrinks every size so the code
paths run on the CPU in seconds (``tests/test_benchmark_gpu.py``); the figures are then
meaningless and not judged.
"""

from __future__ import annotations

import contextlib
import statistics
import time
import warnings

import pyro
import torch

import zoo
from inference import FitConfig, fit, resolve_device
from inference.fit import TrainStep, _make_optimizer, _make_scheduler, make_elbo
from inference.metrics import crps_samples
from inference.predict import predictive_samples

__all__ = ["run"]

TARGET_RATIO = 1.10


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def _peak(device: torch.device, out: dict, key: str = "peak_mb"):
    """Records the peak GPU memory (MiB) of the block in ``out[key]`` (None on the CPU)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    yield
    _sync(device)
    out[key] = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def host_syncs(fn):
    """Runs ``fn()`` under ``torch.cuda.set_sync_debug_mode("warn")``: the messages of the
    host synchronizations it made (PyTorch's "called a synchronizing CUDA operation"; not
    the debug mode's own prototype warning) and what ``fn`` returned."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            result = fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return [str(w.message) for w in caught if "called a synchronizing" in str(w.message)], result


def _mb(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0f}"


@contextlib.contextmanager
def _no_validation():
    """Validation checks every distribution's arguments on the host: off for the timings."""
    before = pyro.infer.util.is_validation_enabled()
    pyro.enable_validation(False)
    try:
        yield
    finally:
        pyro.enable_validation(before)


def _plain_step(params: list[torch.Tensor], cfg: FitConfig, total_steps: int = 1):
    """A plain-PyTorch step of fit's recipe: the optimizer and schedule fit builds from
    ``cfg`` (fused AdamW where the device has it) and its clipping; ``step(loss_closure)``
    returns the detached loss."""
    opt = _make_optimizer(params, cfg.lr, cfg.weight_decay)
    sched = _make_scheduler(opt, cfg.schedule, cfg.lr, total_steps)

    def step(closure):
        loss = closure()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, cfg.clip_norm, foreach=True)
        opt.step()
        if sched is not None:
            sched.step()
        return loss.detach()

    return step


def vae_epochs(args, device: torch.device, quick: bool) -> dict:
    from benchmarks.vae import PlainVAE, _batches

    data = zoo.datasets.load_dataset("mnist", seed=args.seed, data_dir=args.data_dir)
    x = torch.cat([data.train.x, data.val.x, data.test.x])  # every t10k image
    if quick:
        x = x[:256]
    split = type(data.train)(x, None)
    cls = zoo.MODELS["vae"]
    overrides = cls.data_overrides(data)
    epochs = 2 if quick else 6
    opts = {**cls.default_fit, "epochs": epochs, "seed": args.seed, "quiet": True}
    out: dict = {"n": len(x), "epochs": epochs}
    with _peak(device, out, "zoo_peak_mb"):
        model = zoo.build("vae", **overrides)
        history = fit(model, split, None, device=str(device), **opts)
    ends = [0.0] + [row["seconds"] for row in history.rows]
    out["zoo_s"] = statistics.median([b - a for a, b in zip(ends, ends[1:], strict=False)][1:])
    with _peak(device, out, "plain_peak_mb"):
        plain = PlainVAE(zoo.build("vae", **overrides).config).to(device)
        # the recipe fit runs (FitConfig defaults and the model's default_fit): fused AdamW,
        # the learning-rate schedule and gradient clipping, so the ratio is Pyro's and fit's
        # cost, not that of a lighter recipe
        cfg = FitConfig(**{k: v for k, v in opts.items() if k in ("lr", "schedule")})
        steps = epochs * -(-len(x) // opts["batch_size"])
        step = _plain_step(list(plain.parameters()), cfg, steps)
        g = torch.Generator().manual_seed(args.seed)
        xs = x.to(device)
        times = []
        for _ in range(epochs):
            start = time.perf_counter()
            for idx in _batches(len(xs), opts["batch_size"], g):
                step(lambda idx=idx: plain.loss(xs[idx]) / len(idx))  # fit's per-point mean
            _sync(device)
            times.append(time.perf_counter() - start)
    out["plain_s"] = statistics.median(times[1:])
    out["ratio"] = out["zoo_s"] / out["plain_s"]
    return out


def _mdn_problem(n: int, device: torch.device, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=g) * 8 - 4
    y = torch.where(
        torch.rand(n, generator=g) < torch.sigmoid(x[:, 0]),
        torch.sin(1.5 * x[:, 0]) + 0.15 * torch.randn(n, generator=g),
        0.5 * x[:, 0] + 1 + 0.6 * torch.randn(n, generator=g),
    )
    return x.to(device), y.to(device)


def mdn_steps(args, device: torch.device, batch: int, quick: bool) -> dict:
    from benchmarks.mdn import SEED_RECIPE, _seed_mixture, _seed_net

    steps, rounds = (2, 1) if quick else (200, 3)
    n = batch * 8
    x, y = _mdn_problem(n, device, args.seed)
    r = SEED_RECIPE
    pyro.set_rng_seed(args.seed)
    model = zoo.build("mdn", components=r["components"], hidden=r["hidden"], activation="relu")
    model.to(device)
    model.num_data = n
    loss_fn = make_elbo("trace")(model, model.guide)
    loss_fn(x[:batch], y[:batch])
    cfg = FitConfig(lr=r["lr"], clip_norm=10.0)
    zoo_step = TrainStep(loss_fn, n, cfg)
    net = _seed_net(args.seed).to(device)
    plain = _plain_step(list(net.parameters()), cfg)

    def plain_step(x, y):
        return plain(lambda: -_seed_mixture(net, x).log_prob(y).mean())

    batches = [torch.randint(0, n, (batch,), device=device) for _ in range(steps)]
    out: dict = {"batch": batch, "steps": steps}
    for name, step in (("plain", plain_step), ("zoo", zoo_step)):
        with _peak(device, out, f"{name}_peak_mb"):
            for idx in batches[:3]:  # warm-up: kernels, allocator, fused optimizer state
                step(x[idx], y[idx])
            _sync(device)
            blocks = []
            for _ in range(rounds):
                start = time.perf_counter()
                for idx in batches:
                    step(x[idx], y[idx])
                _sync(device)
                blocks.append((time.perf_counter() - start) / steps)
        out[f"{name}_ms"] = 1e3 * min(blocks)
    out["ratio"] = out["zoo_ms"] / out["plain_ms"]
    if device.type == "cuda":  # the synchronizations one zoo step makes
        syncs, _ = host_syncs(lambda: zoo_step(x[batches[0]], y[batches[0]]))
        out["host_syncs_per_step"] = len(syncs)
    else:
        out["host_syncs_per_step"] = None
    return out


def bnn_predictive(args, device: torch.device, quick: bool) -> dict:
    num_samples, n = (10, 100) if quick else (1000, 10_000)
    pyro.set_rng_seed(args.seed)
    model = zoo.build("bnn", input_dim=1, hidden=50, depth=2)
    model.init_lazy()
    model.to(device)
    x = torch.linspace(-4, 4, n, device=device).unsqueeze(-1)
    out: dict = {"num_samples": num_samples, "n": n}
    with _peak(device, out):
        predictive_samples(model, x[:8], num_samples, parallel=True)  # warm-up
        times = []
        for _ in range(3):
            start = time.perf_counter()
            s = predictive_samples(model, x, num_samples, parallel=True)["obs"]
            _sync(device)
            times.append(time.perf_counter() - start)
    assert s.shape == (num_samples, n)
    out["seconds"] = min(times)
    out["draws_per_s"] = num_samples * n / out["seconds"]
    return out


def crps(args, device: torch.device, quick: bool) -> dict:
    num_samples, n = (100, 1000) if quick else (1000, 1_000_000)
    g = torch.Generator(device=device).manual_seed(args.seed)
    out: dict = {"num_samples": num_samples, "n": n}
    with _peak(device, out):
        samples = torch.randn(num_samples, n, generator=g, device=device)
        y = torch.randn(n, generator=g, device=device)
        crps_samples(samples[:, :1000], y[:1000])  # warm-up
        _sync(device)
        start = time.perf_counter()
        value = crps_samples(samples, y)
        _sync(device)
        out["seconds"] = time.perf_counter() - start
    out["mean_crps"] = float(value.mean())
    return out


def run(args) -> dict:
    device = resolve_device(args.device)
    quick = args.quick
    judged = device.type == "cuda" and not quick
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        with _no_validation():
            vae = vae_epochs(args, device, quick)
            mdn = [mdn_steps(args, device, b, quick) for b in (256, 8192)]
            bnn = bnn_predictive(args, device, quick)
            score = crps(args, device, quick)
    finally:
        torch.set_num_threads(threads)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device {device} ({name}){'; --quick: tiny sizes, not judged' if quick else ''}")
    print(f"{'what':<44}{'zoo':>11}{'plain':>11}{'ratio':>8}{'peak MiB':>16}")
    print(
        f"{'VAE s/epoch, ' + str(vae['n']) + ' MNIST images':<44}{vae['zoo_s']:>11.3f}"
        f"{vae['plain_s']:>11.3f}{vae['ratio']:>8.3f}"
        f"{_mb(vae['zoo_peak_mb']) + ' / ' + _mb(vae['plain_peak_mb']):>16}"
    )
    for m in mdn:
        print(
            f"{'MDN step ms, batch ' + str(m['batch']):<44}{m['zoo_ms']:>11.3f}"
            f"{m['plain_ms']:>11.3f}{m['ratio']:>8.3f}"
            f"{_mb(m['zoo_peak_mb']) + ' / ' + _mb(m['plain_peak_mb']):>16}"
        )
    label = f"BNN Predictive(parallel) {bnn['num_samples']} x {bnn['n']}, draws/s"
    print(f"{label:<44}{bnn['draws_per_s']:>11.3g}{'':>19}{_mb(bnn['peak_mb']):>16}")
    label = f"sample CRPS {score['n']:,} points x {score['num_samples']}, s"
    print(f"{label:<44}{score['seconds']:>11.3f}{'':>19}{_mb(score['peak_mb']):>16}")
    syncs = [m["host_syncs_per_step"] for m in mdn]
    print(f"host synchronizations in one zoo MDN step (batch 256, 8192): {syncs}")
    checks = {
        f"VAE epoch fit / plain <= {TARGET_RATIO}": vae["ratio"] <= TARGET_RATIO,
        f"MDN step fit / plain <= {TARGET_RATIO} (both batches)": all(
            m["ratio"] <= TARGET_RATIO for m in mdn
        ),
        "no host synchronization in the step": all(s == 0 for s in syncs),
    }
    for what, ok in checks.items():
        verdict = ("met" if ok else "MISSED") if judged else "not judged (no GPU or --quick)"
        print(f"target: {what}: {verdict}")
    return {
        "device": str(device),
        "device_name": name,
        "vae": vae,
        "mdn": mdn,
        "bnn_predictive": bnn,
        "crps": score,
        "passed": all(checks.values()) if judged else None,
    }
