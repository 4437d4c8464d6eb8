"""Checkpoints: atomic, weights_only, and clear errors for missing, truncated, mismatched files."""

from __future__ import annotations

import json

import pytest
import torch
from pyro.infer import Predictive

import zoo
from zoo.io import CheckpointError, atomic_write_text


def test_round_trip_gives_a_model_ready_for_predictive(tmp_path):
    model = zoo.build("regression", hidden=8, likelihood="studentt")
    zoo.save(model, tmp_path)
    loaded = zoo.load(tmp_path)
    x = torch.randn(30, 1)
    out = Predictive(loaded, guide=loaded.guide, num_samples=100)(x)["obs"]
    assert out.shape == (100, 30)
    assert json.loads((tmp_path / "config.json").read_text())["config"]["likelihood"] == "studentt"


def test_missing_truncated_and_mismatched_checkpoints_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="config.json not found"):
        zoo.load(tmp_path)
    model = zoo.build("regression", hidden=8)
    zoo.save(model, tmp_path)
    (tmp_path / "model.pt").write_bytes((tmp_path / "model.pt").read_bytes()[:50])
    with pytest.raises(CheckpointError, match=r"model.pt cannot be read"):
        zoo.load(tmp_path)
    zoo.save(zoo.build("regression", hidden=16), tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    meta["config"]["hidden"] = 8
    atomic_write_text(tmp_path / "config.json", json.dumps(meta))
    with pytest.raises(CheckpointError, match="model.pt does not match the model in config.json"):
        zoo.load(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json is not valid JSON"):
        zoo.load(tmp_path)


def test_checkpoint_cannot_run_code(tmp_path):
    zoo.save(zoo.build("mse", hidden=4), tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="cannot be read"):
        zoo.load(tmp_path)


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "f.txt"
    atomic_write_text(target, "old")

    class Boom(Exception):
        pass

    def bad(_):
        raise Boom

    from zoo.io import _atomic

    with pytest.raises(Boom):
        _atomic(target, bad)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_a_failed_first_save_leaves_no_half_checkpoint_and_files_are_not_private(
    tmp_path, monkeypatch
):
    import os

    import zoo.io

    model = zoo.build("mse", hidden=4)
    real = zoo.io._atomic

    def no_space(path, write):
        if path.name == "model.pt":
            raise OSError(28, "No space left on device", str(path))
        real(path, write)

    monkeypatch.setattr(zoo.io, "_atomic", no_space)
    with pytest.raises(OSError, match="No space left"):
        zoo.save(model, tmp_path)
    assert list(tmp_path.iterdir()) == []  # the config written first is taken back
    monkeypatch.setattr(zoo.io, "_atomic", real)
    zoo.save(model, tmp_path)
    mask = os.umask(0)
    os.umask(mask)
    for f in ("config.json", "model.pt"):
        assert (tmp_path / f).stat().st_mode & 0o777 == 0o666 & ~mask
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["model"] == "mse" and len(meta["fingerprint"]) == 16
