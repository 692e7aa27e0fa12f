"""Sessions without a per-call tax (layouts, tensor details read once), OpenVINO, and auto's choice:
each runtime measured alone, the choice stable within the noise, cached with its time and spread.
Logic on faked timings and real small models; no wall-clock numbers (benchmarks/runtime_overhead.py)."""

from __future__ import annotations

import importlib
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import randomize_bn

from mobilenets import create_model, predict
from mobilenets.deploy import runtime_choice as choice
from mobilenets.deploy.quantize import export_onnx_int8
from mobilenets.deploy.runtime_choice import (
    cached_export,
    choose_runtime,
    measure_isolated,
    open_session,
    ranked,
    stable_choice,
    wait_idle,
)
from mobilenets.deploy.sessions import BoundArrayHeldError, LitertSession, OnnxSession, OpenvinoSession, to_layout
from mobilenets.utils.timing import time_pairs

predict_module = importlib.import_module("mobilenets.deploy.predict")  # the package exports the function
sessions_module = importlib.import_module("mobilenets.deploy.sessions")


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One export cache for the module: each runtime's export of the classifier is made once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def classifier() -> torch.nn.Module:
    return randomize_bn(create_model("0.25-MobileNet-32", num_classes=4)).eval()


@pytest.fixture(scope="module")
def onnx_file(classifier: torch.nn.Module, exports: Path) -> Path:
    """The classifier's ONNX export (ONNX Runtime and OpenVINO share it)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MOBILENETS_CACHE", str(exports))
        return cached_export(classifier, "openvino")


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32)


# ------------------------------------------------------------------------------- layouts


def test_to_layout_is_a_view_and_round_trips(batch: np.ndarray) -> None:
    nhwc = to_layout(batch, "NCHW", "NHWC")
    assert nhwc.shape == (2, 32, 32, 3) and np.shares_memory(nhwc, batch)
    assert to_layout(batch, "NCHW", "NCHW") is batch
    assert np.array_equal(to_layout(np.ascontiguousarray(nhwc), "NHWC", "NCHW"), batch)
    t = torch.from_numpy(batch)
    assert to_layout(t, "NCHW", "NHWC").shape == (2, 32, 32, 3)
    with pytest.raises(ValueError, match="valid: NCHW, NHWC"):
        to_layout(batch, "CHWN", "NHWC")


@pytest.mark.parametrize("runtime, layout", [
    ("torch", "NHWC"), ("onnxruntime", "NCHW"), ("openvino", "NCHW"), ("litert", "NHWC"),
    pytest.param("executorch", "NCHW", marks=pytest.mark.slow)])  # its export alone takes 13 s
def test_every_session_takes_its_own_layout_and_nchw_alike(runtime: str, layout: str, classifier: torch.nn.Module,
                                                          batch: np.ndarray, exports: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOBILENETS_CACHE", str(exports))
    s = open_session(classifier, runtime)
    assert s.layout == layout
    with torch.inference_mode():
        ref = classifier(torch.from_numpy(batch)).numpy()
    native = np.ascontiguousarray(to_layout(batch, "NCHW", layout))
    assert np.abs(s.run(batch) - ref).max() <= 1e-4
    assert np.abs(s.run(native, layout) - ref).max() <= 1e-4
    assert np.abs(s.run(torch.from_numpy(native), layout) - ref).max() <= 1e-4
    s.raw(native[:1], layout)()  # the runtime's own call runs on the same input


def test_torch_takes_an_nhwc_batch_without_a_copy(classifier: torch.nn.Module, batch: np.ndarray) -> None:
    s = open_session(classifier, "torch")
    native = torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 2, 3, 1)))
    t = s._input(native, "NHWC")
    assert t.data_ptr() == native.data_ptr() and t.shape == (2, 3, 32, 32)


def test_litert_reads_tensor_details_once(classifier: torch.nn.Module, batch: np.ndarray, exports: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOBILENETS_CACHE", str(exports))
    s = open_session(classifier, "litert")
    assert isinstance(s, LitertSession)
    first = s.run(batch)

    def refuse(*a: Any) -> None:
        raise AssertionError("tensor details looked up on the hot path")

    monkeypatch.setattr(s.interpreter, "get_output_details", refuse)
    monkeypatch.setattr(s.interpreter, "get_input_details", refuse)
    assert np.array_equal(s.run(batch), first)  # NCHW: transposed straight into the input buffer
    assert np.array_equal(s.run(np.ascontiguousarray(batch.transpose(0, 2, 3, 1)), "NHWC"), first)


class _Recording:
    """A session that records what predict hands it."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.seen = inner, []
        self.name, self.layout, self.meta, self.config = inner.name, inner.layout, inner.meta, inner.config

    def run(self, x: Any, layout: str = "NCHW") -> Any:
        self.seen.append((layout, tuple(x.shape), x.is_contiguous()))
        return self.inner.run(x, layout)


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_predict_hands_the_session_its_layout(runtime: str, classifier: torch.nn.Module, tmp_path: Path,
                                              exports: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    monkeypatch.setenv("MOBILENETS_CACHE", str(exports))
    w = classifier  # its exports are in the module's cache
    for k in range(3):
        Image.fromarray(np.full((40, 50, 3), 60 * k, np.uint8)).save(tmp_path / f"{k}.png")
    sessions: list[_Recording] = []
    real = predict_module.open_session

    def recording(*a: Any, **kw: Any) -> _Recording:
        sessions.append(_Recording(real(*a, **kw)))
        return sessions[-1]

    monkeypatch.setattr(predict_module, "open_session", recording)
    res = predict(w, [tmp_path / f"{k}.png" for k in range(3)], runtime=runtime, batch_size=2)
    layout = "NHWC" if runtime == "torch" else "NCHW"
    shape = (2, 32, 32, 3) if layout == "NHWC" else (2, 3, 32, 32)
    assert sessions[0].seen[0] == (layout, shape, True)  # a contiguous batch in the session's layout
    reference = predict(w, [tmp_path / f"{k}.png" for k in range(3)], runtime="onnxruntime", batch_size=1)
    for ours, ref in zip(res.predictions, reference.predictions, strict=True):
        assert ours.top[0][0] == ref.top[0][0] and ours.top[0][1] == pytest.approx(ref.top[0][1], abs=1e-4)


# ------------------------------------------------------------------------------- OpenVINO


def test_openvino_runs_our_onnx(onnx_file: Path, batch: np.ndarray) -> None:
    ov = open_session(onnx_file, "openvino")
    assert isinstance(ov, OpenvinoSession) and ov.meta["model"] == "0.25-MobileNet-32"
    assert np.abs(ov.run(batch) - OnnxSession(onnx_file).run(batch)).max() <= 1e-4
    with pytest.raises(ValueError, match="use --runtime onnxruntime or openvino"):
        open_session(onnx_file, "litert")


@pytest.mark.slow  # an int8 export (~10 s)
def test_openvino_runs_our_int8_onnx(classifier: torch.nn.Module, batch: np.ndarray, tmp_path: Path) -> None:
    calib = tmp_path / "calib"
    calib.mkdir()
    from PIL import Image

    for k in range(4):
        Image.fromarray(np.random.default_rng(k).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(calib / f"{k}.png")
    export_onnx_int8(classifier, tmp_path / "q.onnx", calibrate=calib)
    q_ov, q_ort = OpenvinoSession(tmp_path / "q.onnx").run(batch), OnnxSession(tmp_path / "q.onnx").run(batch)
    scale = np.abs(q_ort).max()
    assert np.abs(q_ov - q_ort).max() <= 0.1 * scale  # the same int8 graph, each runtime's own kernels
    assert (q_ov.argmax(1) == q_ort.argmax(1)).mean() >= 0.5


def test_openvino_is_optional(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "openvino" else real(n, *a))
    assert "openvino" not in choice.candidate_runtimes()
    assert choice.candidate_runtimes("m.onnx") == ("onnxruntime",)
    with pytest.raises(ImportError, match=r"pip install 'mobilenets\[openvino\]'"):
        OpenvinoSession("m.onnx")


# ------------------------------------------------------------------------------- auto: the choice


def test_a_tie_keeps_the_previous_choice_and_a_clear_lead_wins() -> None:
    close = {"litert": [1.00, 1.01, 0.99], "onnxruntime": [1.01, 1.00, 1.02], "torch": [3.0, 3.1, 2.9]}
    assert ranked(close) == ["litert", "onnxruntime"]
    assert stable_choice(ranked(close), "onnxruntime") == "onnxruntime"  # within the noise: no flip-flop
    assert stable_choice(ranked(close), None) == "litert"  # else a fixed order
    assert stable_choice(ranked(close), "torch") == "litert"  # a past choice outside the tie does not stay
    # a busy moment slows a whole round (here by 30%): the ratios within rounds still rank the runtimes
    noisy = {"litert": [1.0, 1.3, 0.8], "openvino": [1.05, 1.36, 0.85]}
    assert ranked(noisy) == ["litert"]
    assert ranked({"litert": [1.0, 1.3, 0.8], "openvino": [1.01, 1.29, 0.81]}) == ["litert", "openvino"]
    clear = {"litert": [1.0, 1.0, 1.0], "openvino": [0.8, 0.8, 0.81]}
    assert ranked(clear) == ["openvino"]


def test_the_choice_is_cached_with_its_time_and_spread(tmp_path: Path) -> None:
    model = create_model("0.25-MobileNet-32")
    cache = tmp_path / "runtime.json"
    first = choose_runtime(model, cache=cache, measure=lambda m, **kw: {"litert": [1.0, 1.01, 0.99],
                                                                         "onnxruntime": [1.01, 1.0, 1.0],
                                                                         "torch": [3.0, 3.3, 2.7]})
    assert first.runtime == "litert" and first.tied == ["litert", "onnxruntime"] and first.measured_at
    assert first.spread["torch"] == pytest.approx(0.2) and first.timings_ms["torch"] == 3.0
    entry = next(iter(json.loads(cache.read_text())["runtime"].values()))  # the measurements file's runtime section
    assert entry["runtime"] == "litert" and entry["spread"]["litert"] == pytest.approx(0.02)
    # remeasured: onnxruntime now a hair ahead, within the noise - the choice stays
    again = choose_runtime(model, cache=cache, remeasure=True, measure=lambda m, **kw: {"litert": [1.0],
                                                                                        "onnxruntime": [0.99]})
    assert again.runtime == "litert" and not again.cached
    ahead = choose_runtime(model, cache=cache, remeasure=True, measure=lambda m, **kw: {"litert": [1.0],
                                                                                        "onnxruntime": [0.8]})
    assert ahead.runtime == "onnxruntime"
    assert choose_runtime(model, cache=cache, measure=lambda m, **kw: {}).cached


def test_an_old_cache_entry_is_measured_again(tmp_path: Path) -> None:
    model = create_model("0.25-MobileNet-32")
    cache = tmp_path / "runtime.json"
    choose_runtime(model, cache=cache, measure=lambda m, **kw: {"torch": 1.0})
    key = next(iter(json.loads(cache.read_text())["runtime"]))
    cache.write_text(json.dumps({"runtime": {key: {"torch": 2.0, "litert": 1.0}}}))  # a table without its choice
    assert not choose_runtime(model, cache=cache, measure=lambda m, **kw: {"torch": 1.0}).cached


def test_wait_idle_sees_a_busy_thread() -> None:
    assert wait_idle()
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            pass

    t = threading.Thread(target=spin)
    t.start()
    try:
        assert not wait_idle(timeout=0.2)  # a spinning pool thread of this process counts
    finally:
        stop.set()
        t.join()


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_an_8bit_output_reads_as_its_dequantized_values(dtype: Any) -> None:
    """LiteRT's 8-bit outputs go through a table of their 256 codes: the same floats as the arithmetic,
    and a softmax's log-probabilities."""
    codes = np.arange(256, dtype=np.uint8).view(dtype).reshape(2, 128)
    value = (codes.astype(np.float32) - 5) * np.float32(0.03)
    np.testing.assert_array_equal(sessions_module._output_reader(np.dtype(dtype), 0.03, 5, log=False)(codes), value)
    np.testing.assert_array_equal(sessions_module._output_reader(np.dtype(dtype), 0.03, 5, log=True)(codes),
                                  np.log(np.maximum(value, 1e-30)))
    floats = np.linspace(0.0, 1.0, 7, dtype=np.float32)
    np.testing.assert_array_equal(sessions_module._output_reader(np.dtype(np.float32), 0.0, 0, log=True)(floats),
                                  np.log(np.maximum(floats, 1e-30)))


def test_session_and_raw_are_timed_in_alternating_pairs(onnx_file: Path) -> None:
    """What the overhead benchmark compares: session and raw call in short blocks whose order alternates
    (a then b, then b then a), so that a pair's two blocks see the same load; from a worker, as JSON."""
    calls: list[str] = []
    pairs = time_pairs(lambda: calls.append("a"), lambda: calls.append("b"), seconds=0.0, block_seconds=0.0,
                       warmup=0)
    assert len(pairs) == 2 and calls == ["a", "b", "b", "a"] and all(t >= 0 for p in pairs for t in p)
    w = choice.Worker("onnxruntime", onnx_file, 1)
    try:
        w.ask(cmd="ready")
        reply = w.ask(cmd="pairs", shape=[1, 3, 32, 32], seconds=0.05)
    finally:
        w.close()
    assert len(reply["pairs_ms"]) >= 2 and all(len(p) == 2 and min(p) > 0 for p in reply["pairs_ms"])


def test_each_runtime_is_timed_in_a_process_of_its_own(onnx_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two real workers on one ONNX file, each in its own process, timed in turn."""
    sources = {"onnxruntime": onnx_file, "openvino": onnx_file}
    spawned: list[Any] = []
    real = choice.Worker

    class Watched(real):  # type: ignore[misc, valid-type]
        def __init__(self, *a: Any) -> None:
            super().__init__(*a)
            spawned.append(self)

    monkeypatch.setattr(choice, "Worker", Watched)
    rounds = measure_isolated(sources, [1, 3, 32, 32], threads=1, min_rounds=2, max_rounds=2, seconds=0.05)
    assert set(rounds) == set(sources) and all(len(v) == 2 and min(v) > 0 for v in rounds.values())
    assert len({w.proc.pid for w in spawned}) == 2 and all(w.proc.poll() is not None for w in spawned)


def test_auto_on_an_onnx_file_chooses_between_its_runtimes(onnx_file: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOBILENETS_CACHE", str(tmp_path / "cache"))
    seen: list[Any] = []

    def fake(model: Any, **kw: Any) -> dict[str, list[float]]:
        seen.append(model)
        return {"onnxruntime": [1.0], "openvino": [0.5]}

    monkeypatch.setattr(choice, "measure_runtimes", fake)
    assert open_session(onnx_file, "auto").name == "openvino" and seen == [str(onnx_file)]
    assert open_session(onnx_file, "auto").name == "openvino" and len(seen) == 1  # cached



@pytest.mark.slow  # a training run and a CLI process (~15 s)
def test_eval_through_a_runtime_scores_the_held_out_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``eval --runtime openvino``: the held-out split the weights record, through our export, scored as
    training scored it."""
    import subprocess
    import sys

    from PIL import Image

    import mobilenets

    monkeypatch.setenv("MOBILENETS_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("val", 4)):
        for cls, colour in (("red", (200, 40, 40)), ("blue", (40, 40, 200))):
            (tmp_path / "d" / split / cls).mkdir(parents=True)
            for k in range(n):
                arr = rng.integers(0, 90, (40, 40, 3)) + np.array(colour) // 2
                Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(tmp_path / "d" / split / cls / f"{k}.png")
    res = mobilenets.train(mobilenets.TrainConfig(data=str(tmp_path / "d"), model="0.25-MobileNet-32", epochs=1,
                                                  progress=False, out=str(tmp_path / "run"), batch_size=8))
    r = subprocess.run([sys.executable, "-m", "mobilenets", "eval", "--weights", res.weights, "--runtime", "openvino",
                        "--json"], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["metric"] == "top1" and d["images"] == 8 and d["openvino"] == pytest.approx(res.top1)


def test_a_runtime_that_fails_on_the_batch_is_left_out(onnx_file: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A worker that stops while timing (LiteRT on a detector that took no batch did) is dropped with a
    message; auto chooses among the others instead of failing the predict that asked it."""
    real = choice.Worker

    class Failing(real):  # type: ignore[misc, valid-type]
        def ask(self, **request: Any) -> dict[str, object]:
            if self.runtime == "openvino" and request["cmd"] == "time":
                raise RuntimeError("the openvino worker stopped: RuntimeError: failed to prepare")
            return dict(super().ask(**request))

    monkeypatch.setattr(choice, "Worker", Failing)
    rounds = measure_isolated({"onnxruntime": onnx_file, "openvino": onnx_file}, [2, 3, 32, 32], threads=1,
                              min_rounds=2, max_rounds=2, seconds=0.02)
    assert list(rounds) == ["onnxruntime"] and len(rounds["onnxruntime"]) == 2
    assert "openvino worker stopped" in capsys.readouterr().err


def test_a_runtime_that_cannot_open_the_model_is_left_out(onnx_file: Path, tmp_path: Path) -> None:
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    rounds = measure_isolated({"onnxruntime": onnx_file, "openvino": tmp_path / "broken.onnx"}, [1, 3, 32, 32],
                              threads=1, min_rounds=1, max_rounds=1, seconds=0.02)
    assert list(rounds) == ["onnxruntime"]


# ------------------------------------------------------------------------------- bound inputs


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime", "openvino", "litert",
                                     pytest.param("executorch", marks=pytest.mark.slow)])
def test_run_takes_its_bound_array_as_it_is_and_sees_it_refilled(runtime: str, classifier: torch.nn.Module,
                                                                  batch: np.ndarray, exports: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOBILENETS_CACHE", str(exports))
    s = open_session(classifier, runtime)
    with torch.inference_mode():
        ref = classifier(torch.from_numpy(batch)).numpy()
        flipped = classifier(torch.from_numpy(batch[:, :, ::-1].copy())).numpy()
    bound = s.bind(batch)
    assert bound.shape == to_layout(batch, "NCHW", s.layout).shape and bound.flags.c_contiguous
    refuse = lambda *a, **kw: pytest.fail("the bound array was converted again")  # noqa: E731
    monkeypatch.setattr(sessions_module, "to_layout", refuse)
    monkeypatch.setattr(sessions_module, "copy_channels_last", refuse)
    assert np.abs(s.run(bound, s.layout) - ref).max() <= 1e-4
    bound[...] = to_layout(batch[:, :, ::-1], "NCHW", s.layout)  # refilled in place: the runtime reads it anew
    assert np.abs(s.run(bound, s.layout) - flipped).max() <= 1e-4


def test_litert_binds_its_own_input_tensor_and_quantizes_into_it(refdata: Path) -> None:
    s = LitertSession(refdata / "models" / "mobilenet_v1_0.25_224_quant.tflite")
    x = np.random.default_rng(1).uniform(-1, 1, (1, 3, 224, 224)).astype(np.float32)
    expected = s.run(x)
    bound = s.bind(x)
    assert bound.dtype == np.uint8 and bound.shape == (1, 224, 224, 3)  # the graph's dtype, on its input grid
    scale, zero_point = s.interpreter.get_input_details()[0]["quantization"]
    q = np.clip(np.rint(x.transpose(0, 2, 3, 1) / scale + zero_point), 0, 255)
    assert np.array_equal(bound, q.astype(np.uint8))
    assert np.array_equal(s.run(bound, "NHWC"), expected)


def test_litert_refuses_to_resize_under_a_held_bound_array(classifier: torch.nn.Module, batch: np.ndarray,
                                                          exports: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOBILENETS_CACHE", str(exports))
    s = open_session(classifier, "litert")
    bound = s.bind(batch)
    with pytest.raises(BoundArrayHeldError, match="still held"):
        s.run(batch[:1])  # another batch size needs a new tensor: the held array would dangle
    del bound
    assert s.run(batch[:1]).shape == (1, 4)
    one = s.bind(batch[:1])
    with pytest.raises(BoundArrayHeldError, match="still held"):  # not taken for a graph that takes no batch
        s.run(batch)
    del one
    assert s.run(batch).shape == (len(batch), 4) and not s._one_at_a_time
