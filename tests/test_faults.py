"""Faults a user or the machine inflicts on scripts/train.py, each case checked for its exit code,
its one-line message and what it leaves on disk: a run folder that loads (and resumes), or none.

Most cases run ``train.main`` in this process (through ``run_cli``, as the script does); the kill
cases fork a child that trains, so the signal lands at a random moment of real training without
paying for a fresh interpreter each time; one SIGTERM case runs the script as a subprocess.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import zoo
import zoo.io
from inference import checkpoint as ckpt
from inference.cli import run_cli
from inference.runs import create_run_dir

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("train_script", ROOT / "scripts" / "train.py")
train = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train)
spec = importlib.util.spec_from_file_location("evaluate_script", ROOT / "scripts" / "evaluate.py")
evaluate_script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(evaluate_script)

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
FAST = ["--quiet", "--num-samples", "40", "--set", "hidden=8", "--batch-size", "500"]


def cli(argv, capsys) -> tuple[int, str, str]:
    """Runs train.py's main as the script does; returns (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as e:
        run_cli(lambda: train.main([str(a) for a in argv]))
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def consistent(run: Path) -> str:
    """'absent', 'empty' (nothing written yet), 'resumable' (a training state, no model yet)
    or 'loadable' (a model checkpoint that loads, and a training state); never torn."""
    if not run.exists():
        return "absent"
    files = {p.name for p in run.iterdir()}
    if (run / "model.pt").exists():
        zoo.load(run)  # raises CheckpointError if torn or mixed
        ckpt.load_training_state(run)  # written before any weights: always there
        return "loadable"
    assert not any(f.endswith(".png") for f in files), files
    if "config.json" in files:  # killed inside the first save, between its config and weights
        with pytest.raises(zoo.io.CheckpointError, match="no checkpoint was written"):
            zoo.load(run)
        assert "train_state.pt" in files, files  # the state is written before any weights
    if (run / "train_state.pt").exists():
        ckpt.load_training_state(run)
        return "resumable"
    return "empty"


def test_two_runs_in_one_second_get_two_folders_and_out_is_never_overwritten(tmp_path, capsys):
    base = str(tmp_path / "runs" / "mse-toy-20260101-000000")
    a, made_a = create_run_dir(None, base)
    b, made_b = create_run_dir(None, base)
    assert made_a and made_b and a != b and b.name.endswith("-2")
    out = tmp_path / "run"
    zoo.save(zoo.build("mse", hidden=8), out)  # a run folder, as train.py leaves it
    before = (out / "model.pt").read_bytes()
    code, _, err = cli(["--model", "mse", "--epochs", "1", "--out", out, *FAST], capsys)
    assert code == 2 and "already holds a run" in one_line(err) and "--overwrite" in err
    assert "--resume" not in err  # nothing to resume there: no train_state.pt
    assert (out / "model.pt").read_bytes() == before
    started = tmp_path / "started"  # a run's folder with its state: resuming is an option
    started.mkdir()
    (started / "history.csv").write_text("epoch,loss\n")
    (started / "train_state.pt").write_bytes(b"")
    code, _, err = cli(["--model", "mse", "--epochs", "1", "--out", started, *FAST], capsys)
    assert code == 2 and f"--resume {started} to continue it" in one_line(err)
    args = ["--model", "mse", "--epochs", "1", "--out", out, "--overwrite", "--seed", "1", *FAST]
    code, _, _ = cli(args, capsys)
    assert code == 0 and (out / "model.pt").read_bytes() != before
    # a finished run keeps its train_state.pt, but there is nothing left to resume
    code, _, err = cli(["--model", "mse", "--epochs", "1", "--out", out, *FAST], capsys)
    assert code == 2 and "already holds a run" in err and "--resume" not in err
    assert consistent(out) == "loadable"
    # the run's files have the user's usual permissions, like the plots
    mask = os.umask(0)
    os.umask(mask)
    for f in ("config.json", "model.pt", "metrics.json", "train_state.pt", "history.csv"):
        assert (out / f).stat().st_mode & 0o777 == 0o666 & ~mask, f


