"""``mobilenets`` command line: a thin layer over the Python API, one small function per verb with
its arguments declared beside it (``@verb``); the training flags come from ``TrainConfig``'s fields.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from .analysis import paper_tables, profile
from .analysis.memory import PAPER_MAX_KB, analyze
from .analysis.paper_tables import format_cell
from .data.shard_writer import write_shards
from .deploy import FORMATS, RUNTIMES, export, predict
from .deploy.evaluate import evaluate_in_runtime
from .deploy.predict import DetectionPrediction, SegmentationPrediction
from .deploy.runtime_choice import GRAPH_SUFFIXES, default_runtime
from .models import check_input_size, list_models, parse_name
from .tasks import kind_of
from .tradeoffs import bench, choose, sweep
from .tradeoffs.choose import parse_count
from .training import (
    TrainConfig,
    TrainingDiverged,
    TrainingInterrupted,
    evaluate,
    format_history,
    load_config_file,
    train,
)
from .utils.textfmt import millions, render_table
from .weights import convert_weights, load_model
from .weights.published import list_weights

Handler = Callable[[argparse.Namespace], int | None]
Arg = tuple[tuple[str, ...], dict[str, Any]]


class CLIError(Exception):
    """An error worth one line to the user (no traceback)."""


def arg(*names: str, **options: Any) -> Arg:
    """An argument as ``argparse.add_argument`` takes it, declared next to the verb that uses it."""
    return names, options


JSON = arg("--json", action="store_true", help="print JSON (one line, for scripts)")
INPUT_SIZE = arg("--input-size", type=int, default=None, help="input resolution (default: the model's)")
RUNTIME = arg("--runtime", default=None, choices=list(RUNTIMES),
              help="auto (default; $MOBILENETS_RUNTIME overrides): the runtime measured fastest for the model on "
                   "this machine, once, cached")
BATCH_SIZE = arg("--batch-size", type=int, default=1)
EMULATE = arg("--emulate-quantization", action="store_true",
              help="a uint8 TFLite file: compute what the device computes (activations rounded to the file's grids, "
                   "convs and adds as XNNPACK's integer kernels), in torch")


def _weights_arg(args: argparse.Namespace) -> str | nn.Module:
    """The weights as given, or, with --emulate-quantization, the model loaded with its integer arithmetic
    emulated (a torch module with hooks: it runs in torch only)."""
    if not args.emulate_quantization:
        return args.weights
    if getattr(args, "runtime", None) not in (None, "torch"):
        raise CLIError(f"--emulate-quantization runs in torch, not --runtime {args.runtime}")
    args.runtime = "torch"
    return load_model(args.weights, emulate_quantization=True)


@dataclasses.dataclass(frozen=True)
class Verb:
    name: str
    help: str
    args: tuple[Arg, ...]
    handler: Handler


VERBS: list[Verb] = []


def verb(name: str, help: str, *args: Arg) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        VERBS.append(Verb(name, help, args, fn))
        return fn

    return register


def _print_json(args: argparse.Namespace, obj: Any) -> None:
    """The one line a script reads: to stdout as it was before :func:`main` sent the library's own
    messages (progress, notes, warnings) to stderr for ``--json``."""
    print(json.dumps(obj, indent=None, default=str), file=args.json_out)


# ------------------------------------------------------------------------------- cost verbs


@verb("models", "list registered models with params and MAdds",
      arg("pattern", nargs="?", help="shell pattern, e.g. '*V2-224'"), JSON)
def cmd_models(args: argparse.Namespace) -> None:
    rows: list[dict[str, Any]] = []
    for name in list_models(args.pattern):
        p = profile(name)
        rows.append({"model": name, "params": p.params, "trainable_params": p.trainable_params, "madds": p.madds,
                     "input_size": p.input_size[0]})
    if args.json:
        _print_json(args, rows)
        return
    print(render_table(
        ["model", "input", "params (paper)", "params (torch)", "MAdds"],
        [[r["model"], r["input_size"], f"{r['params']:,}", f"{r['trainable_params']:,}", millions(r["madds"])]
         for r in rows],
    ))
    print(f"\n{len(rows)} models. Any width/resolution also works by name, e.g. 0.6-MobileNet-200. "
          "Params (paper) = conv + FC, no BN; params (torch) adds BN gamma/beta.")


@verb("summary", "per-layer cost table of a model (from its spec, no forward pass)",
      arg("model", help="model name, e.g. 0.75-MobileNet-128"), INPUT_SIZE, JSON)
def cmd_summary(args: argparse.Namespace) -> None:
    p = profile(args.model, input_size=args.input_size)
    if args.json:
        _print_json(args, p.to_dict())
        return
    print(f"{p.name} at {p.input_size[0]}x{p.input_size[1]}\n")
    print(render_table(
        ["layer", "type", "input", "output", "params", "MAdds", "activations"],
        [[r.name + (f" (x{r.runs})" if r.runs > 1 else ""), r.type, "x".join(map(str, r.input_shape)),
          "x".join(map(str, r.output_shape)),
          f"{r.params:,}", f"{r.madds:,}", f"{r.activations:,}"] for r in p.layers],
        align="llllrrr",
    ))
    print()
    print(render_table(
        ["type", "MAdds", "% MAdds", "params", "% params (no FC bias)"],
        [[t.type, f"{t.madds:,}", f"{t.madds_pct:.2f}", f"{t.params:,}", f"{t.weights_pct:.2f}"] for t in p.by_type],
    ))
    print(f"\nMAdds {p.madds:,} ({millions(p.madds)})  params {p.params:,} (conv + FC, no BN)  "
          f"trainable {p.trainable_params:,} (+BN gamma/beta)  BN buffers {p.bn_buffers:,}")
    if p.by_part:
        print("by part: " + ", ".join(f"{part} {millions(m)} MAdds / {millions(n)} params"
                                      for part, (m, n) in p.by_part.items()))


@verb("paper", "reproduce the papers' cost tables side by side with ours",
      arg("family", choices=["v1", "v2"], help="which paper"), JSON)
def cmd_paper(args: argparse.Namespace) -> None:
    tables = paper_tables(args.family)
    if args.json:
        _print_json(args, [t.to_dict() for t in tables])
        return
    mismatches = 0
    for t in tables:
        print(f"{t.title}\n  source: {t.source}")
        headers = ["", "accuracy"]
        for col in t.columns:
            headers += [f"{col} paper", f"{col} ours"]
        rows = []
        for r in t.rows:
            cells: list[str] = [r.label, r.accuracy]
            for col in t.columns:
                cells += list(format_cell(r.cells.get(col)))
            rows.append(cells + [r.note])
            mismatches += not r.match
        print(render_table(headers + ["note"], rows, align="ll" + "r" * 2 * len(t.columns) + "l"))
        print()
    print(f"* = differs from the printed value at its precision ({mismatches} rows; each carries a note). "
          "Ours: MAdds = conv + FC multiply-adds; params = conv + FC weights and bias, no BN (unless the "
          "table or the note says BN's scale and shift count).")


@verb("memory", "activation memory: V2 paper Table 3 and the t-way split schedule",
      arg("model", nargs="?", help="model name (default: 1.0-MobileNet-224 and 1.0-MobileNetV2-224)"),
      arg("--dtype", default="fp16", choices=["fp16", "fp32"]), INPUT_SIZE, JSON)
def cmd_memory(args: argparse.Namespace) -> None:
    names = [args.model] if args.model else ["1.0-MobileNet-224", "1.0-MobileNetV2-224"]
    results = [analyze(n, input_size=args.input_size, dtype=args.dtype) for n in names]
    if args.json:
        _print_json(args, [r.to_dict() for r in results] if len(results) > 1 else results[0].to_dict())
        return
    for r in results:
        fam = parse_name(r.model).family
        print(f"{r.model} at {r.input_size}px, {r.dtype} activations (V2 paper Table 3; K = 1000 bytes)")
        print(render_table(
            ["size", "max channels", "tensor", "memory", "paper channels", "paper memory", "note"],
            [[f"{x.size}x{x.size}", x.channels, x.tensor, f"{x.bytes / 1000:.1f}K",
              x.paper_channels if x.paper_channels is not None else "-",
              f"{x.paper_kb}K" if x.paper_kb is not None else "-", x.note] for x in r.rows],
            align="lrlrrrl",
        ))
        paper = f" (paper, arXiv: {PAPER_MAX_KB[fam]}K)" if r.rows[0].paper_kb is not None else ""
        print(f"max {r.max_bytes / 1000:.1f}K{paper}")
        bpe = 2 if r.dtype == "fp16" else 4
        print(f"peak live activations, plain layer-by-layer execution (BN folded): "
              f"{r.plain_peak_values * bpe / 1e6:.2f} MB")
        n_max = max(r.split_peak_values, default=0)
        for t, v in r.split_peak_values.items():
            label = f"t=n={t}" if t == n_max else f"t={t}"
            print(f"  paper schedule, {label}-way split + first-layer trick: {v * bpe / 1e6:.2f} MB")
        for note in r.notes:
            print(f"note: {note}")
        print()


# ------------------------------------------------------------------------------- train / eval


def _train_args() -> tuple[Arg, ...]:
    """One flag per TrainConfig field, with the field's type and help."""
    hints = typing.get_type_hints(TrainConfig)
    out = []
    for f in dataclasses.fields(TrainConfig):
        base = next((a for a in typing.get_args(hints[f.name]) if a is not type(None)), hints[f.name])
        kind = dict(action=argparse.BooleanOptionalAction) if base is bool else dict(type=base,
                                                                                   metavar=f.name.upper())
        out.append(arg("--" + f.name.replace("_", "-"), default=argparse.SUPPRESS, help=f.metadata["help"], **kind))
    return (*out, arg("--config", help="TOML or YAML file of options (flags override it)"),
            arg("--resume", metavar="RUN_DIR", help="continue this run from its last checkpoint"), JSON)


