"""Training: recipes, the training step, checkpoints and exact resume.

A run folder (``--out``) holds ``config.yaml`` (the resolved configuration), ``metrics.jsonl``
(one line per epoch), ``curves.png``, ``last.safetensors`` and ``best.safetensors`` (weights with
metadata) and ``state.pt`` (optimizer, scheduler, EMA, RNG, epoch and step, for ``--resume``).
Every file is written atomically, so a kill at any moment leaves the previous one loadable.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import os
import random
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.utils.data import IterableDataset
from tqdm.auto import tqdm

from .data import (
    DataSpec,
    EpochSampler,
    Preprocess,
    Splits,
    default_workers,
    load_splits,
    make_loader,
    resolve_data,
    with_transform,
)
from .device import Precision, pick_precision
from .evaluation import EvalResult, run_eval
from .fsutil import atomic_write, atomic_write_text, create_dir_atomically
from .model import MobileNet
from .optim import RECIPES, lr_lambda, make_optimizer, param_groups
from .registry import create_model
from .spec import check_input_size
from .weights import save_weights

STATE_FILE = "state.pt"
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"

# Defaults that depend on the data: the embedded digits are 8x8 images, so a small model at 32 px,
# mild crops, no flips (a flipped digit is another symbol) and more weight decay for 1,437 images
# (chosen by held-out accuracy over 3 seeds; see README "Results").
DATA_PRESETS: dict[str, dict[str, Any]] = {
    "digits": dict(model="0.5-MobileNetV2-32", epochs=40, batch_size=64, min_scale=0.8, hflip=0.0, crop_pct=1.0,
                   weight_decay=1e-4, amp="off"),
    "fake": dict(model="0.25-MobileNet-32", epochs=1, batch_size=32, min_scale=0.5, hflip=0.5, crop_pct=1.0, amp="off"),
    "cifar10": dict(model="1.0-MobileNetV2-32", epochs=60, batch_size=128, min_scale=0.5, hflip=0.5, crop_pct=1.0,
                    amp="off"),
    "cifar100": dict(model="1.0-MobileNetV2-32", epochs=60, batch_size=128, min_scale=0.5, hflip=0.5, crop_pct=1.0,
                     amp="off"),
    "folder": dict(model="1.0-MobileNetV2-224", epochs=90, batch_size=64, min_scale=0.35, hflip=0.5, crop_pct=0.875,
                   amp="auto"),
}
DATA_PRESETS["shards"] = DATA_PRESETS["folder"]  # tar shards of an image folder: the same defaults

# Recipes (README "Training recipes" gives the sources). ``lr`` is per ``lr_batch`` images.
RECIPE_DEFAULTS: dict[str, dict[str, Any]] = {
    # Both papers: RMSProp (TF) decay 0.9 momentum 0.9, lr 0.045 (per 96 images), x0.98 per epoch,
    # weight decay 4e-5; TF-slim's opt_epsilon 1.0.
    "paper": dict(optimizer="rmsprop_tf", lr=0.045, lr_batch=96, momentum=0.9, weight_decay=4e-5,
                  schedule="exponential", warmup_epochs=0.0, label_smoothing=0.0),
    # The modern baseline: SGD + Nesterov momentum, linear warmup, cosine to zero.
    "sgd-cosine": dict(optimizer="sgd", lr=0.2, lr_batch=256, momentum=0.9, weight_decay=4e-5,
                       schedule="cosine", warmup_epochs=1.0, label_smoothing=0.1),
}


@dataclass
class TrainConfig:
    """Every training hyperparameter; ``None`` means "the data preset's / recipe's default"."""

    model: str | None = None
    data: str | None = None
    val_split: float = 0.2
    seed: int = 0
    out: str | None = None
    recipe: str = "sgd-cosine"
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None  # absolute learning rate; default: recipe lr x batch / lr_batch
    optimizer: str | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    decay_depthwise: bool = False
    schedule: str | None = None
    warmup_epochs: float | None = None
    lr_decay: float = 0.98
    lr_decay_epochs: float = 1.0
    rms_decay: float = 0.9
    opt_eps: float = 1.0
    label_smoothing: float | None = None
    ema_decay: float = 0.0  # 0 = off; the TF V2 recipe uses 0.9999
    dropout: float | None = None
    input_size: int | None = None
    min_scale: float | None = None
    hflip: float | None = None
    crop_pct: float | None = None
    workers: int | None = None
    device: str = "auto"
    amp: str | None = None  # auto, off, bf16, fp16; default: the data preset's
    channels_last: bool = True
    compile: bool = False
    deterministic: bool = False
    init: str | None = None
    freeze_backbone: bool = False
    max_bad_fraction: float = 0.1
    save_every_steps: int = 0
    sync_bn: bool = False
    progress: bool = True

    def resolved(self) -> "TrainConfig":
        """Fill every ``None`` from the data preset and the recipe, and validate."""
        if self.recipe not in RECIPES:
            raise ValueError(f"unknown recipe {self.recipe!r}; valid: {', '.join(RECIPES)}")
        spec = resolve_data(self.data, self.val_split, self.seed)
        preset, recipe = DATA_PRESETS[spec.kind], RECIPE_DEFAULTS[self.recipe]
        c = dataclasses.replace(self)
        for k, v in preset.items():
            if getattr(c, k) is None:
                setattr(c, k, v)
        for k in ("optimizer", "momentum", "weight_decay", "schedule", "warmup_epochs", "label_smoothing"):
            if getattr(c, k) is None:
                setattr(c, k, recipe[k])
        if c.lr is None:
            c.lr = recipe["lr"] * c.batch_size / recipe["lr_batch"]
        _validate(c)
        return c

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        d = {k.replace("-", "_"): v for k, v in d.items()}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}; valid: {', '.join(sorted(names))}")
        return cls(**d)


def _validate(c: TrainConfig) -> None:
    def positive(name: str, v: float | int | None, integer: bool = False) -> None:
        if v is None or (integer and not isinstance(v, int)) or not v > 0 or not math.isfinite(v):
            raise ValueError(f"invalid {name} {v!r}; it must be a positive {'integer' if integer else 'number'}")

    positive("epochs", c.epochs, True)
    positive("batch size", c.batch_size, True)
    positive("learning rate", c.lr)
    if c.input_size is not None:
        check_input_size(c.input_size)
    if not 0 <= (c.weight_decay or 0) < 1:
        raise ValueError(f"invalid weight decay {c.weight_decay!r}")
    if not 0 <= (c.label_smoothing or 0) < 1:
        raise ValueError(f"invalid label smoothing {c.label_smoothing!r}; it must be in [0, 1)")
    if not 0 <= c.ema_decay < 1:
        raise ValueError(f"invalid EMA decay {c.ema_decay!r}; it must be in [0, 1) (0 = off)")
    if c.workers is not None and c.workers < 0:
        raise ValueError(f"invalid workers {c.workers!r}; it must be >= 0")
    if not 0 <= c.max_bad_fraction <= 1:
        raise ValueError(f"invalid max_bad_fraction {c.max_bad_fraction!r}")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Training options from a TOML or YAML file (keys are the option names)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file not found: {p}")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = yaml.safe_load(text) or {}
    except Exception as e:  # noqa: BLE001 - parsers raise many types; report one line
        raise ValueError(f"{p}: cannot parse config ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{p}: a config file must be a mapping of option names to values")
    TrainConfig.from_dict(data)  # validate the keys now
    return data


@dataclass
class TrainResult:
    top1: float
    top5: float
    epochs: int
    weights: str
    wall_s: float
    run_dir: str
    best_epoch: int
    model: str
    precision: str = "fp32"  # what --amp resolved to on this machine
    world_size: int = 1
    history: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("history")
        return d


class TrainingDiverged(RuntimeError):
    pass


class TrainingInterrupted(RuntimeError):
    pass


class TrainStep:
    """One optimization step, shared by ``train`` and ``mobilenets bench --train``.

    Returns loss and number of correct predictions as device tensors, so that the loop never
    waits for the device unless it wants to print.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                 precision: Precision, label_smoothing: float = 0.0, channels_last: bool = True,
                 ema: torch.optim.swa_utils.AveragedModel | None = None, compiled: nn.Module | None = None) -> None:
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.forward = compiled if compiled is not None else model
        self.precision, self.channels_last, self.ema = precision, channels_last, ema
        self.label_smoothing = label_smoothing
        self.scaler = torch.amp.GradScaler(precision.device_type) if precision.needs_scaler else None

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self.precision.autocast():
            logits = self.forward(x)
            loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return loss.detach(), (logits.detach().argmax(1) == y).sum()