@contextlib.contextmanager
def held_by_another_process(path: Path):
    """Another process holds the run folder (as a run or --resume of it would), until SIGKILL."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; from inference.runs import lock_run_dir;"
         f" lock_run_dir({str(path)!r}); print('held', flush=True); time.sleep(120)"],
        env=ENV, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.kill()  # SIGKILL: the kernel drops its lock with it
        holder.wait()
        holder.stdout.close()


def test_a_run_folder_in_use_is_refused_to_another_process_until_its_holder_ends(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--model", "mse", "--epochs", "3", "--out", out, *FAST, "--batch-size", "100"]
    assert cli_stopped(args, SignalAt(2), capsys)[0] == 130  # a run to resume
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with held_by_another_process(out):
        for argv in (["--resume", out], [*args, "--overwrite"]):
            code, _, err = cli(argv, capsys)
            line = one_line(err)
            assert code == 2 and "is in use by another process" in line, line
            assert "wait for it to end, or pass another --out" in line
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing touched
    code, _, _ = cli(["--resume", out / "train_state.pt"], capsys)  # the file names its run
    assert code == 0 and json.loads((out / "metrics.json").read_text())["stopped"] == "completed"
    # evaluate.py writes into the run folder by default: not while another process does
    with held_by_another_process(out):
        with pytest.raises(SystemExit) as e:
            run_cli(lambda: evaluate_script.main([str(out), "--num-samples", "40"]))
        assert e.value.code == 2 and "is in use by another process" in capsys.readouterr().err
        assert not (out / "metrics_eval.json").exists()
        with pytest.raises(SystemExit) as e:  # elsewhere it scores the current checkpoint
            run_cli(lambda: evaluate_script.main([str(out), "--out", str(tmp_path / "ev")]))
        assert e.value.code == 0 and (tmp_path / "ev" / "metrics_eval.json").exists()
    code, _, _ = cli([*args, "--overwrite"], capsys)  # this process let go at its run's end
    assert code == 0


def test_overwrite_removes_every_run_file_and_folder_a_kill_left_and_nothing_else(tmp_path):
    from inference.runs import release_run_dirs

    out = tmp_path / "run"
    (out / "backtest").mkdir(parents=True)
    left = [
        out / "train_state.pt",
        out / "baselines.md",
        out / ".model.pt.ab12.tmp",
        out / "backtest" / "model@0-108-144.pt",
        out / "backtest" / ".ets@0-1-2.pt.x.tmp",
    ]
    for f in left:
        f.write_bytes(b"x")
    mine = [out / "notes.txt", out / ".other.tmp"]  # not the run's: kept
    for f in mine:
        f.write_bytes(b"mine")
    try:
        path, created = create_run_dir(str(out), "unused", overwrite=True)
    finally:
        release_run_dirs()
    assert path == out and not created
    assert sorted(p.name for p in out.iterdir()) == [".other.tmp", "notes.txt"]


BAD_BEFORE_TRAINING = [
    (["--lr", "inf"], 2, "FitConfig.lr must be a finite number > 0"),
    (["--patience", "-1"], 2, "FitConfig.patience must be >= 1"),
    (["--particles", "0"], 2, "FitConfig.num_particles must be >= 1"),
    (["--device", "tpu"], 2, "unknown device 'tpu'"),
    (["--data-dir", "/tmp"], 2, "--data-dir is read only by mnist; toy does not use it"),
    (["--set", "likelihood=poisson"], 2, "poisson targets must be"),  # raised inside fit
    (["--lr", "1e6"], 1, "no checkpoint was written, so no run folder was kept"),
]


@pytest.mark.parametrize(("args", "code", "message"), BAD_BEFORE_TRAINING)
def test_errors_leave_no_run_folder(args, code, message, tmp_path, capsys):
    out = tmp_path / "run"
    got, _, err = cli(
        ["--model", "regression", "--epochs", "2", "--out", out, *FAST, *args], capsys
    )
    assert got == code and message in one_line(err)
    assert consistent(out) == "absent"


def test_divergence_names_the_checkpoint_that_exists(tmp_path, capsys):
    # the case: lr 100 with one-cycle stays finite but explodes (RMSE 4.6e9 before)
    out = tmp_path / "run"
    args = ["--model", "regression", "--epochs", "12", "--lr", "100", "--schedule", "onecycle"]
    code, _, err = cli([*args, "--out", out, "--quiet", "--num-samples", "40"], capsys)
    line = one_line(err)
    assert code == 1 and "loss exploded to" in line, line
    assert "the last good checkpoint (epoch 1, val " in line and str(out) in line
    assert (
        consistent(out) == "loadable"
        and json.loads((out / "config.json").read_text())["epoch"] == 1
    )


def test_a_folder_whose_config_names_another_likelihood_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    zoo.save(zoo.build("regression", hidden=8), out)
    meta = json.loads((out / "config.json").read_text())
    meta["config"]["likelihood"] = meta["likelihood"] = "laplace"  # same parameter shapes
    zoo.io.atomic_write_text(out / "config.json", json.dumps(meta))
    with pytest.raises(zoo.CheckpointError) as e:
        zoo.load(out)
    assert "likelihood: 'laplace' in config.json, 'normal' in model.pt" in str(e.value)
    assert "config.likelihood: 'laplace' in config.json, 'normal' in model.pt" in str(e.value)
    with pytest.raises(SystemExit) as exit_:
        run_cli(lambda: evaluate_script.main([str(out)]))
    assert exit_.value.code == 2 and str(e.value) in one_line(capsys.readouterr().err)


@pytest.mark.parametrize("failing_write", [1, 2, 3, 5])
def test_a_full_disk_is_one_line_and_leaves_a_loadable_folder_or_none(
    failing_write, tmp_path, capsys, monkeypatch
):
    calls = {"n": 0}
    real = zoo.io._atomic

    def full(path, write):
        calls["n"] += 1
        if calls["n"] == failing_write:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, write)

    monkeypatch.setattr(zoo.io, "_atomic", full)
    monkeypatch.setattr(ckpt, "_atomic", full)
    out = tmp_path / "run"
    args = ["--model", "mse", "--epochs", "3", "--checkpoint-every", "0", "--out", out, *FAST]
    code, _, err = cli(args, capsys)
    assert code == 2 and one_line(err).startswith("error: No space left on device: "), err
    assert consistent(out) in ("absent", "loadable")


def test_an_unwritable_out_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, _, err = cli(["--model", "mse", "--out", blocker / "run", *FAST], capsys)
    assert code == 2 and "Not a directory" in one_line(err)
    code, _, err = cli(["--model", "mse", "--out", blocker, *FAST], capsys)
    assert code == 2 and "is a file, not a folder" in one_line(err)


def _fork_train(argv: list[str], log: Path, kill_after=0.0, when_file=None, sig=signal.SIGKILL):
    """Trains in a forked child; sends ``sig`` ``kill_after`` s after ``when_file`` exists (or
    after the start), or nothing when ``sig`` is None. Returns the child's exit code (negative:
    killed by a signal)."""
    pid = os.fork()
    if pid == 0:  # the child: train.py's main, its output into log
        code = 70
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1), os.dup2(fd, 2)
            sys.stdout = os.fdopen(1, "w", buffering=1)
            sys.stderr = os.fdopen(2, "w", buffering=1)
            try:
                run_cli(lambda: train.main(argv))
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
        finally:
            os._exit(code)
    deadline = time.monotonic() + 60
    if when_file is not None:
        while not when_file.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    time.sleep(kill_after)
    if sig is not None and os.waitpid(pid, os.WNOHANG) == (0, 0):
        os.kill(pid, sig)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


KILL_ARGS = ["--model", "bnn", "--epochs", "40", "--checkpoint-every", "0", *FAST]


def test_sigkill_at_random_moments_leaves_a_resumable_folder_or_none(tmp_path, capsys):
    rng = random.Random(14)
    outcomes = []
    for i in range(6):
        out = tmp_path / f"run{i}"
        # from the first training state on (the first two: from the start, even before it)
        started = out / "train_state.pt" if i >= 2 else None
        code = _fork_train([*KILL_ARGS, "--out", str(out)], tmp_path / f"log{i}",
                           kill_after=rng.uniform(0.0, 1.0), when_file=started)  # fmt: skip
        outcomes.append((code, consistent(out)))
    killed = [s for c, s in outcomes if c == -signal.SIGKILL]
    assert len(killed) >= 4 and {"loadable", "resumable"} >= set(killed[2:]), outcomes
    # resume the one killed the latest that has a state (most often it also has a model)
    i = max(i for i, (c, s) in enumerate(outcomes) if s in ("loadable", "resumable"))
    resumable = tmp_path / f"run{i}"
    code, out, _ = cli(["--resume", resumable, "--quiet", "--num-samples", "40"], capsys)
    assert code == 0 and "bnn on gap" in out
    metrics = json.loads((resumable / "metrics.json").read_text())
    assert metrics["stopped"] == "completed" and metrics["epochs_run"] == 40
    rows = (resumable / "history.csv").read_text().strip().splitlines()
    assert [int(r.split(",")[0]) for r in rows[1:]] == list(range(1, 41))


def test_sigkill_inside_the_first_save_leaves_a_resumable_folder(tmp_path, capsys, monkeypatch):
    # the one moment a folder holds config.json and no model.pt: the first save, killed after
    # its config and before its weights (the random kills above land there now and then)
    atomic = zoo.io._atomic

    def die_before_weights(path, write):
        if path.name == "model.pt":
            os.kill(os.getpid(), signal.SIGKILL)
        atomic(path, write)

    # set before the fork, so the child has it; the parent saves nothing until undo()
    monkeypatch.setattr(zoo.io, "_atomic", die_before_weights)
    out = tmp_path / "run"
    code = _fork_train([*KILL_ARGS, "--epochs", "3", "--out", str(out)], tmp_path / "log", sig=None)
    monkeypatch.undo()
    assert code == -signal.SIGKILL
    assert {p.name for p in out.iterdir()} >= {"config.json", "train_state.pt"}
    assert consistent(out) == "resumable"
    code, printed, _ = cli(["--resume", out, "--quiet", "--num-samples", "40"], capsys)
    assert code == 0 and "bnn on gap" in printed
    assert consistent(out) == "loadable"
    assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 3


def test_sigint_stops_with_a_resumable_checkpoint_and_resume_ends_like_a_straight_run(
    tmp_path, capsys
):
    out = tmp_path / "run"
    args = ["--model", "regression", "--epochs", "30", "--checkpoint-every", "1000", *FAST]
    code = _fork_train([*args, "--out", str(out)], tmp_path / "log", when_file=out / "model.pt",
                       sig=signal.SIGINT)  # fmt: skip
    line = one_line((tmp_path / "log").read_text())
    assert code == 130, line
    assert line.startswith("SIGINT after epoch ") and f"--resume {out}" in line
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stopped"] == "interrupted" and metrics["signal"] == "SIGINT"
    assert len((out / "history.csv").read_text().splitlines()) == metrics["epochs_run"] + 1
    assert consistent(out) == "loadable"
    code, _, err = cli(["--resume", out, "--lr", "0.1"], capsys)
    assert code == 2 and "drop --lr 0.1 (the run's is 0.003)" in one_line(err)
    assert cli(["--resume", out, "--quiet", "--num-samples", "40"], capsys)[0] == 0
    # the same run without the interruption, as train.py sets it up
    data = zoo.datasets.load_dataset("toy")
    train.seed_everything(0)
    straight = zoo.build("regression", hidden=8)
    history = train.fit(straight, data.train, data.val, epochs=30, batch_size=500, seed=0,
                        quiet=True)  # fmt: skip
    resumed = zoo.load(out)
    for k, v in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=1e-6, atol=1e-7)
    rows = (out / "history.csv").read_text().strip().splitlines()[1:]
    assert len(rows) == len(history.rows)
    for row, want in zip(rows, history.rows, strict=True):
        epoch, loss = row.split(",")[:2]
        assert int(epoch) == want["epoch"] and float(loss) == pytest.approx(want["loss"], 1e-6)


def test_sigterm_to_the_script_exits_143_with_one_line(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "scripts" / "train.py"), "--model", "mse", "--epochs",
           "100000", "--out", str(out), *FAST]  # fmt: skip
    p = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "model.pt").exists() and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 143, err
    assert one_line(err).startswith("SIGTERM after epoch ")
    assert json.loads((out / "metrics.json").read_text())["stopped"] == "interrupted"
    assert consistent(out) == "loadable"


# Series runs: the holdout fit as every run's, then scores and a backtest that no step polls.
SERIES = ["--model", "forecast", "--dataset", "airpassengers", "--epochs", "3", "--batch-size",
          "8", "--quiet", "--num-samples", "40", "--set", "hidden=8", "layers=1",
          "--backtest-windows", "1", "--baselines", "seasonal_naive"]  # fmt: skip


class SignalAt(train.StopSignals):
    """train.py's StopSignals that sends this process a real SIGINT at fit's n-th poll of
    ``should_stop`` (6 steps per epoch here: polls 1-5 inside epoch 1, 6 at its end, ...)."""

    def __init__(self, polls: int):
        super().__init__()
        self.polls = polls

    def requested(self) -> bool:
        self.polls -= 1
        if self.polls == 0:
            signal.raise_signal(signal.SIGINT)  # its handler runs before this returns
        return super().requested()


def cli_stopped(argv, stop: train.StopSignals, capsys) -> tuple[int, str, str]:
    """As :func:`cli`, with ``stop`` in place of main's own StopSignals."""
    with stop, pytest.raises(SystemExit) as e:
        run_cli(lambda: train.run(train.make_parser().parse_args([str(a) for a in argv]), stop))
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