@verb("train", "train a MobileNet (no arguments: the embedded digits data)", *_train_args())
def cmd_train(args: argparse.Namespace) -> int:
    opts = {k: v for k, v in vars(args).items()
            if k not in ("handler", "command", "debug", "config", "resume", "json", "json_out")}
    try:
        if args.resume:
            result = train(resume=args.resume, **opts)
        else:
            merged = load_config_file(args.config) if args.config else {}
            merged.update(opts)
            result = train(TrainConfig.from_dict(merged))
    except TrainingInterrupted as e:
        print(f"mobilenets train: {e}", file=sys.stderr)
        return 130
    except TrainingDiverged as e:
        print(f"mobilenets train: error: {e}", file=sys.stderr)
        return 1
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 reports
        return 0
    if args.json:
        _print_json(args, {k: round(v, 4) if isinstance(v, float) else v for k, v in result.summary().items()})
    else:
        print(format_history(result.history))
        print(f"\nbest held-out {result.describe()} at epoch {result.best_epoch} "
              f"of {result.epochs}; {result.wall_s:.0f} s, {result.precision}\nweights: {result.weights}\n"
              f"run folder: {result.run_dir} (metrics.jsonl, curves.png, eval.json, examples.png, state.pt)")
    return 0


@verb("eval", "evaluate weights: top-1/top-5, per-class precision/recall, confusion matrix and examples PNGs; COCO "
      "mAP and precision-recall curves for detectors; mIoU for segmenters",
      arg("--weights", required=True, help="weights file (.safetensors from `train`, or a foreign format), or an "
                                            "exported .onnx / .tflite / .pte, run as it is (give --data)"),
      arg("--data", help="data to evaluate on (default: the held-out split recorded in the weights)"),
      arg("--batch-size", type=int, default=64), arg("--device", default="auto"),
      arg("--workers", type=int, default=None),
      arg("--out", help="folder for eval.json and confusion.png (default: next to the weights)"),
      arg("--runtime", default="torch", choices=list(RUNTIMES),
          help="run the held-out images through this runtime (our export of the weights) and print the task's "
               "metric; torch (default) gives the full report"),
      arg("--no-progress", dest="progress", action="store_false", help="no progress bar"), EMULATE, JSON)
