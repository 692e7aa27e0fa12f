"""Choosing a MobileNet for a budget: selection logic, latency cache, sweeps and plots."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mobilenets.deploy.bench import measure_latencies
from mobilenets.tradeoffs import sweep
from mobilenets.tradeoffs.choose import Candidate, accuracy_table, choose, parse_count, select
from mobilenets.tradeoffs.plots import pareto_front

TABLE = [
    Candidate("a-big", 72.0, 10.0, 3_500_000, 300_000_000),
    Candidate("b-mid", 70.0, 6.0, 2_600_000, 200_000_000),
    Candidate("c-mid-slow", 70.0, 7.0, 2_600_000, 200_000_000),
    Candidate("d-small", 60.0, 2.0, 1_600_000, 60_000_000),
]


def test_unconstrained_picks_most_accurate() -> None:
    c = select(TABLE)
    assert c.model == "a-big" and all(x.feasible for x in c.candidates)


def test_each_constraint_applies() -> None:
    assert select(TABLE, max_latency_ms=8).model == "b-mid"
    assert select(TABLE, max_params=2e6).model == "d-small"
    assert select(TABLE, max_madds=250e6).model == "b-mid"
    c = select(TABLE, max_latency_ms=8, max_params=3e6, max_madds=100e6)
    assert c.model == "d-small"
    why = {x.model: x.reasons for x in c.candidates}
    assert any("MAdds" in r for r in why["b-mid"]) and any("latency" in r for r in why["a-big"])


def test_ties_go_to_the_faster_model() -> None:
    c = select(TABLE, max_latency_ms=8.5)
    assert c.model == "b-mid"
    assert "not faster" in " ".join(next(x for x in c.candidates if x.model == "c-mid-slow").reasons)


def test_nothing_feasible_names_the_closest() -> None:
    c = select(TABLE, max_latency_ms=1.5)
    assert c.model is None and c.closest == "d-small" and "no model meets" in c.message
    c = select(TABLE, max_params=1e6, max_madds=250e6)
    assert c.model is None and c.closest == "d-small"
    with pytest.raises(ValueError, match="max latency"):
        select(TABLE, max_latency_ms=-1)


def test_pareto_front() -> None:
    pts = [(1.0, 50.0), (2.0, 60.0), (3.0, 55.0), (4.0, 70.0), (2.0, 58.0)]
    assert pareto_front(pts) == [0, 1, 3]


def test_accuracy_tables() -> None:
    v1, v2 = accuracy_table("v1"), accuracy_table("v2")
    assert len(v1) == 16 and len(v2) == 22
    assert v1["1.0-MobileNet-224"][0] == 70.9 and v2["1.4-MobileNetV2-224"][0] == 75.0
    with pytest.raises(FileNotFoundError):
        accuracy_table("v1", "/no/such.csv")


def test_parse_count() -> None:
    assert parse_count("2.5M") == 2.5e6 and parse_count("300m") == 3e8 and parse_count("4000") == 4000
    with pytest.raises(ValueError):
        parse_count("lots")


def test_latency_cache_and_choose(tmp_path: Path) -> None:
    cache = tmp_path / "lat.json"
    measured = []
    lat = measure_latencies(["0.25-MobileNet-128", "0.5-MobileNet-128"], cache=cache, progress=measured.append)
    assert measured == ["0.25-MobileNet-128", "0.5-MobileNet-128"] and lat["0.25-MobileNet-128"] > 0
    again = measure_latencies(["0.25-MobileNet-128"], cache=cache, progress=measured.append)
    assert measured == ["0.25-MobileNet-128", "0.5-MobileNet-128"] and again == {"0.25-MobileNet-128":
                                                                               lat["0.25-MobileNet-128"]}
    # a sweep CSV as the accuracy source; latencies for its models measured once, then cached
    csv_path = tmp_path / "sweep.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "top1"])
        w.writerows([["0.25-MobileNet-128", "90.0"], ["0.5-MobileNet-128", "95.0"]])
    c = choose("v1", accuracy=str(csv_path), max_params=parse_count("0.5M"), cache=cache)
    assert c.model == "0.25-MobileNet-128"  # 0.5-MobileNet-128 has 1.32M params
    c = choose("v1", accuracy=str(csv_path), cache=cache)
    assert c.model == "0.5-MobileNet-128"
    d = c.to_dict()
    assert {"model", "runtime", "candidates"} <= set(d)
    assert {"model", "top1", "latency_ms", "params", "madds"} <= set(d["candidates"][0])


@pytest.mark.slow  # ~10-19 s: trains two models; CI runs the slow tier too
def test_sweep_on_digits_writes_csv_and_plots(tmp_path: Path) -> None:
    res = sweep("v1", widths=(0.25, 0.5), resolutions=(32,), out=tmp_path / "sw", epochs=1, progress=False,
                batch_size=64)
    with open(res.csv) as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == ["0.25-MobileNet-32", "0.5-MobileNet-32"]
    assert all(float(r["latency_ms"]) > 0 and int(r["madds"]) > 0 for r in rows)
    assert sorted(Path(p).name for p in res.plots) == ["accuracy_vs_latency.png", "accuracy_vs_madds.png",
                                                       "accuracy_vs_params.png"]
    assert all(Path(p).stat().st_size > 5000 for p in res.plots)
    # resumable: a second call reads the finished runs back instead of training again
    summary = tmp_path / "sw" / "0.25-MobileNet-32" / "summary.json"
    mtime = summary.stat().st_mtime
    res2 = sweep("v1", widths=(0.25, 0.5), resolutions=(32,), out=tmp_path / "sw", epochs=1, progress=False)
    assert summary.stat().st_mtime == mtime and res2.rows[0]["top1"] == res.rows[0]["top1"]
    assert json.loads(summary.read_text())["epochs"] == 1
