"""Detection and segmentation training keep what classification training has: exact resume (at an
epoch's end and in the middle of one), two processes under torchrun, unreadable images counted,
curves and checkpoints in the run folder."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import DET_FAST, SEG_FAST, make_coco_folder, make_voc_segmentation_folder

import mobilenets
from mobilenets.training import TrainConfig, TrainingInterrupted, train
from mobilenets.weights import load_model, read_metadata

PRIMARY = {"detection": "map50", "segmentation": "miou"}


def _config(task: str, tmp_path: Path, **kw: object) -> TrainConfig:
    if task == "detection":
        data, fast = make_coco_folder(tmp_path / "coco"), DET_FAST
    else:
        data, fast = make_voc_segmentation_folder(tmp_path / "voc"), SEG_FAST
    return TrainConfig(task=task, data=str(data), workers=0, amp="off", **fast, **kw)  # type: ignore[arg-type]


def _interrupt_at_step(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """SIGINT to this process right after the ``step``-th training step (as a user's Ctrl-C)."""
    from mobilenets.training.step import TrainStep

    orig, calls = TrainStep.__call__, {"n": 0}

    def call(self: TrainStep, x: torch.Tensor, y: object) -> tuple[torch.Tensor, torch.Tensor]:
        out = orig(self, x, y)
        calls["n"] += 1
        if calls["n"] == step:
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(TrainStep, "__call__", call)


def _same_weights(a: str, b: str) -> bool:
    wa, wb = load_model(a).state_dict(), load_model(b).state_dict()
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("task", ["detection", "segmentation"])
@pytest.mark.parametrize("stop_step", [6, 4], ids=["epoch_end", "mid_epoch"])
def test_interrupted_then_resumed_equals_uninterrupted(task: str, stop_step: int, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """3 batches per epoch: step 6 ends epoch 2, step 4 is inside it. Same losses, metrics and weights."""
    cfg = _config(task, tmp_path, epochs=3, deterministic=True)
    full = train(dataclasses.replace(cfg, out=str(tmp_path / "full")))
    with monkeypatch.context() as m:
        _interrupt_at_step(m, stop_step)
        with pytest.raises(TrainingInterrupted, match="--resume"):
            train(dataclasses.replace(cfg, out=str(tmp_path / "stopped")))
    resumed = train(resume=tmp_path / "stopped")
    keys = ("train_loss", "val_loss", f"val_{PRIMARY[task]}")
    assert [[h[k] for k in keys] for h in resumed.history] == [[h[k] for k in keys] for h in full.history]
    assert _same_weights(full.weights, resumed.weights)
    assert getattr(resumed, PRIMARY[task]) == getattr(full, PRIMARY[task])
    run = Path(resumed.run_dir)
    for f in ("best.safetensors", "last.safetensors", "state.pt", "metrics.jsonl", "curves.png"):
        assert (run / f).is_file(), f


@pytest.mark.slow  # torchrun: two processes starting torch (~10 s each)
@pytest.mark.parametrize("task", ["detection", "segmentation"])
def test_two_processes_evaluate_the_whole_split(task: str, tmp_path: Path) -> None:
    """Under torchrun each rank evaluates half the held-out images; the metric gathered over both is
    the one a single process computes on the saved weights."""
    cfg = _config(task, tmp_path, epochs=2)
    data = cfg.data
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "mobilenets", "train", "--task", task, "--data", str(data), "--model", cfg.model,
                        "--epochs", "2", "--batch-size", "4", "--amp", "off", "--workers", "0",
                        "--out", str(tmp_path / "ddp"), "--no-progress", "--json"],
                       capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["world_size"] == 2 and summary["task"] == task and summary["epochs"] == 2
    ev = mobilenets.evaluate(summary["weights"], progress=False, workers=0)
    assert ev.count == (8 if task == "detection" else 6)
    recorded = read_metadata(summary["weights"])["metrics"][PRIMARY[task]]  # percent, not rounded like --json
    assert 100 * getattr(ev, PRIMARY[task]) == pytest.approx(recorded, abs=1e-9)
    assert getattr(ev, PRIMARY[task]) == pytest.approx(summary[PRIMARY[task]], abs=5e-5)


def test_detection_training_counts_unreadable_images(tmp_path: Path) -> None:
    """A COCO image that is not an image is left out when the data is read, and reported; one whose data
    is cut short (its header reads) is skipped and counted when decoded, in training and in evaluation."""
    data = make_coco_folder(tmp_path / "coco")
    (data / "train2017" / "0003.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    for split, name in (("train2017", "0005.jpg"), ("val2017", "0001.jpg")):
        whole = (data / split / name).read_bytes()
        (data / split / name).write_bytes(whole[: len(whole) // 2])
    res = train(TrainConfig(data=str(data), epochs=1, out=str(tmp_path / "run"), workers=0, amp="off",
                            max_bad_fraction=0.2, **DET_FAST))
    assert res.history[0]["bad_samples"] == 1
    assert "unreadable image: left out\t" in (tmp_path / "run" / "data_issues.txt").read_text()
    ev = mobilenets.evaluate(res.weights, progress=False, workers=0)
    assert ev.count == 7 and len(ev.skipped) == 1 and "0001.jpg" in ev.skipped[0]
    with pytest.raises(ValueError, match="training images were unreadable"):
        train(TrainConfig(data=str(data), epochs=1, out=str(tmp_path / "run2"), workers=0, amp="off",
                          max_bad_fraction=0.04, **DET_FAST))
    with pytest.raises(ValueError, match="1 of 32 images could not be used"):
        train(TrainConfig(data=str(data), epochs=1, out=str(tmp_path / "run3"), workers=0, amp="off",
                          max_bad_fraction=0.0, **DET_FAST))