def cmd_eval(args: argparse.Namespace) -> int:
    if args.runtime != "torch" or Path(args.weights).suffix in GRAPH_SUFFIXES:  # torch cannot run a graph
        scores = evaluate_in_runtime(_weights_arg(args), args.runtime, args.data, batch_size=args.batch_size)
        if args.json:
            _print_json(args, scores.to_dict())
        else:
            print(scores.describe())
        return 0
    out = args.out
    if out is None:
        w = Path(args.weights)
        out = w.parent / f"{w.stem}-eval" if os.access(w.parent, os.W_OK) else Path.cwd() / f"{w.stem}-eval"
    res = evaluate(_weights_arg(args), args.data, batch_size=args.batch_size, device=args.device, workers=args.workers,
                   out=out, progress=args.progress and not args.json)
    for s in res.skipped:
        print(f"unreadable: {s}", file=sys.stderr)
    if args.json:
        _print_json(args, {**res.to_dict(), "out": str(out)})
        return 0
    print(res.describe())
    print(f"report in {out}: {', '.join(sorted(p.name for p in Path(out).iterdir()))}")
    return 0


@verb("shard", "pack an image folder into WebDataset tar shards for large-scale training",
      arg("data", metavar="IMAGEFOLDER"), arg("out", metavar="OUT"),
      arg("--shard-size", type=int, default=1000, help="images per shard"),
      arg("--val-split", type=float, default=0.2, help="held-out fraction when there is no val/ folder"),
      arg("--seed", type=int, default=0))
