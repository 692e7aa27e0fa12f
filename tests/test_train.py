"""The main job: train, evaluate and predict on real data, checkpoints and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import color_folder
from PIL import Image

import mobilenets
from mobilenets.data import DataSpec, load_splits, resolve_data
from mobilenets.models import Preprocess
from mobilenets.training import TrainConfig, train
from mobilenets.training.optim import RMSpropTF, param_groups
from mobilenets.weights import load_model, read_metadata

FAST = dict(model="0.25-MobileNet-32", progress=False, batch_size=32)


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> mobilenets.training.TrainResult:
    """The default model and recipe on the embedded digits, shortened to 10 epochs (~20 s)."""
    out = tmp_path_factory.mktemp("digits") / "run"
    return train(TrainConfig(epochs=10, out=str(out), progress=False))


def test_default_run_learns_digits(digits_run: mobilenets.training.TrainResult) -> None:
    run = Path(digits_run.run_dir)
    assert digits_run.top1 > 90  # 10 of the default 40 epochs; the full run reaches >= 97 (README)
    assert digits_run.model == "0.5-MobileNetV2-32"
    for f in ("best.safetensors", "last.safetensors", "state.pt", "config.yaml", "metrics.jsonl", "curves.png",
              "summary.json"):
        assert (run / f).is_file(), f
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, 11))
    assert {"train_loss", "train_acc", "val_top1", "val_top5", "lr", "img_per_s"} <= set(rows[0])
    meta = read_metadata(run / "best.safetensors")
    assert meta["classes"] == [str(i) for i in range(10)]
    assert meta["dataset"]["kind"] == "digits" and meta["preprocessing"]["input_size"] == 32
    assert meta["metrics"]["top1"] == pytest.approx(digits_run.top1)


def test_eval_reproduces_training_number(digits_run: mobilenets.training.TrainResult, tmp_path: Path) -> None:
    res = mobilenets.evaluate(digits_run.weights, out=tmp_path, progress=False)
    assert res.top1 == pytest.approx(digits_run.top1, abs=1e-6)
    assert res.count == 360  # 20% of 1,797, stratified and seeded
    assert (tmp_path / "confusion.png").stat().st_size > 1000
    assert sum(res.confusion.sum(1).tolist()) == 360


def test_predict_names_held_out_digits(digits_run: mobilenets.training.TrainResult, tmp_path: Path) -> None:
    """Held-out digits saved as 8x8 PNG files are read back and classified through the file path."""
    splits = load_splits(DataSpec("digits"))
    paths, labels = [], []
    for i in range(30):
        img, y = splits.val[i]
        p = tmp_path / f"digit_{i}_{y}.png"
        Image.fromarray(img[0].numpy(), "L").save(p)
        paths.append(p)
        labels.append(str(y))
    res = mobilenets.predict(digits_run.weights, [tmp_path], top_k=3)
    assert not res.errors and len(res.predictions) == 30
    by_path = {Path(p.path).name: p for p in res.predictions}
    hits = [by_path[p.name].top[0][0] == y for p, y in zip(paths, labels)]
    assert sum(hits) >= 27
    first = by_path[paths[0].name]
    assert len(first.top) == 3 and first.top[0][1] >= first.top[1][1]
    # the file path gives the same probabilities as the in-memory evaluation path
    model = load_model(digits_run.weights)
    x = Preprocess.from_dict(model.weights_meta["preprocessing"]).eval_transform()(splits.val[0][0])
    with torch.no_grad():
        p0 = model(x[None]).softmax(1)[0]
    assert first.top[0][1] == pytest.approx(float(p0.max()), abs=1e-5)


def test_cli_predict_and_eval(digits_run: mobilenets.training.TrainResult, tmp_path: Path) -> None:
    splits = load_splits(DataSpec("digits"))
    model = load_model(digits_run.weights)
    tf = Preprocess.from_dict(model.weights_meta["preprocessing"]).eval_transform()
    with torch.no_grad():  # a held-out digit the model gets right in memory; the CLI must agree
        img, y = next((img, y) for img, y in (splits.val[i] for i in range(50)) if model(tf(img)[None]).argmax() == y)
    Image.fromarray(img[0].numpy(), "L").save(tmp_path / "d.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    r = subprocess.run([sys.executable, "-m", "mobilenets", "predict", "--weights", digits_run.weights,
                        str(tmp_path / "d.png"), str(tmp_path / "broken.png"), "--json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["predictions"][0]["predictions"][0]["class"] == str(y)
    assert "broken.png" in out["errors"][0] and "broken.png" in r.stderr
    r = subprocess.run([sys.executable, "-m", "mobilenets", "eval", "--weights", digits_run.weights, "--json",
                        "--out", str(tmp_path / "ev")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["top1"] == pytest.approx(digits_run.top1, abs=1e-3)


def test_imagefolder_train_val(tmp_path: Path) -> None:
    color_folder(tmp_path / "data" / "train")
    color_folder(tmp_path / "data" / "val", n=5)
    res = train(TrainConfig(data=str(tmp_path / "data"), out=str(tmp_path / "run"), epochs=12, workers=0,
                            input_size=32, model="0.25-MobileNet-32", batch_size=8, progress=False, amp="off"))
    meta = read_metadata(res.weights)
    assert meta["classes"] == ["blue", "green", "red"]
    assert meta["dataset"]["kind"] == "folder"
    assert res.top1 > 60  # well above chance (33%) after 12 short epochs (93-100% for seeds 0-3; 8 gave 60-87%)
    ev = mobilenets.evaluate(res.weights, progress=False)  # the split recorded in the weights
    assert ev.count == 15 and ev.top1 == pytest.approx(res.top1)


def test_imagefolder_single_folder_split(tmp_path: Path) -> None:
    color_folder(tmp_path / "imgs", n=10)
    spec = resolve_data(tmp_path / "imgs", val_split=0.3, seed=3)
    s1, s2 = load_splits(spec), load_splits(spec)
    assert len(s1.val) == 9 and s1.val.indices == s2.val.indices  # seeded, stratified
    assert load_splits(resolve_data(tmp_path / "imgs", 0.3, seed=4)).val.indices != s1.val.indices
    res = train(TrainConfig(data=str(tmp_path / "imgs"), val_split=0.3, out=str(tmp_path / "run"), epochs=1,
                            **FAST))
    assert read_metadata(res.weights)["dataset"]["val_split"] == 0.3


def test_fake_data_and_json_cli(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "mobilenets", "train", "--data", "fake", "--epochs", "1",
                        "--out", str(tmp_path / "run"), "--json", "--no-progress"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stdout.splitlines() if line.strip()]
    summary = json.loads(lines[-1])
    assert {"top1", "top5", "epochs", "weights", "wall_s"} <= set(summary)
    assert summary["epochs"] == 1 and Path(summary["weights"]).is_file()
    assert summary["precision"] == "fp32"  # the 'fake' preset trains with --amp off


def test_eval_every_evaluates_every_nth_and_the_last_epoch(tmp_path: Path) -> None:
    """Epochs without an evaluation have no held-out columns; the best epoch is chosen among the
    evaluated ones; the table and the curves show the gaps."""
    from mobilenets.training import format_history

    color_folder(tmp_path / "imgs", n=4)
    res = train(TrainConfig(data=str(tmp_path / "imgs"), epochs=3, eval_every=2, out=str(tmp_path / "run"),
                            workers=0, amp="off", **FAST))
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert [r["epoch"] for r in rows if "val_top1" in r] == [2, 3]
    assert {"train_loss", "lr", "img_per_s"} <= set(rows[0]) and "val_loss" not in rows[0]
    assert res.best_epoch in (2, 3) and res.top1 == max(r["val_top1"] for r in rows if "val_top1" in r)
    table = format_history(res.history).splitlines()
    assert "-" in table[2].split() and "-" not in table[3].split()  # epoch 1: no val columns; epoch 2: numbers
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000
    assert read_metadata(tmp_path / "run" / "last.safetensors")["metrics"]["top1"] == rows[-1]["val_top1"]
    with pytest.raises(ValueError, match="eval_every"):
        train(TrainConfig(data=str(tmp_path / "imgs"), eval_every=0, out=str(tmp_path / "bad"), **FAST))


def test_config_files(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text('model = "0.25-MobileNet-32"\nepochs = 1\nbatch_size = 48\nrecipe = "paper"\n')
    (tmp_path / "c.yaml").write_text("model: 0.25-MobileNet-32\nepochs: 1\nlabel-smoothing: 0.1\n")
    (tmp_path / "bad.yaml").write_text("epocs: 3\n")
    r = subprocess.run([sys.executable, "-m", "mobilenets", "train", "--config", str(tmp_path / "c.toml"),
                        "--batch-size", "40", "--out", str(tmp_path / "r1"), "--no-progress", "--json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    import yaml

    saved = yaml.safe_load((tmp_path / "r1" / "config.yaml").read_text())
    assert saved["batch_size"] == 40 and saved["recipe"] == "paper"  # the flag overrides the file
    assert saved["lr"] == pytest.approx(0.045 * 40 / 96) and saved["optimizer"] == "rmsprop_tf"
    assert saved["schedule"] == "exponential"
    r = subprocess.run([sys.executable, "-m", "mobilenets", "train", "--config", str(tmp_path / "bad.yaml")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "epocs" in r.stderr and "epochs" in r.stderr


@pytest.mark.slow  # real processes and full runs: in the slow suite, which CI runs too
def test_resume_is_exact_in_deterministic_mode(tmp_path: Path) -> None:
    cfg = dict(deterministic=True, **FAST)
    full = train(TrainConfig(epochs=3, out=str(tmp_path / "full"), **cfg))
    train(TrainConfig(epochs=2, out=str(tmp_path / "part"), **cfg))
    with pytest.raises(ValueError, match="already holds a run"):
        train(TrainConfig(epochs=3, out=str(tmp_path / "part"), **cfg))
    # extending 2 -> 3 epochs changes the cosine schedule, so resume with the full horizon instead:
    # a run stopped after epoch 2 of 3 (state written at the epoch boundary) then resumed
    stopped = tmp_path / "stopped"
    _run_until_epoch(TrainConfig(epochs=3, out=str(stopped), **cfg), stop_after=2)
    resumed = train(resume=stopped)
    a = [(h["train_loss"], h["val_loss"]) for h in full.history]
    b = [(h["train_loss"], h["val_loss"]) for h in resumed.history]
    assert a == b
    w1 = load_model(full.run_dir + "/last.safetensors").state_dict()
    w2 = load_model(resumed.run_dir + "/last.safetensors").state_dict()
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


def _run_until_epoch(cfg: TrainConfig, stop_after: int) -> None:
    """Train and raise SIGINT-like stop right after ``stop_after`` epochs by patching plot_curves."""
    import mobilenets.training.loop as plots

    orig = plots.plot_curves
    calls = {"n": 0}

    def stop(*a, **k):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        orig(*a, **k)
        if calls["n"] == stop_after:
            os.kill(os.getpid(), signal.SIGINT)

    plots.plot_curves = stop
    try:
        with pytest.raises(mobilenets.training.TrainingInterrupted, match="--resume"):
            train(cfg)
    finally:
        plots.plot_curves = orig


@pytest.mark.slow  # the default suite keeps the in-process resume tests
def test_kill_and_resume_continues_epoch_count(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "mobilenets", "train", "--model", "0.25-MobileNet-32", "--epochs", "4",
           "--out", str(run), "--no-progress", "--batch-size", "64"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "state.pt").exists():
        time.sleep(0.05)
    p.kill()  # SIGKILL: no chance to clean up
    p.wait()
    assert (run / "state.pt").exists()
    done_before = torch.load(run / "state.pt", weights_only=True)["epoch"]
    assert done_before < 4
    r = subprocess.run([sys.executable, "-m", "mobilenets", "train", "--resume", str(run), "--json", "--no-progress"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1])["epochs"] == 4
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4]
    assert torch.load(run / "state.pt", weights_only=True)["epoch"] == 4
    r = subprocess.run([sys.executable, "-m", "mobilenets", "train", "--resume", str(run), "--epochs", "5",
                        "--no-progress", "--json"], capture_output=True, text=True)
    assert r.returncode == 0 and json.loads(r.stdout.splitlines()[-1])["epochs"] == 5


def test_finetune_init_and_freeze(digits_run: mobilenets.training.TrainResult, tmp_path: Path) -> None:
    color_folder(tmp_path / "data", n=8)
    before = load_model(digits_run.weights).state_dict()
    res = train(TrainConfig(model="0.5-MobileNetV2-32", data=str(tmp_path / "data"), init=digits_run.weights,
                            freeze_backbone=True, epochs=1, out=str(tmp_path / "run"), progress=False))
    after = load_model(res.weights).state_dict()
    assert after["classifier.weight"].shape == (3, 1280)
    assert torch.equal(before["blocks.5.depthwise.conv.weight"], after["blocks.5.depthwise.conv.weight"])
    assert torch.equal(before["blocks.5.depthwise.bn.running_mean"], after["blocks.5.depthwise.bn.running_mean"])
    with pytest.raises(ValueError, match="no tensor matches"):
        train(TrainConfig(model="1.0-MobileNet-32", data="fake", init=digits_run.weights, epochs=1,
                          out=str(tmp_path / "run2"), progress=False))


def test_cifar_python_pickles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CIFAR-10 in its python-pickle layout (files made here; the md5 check is for the real ones)."""
    import pickle

    from torchvision.datasets import CIFAR10


    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(d / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 255, (20, 3072), dtype=np.uint8),
                         "labels": rng.integers(0, 10, 20).tolist()}, f)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                     "ship", "truck"]}, f)
    import torchvision.datasets.cifar

    monkeypatch.setattr(CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    spec = resolve_data(tmp_path)
    assert spec.kind == "cifar10"
    s = load_splits(spec)
    assert len(s.train) == 100 and len(s.val) == 20 and s.classes[0] == "airplane"
    res = train(TrainConfig(data=str(tmp_path), epochs=1, out=str(tmp_path / "run"), **FAST))
    assert read_metadata(res.weights)["classes"][9] == "truck"


def test_rmsprop_tf_matches_tensorflow_update() -> None:
    """TF: ms = d*ms + (1-d)*g^2 (ms starts at 1); mom = m*mom + lr*g/sqrt(ms+eps); w -= mom."""
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = RMSpropTF([w], lr=0.1, alpha=0.9, eps=1e-3, momentum=0.9)
    ms, mom, ref = np.ones(2), np.zeros(2), np.array([1.0, -2.0])
    for g in ([0.5, 1.0], [-0.3, 0.2]):
        w.grad = torch.tensor(g)
        opt.step()
        g = np.array(g)
        ms = 0.9 * ms + 0.1 * g * g
        mom = 0.9 * mom + 0.1 * g / np.sqrt(ms + 1e-3)
        ref = ref - mom
    np.testing.assert_allclose(w.detach().numpy(), ref, rtol=1e-6)


def test_weight_decay_skips_depthwise_bn_bias() -> None:
    m = mobilenets.create_model("0.25-MobileNet-32", num_classes=4)
    decay, no_decay = param_groups(m, 4e-5)
    names = {id(p): n for n, p in m.named_parameters()}
    d = {names[id(p)] for p in decay["params"]}
    nd = {names[id(p)] for p in no_decay["params"]}
    assert "blocks.0.pointwise.conv.weight" in d and "classifier.weight" in d and "stem.conv.weight" in d
    assert "blocks.0.depthwise.conv.weight" in nd and "classifier.bias" in nd and "stem.bn.weight" in nd
    assert decay["weight_decay"] == 4e-5 and no_decay["weight_decay"] == 0


@pytest.mark.parametrize("init", [None, "start.safetensors"])
def test_a_finetune_trains_the_layers_its_init_lacks_at_head_lr_mult(init: str | None) -> None:
    """With ``--init``, a detector's extras, top-down sum and predictors take lr x ``head_lr_mult``
    and its backbone lr, both through the schedule; without an init every layer takes lr."""
    from mobilenets.training.config import ResolvedConfig
    from mobilenets.training.step import build_train_step
    from mobilenets.utils.device import Precision

    model = mobilenets.create_model("0.25-SSDLite-MobileNetV2-96-p3", num_classes=2)
    cfg = ResolvedConfig(task="detection", model="0.25-SSDLite-MobileNetV2-96-p3", init=init, epochs=2, batch_size=4,
                         lr=0.002, head_lr_mult=3.0, optimizer="adamw", schedule="cosine", warmup_epochs=0.0)
    step = build_train_step(model, cfg, 5, torch.device("cpu"), Precision(None, "cpu"), lambda *a: None)
    lr_of = {id(p): g["lr"] for g in step.optimizer.param_groups for p in g["params"]}
    names = dict(model.named_parameters())
    fast = 0.006 if init else 0.002
    for name in ("backbone.stem.conv.weight", "backbone.blocks.10.project.bn.bias"):
        assert lr_of[id(names[name])] == pytest.approx(0.002), name
    for name in ("extras.0.reduce.conv.weight", "fuse.bn.weight", "heads.0.cls.pointwise.conv.bias"):
        assert lr_of[id(names[name])] == pytest.approx(fast), name
    assert len(lr_of) == len(names)
    for _ in range(5):
        step.scheduler.step()  # half-way down the cosine: both at half, still 3x apart
    assert sorted({round(g["lr"], 6) for g in step.optimizer.param_groups}) == sorted({0.001, fast / 2})


@pytest.mark.parametrize(
    ("opts", "match"),
    [
        (dict(epochs=0), "epochs"),
        (dict(epochs=-3), "epochs"),
        (dict(batch_size=0), "batch size"),
        (dict(lr=-0.1), "learning rate"),
        (dict(head_lr_mult=0.0), "head_lr_mult"),
        (dict(input_size=16), ">= 32"),
        (dict(recipe="adam"), "paper, sgd-cosine"),
        (dict(model="MobileNetV9"), "unknown model"),
        (dict(data="/nonexistent/folder"), "not found"),
    ],
)
def test_bad_training_arguments(opts: dict, match: str, tmp_path: Path) -> None:
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        train(TrainConfig(out=str(tmp_path / "r"), progress=False, **opts))


def test_empty_data_folder(tmp_path: Path) -> None:
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(ValueError, match="no images found"):
        train(TrainConfig(data=str(tmp_path / "empty"), out=str(tmp_path / "r"), progress=False))
    (tmp_path / "none").mkdir()
    with pytest.raises(ValueError, match="no class folders"):
        train(TrainConfig(data=str(tmp_path / "none"), out=str(tmp_path / "r2"), progress=False))


@pytest.mark.slow
def test_compiled_training_step(tmp_path: Path) -> None:
    """``--compile`` trains through torch.compile and saves weights with our keys (~1 min of compiling)."""
    res = train(TrainConfig(data="fake", epochs=1, compile=True, out=str(tmp_path / "run"), **FAST))
    assert np.isfinite(res.history[-1]["train_loss"])
    assert "blocks.0.depthwise.conv.weight" in load_model(res.weights).state_dict()


def test_auto_precision_follows_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """bf16 only where the CPU computes it natively; faked CPUs, so the test runs the same anywhere."""
    from mobilenets.utils import device

    cpu = torch.device("cpu")
    for flags, want in [(("avx2", "fma"), "fp32"), (("avx2", "avx512f", "avx512_vnni"), "fp32"),
                        (("avx2", "avx512f", "avx512_bf16"), "bf16"), (("avx2", "amx_tile", "amx_bf16"), "bf16")]:
        fake = device.CpuFeatures("fake", "x86_64", frozenset(flags))
        monkeypatch.setattr(device, "cpu_features", lambda fake=fake: fake)
        assert device.pick_precision("auto", cpu).name == want, flags
        assert device.pick_precision("off", cpu).name == "fp32"
    avx2 = device.CpuFeatures("fake", "x86_64", frozenset({"avx2", "fma"}))
    monkeypatch.setattr(device, "cpu_features", lambda: avx2)
    with pytest.warns(UserWarning, match="emulated"):  # asked for explicitly on a CPU without it
        assert device.pick_precision("bf16", cpu).name == "bf16"


def test_cpu_features_read_from_flags() -> None:
    from mobilenets.utils.device import CpuFeatures

    f = CpuFeatures("x", "x86_64", frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}))
    assert (f.avx2, f.avx512, f.vnni, f.avx512_bf16, f.amx, f.native_bf16) == (True, True, True, True, False, True)
    assert f.summary == "AVX2, AVX-512, VNNI, AVX512-BF16"
    assert CpuFeatures("y", "x86_64", frozenset({"avx2", "avx_vnni"})).summary == "AVX2, VNNI"
    assert not CpuFeatures("z", "x86_64", frozenset({"avx2"})).native_bf16