@pytest.fixture(scope="module")
def straight_series(tmp_path_factory) -> Path:
    """The uninterrupted series run, as train.py makes it."""
    out = tmp_path_factory.mktemp("straight") / "run"
    with pytest.raises(SystemExit) as e:
        run_cli(lambda: train.main([*SERIES, "--out", str(out)]))
    assert e.value.code == 0
    return out


def same_run(got: Path, want: Path) -> None:
    """The same weights, history and metrics (holdout and backtest) but for the clock."""
    a, b = zoo.load(got).state_dict(), zoo.load(want).state_dict()
    assert set(a) == set(b)
    for k in b:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7)

    def cols(path):
        rows = [r.split(",") for r in (path / "history.csv").read_text().splitlines()]
        return [r[:-1] for r in rows]  # the last column is seconds

    assert cols(got) == cols(want)

    def scores(obj, key=""):  # flat {path: value}; train_seconds is the clock
        if isinstance(obj, dict):
            items = obj.items()
        elif isinstance(obj, list):
            items = enumerate(obj)
        else:
            return {key: obj}
        out = {}
        for k, v in items:
            if k != "train_seconds":
                out.update(scores(v, f"{key}/{k}"))
        return out

    got_m, want_m = (scores(json.loads((p / "metrics.json").read_text())) for p in (got, want))
    assert got_m["/stopped"] == "completed" and "/backtest/model/overall/crps" in want_m
    assert set(got_m) == set(want_m)
    for k, v in want_m.items():
        assert got_m[k] == (pytest.approx(v, rel=1e-6) if isinstance(v, float) else v), k


