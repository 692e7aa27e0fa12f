"""Bad input, untrusted weights, crashes and preemption: clear errors and nothing lost."""

from __future__ import annotations

import errno
import io
import json
import os
import random
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import mobilenets
from mobilenets.data.images import UnreadableImage, load_image
from mobilenets.training import TrainConfig, TrainingDiverged, train
from mobilenets.weights import WeightsError, load_model

CLI = [sys.executable, "-m", "mobilenets"]


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width x height pixels (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 10))
                     + chunk(b"IEND", b""))


def make_image_zoo(root: Path) -> tuple[list[Path], list[Path]]:
    """Odd but valid images, and unreadable files with image extensions."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)
    good = {
        "cmyk.jpg": Image.fromarray(rgb).convert("CMYK"),
        "gray.png": Image.fromarray(rgb).convert("L"),
        "rgba.png": Image.fromarray(rgb).convert("RGBA"),
        "sixteen.png": Image.fromarray((rng.integers(0, 65535, (20, 20))).astype(np.uint16)),
        "one_pixel.png": Image.new("RGB", (1, 1), (200, 10, 10)),
        "la.png": Image.fromarray(rgb).convert("LA"),
        "float.tif": Image.fromarray(rng.random((10, 10)).astype(np.float32), "F"),
    }
    pal = Image.fromarray(rgb).convert("P")
    pal.info["transparency"] = 0
    good["palette_transparent.png"] = pal
    paths = []
    for name, img in good.items():
        img.save(root / name)
        paths.append(root / name)
    exif = Image.fromarray(rgb)
    ex = exif.getexif()
    ex[0x0112] = 6  # orientation: rotate 90
    exif.save(root / "exif_rotated.jpg", exif=ex)
    paths.append(root / "exif_rotated.jpg")
    bad = []
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.png").write_text("this is not an image")
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG")
    (root / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])
    _png_header_only(root / "bomb.png", 200_000, 200_000)
    bad += [root / "empty.jpg", root / "text.png", root / "truncated.jpg", root / "bomb.png"]
    return paths, bad


def test_image_zoo(tmp_path: Path) -> None:
    good, bad = make_image_zoo(tmp_path / "imgs")
    for p in good:
        img = load_image(p)
        assert img.mode == "RGB" and min(img.size) >= 1, p
    assert load_image(tmp_path / "imgs" / "exif_rotated.jpg").size == (40, 30)  # rotated upright (was 30x40)
    assert load_image(tmp_path / "imgs" / "rgba.png").getpixel((0, 0)) == tuple(
        np.asarray(Image.open(tmp_path / "imgs" / "rgba.png"))[0, 0, :3])  # opaque pixels unchanged
    assert max(load_image(tmp_path / "imgs" / "sixteen.png").getdata())[0] > 200  # 16-bit rescaled, not clipped
    reasons = {}
    for p in bad:
        with pytest.raises(UnreadableImage) as e:
            load_image(p)
        reasons[p.name] = e.value.reason
    assert reasons["empty.jpg"] == "empty file" and "decompression bomb" in reasons["bomb.png"]


def test_predict_and_eval_report_bad_files_and_go_on(tmp_path: Path) -> None:
    good, bad = make_image_zoo(tmp_path / "imgs")
    model = mobilenets.create_model("0.25-MobileNet-32", num_classes=3)
    mobilenets.save_weights(model, tmp_path / "w.safetensors", classes=["a", "b", "c"])
    r = subprocess.run([*CLI, "predict", "--weights", str(tmp_path / "w.safetensors"), str(tmp_path / "imgs"),
                        "--json"], capture_output=True, text=True)
    assert r.returncode == 0 and "Traceback" not in r.stderr
    out = json.loads(r.stdout)
    assert len(out["predictions"]) == len(good)
    assert sorted(Path(e.split(":")[0]).name for e in out["errors"]) == sorted(p.name for p in bad)
    for p in bad:
        assert p.name in r.stderr
    # evaluation: a folder dataset with broken files among good ones
    for cls in ("a", "b", "c"):
        d = tmp_path / "data" / "val" / cls
        d.mkdir(parents=True)
        (tmp_path / "data" / "train" / cls).mkdir(parents=True)
        for i, p in enumerate(good[:3]):
            (d / f"{i}{p.suffix}").write_bytes(p.read_bytes())
            (tmp_path / "data" / "train" / cls / f"{i}{p.suffix}").write_bytes(p.read_bytes())
        (d / "broken.jpg").write_bytes(b"\xff\xd8 nope")
    res = mobilenets.evaluate(tmp_path / "w.safetensors", tmp_path / "data", progress=False, workers=0)
    assert res.count == 9 and len(res.skipped) == 3 and all("broken.jpg" in s for s in res.skipped)


def test_training_skips_bad_images_then_gives_up(tmp_path: Path) -> None:
    good, _ = make_image_zoo(tmp_path / "imgs")
    data = tmp_path / "data"
    for cls in ("x", "y"):
        (data / cls).mkdir(parents=True)
        for copy in range(3):
            for i, p in enumerate(good):
                (data / cls / f"{copy}_{i}{p.suffix}").write_bytes(p.read_bytes())
        (data / cls / "bad.png").write_bytes(b"garbage")
    res = train(TrainConfig(data=str(data), model="0.25-MobileNet-32", epochs=1, batch_size=4, out=str(tmp_path / "r"),
                            progress=False, workers=0, val_split=0.3))
    assert res.history[0]["bad_samples"] >= 1
    with pytest.raises(ValueError, match="unreadable"):
        train(TrainConfig(data=str(data), model="0.25-MobileNet-32", epochs=1, batch_size=4, out=str(tmp_path / "r2"),
                          progress=False, workers=0, val_split=0.3, max_bad_fraction=0.0))


# ------------------------------------------------------------------------------ untrusted weights


def test_malformed_weight_files(tmp_path: Path, refdata: Path) -> None:
    model = mobilenets.create_model("0.25-MobileNet-32", num_classes=3)
    mobilenets.save_weights(model, tmp_path / "ok.safetensors")
    data = (tmp_path / "ok.safetensors").read_bytes()
    cases = {
        "trunc.safetensors": data[: len(data) // 2],
        "header.safetensors": b"\xff" * 8 + b"{not json",
        "trunc.tflite": (refdata / "models" / "mobilenet_v1_0.25_224.tflite").read_bytes()[:5000],
        "trunc.h5": b"\x89HDF\r\n\x1a\n" + b"\0" * 100,
        "random.pth": os.urandom(300),
        "empty.safetensors": b"",
    }
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(WeightsError) as e:
            load_model(tmp_path / name)
        assert name in str(e.value) and len(str(e.value).splitlines()) == 1, name
        rc, err = _cli(["predict", "--weights", str(tmp_path / name), str(tmp_path)])
        assert rc == 2 and "Traceback" not in err and err.count("\n") == 1, (name, err)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.binary(max_size=600), cut=st.integers(0, 4000), flips=st.lists(st.integers(0, 10**6), max_size=8))
def test_fuzz_weight_loaders(tmp_path: Path, blob: bytes, cut: int, flips: list[int]) -> None:
    """Random bytes and damaged copies of valid files: a WeightsError (or a loaded model), nothing else."""
    base = tmp_path / "base.safetensors"
    if not base.exists():
        mobilenets.save_weights(mobilenets.create_model("0.25-MobileNet-32", num_classes=2), base)
    valid = bytearray(base.read_bytes())
    for f in flips:
        valid[f % len(valid)] ^= 0xFF
    for suffix, content in ((".safetensors", bytes(valid[: cut or None])), (".pth", blob), (".tflite", blob),
                            (".h5", blob)):
        p = tmp_path / f"fuzz{suffix}"
        p.write_bytes(content)
        try:
            load_model(p)
        except (WeightsError, ValueError):
            pass


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=3000), fmt=st.sampled_from(["PNG", "JPEG", "BMP", "GIF"]), cut=st.floats(0, 1))
def test_fuzz_image_loader(tmp_path: Path, data: bytes, fmt: str, cut: float) -> None:
    """Random bytes and truncated real encodings: an RGB image or UnreadableImage, nothing else."""
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 120, np.uint8)).save(buf, fmt)
    enc = buf.getvalue()
    for i, blob in enumerate((data, enc[: int(len(enc) * cut)], enc[:16] + data)):
        p = tmp_path / f"f{i}.{fmt.lower()}"
        p.write_bytes(blob)
        try:
            assert load_image(p).mode == "RGB"
        except UnreadableImage:
            pass


# ------------------------------------------------------------------------------ arguments


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["train", "--epochs", "0"], "epochs"),
        (["train", "--epochs", "-2"], "epochs"),
        (["train", "--batch-size", "0"], "batch size"),
        (["train", "--lr", "0"], "learning rate"),
        (["train", "--lr", "-1"], "learning rate"),
        (["train", "--input-size", "31"], ">= 32"),
        (["train", "--model", "0-MobileNet-224"], "alpha"),
        (["train", "--model", "MobileNetV5"], "unknown model"),
        (["train", "--data", "/no/such/folder"], "not found"),
        (["summary", "1.0-MobileNet-224", "--input-size", "-5"], "input size"),
        (["predict", "--weights", "/no/file.safetensors", "x.jpg"], "not found"),
        (["bench", "1.0-MobileNet-224", "--batch-size", "0"], "batch size"),
        (["export", "--weights", "/no/w.safetensors", "--out", "x.onnx"], "not found"),
    ],
)
def test_bad_arguments_one_line(argv: list[str], needle: str, tmp_path: Path) -> None:
    rc, err = _cli(argv + (["--out", str(tmp_path / "r")] if argv[0] == "train" else []))
    assert rc == 2 and needle in err, err
    assert "Traceback" not in err and err.count("\n") == 1


def test_bad_arguments_in_a_real_process(tmp_path: Path) -> None:
    r = subprocess.run(CLI + ["train", "--epochs", "0", "--out", str(tmp_path / "r")], capture_output=True, text=True)
    assert r.returncode == 2 and "epochs" in r.stderr and "Traceback" not in r.stderr


def _cli(argv: list[str]) -> tuple[int, str]:
    """The CLI in this process (same code path as the console script), returning (status, stderr)."""
    import contextlib

    from mobilenets.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(argv)
    return rc, err.getvalue()


def test_resume_with_different_classes_is_refused(tmp_path: Path) -> None:
    from conftest import color_folder

    color_folder(tmp_path / "data", n=6)
    train(TrainConfig(data=str(tmp_path / "data"), model="0.25-MobileNet-32", epochs=1, out=str(tmp_path / "run"),
                      progress=False, batch_size=8))
    color_folder(tmp_path / "data" / "extra_class_parent", n=1)  # adds classes
    (tmp_path / "data" / "purple").mkdir()
    Image.new("RGB", (20, 20), (128, 0, 128)).save(tmp_path / "data" / "purple" / "a.png")
    with pytest.raises(ValueError, match="differ from the checkpoint"):
        train(resume=tmp_path / "run", epochs=2)


# ------------------------------------------------------------------------------ crashes and preemption


def test_nonfinite_loss_stops_and_keeps_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mobilenets.training import loop as training

    run = tmp_path / "run"
    orig = training.TrainStep.__call__
    calls = {"n": 0}

    def poisoned(self, x, y):  # type: ignore[no-untyped-def]
        loss, correct = orig(self, x, y)
        calls["n"] += 1
        return (loss * float("nan"), correct) if calls["n"] > 30 else (loss, correct)

    monkeypatch.setattr(training.TrainStep, "__call__", poisoned)
    with pytest.raises(TrainingDiverged, match="lower learning rate"):
        train(TrainConfig(model="0.25-MobileNet-32", epochs=3, out=str(run), progress=False))
    state = torch.load(run / "state.pt", weights_only=True)
    assert state["epoch"] == 1  # the last good checkpoint (end of epoch 1) is kept
    assert load_model(run / "last.safetensors").config.num_classes == 10


def test_full_disk_keeps_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mobilenets.training import loop as training

    run = tmp_path / "run"
    train(TrainConfig(model="0.25-MobileNet-32", epochs=1, out=str(run), progress=False))
    before = (run / "state.pt").read_bytes()
    real_save = torch.save

    def full_disk(obj, f, *a, **k):  # type: ignore[no-untyped-def]
        Path(f).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(training.torch, "save", full_disk)
    with pytest.raises(OSError, match="previous checkpoint is intact"):
        train(resume=run, epochs=2)
    monkeypatch.setattr(training.torch, "save", real_save)
    assert (run / "state.pt").read_bytes() == before
    assert not list(run.glob(".*.tmp"))
    assert torch.load(run / "state.pt", weights_only=True)["epoch"] == 1


def _train_cmd(run: Path, epochs: int = 3) -> list[str]:
    return CLI + ["train", "--model", "0.25-MobileNet-32", "--epochs", str(epochs), "--out", str(run), "--no-progress",
                  "--deterministic", "--save-every-steps", "4", "--batch-size", "64"]


@pytest.mark.slow  # real processes and full runs: in the slow suite, which CI runs too
def test_sigterm_checkpoints_and_exits_cleanly(tmp_path: Path) -> None:
    run = tmp_path / "run"
    p = subprocess.Popen(_train_cmd(run), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "state.pt").exists():
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    _out, err = p.communicate(timeout=120)
    assert p.returncode == 130 and "checkpoint saved" in err and "Traceback" not in err
    assert "--resume" in err
    r = subprocess.run(CLI + ["train", "--resume", str(run), "--json", "--no-progress"], capture_output=True, text=True)
    assert r.returncode == 0 and json.loads(r.stdout.splitlines()[-1])["epochs"] == 3


# Runs the CLI and SIGKILLs itself at the n-th call of one function: a kill at an exact moment.
_KILL_AT = """
import os, signal, sys
import torch
import mobilenets.training.loop as t
where, n = sys.argv[1], int(sys.argv[2])
owner, name = {"step": (t.TrainStep, "__call__"), "state": (torch, "save"), "weights": (t, "save_weights"),
               "curves": (t, "plot_curves")}[where]
