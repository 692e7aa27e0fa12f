"""ExecuTorch export (``.pte``, XNNPACK delegate) checked in the ExecuTorch runtime, and
``--runtime executorch`` on our programs and on weights (through a cached export)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import randomize_bn, weights_through_a_cached_export

from mobilenets import create_model
from mobilenets.deploy import sessions
from mobilenets.deploy.export import export
from mobilenets.deploy.runtime_choice import candidate_runtimes, open_session
from mobilenets.deploy.sessions import ExecutorchSession, TorchSession


@pytest.fixture(scope="module")
def classifier() -> torch.nn.Module:
    torch.manual_seed(0)
    model = randomize_bn(create_model("0.5-MobileNetV2-64", num_classes=10)).eval()
    model.weights_meta = {"classes": [f"c{i}" for i in range(10)]}
    return model


def test_pte_matches_pytorch_carries_metadata_and_runs_any_batch(classifier: torch.nn.Module, tmp_path: Path) -> None:
    res = export(classifier, tmp_path / "m.pte", "pte")
    assert res.ok and res.format == "pte" and res.max_abs_diff <= 1e-4
    session = open_session(tmp_path / "m.pte", "auto")  # a .pte runs in ExecuTorch
    assert isinstance(session, ExecutorchSession) and session.config == classifier.config
    assert session.meta["classes"][3] == "c3" and session.meta["preprocessing"]
    x = torch.randn(3, 3, 64, 64)
    with torch.inference_mode():
        assert np.abs(session.run(x.numpy()) - classifier(x).numpy()).max() <= 1e-4
    with pytest.raises(ValueError, match="takes 3x64x64 images .* not 3x96x96: export at that --input-size"):
        session.run(np.zeros((1, 3, 96, 96), np.float32))
    with pytest.raises(ValueError, match="is a .pte file: use --runtime executorch"):
        open_session(tmp_path / "m.pte", "onnxruntime")


@pytest.mark.slow
def test_detector_pte_runs_nms_after_the_program(tmp_path: Path) -> None:
    torch.manual_seed(0)
    det = randomize_bn(create_model("0.25-SSDLite-MobileNetV2-96", num_classes=3)).eval()
    assert export(det, tmp_path / "d.pte", "pte").ok
    x = torch.randn(2, 3, 96, 96)
    ours, ref = ExecutorchSession(tmp_path / "d.pte").run(x.numpy()), TorchSession(det).run(x)
    assert len(ours) == 4 and (ours[3] == ref[3]).all() and ref[3].sum() > 0
    n = int(ref[3][0])
    np.testing.assert_allclose(ours[1][0, :n], ref[1][0, :n], atol=1e-4)
    np.testing.assert_allclose(ours[0][0, :n], ref[0][0, :n], atol=1e-3)


@pytest.mark.slow
def test_weights_run_in_executorch_and_predict_reads_the_program(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    s = weights_through_a_cached_export(tmp_path, monkeypatch, "executorch", "pte")
    from PIL import Image

    Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(tmp_path / "i.png")
    r = subprocess.run([sys.executable, "-m", "mobilenets", "predict", "--weights", str(s.path),
                        str(tmp_path / "i.png"), "--json", "--top-k", "2"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    top = json.loads(r.stdout)["predictions"][0]["predictions"]
    assert len(top) == 2 and {p["class"] for p in top} <= set("abcd")


def test_executorch_is_optional(monkeypatch: pytest.MonkeyPatch) -> None:
    assert candidate_runtimes()[-1] == "executorch"  # installed here (the dev extra): auto measures it
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "executorch" else real(n, *a))
    assert candidate_runtimes() == ("torch", "onnxruntime", "openvino", "litert")
    with pytest.raises(ImportError, match=r"pip install 'mobilenets\[executorch\]'"):
        sessions.require_executorch()