def test_series_run_stopped_mid_fit_resumes_to_the_straight_run(tmp_path, capsys, straight_series):
    out = tmp_path / "run"
    code, _, err = cli_stopped([*SERIES, "--out", out], SignalAt(8), capsys)  # epoch 2, step 2
    line = one_line(err)
    assert code == 130 and line.startswith("SIGINT after epoch 1 (mid-epoch steps kept)"), line
    assert line.endswith(f"resume with: python scripts/train.py --resume {out}")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stopped"] == "interrupted" and metrics["epochs_run"] == 1
    assert len((out / "history.csv").read_text().splitlines()) == 2
    assert consistent(out) == "loadable" and not (out / "forecast.png").exists()
    # the interrupted run's best checkpoint can be scored; it has no interval factor yet
    ev = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "evaluate.py"), str(out), "--num-samples", "40",
         "--out", str(tmp_path / "ev")],
        env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert ev.returncode == 0, ev.stderr
    assert "calibrated" not in json.loads((tmp_path / "ev" / "metrics_eval.json").read_text())
    state = ckpt.load_training_state(out)
    assert (state["epoch"], state["step"], state["stopped"]) == (2, 2, None)
    code, _, err = cli(["--resume", out, "--data-args", "horizon=36"], capsys)
    assert code == 2 and "drop --data-args horizon=36 (the run used the default)" in err
    code, stdout, _ = cli(["--resume", out], capsys)
    assert code == 0 and "forecast on airpassengers" in stdout, stdout
    same_run(out, straight_series)
    code, _, err = cli(["--resume", out], capsys)
    assert code == 2 and "already finished (completed); nothing to resume" in one_line(err)