orig, calls = getattr(owner, name), [0]
def wrapped(*a, **k):
    calls[0] += 1
    if calls[0] == n and where != "state":
        os.kill(os.getpid(), signal.SIGKILL)
    out = orig(*a, **k)
    if calls[0] == n:  # the state's temporary file is written, not yet renamed
        os.kill(os.getpid(), signal.SIGKILL)
    return out
setattr(owner, name, wrapped)
from mobilenets.cli import main
sys.exit(main(sys.argv[3:]))
"""


def _assert_same_run(ref: Path, run: Path) -> None:
    a = load_model(ref / "last.safetensors").state_dict()
    b = load_model(run / "last.safetensors").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    ha = [json.loads(x)["val_top1"] for x in (ref / "metrics.jsonl").read_text().splitlines()]
    hb = [json.loads(x)["val_top1"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert ha == hb
    assert load_model(run / "best.safetensors").weights_meta["metrics"] == \
        load_model(ref / "best.safetensors").weights_meta["metrics"]
    assert (run / "curves.png").stat().st_size > 1000


@pytest.mark.slow  # the default suite keeps the in-process resume tests
def test_kills_at_every_moment_then_resume_equals_uninterrupted(tmp_path: Path) -> None:
    """SIGKILL before the first checkpoint, inside a state write, between the state and the weights
    and between the weights and the curves: ``--resume`` never refuses the folder and ends where an
    uninterrupted run ends."""
    ref, run = tmp_path / "ref", tmp_path / "run"
    rc, err = _cli(_train_cmd(ref)[3:])  # the uninterrupted run, in this process (same threads, deterministic)
    assert rc == 0, err
    resume = ["train", "--resume", str(run), "--no-progress"]
    first = _train_cmd(run)[3:]
    for i, (where, n) in enumerate([("step", 3), ("state", 2), ("weights", 1), ("curves", 2)]):
        r = subprocess.run([sys.executable, "-c", _KILL_AT, where, str(n)] + (first if i == 0 else resume),
                           capture_output=True, text=True)
        assert r.returncode == -signal.SIGKILL, (where, r.stderr)
        assert (run / "config.yaml").is_file()
        if i == 0:
            assert not (run / "state.pt").exists()  # killed before any checkpoint
    r = subprocess.run(CLI + resume + ["--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1])["epochs"] == 3
    assert not list(run.glob(".*.tmp"))
    _assert_same_run(ref, run)


def test_resume_without_a_checkpoint_starts_the_saved_configuration(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from mobilenets.utils.fsutil import create_dir_atomically

    run = tmp_path / "run"
    create_dir_atomically(run, {"config.yaml": "model: 0.25-MobileNet-32\nepochs: 1\nbatch_size: 64\n"})
    res = train(resume=run, progress=False)
    assert "starting its saved configuration from the beginning" in capsys.readouterr().out
    assert res.epochs == 1 and load_model(run / "best.safetensors").config.name == "0.25-MobileNet-32"
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        train(resume=tmp_path)


@pytest.mark.slow
def test_random_kills_then_resume_equals_uninterrupted(tmp_path: Path) -> None:
    """SIGKILL at random moments (start-up included), resume each time: the final weights equal an
    uninterrupted run's."""
    ref = tmp_path / "ref"
    r = subprocess.run(_train_cmd(ref), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    run = tmp_path / "run"
    rng = random.Random(1)
    kills = 0
    cmd = _train_cmd(run)
    for _ in range(8):
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 7.0))  # import takes ~3 s; then somewhere in training
        if p.poll() is None:
            p.kill()
            kills += 1
        p.wait()
        if (run / "config.yaml").exists():
            cmd = CLI + ["train", "--resume", str(run), "--no-progress"]
    # on a slow machine every kill may come before the run folder exists: then this run starts it
    r = subprocess.run(cmd + ["--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert kills >= 4
    _assert_same_run(ref, run)