def cmd_shard(args: argparse.Namespace) -> None:
    index = write_shards(args.data, args.out, args.shard_size, args.val_split, args.seed)
    print(f"wrote {len(index['train'])} train and {len(index['val'])} val shards ({index['counts']['train']} + "
          f"{index['counts']['val']} images, {len(index['classes'])} classes) to {args.out}; "
          f"train with --data {args.out}")


# ------------------------------------------------------------------------------- weights


@verb("weights", "list the published weights (torchvision, timm, Keras, TFLite)",
      arg("pattern", nargs="?", help="shell pattern on ids, e.g. 'tflite/*quant'"), JSON)
def cmd_weights(args: argparse.Namespace) -> None:
    entries = list_weights(args.pattern)
    if args.json:
        _print_json(args, [{"id": e.id, "model": e.model, "url": e.url, "sha256": e.sha256,
                            "hash_prefix": e.hash_prefix, "num_classes": e.num_classes,
                            "preprocessing": e.preprocessing, "top1": e.top1, "top5": e.top5,
                            "accuracy_source": e.accuracy_source, "params": e.cost.params, "madds": e.cost.madds,
                            "license": e.license} for e in entries])
        return
    print(render_table(
        ["id", "model", "classes", "top-1", "top-5", "input", "MAdds", "params"],
        [[e.id, e.model, e.num_classes, e.top1 if e.top1 is not None else "-", e.top5 if e.top5 is not None else "-",
          f"{e.input_size} {e.resize}/{e.crop_pct:.3g} {e.interpolation}", millions(e.cost.madds),
          millions(e.cost.params)] for e in entries],
        align="llrrrlrr",
    ))
    print(f"\n{len(entries)} published weights; use an id with --weights or mobilenets.load_model(id) "
          "(downloaded once to ~/.cache/mobilenets, verified).")


@verb("convert", "convert weights (TFLite, Keras, torchvision, timm, ours) to another format",
      arg("src", help="weights file, 'body.tflite+head.tflite', or a published id"),
      arg("dst", help="output file (.safetensors; .pth for --to torchvision/timm; .weights.h5 for keras)"),
      arg("--model", help="model name when the file cannot tell (an unusual width)"),
      arg("--drop-background", action="store_true", help="1001 TF classes -> 1000 (drop 'background')"),
      arg("--to", default="mobilenets", choices=["mobilenets", "torchvision", "timm", "keras"]))
