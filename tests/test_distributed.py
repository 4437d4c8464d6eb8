"""Data-parallel SVI on 2 CPU processes (gloo), launched by torchrun as a user would.

The ranks run ``tests/ddp_worker.py``; these tests compare what they saved with one process.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import zoo
from inference import evaluate, seed_everything
from inference.distributed import DistContext, context, launch_hint

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ddp_worker  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "tests" / "ddp_worker.py"


def torchrun(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "PYTHONWARNINGS": "error::UserWarning",
    }
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    return subprocess.run(
        [*cmd, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


#: a forecasting run (holdout fit, calibration with a second model, a backtest window)
SERIES = ["--model", "forecast", "--dataset", "airpassengers", "--epochs", "2", "--quiet",
          "--num-samples", "40", "--set", "hidden=8", "layers=1", "--backtest-windows", "1",
          "--baselines", "seasonal_naive"]  # fmt: skip


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One torchrun job: a DDP step per model, then ``scripts/train.py`` (mdn, 2 epochs)."""
    out = tmp_path_factory.mktemp("ddp")
    args = ["--model", "mdn", "--epochs", "2", "--quiet", "--num-samples", "40", "--seed", "3"]
    args += ["--set", "hidden=8", "::", *SERIES, "--out", "series"]
    r = torchrun(WORKER, "step+train", out, "none", *args, cwd=out)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r


def test_one_ddp_step_equals_one_step_on_the_concatenated_batch(job):
    out, _ = job
    ranks = [torch.load(out / f"step-{i}.pt", weights_only=False) for i in range(2)]
    for name in ddp_worker.MODELS:  # bnn has latent weights (prior/KL terms), mdn has none
        single = ddp_worker.one_step(name, DistContext(), world=2)
        assert single["grads"].keys() == ranks[0][name]["grads"].keys()
        for key, grad in single["grads"].items():
            for rank in ranks:  # DDP's averaged gradient is the one of the 2b batch
                torch.testing.assert_close(rank[name]["grads"][key], grad, rtol=1e-5, atol=1e-7)
                torch.testing.assert_close(
                    rank[name]["params"][key], single["params"][key], rtol=1e-5, atol=1e-7
                )
            torch.testing.assert_close(  # and the ranks agree exactly
                ranks[0][name]["params"][key], ranks[1][name]["params"][key], rtol=0, atol=0
            )
        # the plate scaled to the shard's size instead of the full data: visibly different
        wrong = ranks[0]["wrong_scale"][name]
        assert any(
            not torch.allclose(wrong["grads"][k], g, rtol=1e-2, atol=1e-6)
            for k, g in single["grads"].items()
        )
        if name == "bnn":  # the data term's weight against the prior moves the parameters
            assert any(
                not torch.allclose(wrong["params"][k], p, rtol=1e-3, atol=1e-5)
                for k, p in single["params"].items()
            )
    # an overflow in rank 1's shard: every rank stops with TrainingDiverged, none hangs
    for rank in ranks:
        assert rank["overflow_on_rank_1"].startswith("diverged: "), rank["overflow_on_rank_1"]
    assert "rank 0 of 2" in ranks[0]["overflow_on_rank_1"]


def test_torchrun_train_writes_one_run_folder_with_the_ranks_common_weights(job):
    tmp_path, r = job
    assert r.stdout.count("run folder: runs/mdn-") == 1  # rank 0 alone prints
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1, runs
    w0, w1 = (torch.load(tmp_path / f"weights-{i}.pt") for i in range(2))
    assert w0.keys() == w1.keys()
    for k in w0:
        torch.testing.assert_close(w0[k], w1[k], rtol=0, atol=0)
    model = zoo.load(runs[0])
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, w0[k], rtol=0, atol=0)
    data = zoo.datasets.load_dataset("toy")
    rank0 = zoo.build("mdn", **dataclasses.asdict(model.config))
    rank0.load_state_dict(w0)
    x = data.test.x[:64]
    with torch.no_grad():
        torch.testing.assert_close(
            model.predictive_distribution(x).mean, rank0.predictive_distribution(x).mean
        )
    # rank 0's evaluation is a single-process evaluation of the same weights
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    seed_everything(3)
    again = evaluate(model, data.test, num_samples=40, true_log_prob=data.true_log_prob)
    for k in ("nll", "crps", "coverage_90", "rmse"):
        assert metrics[k] == pytest.approx(again[k], rel=1e-6), k
    history = (runs[0] / "history.csv").read_text().splitlines()
    assert len(history) == 3  # header and two epochs, written once