def build_train_step(model: nn.Module, cfg: TrainConfig, steps_per_epoch: int, device: torch.device,
                     precision: Precision, forward: nn.Module | None = None) -> TrainStep:
    """Optimizer, schedule, EMA and (optionally) torch.compile for ``model``.

    ``forward`` is what the step calls (e.g. the DDP wrapper of ``model``); parameters, EMA and
    weight-decay groups come from the plain ``model`` so that their names are ours.
    """
    groups = param_groups(model, cfg.weight_decay or 0.0, cfg.decay_depthwise)
    opt = make_optimizer(cfg.optimizer or "sgd", groups, cfg.lr or 0.1, momentum=cfg.momentum or 0.0,
                         rms_decay=cfg.rms_decay, eps=cfg.opt_eps)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lr_lambda(cfg.schedule or "cosine", steps_per_epoch, cfg.epochs or 1, cfg.warmup_epochs or 0.0,
                       cfg.lr_decay, cfg.lr_decay_epochs))
    ema = None
    if cfg.ema_decay > 0:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, device=device, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    fwd = forward if forward is not None else model
    compiled = torch.compile(fwd) if cfg.compile else fwd
    return TrainStep(model, opt, sched, precision, cfg.label_smoothing or 0.0, cfg.channels_last, ema, compiled)