def cmd_convert(args: argparse.Namespace) -> None:
    out = convert_weights(args.src, args.dst, args.model, drop_background=args.drop_background, target=args.to)
    if args.to == "mobilenets":
        m = load_model(out)
        net = kind_of(m).backbone(m.config)
        print(f"wrote {out}: {m.config.name}, {m.config.num_classes} classes, padding {net.padding}, "
              f"BN eps {net.bn_eps:g}")
    else:
        print(f"wrote {out} ({args.to} layout)")


# ------------------------------------------------------------------------------- deployment


@verb("export", "export for deployment (ONNX and TFLite, fp32/int8; TorchScript, torch.export) and check it",
      arg("--weights", required=True, help="weights file or published id"),
      arg("--model", help="model name when the weights cannot tell"),
      arg("--format", default="onnx", choices=list(FORMATS)),
      arg("--out", required=True, help="output file"),
      arg("--calibrate", metavar="IMAGE_DIR", help="int8: calibration images (default: the training split of the "
                                                   "data the weights record, else synthetic)"),
      arg("--argmax", action="store_true", help="segmenters (onnx, tflite, pte): output the class map, not the logits"),
      arg("--eval-data", metavar="DATA", help="int8: labeled data whose held-out split scores fp32 and int8 (default: "
                                              "the dataset the weights record)"),
      INPUT_SIZE, JSON)
def cmd_export(args: argparse.Namespace) -> int:
    res = export(load_model(args.weights, args.model), args.out, args.format, calibrate=args.calibrate,
                 input_size=args.input_size, argmax=args.argmax, progress=not args.json, eval_data=args.eval_data)
    if args.json:
        _print_json(args, {"path": res.path, "format": res.format, "max_abs_diff": res.max_abs_diff, "ok": res.ok,
                           "agreement": res.agreement, "calibration": res.calibration, **res.details,
                           "labeled": res.labeled.to_dict() if res.labeled is not None else None})
    else:
        print(res.summary())
    return 0 if res.ok else 1


@verb("predict", "classify image files or folders, or detect the objects in them",
      arg("--weights", required=True, help="weights file, published id, or exported .onnx / .tflite / .pte"),
      arg("inputs", nargs="+", metavar="IMAGE_OR_DIR"), arg("--top-k", type=int, default=5, help="classifiers"),
      arg("--score-threshold", type=float, default=0.3, help="detectors: the lowest score reported"),
      arg("--save-vis", metavar="DIR", help="detectors: write each image with its boxes drawn here"),
      INPUT_SIZE, arg("--batch-size", type=int, default=32), RUNTIME, arg("--device", default="auto"), EMULATE,
      JSON)
def cmd_predict(args: argparse.Namespace) -> int:
    weights = _weights_arg(args)
    res = predict(weights, args.inputs, top_k=args.top_k, batch_size=args.batch_size, device=args.device,
                  runtime=args.runtime or default_runtime(args.weights), input_size=args.input_size,
                  score_threshold=args.score_threshold,
                  save_vis=args.save_vis)
    for e in res.errors:
        print(f"unreadable: {e}", file=sys.stderr)
    if args.json:
        _print_json(args, res.to_dict())
    else:
        for p in res.predictions:
            if isinstance(p, DetectionPrediction):
                found = ", ".join(f"{d['label']} {d['score']:.2f} at {[round(v) for v in d['box']]}"
                                  for d in p.detections)
                print(f"{p.path}: {found or 'nothing above the threshold'}")
            elif isinstance(p, SegmentationPrediction):
                print(f"{p.path}: " + ", ".join(f"{c['label']} {100 * c['fraction']:.1f}%" for c in p.classes))
            else:
                print(f"{p.path}: " + ", ".join(f"{c} ({prob:.3f})" for c, prob in p.top))
    if not res.predictions:
        print("mobilenets predict: error: no image could be read", file=sys.stderr)
        return 1
    return 0