def test_torchrun_series_run_fits_data_parallel_and_rank_0_alone_scores_and_writes(job):
    tmp_path, r = job
    assert r.stdout.count("run folder:") == 2  # the mdn run's and this one's, rank 0's alone
    assert r.stdout.count("forecast on airpassengers") == 1
    assert r.stdout.count("rolling-origin backtest") == 1
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()].count("series") == 1
    run = tmp_path / "series"
    # the holdout fit ran on both ranks, in step: the same weights, which the run saved
    w0, w1 = (torch.load(tmp_path / f"weights-{i}-run1.pt") for i in range(2))
    for k in w0:
        torch.testing.assert_close(w0[k], w1[k], rtol=0, atol=0)
    for k, v in zoo.load(run).state_dict().items():
        torch.testing.assert_close(v, w0[k], rtol=0, atol=0)
    state = torch.load(run / "train_state.pt", weights_only=True)
    assert state["world_size"] == 2 and state["stopped"] == "completed"
    assert len((run / "history.csv").read_text().splitlines()) == 3  # two epochs, once
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["stopped"] == "completed" and metrics["calibration"]["points"] > 0
    assert set(metrics["backtest"]) == {"num_windows", "model", "seasonal_naive"}
    assert [(tmp_path / f"exit-{i}").read_text() for i in range(2)] == ["0", "0"]


def test_a_rank_that_raises_ends_the_job_in_seconds_and_keeps_the_checkpoint(tmp_path):
    # toy: 2,000 training points, 1,000 per rank, 4 steps of 256: step 6 is in epoch 2
    args = ["--model", "mdn", "--epochs", "50", "--quiet", "--set", "hidden=8"]
    r = torchrun(WORKER, "train", tmp_path, "raise:6", *args, "--out", "run", cwd=tmp_path)
    ended = time.time()
    assert r.returncode != 0
    assert "injected failure on rank 1" in r.stderr
    assert "ChildFailedError" in r.stderr  # torchrun's summary names the failed rank
    raised = float((tmp_path / "fault-time").read_text())
    # the other rank is not left waiting in an all-reduce (the group's timeout is minutes)
    assert ended - raised < 30, f"the job took {ended - raised:.1f} s to end after the fault"
    model = zoo.load(tmp_path / "run")  # the last good checkpoint: epoch 1's, intact
    assert json.loads((tmp_path / "run" / "config.json").read_text())["epoch"] == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_a_run_folder_rank_0_cannot_take_ends_every_rank_with_its_one_line(tmp_path):
    from inference.runs import lock_run_dir, release_run_dirs

    held = tmp_path / "held"
    held.mkdir()
    lock_run_dir(held)  # another process's run, as far as the job can tell
    try:
        args = ["--model", "mdn", "--epochs", "2", "--quiet", "--set", "hidden=8", "--out", held]
        r = torchrun(ROOT / "scripts" / "train.py", *args, cwd=tmp_path, timeout=120)
    finally:
        release_run_dirs()
    assert r.returncode != 0 and list(held.iterdir()) == []
    assert r.stderr.count(f"error: {held} is in use by another process") == 1, r.stderr[-3000:]
    # rank 1 learns it from rank 0 and exits 2 quietly, not from a closed connection
    assert "Connection closed" not in r.stderr and "exitcode: 2" in r.stderr, r.stderr[-3000:]


