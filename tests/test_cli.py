"""The CLI's cost verbs: readable tables and JSON."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mobilenets.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_models(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "models", "--json")
    rows = json.loads(out)
    assert rc == 0 and len(rows) == 51
    v1 = next(r for r in rows if r["model"] == "1.0-MobileNet-224")
    assert v1["madds"] == 568_740_352 and v1["params"] == 4_210_088
    rc, out, _ = run(capsys, "models", "*V2-96")
    assert "0.35-MobileNetV2-96" in out and "MobileNet-224" not in out


def test_summary(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "summary", "0.75-MobileNet-128")
    assert rc == 0 and "blocks.12.pointwise" in out and "Conv DW 3x3" in out
    rc, out, _ = run(capsys, "summary", "1.0-MobileNetV2-224", "--input-size", "160", "--json")
    d = json.loads(out)
    assert d["madds"] == 154_083_072 or round(d["madds"] / 1e6, 1) == 154.1
    assert d["input_size"] == [160, 160]


def test_paper_tables(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "paper", "v1")
    assert rc == 0
    assert "1.19" in out and "1.91 *" in out and "digit swap" in out
    assert "Shallow MobileNet" in out and "4866" in out
    rc, out, _ = run(capsys, "paper", "v2", "--json")
    tables = {t["id"]: t for t in json.loads(out)}
    cks = tables["v2-checkpoints"]["rows"]
    assert len(cks) == 22 and all(r["match"] for r in cks)
    t4 = {r["label"]: r for r in tables["v2-table4"]["rows"]}
    assert not t4["MobileNetV2 (1.4)"]["match"] and "6.06" in t4["MobileNetV2 (1.4)"]["note"]
    assert t4["MobileNetV2"]["match"]


def test_bad_name_gives_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _out, err = run(capsys, "summary", "0.75-MobileNet-12")
    assert rc == 2 and err.count("\n") == 1 and ">= 32" in err and "Traceback" not in err


def test_python_dash_m() -> None:
    r = subprocess.run([sys.executable, "-m", "mobilenets", "summary", "nope"], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown model name" in r.stderr and "Traceback" not in r.stderr


SIZE_VERBS = {
    "summary": ["summary", "1.0-MobileNet-224"],
    "bench": ["bench", "1.0-MobileNet-224"],
    "export": ["export", "--weights", "w.safetensors", "--out", "m.onnx"],
    "memory": ["memory", "1.0-MobileNetV2-224"],
    "predict": ["predict", "--weights", "w.safetensors", "photo.jpg"],
    "train": ["train", "--epochs", "1"],
    "choose": ["choose", "--family", "v2"],
}


@pytest.mark.parametrize("verb", sorted(SIZE_VERBS))
def test_every_verb_applies_one_input_size_rule(verb: str, capsys: pytest.CaptureFixture[str],
                                                tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same one-line message from every verb that takes an input size, before any work."""
    monkeypatch.chdir(tmp_path)
    rc, _out, err = run(capsys, *SIZE_VERBS[verb], "--input-size", "7")
    assert rc == 2 and err == f"mobilenets {verb}: error: invalid input size 7; it must be an integer >= 32\n"
    assert not list(tmp_path.iterdir())  # nothing was started


def test_every_api_applies_one_input_size_rule(tmp_path) -> None:
    from mobilenets import TrainConfig, create_model, predict, profile
    from mobilenets.analysis.memory import analyze
    from mobilenets.deploy import export
    from mobilenets.tradeoffs import bench, choose

    model = create_model("0.25-MobileNet-32")
    calls = [lambda: profile("1.0-MobileNet-224", input_size=7), lambda: bench(model, input_size=7),
             lambda: export(model, tmp_path / "m.onnx", input_size=7), lambda: analyze(model, input_size=7),
             lambda: predict(model, [tmp_path], input_size=7), lambda: TrainConfig(input_size=7).resolved(),
             lambda: choose("v2", input_size=7), lambda: create_model("1.0-MobileNet-7")]
    for call in calls:
        with pytest.raises(ValueError, match=r"^invalid input size 7; it must be an integer >= 32$"):
            call()


def test_json_is_all_that_goes_to_stdout(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    """``--json``: stdout holds the one JSON line a script reads; what the library says on the way (here
    training's report line) goes to stderr. Before, ``train --json`` printed its messages first."""
    rc, out, err = run(capsys, "train", "--model", "0.25-MobileNet-32", "--epochs", "1", "--out",
                       str(tmp_path / "run"), "--json")
    assert rc == 0 and json.loads(out)["epochs"] == 1 and out.count("\n") == 1
    assert "held-out report of the best epoch" in err