# ------------------------------------------------------------------------------- measuring and choosing


@verb("bench", "latency, throughput and achieved FLOP/s on this machine",
      arg("model", metavar="MODEL_OR_WEIGHTS", help="model name (random weights), weights, .onnx / .tflite / .pte"),
      RUNTIME, BATCH_SIZE, INPUT_SIZE,
      arg("--threads", type=int, default=None, help="default: all cores of this process"),
      arg("--train", action="store_true", help="also measure the training step's images/s"),
      arg("--amp", default="auto", help="training precision for --train: auto, off, bf16, fp16"),
      arg("--warmup", type=int, default=10), arg("--iters", type=int, default=50),
      arg("--remeasure", action="store_true", help="auto: measure the runtimes again (the choice is cached per "
                                                   "machine and model)"), JSON)
def cmd_bench(args: argparse.Namespace) -> None:
    r = bench(args.model, runtime=args.runtime or default_runtime(args.model), batch_size=args.batch_size,
              input_size=args.input_size, threads=args.threads, train=args.train, train_amp=args.amp,
              warmup=args.warmup, iters=args.iters, remeasure=args.remeasure)
    if args.json:
        _print_json(args, r.to_dict())
        return
    print(f"{r.model} ({r.runtime}, batch {r.batch_size}, {r.input_size}px, {r.threads} threads; "
          f"{r.cpu}: {r.cpu_features})")
    raw = f"  ({r.runtime}'s own call: {r.raw_latency_ms:.3f} ms)" if r.raw_latency_ms is not None else ""
    print(f"  latency  median {r.latency_ms:.3f} ms  p90 {r.p90_ms:.3f} ms  ->  {r.img_per_s:.1f} img/s{raw}")
    print(f"  compute  {r.madds / 1e6:.1f} MAdds/img  ->  {r.gflops:.1f} GFLOP/s achieved, "
          f"{100 * r.peak_fraction:.1f}% of this machine's fp32 peak ({r.peak_gflops:.0f} GFLOP/s: FMA units x "
          f"SIMD width x clock, or the best GEMM if higher)")
    if r.runtime_timings_ms:
        spread = r.runtime_spread or {}
        print("  runtimes " + ", ".join(f"{k} {v:.3f} ms (±{50 * spread.get(k, 0):.0f}%)" for k, v in
                                        sorted(r.runtime_timings_ms.items(), key=lambda kv: kv[1]))
              + f"\n           each measured alone at {r.runtime_measured_at}; auto: the fastest (--remeasure)")
    if r.train_img_per_s is not None:
        print(f"  training {r.train_img_per_s:.1f} img/s ({r.train_precision}, the `mobilenets train` step)")


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CLIError(f"invalid list {text!r}; example: 1,0.75,0.5") from None


@verb("sweep", "train every (width, resolution) pair; CSV and accuracy-vs-cost plots",
      arg("--family", choices=["v1", "v2"], default="v2"),
      arg("--widths", default="1,0.75,0.5,0.35", help="comma-separated alphas"),
      arg("--resolutions", default="224,192,160,128", help="comma-separated input sizes"),
      arg("--data", help="training data (default: the embedded digits)"), arg("--epochs", type=int, default=None),
      arg("--batch-size", type=int, default=None), arg("--recipe", default=None), arg("--seed", type=int, default=None),
      arg("--amp", default=None), arg("--runtime", default="torch", choices=list(RUNTIMES),
                                      help="for the latency column"),
      arg("--out", required=True, help="sweep folder (resumable)"), JSON)