def test_one_process_without_torchrun_is_not_distributed(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    ctx = context("cpu")
    assert (ctx.rank, ctx.world_size, ctx.enabled, ctx.is_rank0) == (0, 1, False, True)
    assert not torch.distributed.is_initialized()
    loss_fn = torch.nn.Linear(1, 1)
    assert ctx.wrap(loss_fn, seed=0) is loss_fn
    g = torch.Generator().manual_seed(4)
    expected = torch.randperm(10, generator=torch.Generator().manual_seed(4))
    assert torch.equal(ctx.order(10, seed=4).indices(1, g), expected)  # fit's old shuffle
    assert launch_hint("cpu") is None and launch_hint("cuda:0") is None


def test_sharded_epochs_cover_the_data_with_equal_steps_per_rank():
    shards = [DistContext(rank=r, world_size=3).order(10, seed=0) for r in range(3)]
    assert {len(s) for s in shards} == {4}  # ceil(10 / 3): every rank runs the same steps
    g = torch.Generator()
    for epoch in (1, 2):
        seen = torch.cat([s.indices(epoch, g) for s in shards])
        assert set(seen.tolist()) == set(range(10))
    e1, e2 = shards[0].indices(1, g), shards[0].indices(2, g)
    assert not torch.equal(e1, e2)  # set_epoch reshuffles


def test_explicit_gpu_index_under_torchrun_is_a_clear_error(monkeypatch):
    from inference.device import DeviceError

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(DeviceError, match="each rank takes cuda:LOCAL_RANK"):
        context("cuda:1")


def test_several_gpus_without_torchrun_say_how_to_launch(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    hint = launch_hint("cuda")
    assert "torchrun --nproc_per_node=4 scripts/train.py" in hint and "\n" not in hint
    assert launch_hint("auto") == hint
    assert launch_hint("cuda:0") is None  # one GPU chosen on purpose
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert launch_hint("cuda") is None


#: bnn (latent weights: per-rank ELBO noise, seeded per epoch) with a cosine schedule
RESUME_EPOCHS = 8
RESUME_ARGS = ["--model", "bnn", "--epochs", str(RESUME_EPOCHS), "--batch-size", "32", "--quiet"]
RESUME_ARGS += ["--num-samples", "40", "--seed", "3", "--checkpoint-every", "0"]
RESUME_ARGS += ["--set", "hidden=8", "depth=1"]


def history_rows(run: Path) -> list[dict[str, float]]:
    lines = (run / "history.csv").read_text().splitlines()
    keys = lines[0].split(",")
    return [dict(zip(keys, map(float, line.split(",")), strict=True)) for line in lines[1:]]


@pytest.fixture(scope="module")
def stopped(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess, int]:
    """A 2-rank bnn run stopped by one SIGINT to torchrun once 2 epochs are in history.csv."""
    out = tmp_path_factory.mktemp("ddp-stop")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env["PYTHONWARNINGS"] = "error::UserWarning"
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += [str(WORKER), "train", str(out), "none", "--out", "cut", *RESUME_ARGS]
    p = subprocess.Popen(cmd, cwd=out, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    history, deadline = out / "cut" / "history.csv", time.time() + 180
    while p.poll() is None and time.time() < deadline:
        if history.exists() and history.read_text().count("\n") >= 3:  # header + 2 epochs
            p.send_signal(signal.SIGINT)  # as Ctrl-C does: torchrun forwards it to the ranks
            break
        time.sleep(0.02)
    stdout, stderr = p.communicate(timeout=120)
    r = subprocess.CompletedProcess(cmd, p.returncode, stdout.decode(), stderr.decode())
    rows = history_rows(out / "cut")
    assert 2 <= len(rows) < RESUME_EPOCHS, (rows, r.stderr[-3000:])
    return out, r, len(rows)


def test_sigint_to_torchrun_stops_both_ranks_at_an_epoch_end_resumably(stopped):
    out, r, k = stopped
    run = out / "cut"
    assert r.returncode != 0  # torchrun's own status (it re-raises the signal as an error)
    # each rank ends the run itself, with the shell's code for SIGINT
    assert [(out / f"exit-{i}").read_text() for i in range(2)] == ["130", "130"]
    lines = [line for line in r.stderr.splitlines() if "resume with:" in line]
    resume = "torchrun --standalone --nproc_per_node=2 scripts/train.py --resume cut"
    assert lines == [f"SIGINT after epoch {k} (every rank stopped there); resume with: {resume}"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["stopped"], metrics["signal"], metrics["epochs_run"]) == (
        "interrupted",
        "SIGINT",
        k,
    )
    state = torch.load(run / "train_state.pt", weights_only=True)
    assert (state["epoch"], state["step"], state["world_size"], state["stopped"]) == (
        k + 1,
        0,
        2,
        None,
    )
    w0, w1 = (torch.load(out / f"weights-{i}.pt") for i in range(2))
    for key in w0:  # both ranks stopped after the same epoch
        torch.testing.assert_close(w0[key], w1[key], rtol=0, atol=0)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["cut"]


def test_a_two_rank_run_resumed_by_one_process_is_refused_in_one_line(stopped, tmp_path, capsys):
    import shutil

    run = shutil.copytree(stopped[0] / "cut", tmp_path / "cut")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    spec = importlib.util.spec_from_file_location("train_script", ROOT / "scripts" / "train.py")
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    with pytest.raises(SystemExit) as e:
        train.run_cli(lambda: train.main(["--resume", str(run), "--quiet"]))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot resume on 1 process(es) a run trained on 2: ")
    assert err.endswith("(torchrun --nproc_per_node=2)") and "\n" not in err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # still resumable


@pytest.fixture(scope="module")
def resumed(stopped, tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """One torchrun job: ``--resume cut``, then the same run straight through (``straight``)."""
    out, spies = stopped[0], tmp_path_factory.mktemp("ddp-resume")
    resume = ["--resume", "cut", "--quiet", "::", "--out", "straight", *RESUME_ARGS]
    r = torchrun(WORKER, "train", spies, "none", *resume, cwd=out)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, spies, r


def test_torchrun_resume_continues_where_the_two_ranks_stopped(stopped, resumed):
    out, spies, r = resumed
    k = stopped[2]
    assert r.stdout.count("run folder: cut") == 1 and r.stdout.count("run folder:") == 2
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["cut", "straight"]
    rows, straight = history_rows(out / "cut"), history_rows(out / "straight")
    assert [row["epoch"] for row in rows] == list(range(1, RESUME_EPOCHS + 1))  # each once
    for a, b in zip(rows[:k], straight[:k], strict=True):  # the same run up to the stop
        assert {**a, "seconds": 0} == {**b, "seconds": 0}  # bit for bit
    metrics = json.loads((out / "cut" / "metrics.json").read_text())
    assert (metrics["stopped"], metrics["epochs_run"]) == ("completed", RESUME_EPOCHS)
    assert all(math.isfinite(metrics[m]) for m in ("nll", "crps", "rmse"))
    w0, w1 = (torch.load(spies / f"weights-{i}.pt") for i in range(2))
    model = zoo.load(out / "cut")
    for key, value in model.state_dict().items():
        torch.testing.assert_close(w0[key], w1[key], rtol=0, atol=0)  # the ranks agree
        torch.testing.assert_close(value, w0[key], rtol=0, atol=0)  # rank 0 wrote them
    # each rank's noise is seeded per epoch: the resumed run is the straight one
    for a, b in zip(rows[k:], straight[k:], strict=True):
        assert math.isfinite(a["loss"])
        assert {**a, "seconds": 0} == pytest.approx({**b, "seconds": 0}, rel=1e-6), (a, b)
    w_straight = torch.load(spies / "weights-0-run1.pt")
    for key, value in w0.items():
        torch.testing.assert_close(value, w_straight[key], rtol=1e-6, atol=1e-7)
    again = json.loads((out / "straight" / "metrics.json").read_text())
    for key in ("nll", "crps", "rmse", "coverage_90"):
        assert metrics[key] == pytest.approx(again[key], rel=1e-6), key