def test_series_run_stopped_after_its_fit_resumes_without_retraining(
    tmp_path, capsys, monkeypatch, straight_series
):
    import inference.forecasting as forecasting

    real = forecasting.run_backtests

    def signalled(*args, **kwargs):  # a Ctrl-C as the backtest starts: no step polls here
        signal.raise_signal(signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(forecasting, "run_backtests", signalled)
    out = tmp_path / "run"
    with train.StopSignals() as stop:
        code, _, err = cli_stopped([*SERIES, "--out", out], stop, capsys)
    line = one_line(err)
    assert code == 130 and line.startswith("SIGINT after the fit had ended (epoch 3)"), line
    assert json.loads((out / "metrics.json").read_text())["stopped"] == "interrupted"
    assert ckpt.load_training_state(out)["stopped"] == "completed"
    assert consistent(out) == "loadable"
    history = (out / "history.csv").read_text()
    monkeypatch.setattr(forecasting, "run_backtests", real)
    code, _, _ = cli(["--resume", out], capsys)
    assert code == 0
    assert (out / "history.csv").read_text() == history  # not retrained: the same seconds too
    same_run(out, straight_series)
    # a run killed there (SIGKILL: no metrics.json at all) resumes the same way
    (out / "metrics.json").unlink()
    assert cli(["--resume", out], capsys)[0] == 0
    same_run(out, straight_series)


def test_series_run_stopped_in_its_backtest_refits_only_the_unfinished_windows(
    tmp_path, capsys, monkeypatch, straight_series
):
    from inference import forecast_baselines, forecasting

    real = forecast_baselines.SeasonalNaive.fit

    def signalled(self, history):  # the model's window is done, the baseline's is not
        signal.raise_signal(signal.SIGINT)
        return real(self, history)

    monkeypatch.setattr(forecast_baselines.SeasonalNaive, "fit", signalled)
    out = tmp_path / "run"
    with train.StopSignals() as stop:
        code, _, err = cli_stopped([*SERIES, "--out", out], stop, capsys)
    line = one_line(err)
    assert code == 130 and "(finished backtest windows kept: model 1); resume with:" in line
    monkeypatch.setattr(forecast_baselines.SeasonalNaive, "fit", real)
    refits = []
    real_refit = forecasting.EarlyStoppingForecaster.fit

    def counted(self, history):
        refits.append(len(history))
        return real_refit(self, history)

    monkeypatch.setattr(forecasting.EarlyStoppingForecaster, "fit", counted)
    assert sorted(p.name for p in (out / "backtest").iterdir()) == ["model@0-108-144.pt"]
    torn = out / "backtest" / ".seasonal_naive@0-108-144.pt.x1y2.tmp"  # a SIGKILL mid-write
    torn.write_bytes(b"half a file")
    code, _, _ = cli(["--resume", out], capsys)
    assert code == 0 and refits == []  # the model's backtest window was read back
    same_run(out, straight_series)
    # a finished run keeps its scores, not the saved windows or what a kill left
    assert not (out / "backtest").exists()
    # the store is a run file: --overwrite clears it, so a new run refits every window
    code, _, _ = cli([*SERIES, "--out", out, "--overwrite"], capsys)
    assert code == 0 and len(refits) == 1
    same_run(out, straight_series)


SERIES_REFUSED = [
    (["--data-args", "horizon=12"], "drop --data-args horizon=12 (the run's is 24)"),
    (["--backtest-windows", "0"], "drop --backtest-windows 0 (the run's is 1)"),
    (["--baselines", "ets"], "drop --baselines ets (the run's is seasonal_naive)"),
    (["--num-samples", "80"], "drop --num-samples 80 (the run's is 40)"),
    (
        ["--no-interval-calibration"],
        "drop --no-interval-calibration (the run's is --interval-calibration)",
    ),
    (["--calibration-growth", "0"], "drop --calibration-growth 0.0 (the run's is 0.5)"),
    (["--set", "hidden=16"], "drop --set hidden=16 (the run's is 8)"),
    (["--epochs", "4"], "drop --epochs 4 (the run's is 3)"),
]


def test_series_resume_refuses_other_data_args_or_options(tmp_path, capsys):
    out = tmp_path / "run"
    args = [*SERIES, "--data-args", "horizon=24", "--out", out]
    assert cli_stopped(args, SignalAt(2), capsys)[0] == 130
    for given, message in SERIES_REFUSED:
        code, _, err = cli(["--resume", out, *given], capsys)
        assert code == 2 and message in one_line(err), (given, err)
    assert ckpt.load_training_state(out)["epoch"] == 1  # nothing refused has trained
    # a run recorded before --calibration-growth existed resumes with the rule it began with
    state = ckpt.load_training_state(out)
    del state["run"]["calibration_growth"]
    ckpt.save_training_state(out, {k: v for k, v in state.items() if k != "format"})
    code, _, err = cli(["--resume", out, "--calibration-growth", "0.5"], capsys)
    assert code == 2 and "drop --calibration-growth 0.5 (the run's is 0.0)" in one_line(err)
    code, _, _ = cli(["--resume", out, "--data-args", "horizon=24", "--epochs", "3"], capsys)
    metrics = json.loads((out / "metrics.json").read_text())
    assert code == 0 and metrics["horizon"] == 24 and metrics["calibration"]["growth"] == 0


def test_sigterm_stops_a_series_run_with_one_line(tmp_path):
    out = tmp_path / "run"
    argv = [*SERIES, "--epochs", "100000", "--patience", "0", "--out", str(out)]
    code = _fork_train(argv, tmp_path / "log", when_file=out / "train_state.pt",
                       sig=signal.SIGTERM)  # fmt: skip
    line = one_line((tmp_path / "log").read_text())
    assert code == 143 and line.startswith("SIGTERM after epoch ") and "--resume" in line, line
    assert json.loads((out / "metrics.json").read_text())["stopped"] == "interrupted"
    assert consistent(out) in ("resumable", "loadable")