# ------------------------------------------------------------------------------ helpers


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    st: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["torch"])
    py = st["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def init_from_weights(model: MobileNet, path: str | Path) -> tuple[int, list[str]]:
    """Load every tensor of ``path`` whose name and shape match; return (loaded, re-initialised names)."""
    from .weights import load_foreign_state

    state = load_foreign_state(path, model)
    own = model.state_dict()
    loaded = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(k for k in own if k not in loaded and not k.endswith("num_batches_tracked"))
    if not any(k.endswith(".weight") for k in loaded):
        raise ValueError(f"{path}: no tensor matches {model.config.name} (is it the same architecture?)")
    model.load_state_dict(loaded, strict=False)
    return len(loaded), skipped


def _freeze_backbone(model: MobileNet) -> None:
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith("classifier.")


def _set_train_mode(model: MobileNet, frozen_backbone: bool) -> None:
    model.train()
    if frozen_backbone:  # frozen layers keep their BN statistics
        for m in (model.stem, model.blocks, model.head):
            m.eval()


@contextlib.contextmanager
def _stop_on_signals(flag: dict[str, bool]) -> Iterator[None]:
    """SIGINT/SIGTERM set a flag: the loop finishes the current step, checkpoints and stops."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if flag.get("stop"):
            raise KeyboardInterrupt  # second signal: stop now
        flag["stop"] = True
        flag["signal"] = signum

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class _Run:
    """Files of a run folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if _is_main_process() and path.is_dir():  # only the writer cleans up after itself
            for stale in path.glob(".*.tmp"):  # temporary files of a write that a kill interrupted
                stale.unlink(missing_ok=True)

    def __getattr__(self, name: str) -> Path:
        files = {"state": STATE_FILE, "config": CONFIG_FILE, "metrics": METRICS_FILE, "last": "last.safetensors",
                 "best": "best.safetensors", "curves": "curves.png", "summary": "summary.json"}
        if name in files:
            return self.path / files[name]
        raise AttributeError(name)

    def write_history(self, rows: list[dict[str, Any]]) -> None:
        atomic_write_text(self.metrics, "".join(json.dumps(r) + "\n" for r in rows))


def _default_out(model: str) -> str:
    return str(Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{model}")


# ------------------------------------------------------------------------------ train


def train(config: TrainConfig | None = None, *, resume: str | Path | None = None, **options: Any) -> TrainResult:
    """Train a MobileNet; returns the held-out top-1/top-5 of the best epoch and the weights path.

    ``train()`` with no arguments trains the default model on the embedded digits data.
    ``resume=RUN_DIR`` continues a run from its last checkpoint (``epochs=`` may extend it).
    """
    from . import distributed as dist

    if resume is not None:
        run = _Run(Path(resume))
        if not run.config.exists():
            raise FileNotFoundError(f"{resume}: not a run folder (no {CONFIG_FILE}); start one with --out")
        saved = yaml.safe_load(run.config.read_text())
        allowed = {"epochs", "device", "workers", "progress", "amp", "compile", "save_every_steps"}
        bad = sorted(set(options) - allowed)
        if bad:
            raise ValueError(f"--resume keeps the run's configuration; only {sorted(allowed)} can change, not {bad}")
        saved.update({k: v for k, v in options.items() if v is not None})
        cfg = TrainConfig.from_dict(saved).resolved()
        if not run.state.exists() and _is_main_process():
            print(f"{run.path} has no checkpoint yet (stopped before its first one): starting its saved "
                  "configuration from the beginning")
    else:
        cfg = dataclasses.replace(config or TrainConfig(), **options).resolved()
        if cfg.out is None:
            cfg.out = _default_out(cfg.model or "model")
        path = Path(cfg.out)
        if (path / STATE_FILE).exists() and not dist.auto_resume(path / STATE_FILE):
            raise ValueError(f"{cfg.out} already holds a run; use --resume {cfg.out} or another --out")
        if _is_main_process():  # the folder appears with its configuration in it, or not at all
            create_dir_atomically(path, {CONFIG_FILE: yaml.safe_dump(cfg.to_dict(), sort_keys=False)})
        run = _Run(path)
    ctx = dist.setup(cfg.device)
    try:
        return _train(cfg, run, ctx, resuming=run.state.exists())
    finally:
        dist.teardown(ctx)


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _train(cfg: TrainConfig, run: _Run, ctx: Any, resuming: bool) -> TrainResult:
    from . import distributed as dist

    t_start = time.perf_counter()
    device = ctx.device
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True
    precision = pick_precision(cfg.amp or "auto", device)
    _seed_everything(cfg.seed)  # the initial weights depend on the seed only
    spec: DataSpec = resolve_data(cfg.data, cfg.val_split, cfg.seed)
    splits: Splits = load_splits(spec)
    classes = list(splits.classes)

    model = create_model(cfg.model, num_classes=len(classes),
                         **({"dropout": cfg.dropout} if cfg.dropout is not None else {}))
    pre = Preprocess.for_config(model.config, cfg.input_size, cfg.crop_pct or 0.875)
    state: dict[str, Any] | None = None
    if resuming:
        state = torch.load(run.state, map_location="cpu", weights_only=True)
        if state["classes"] != classes:
            raise ValueError(f"the data's classes {classes[:8]} differ from the checkpoint's {state['classes'][:8]}; "
                             "resume with the same data")
        model.load_state_dict(state["model"])
    elif cfg.init:
        n, reinit = init_from_weights(model, cfg.init)
        if ctx.is_main:
            print(f"initialised {n} tensors from {cfg.init}; re-initialised: {', '.join(reinit) or 'none'}")
    if cfg.freeze_backbone:
        _freeze_backbone(model)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    if cfg.sync_bn and ctx.world_size > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    train_model = dist.wrap(model, ctx)

    train_ds = with_transform(splits.train, pre.train_transform(cfg.min_scale or 0.35, cfg.hflip or 0.0))
    val_ds = with_transform(splits.val, pre.eval_transform())
    workers = default_workers(spec) if cfg.workers is None else cfg.workers
    streamed = isinstance(train_ds, IterableDataset)  # tar shards: no sampler, a fixed number of steps
    sampler = None if streamed else EpochSampler(len(train_ds), shuffle=True, seed=cfg.seed, rank=ctx.rank,
                                                 world_size=ctx.world_size)
    loader = make_loader(train_ds, cfg.batch_size, sampler=sampler, workers=workers, device=device, seed=cfg.seed)
    val_sampler = None if streamed else EpochSampler(len(val_ds), shuffle=False, seed=0, rank=ctx.rank,
                                                     world_size=ctx.world_size, pad=False)
    val_loader = make_loader(val_ds, cfg.batch_size, sampler=val_sampler, workers=workers, device=device)
    per_rank = len(sampler) if sampler is not None else math.ceil(len(train_ds) / ctx.world_size)
    steps_per_epoch = math.ceil(per_rank / cfg.batch_size)
    step_fn = build_train_step(model, cfg, steps_per_epoch, device, precision, forward=train_model)

    start_epoch, skip_batches, step = 0, 0, 0
    best_top1, best_epoch = -1.0, 0
    partial = _empty_partial()
    history: list[dict[str, Any]] = []
    if state is not None:
        step_fn.optimizer.load_state_dict(state["optimizer"])
        step_fn.scheduler.load_state_dict(state["scheduler"])
        if step_fn.ema is not None and state.get("ema") is not None:
            step_fn.ema.load_state_dict(state["ema"])
        start_epoch, skip_batches, step = state["epoch"], state["batch_in_epoch"], state["step"]
        best_top1, best_epoch = state["best_top1"], state["best_epoch"]
        partial = state["partial"]
        history = list(state["history"])
        if ctx.is_main:
            where = f"epoch {start_epoch + 1}" + (f", batch {skip_batches}" if skip_batches else "")
            print(f"resuming {run.path} at {where} of {cfg.epochs}")
    dist.barrier(ctx)

    meta_common = dict(classes=classes, preprocessing=pre.to_dict(), dataset=spec.to_dict())
    flag: dict[str, bool] = {}

    def checkpoint(epoch: int, batch_in_epoch: int) -> None:
        if not ctx.is_main:
            return
        st = {
            "epoch": epoch, "batch_in_epoch": batch_in_epoch, "step": step,
            "model": model.state_dict(), "optimizer": step_fn.optimizer.state_dict(),
            "scheduler": step_fn.scheduler.state_dict(),
            "ema": step_fn.ema.state_dict() if step_fn.ema is not None else None,
            "rng": _rng_state(), "best_top1": best_top1, "best_epoch": best_epoch,
            "partial": partial, "classes": classes, "config": cfg.to_dict(), "history": history,
        }
        try:
            atomic_write(run.state, lambda p: torch.save(st, p))
        except OSError as e:
            raise OSError(e.errno, f"cannot write the checkpoint {run.state} ({e.strerror or e}); the previous "
                                   "checkpoint is intact - free some space and resume") from None

    def eval_model() -> nn.Module:
        return step_fn.ema.module if step_fn.ema is not None else model

    def write_outputs() -> None:
        """The files derived from an epoch-end state: metrics, last/best weights, curves."""
        run.write_history(history)
        row = history[-1]
        metrics = {"top1": row["val_top1"], "top5": row["val_top5"], "epoch": row["epoch"]}
        save_weights(eval_model(), run.last, **meta_common, metrics=metrics)
        if best_epoch == row["epoch"]:
            save_weights(eval_model(), run.best, **meta_common, metrics=metrics)
        from .plots import plot_curves

        plot_curves(history, run.curves, title=f"{cfg.model} on {spec.kind}")

    if state is not None and skip_batches == 0 and history and ctx.is_main:
        write_outputs()  # a kill between the state and its files: finish them from the state

    last_eval: EvalResult | None = None
    with _stop_on_signals(flag):
        for epoch in range(start_epoch, cfg.epochs):
            if skip_batches and state is not None:
                _set_rng_state(state["rng"])
            else:
                _seed_everything(cfg.seed * 1000 + epoch)
                partial = _empty_partial()
            if streamed:  # a stream cannot seek: an interrupted epoch starts again
                if skip_batches:
                    _seed_everything(cfg.seed * 1000 + epoch)
                    partial = _empty_partial()
                    skip_batches = 0
                train_ds.set_epoch(epoch)
            else:
                sampler.set_epoch(epoch, skip=skip_batches * cfg.batch_size)
            _set_train_mode(model, cfg.freeze_backbone)
            loss_sum = torch.zeros((), device=device, dtype=torch.float64)
            correct = torch.zeros((), device=device, dtype=torch.long)
            seen, bad = 0, 0
            t0 = time.perf_counter()
            bar = tqdm(itertools.islice(loader, steps_per_epoch - skip_batches), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                       disable=not (cfg.progress and ctx.is_main), unit="batch", initial=skip_batches,
                       total=steps_per_epoch, leave=False, dynamic_ncols=True)
            batch_idx = skip_batches
            for x, y, bad_files in bar:
                bad += len(bad_files)
                if len(y) == 0:
                    batch_idx += 1
                    continue
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                loss, corr = step_fn(x, y)
                step += 1
                batch_idx += 1
                loss_sum += loss.double() * len(y)
                correct += corr
                seen += len(y)
                if device.type == "cpu" or batch_idx % 20 == 0:
                    if not torch.isfinite(loss):
                        raise TrainingDiverged(
                            f"the loss became {loss.item()} at epoch {epoch + 1}, step {step}; training stopped. "
                            f"The last good checkpoint is kept in {run.path}. Try a lower learning rate "
                            f"(now {cfg.lr:g}, e.g. --lr {cfg.lr / 10:g})")
                if batch_idx % 10 == 0 or batch_idx == steps_per_epoch:
                    el = time.perf_counter() - t0
                    bar.set_postfix(loss=f"{loss_sum.item() / max(seen, 1):.4f}",
                                    acc=f"{100 * correct.item() / max(seen, 1):.1f}",
                                    img_s=f"{seen * ctx.world_size / max(el, 1e-9):.0f}")
                if cfg.save_every_steps and step % cfg.save_every_steps == 0 and batch_idx < steps_per_epoch:
                    partial = _merge_partial(partial, loss_sum, correct, seen, bad, time.perf_counter() - t0, ctx)
                    loss_sum.zero_(), correct.zero_()
                    seen, bad, t0 = 0, 0, time.perf_counter()
                    checkpoint(epoch, batch_idx)
                if flag.get("stop"):
                    partial = _merge_partial(partial, loss_sum, correct, seen, bad, time.perf_counter() - t0, ctx)
                    checkpoint(epoch, batch_idx)
                    bar.close()
                    raise TrainingInterrupted(
                        f"stopped by signal after epoch {epoch + 1} batch {batch_idx}; checkpoint saved. "
                        f"Continue with: mobilenets train --resume {run.path}")
            bar.close()
            skip_batches = 0
            partial = _merge_partial(partial, loss_sum, correct, seen, bad, time.perf_counter() - t0, ctx)
            total_seen = partial["seen"]
            total_bad = partial["bad"]
            if total_bad and total_bad > cfg.max_bad_fraction * (total_seen + total_bad):
                raise ValueError(f"{total_bad} of {total_seen + total_bad} training images were unreadable "
                                 f"(more than {cfg.max_bad_fraction:.0%}); fix the data or raise --max-bad-fraction")
            if val_sampler is not None:
                val_sampler.set_epoch(0)
            last_eval = dist.reduce_eval(run_eval(eval_model(), val_loader, classes, device, precision,
                                                  cfg.channels_last), ctx)
            row = {
                "epoch": epoch + 1, "step": step,
                "train_loss": partial["loss"] / max(total_seen, 1),
                "train_acc": 100 * partial["correct"] / max(total_seen, 1),
                "val_loss": last_eval.loss, "val_top1": last_eval.top1, "val_top5": last_eval.top5,
                "lr": step_fn.optimizer.param_groups[0]["lr"],
                "img_per_s": total_seen / max(partial["time"], 1e-9),
                "epoch_s": partial["time"], "bad_samples": total_bad,
            }
            history.append(row)
            if last_eval.top1 > best_top1:
                best_top1, best_epoch = last_eval.top1, epoch + 1
            best_top1, best_epoch = dist.broadcast_best(best_top1, best_epoch, ctx)
            checkpoint(epoch + 1, 0)  # first the state, then the files derived from it (rewritten on resume)
            if ctx.is_main:
                if total_bad:
                    print(f"warning: skipped {total_bad} unreadable training image(s) in epoch {epoch + 1}")
                write_outputs()
                if cfg.progress:
                    print(f"epoch {epoch + 1}/{cfg.epochs}  loss {row['train_loss']:.4f}  "
                          f"train {row['train_acc']:.2f}%  val top-1 {row['val_top1']:.2f}%  "
                          f"top-5 {row['val_top5']:.2f}%  {row['img_per_s']:.0f} img/s")
            if flag.get("stop"):
                raise TrainingInterrupted(f"stopped by signal after epoch {epoch + 1}; checkpoint saved. "
                                          f"Continue with: mobilenets train --resume {run.path}")
    best_row = next((h for h in history if h["epoch"] == best_epoch), history[-1] if history else {})
    result = TrainResult(
        top1=best_row.get("val_top1", float("nan")), top5=best_row.get("val_top5", float("nan")),
        epochs=cfg.epochs, weights=str(run.best), wall_s=time.perf_counter() - t_start,
        run_dir=str(run.path), best_epoch=best_epoch, model=cfg.model or "", precision=precision.name,
        world_size=ctx.world_size,
        history=history,
    )
    if ctx.is_main:
        atomic_write_text(run.summary, json.dumps(result.summary(), indent=1))
    return result


def _empty_partial() -> dict[str, Any]:
    """Sums over the part of an epoch already done (kept in checkpoints for mid-epoch resumes)."""
    return {"loss": 0.0, "correct": 0, "seen": 0, "bad": 0, "time": 0.0}


def _merge_partial(partial: dict[str, Any], loss_sum: torch.Tensor, correct: torch.Tensor, seen: int, bad: int,
                   seconds: float, ctx: Any) -> dict[str, Any]:
    from . import distributed as dist

    loss, corr, n, b = dist.all_reduce_sums([float(loss_sum), int(correct), seen, bad], ctx)
    return {"loss": partial["loss"] + loss, "correct": partial["correct"] + int(corr), "seen": partial["seen"] + int(n),
            "bad": partial["bad"] + int(b), "time": partial["time"] + seconds}


def format_history(history: list[dict[str, Any]]) -> str:
    from .textfmt import render_table

    return render_table(
        ["epoch", "train loss", "train top-1", "val loss", "val top-1", "val top-5", "lr", "img/s", "s"],
        [[h["epoch"], f"{h['train_loss']:.4f}", f"{h['train_acc']:.2f}", f"{h['val_loss']:.4f}",
          f"{h['val_top1']:.2f}", f"{h['val_top5']:.2f}", f"{h['lr']:.2e}", f"{h['img_per_s']:.0f}",
          f"{h['epoch_s']:.1f}"] for h in history],
    )


__all__ = ["TrainConfig", "TrainResult", "TrainStep", "train", "load_config_file", "format_history",
           "TrainingDiverged", "TrainingInterrupted"]
