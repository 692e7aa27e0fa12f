"""Training at scale: torchrun (gloo on CPU), surviving a killed worker, tar shards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mobilenets.data.shard_writer import write_shards
from mobilenets.training import TrainConfig, train
from mobilenets.weights import load_model

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_two_process_gloo_matches_single_process(tmp_path: Path) -> None:
    """The default digits job on 2 CPU processes (32 images each: the same global batch of 64)."""
    single = train(TrainConfig(out=str(tmp_path / "single"), progress=False))
    r = subprocess.run(TORCHRUN + ["--nproc_per_node", "2", "-m", "mobilenets", "train", "--batch-size", "32",
                                   "--out", str(tmp_path / "ddp"), "--no-progress", "--json"],
                       capture_output=True, text=True, env=_env())
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["world_size"] == 2 and summary["epochs"] == 40
    assert summary["top1"] >= single.top1 - 1.0, (summary["top1"], single.top1)
    assert load_model(summary["weights"]).config.name == "0.5-MobileNetV2-32"


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(d.name))
    return out


@pytest.mark.slow
def test_killed_worker_is_restarted_and_resumes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cmd = TORCHRUN + ["--nproc_per_node", "2", "--max-restarts", "1", "-m", "mobilenets", "train", "--model",
                      "0.25-MobileNet-32", "--epochs", "4", "--batch-size", "32", "--save-every-steps", "5",
                      "--out", str(run), "--no-progress", "--json"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    deadline = time.time() + 300
    while time.time() < deadline and not (run / "state.pt").exists():
        time.sleep(0.1)
    assert (run / "state.pt").exists()
    workers = _children(p.pid)
    assert len(workers) == 2, workers
    os.kill(max(workers), signal.SIGKILL)  # one worker dies; torchelastic restarts the group
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]
    assert "resuming" in out + err
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert torch.load(run / "state.pt", weights_only=True)["epoch"] == 4
    assert load_model(run / "best.safetensors").config.num_classes == 10


def test_tar_shards_train_and_eval(tmp_path: Path) -> None:
    from conftest import color_folder

    from mobilenets import evaluate

    color_folder(tmp_path / "imgs", n=12)
    index = write_shards(tmp_path / "imgs", tmp_path / "shards", shard_size=10, val_split=0.25)
    assert index["counts"] == {"train": 27, "val": 9} and len(index["train"]) == 3
    res = train(TrainConfig(data=str(tmp_path / "shards"), model="0.25-MobileNet-32", epochs=2, batch_size=8,
                            out=str(tmp_path / "run"), progress=False, workers=0, amp="off"))
    assert [h["epoch"] for h in res.history] == [1, 2]
    assert res.history[0]["step"] == 4  # ceil(27 / 8) steps per epoch
    ev = evaluate(res.weights, progress=False, workers=0)
    assert ev.count == 9 and ev.top1 == pytest.approx(res.top1)