def cmd_sweep(args: argparse.Namespace) -> None:
    train_opts = {k: getattr(args, k) for k in ("batch_size", "recipe", "seed", "amp") if getattr(args, k) is not None}
    res = sweep(args.family, _floats(args.widths), [int(r) for r in _floats(args.resolutions)], data=args.data,
                out=args.out, epochs=args.epochs, runtime=args.runtime, progress=not args.json, **train_opts)
    if args.json:
        _print_json(args, {"csv": res.csv, "plots": res.plots, "rows": res.rows})
        return
    print(render_table(["model", "top-1", "MAdds", "params", "latency"],
                       [[r["model"], f"{r['top1']:.2f}", millions(r["madds"]), millions(r["params"]),
                         f"{r['latency_ms']:.2f} ms"] for r in res.rows]))
    print(f"\nCSV: {res.csv}\nplots: {', '.join(res.plots)}")


@verb("choose", "the most accurate MobileNet within a latency/size/compute budget, on this machine",
      arg("--family", choices=["v1", "v2"], required=True), arg("--max-latency-ms", type=float, default=None),
      arg("--max-params", default=None, help="e.g. 2.5M (conv + FC, no BN)"),
      arg("--max-madds", default=None, help="e.g. 300M"), RUNTIME, BATCH_SIZE,
      arg("--accuracy", default="imagenet", help="'imagenet' (published tables) or a sweep CSV"),
      arg("--input-size", type=int, default=None, help="only candidates at this input resolution"),
      arg("--remeasure", action="store_true", help="ignore cached latencies"), JSON)
def cmd_choose(args: argparse.Namespace) -> int:
    runtime = args.runtime or default_runtime()

    def note(model: str) -> None:
        if not args.json:
            print(f"measuring {model} ({runtime}, batch {args.batch_size}) ...", file=sys.stderr)

    c = choose(args.family, max_latency_ms=args.max_latency_ms,
               max_params=parse_count(args.max_params) if args.max_params else None,
               max_madds=parse_count(args.max_madds) if args.max_madds else None, runtime=runtime,
               batch_size=args.batch_size, accuracy=args.accuracy, remeasure=args.remeasure,
               input_size=args.input_size, progress=note)
    if args.json:
        _print_json(args, c.to_dict())
        return 0 if c.model else 1
    rows = sorted(c.candidates, key=lambda x: -x.top1)
    print(render_table(["model", "top-1", "latency", "params", "MAdds", "fits", "why"],
                       [[x.model, f"{x.top1:.1f}", f"{x.latency_ms:.2f} ms", millions(x.params), millions(x.madds, 0),
                         "yes" if x.feasible else "no", "; ".join(x.reasons)] for x in rows], align="lrrrrll"))
    print(f"\n{'chosen: ' if c.model else ''}{c.message}")
    print(f"accuracy: {rows[0].accuracy_source}; latency: median of `mobilenets bench` on this machine "
          f"({c.runtime}, batch {c.batch_size}); params: conv + FC, no BN")
    return 0 if c.model else 1


# ------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mobilenets",
        description="MobileNet V1/V2: build, count, train, evaluate, convert, export and benchmark.",
    )
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for v in VERBS:
        p = sub.add_parser(v.name, help=v.help, description=v.help)
        p.set_defaults(handler=v.handler)
        for names, options in v.args:
            p.add_argument(*names, **options)
    return parser


#: What a user's input causes (bad names, values, files, a runtime not installed), printed as one line;
#: any other exception is reported as a bug, with --debug named
USER_ERRORS = (CLIError, ValueError, OSError, ImportError)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "input_size", None) is not None:  # one rule for every verb, before any work
            check_input_size(args.input_size)
        args.json_out = sys.stdout
        with contextlib.redirect_stdout(sys.stderr) if getattr(args, "json", False) else contextlib.nullcontext():
            rc = args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as e:  # bad input, missing files or extras: the message says what to change
        if args.debug:
            raise
        msg = str(e) or type(e).__name__
        print(f"mobilenets {args.command}: error: {msg.splitlines()[0]}", file=sys.stderr)
        return 2
    except Exception as e:  # anything else is a bug of ours: say so, and how to see where
        if args.debug:
            raise
        first = str(e).splitlines()[0] if str(e) else ""
        print(f"mobilenets {args.command}: internal error: {type(e).__name__}: {first} (a bug; rerun with --debug "
              "for the traceback and report it)", file=sys.stderr)
        return 1
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
