"""The training loop in parts, the way torchvision's reference script separates them: ``build_trainer``
builds a :class:`Trainer`, ``train_one_epoch`` runs the batches, ``end_epoch`` evaluates, saves
and reports, and ``train`` drives them, resuming from the run folder's last checkpoint."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset
from tqdm.auto import tqdm

from ..data import EpochSampler, load_task_splits, make_loader, repeat_factors, resolve_data
from ..data.annotations import DataIssues
from ..models import Preprocess, zero_init_residual
from ..tasks import TaskConfig, build_model, config_from_dict
from ..utils.device import Precision, pick_precision
from ..utils.fsutil import atomic_write_text
from ..utils.textfmt import render_table
from ..weights import LoadedState, load_init_state, read_metadata, save_weights
from . import distributed as dist
from .checkpoint import EpochSums, Run, TrainState, rng_state, seed_everything, set_rng_state
from .config import RESUMABLE_OPTIONS, ResolvedConfig, TrainConfig
from .diagnose import stall_signs, stall_warning
from .evaluate import evaluate
from .fast_backward import use_fast_depthwise_backward
from .finetune import (
    InitReport,
    freeze,
    init_conventions,
    init_from_weights,
    recalibrate_batchnorm,
    set_train_mode,
)
from .plots import plot_curves
from .report import EXAMPLES, write_report
from .step import TrainStep, build_train_step
from .tasks import TASKS, Task

DATA_ISSUES_FILE = "data_issues.txt"  # every problem found in the data, one per line
#: Training images whose BN-layer inputs give a folded file's layers their statistics (``--init``).
RECALIBRATION_IMAGES = 256


class TrainingDiverged(RuntimeError):
    pass


class TrainingInterrupted(RuntimeError):
    pass


@dataclass
class TrainResult:
    """The best epoch's held-out numbers in ``metrics``, named by the task (top1/top5 in %; COCO map
    and map50, or miou and pixel_acc, as fractions); ``describe`` says them in words."""

    metrics: dict[str, float]
    epochs: int
    weights: str
    wall_s: float
    run_dir: str
    best_epoch: int
    model: str
    precision: str = "fp32"  # what --amp resolved to on this machine
    world_size: int = 1
    task: str = "classification"
    history: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The record written to the run folder's summary.json (the metrics at the top level)."""
        d = dataclasses.asdict(self)
        d.pop("history")
        return {**d.pop("metrics"), **d}

    def describe(self) -> str:
        return TASKS[self.task].describe(self.metrics)

    @property
    def top1(self) -> float | None:
        return self.metrics.get("top1")

    @property
    def top5(self) -> float | None:
        return self.metrics.get("top5")

    @property
    def map(self) -> float | None:
        return self.metrics.get("map")

    @property
    def map50(self) -> float | None:
        return self.metrics.get("map50")

    @property
    def miou(self) -> float | None:
        return self.metrics.get("miou")

    @property
    def pixel_acc(self) -> float | None:
        return self.metrics.get("pixel_acc")


class StopFlag:
    """Set by SIGINT/SIGTERM: the loop finishes the current step, checkpoints and stops."""

    def __init__(self) -> None:
        self.requested = False

    @contextlib.contextmanager
    def on_signals(self) -> Iterator[StopFlag]:
        if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            yield self
            return

        def handler(signum: int, frame: Any) -> None:
            if self.requested:
                raise KeyboardInterrupt  # second signal: stop now
            self.requested = True

        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, h in old.items():
                signal.signal(s, h)


@dataclass
class Trainer:
    """Everything one training run holds, and where it is (``epoch``: epochs completed)."""

    cfg: ResolvedConfig
    run: Run
    ctx: dist.DistContext
    task: Task
    model: nn.Module
    step_fn: TrainStep
    precision: Precision
    pre: Preprocess
    classes: list[str]
    weights_meta: dict[str, Any]  # classes, preprocessing, dataset: written into every weights file
    title: str
    train_ds: Dataset
    loader: DataLoader
    sampler: EpochSampler | None  # None for a stream (tar shards): a fixed number of steps per epoch
    val_loader: DataLoader
    val_sampler: EpochSampler | None
    steps_per_epoch: int
    epoch: int = 0
    skip_batches: int = 0  # batches of the current epoch done before a mid-epoch checkpoint
    step: int = 0
    best_metric: float = -1.0  # the task's primary metric at the best epoch
    best_epoch: int = 0
    partial: EpochSums = field(default_factory=EpochSums)
    history: list[dict[str, Any]] = field(default_factory=list)
    resume_rng: dict[str, Any] | None = None
    bad_examples: list[str] = field(default_factory=list)  # "path: reason" of the first unreadable images

    @property
    def eval_model(self) -> nn.Module:
        return self.step_fn.ema.module if self.step_fn.ema is not None else self.model

    def save_state(self, batch_in_epoch: int = 0) -> None:
        if not self.ctx.is_main:
            return
        s = self.step_fn
        self.run.save_state(TrainState(
            self.epoch, batch_in_epoch, self.step, self.model.state_dict(), s.optimizer.state_dict(),
            s.scheduler.state_dict(), s.ema.state_dict() if s.ema is not None else None, rng_state(), self.best_metric,
            self.best_epoch, self.partial, self.classes, self.cfg.to_dict(), self.history))

    def restore(self, state: TrainState) -> None:
        s = self.step_fn
        s.optimizer.load_state_dict(state.optimizer)
        s.scheduler.load_state_dict(state.scheduler)
        if s.ema is not None and state.ema is not None:
            s.ema.load_state_dict(state.ema)
        self.epoch, self.skip_batches, self.step = state.epoch, state.batch_in_epoch, state.step
        self.best_metric, self.best_epoch, self.partial = state.best_metric, state.best_epoch, state.partial
        self.history, self.resume_rng = list(state.history), state.rng

    def write_outputs(self) -> None:
        """The files derived from an epoch-end state: metrics, last/best weights, curves."""
        self.run.write_history(self.history)
        row = self.history[-1]
        metrics = {**{k.removeprefix("val_"): row[k] for k in self.task.metrics if k in row}, "epoch": row["epoch"]}
        save_weights(self.eval_model, self.run.last, **self.weights_meta, metrics=metrics)
        if self.best_epoch == row["epoch"]:
            save_weights(self.eval_model, self.run.best, **self.weights_meta, metrics=metrics)
        plot_curves(self.history, self.run.curves, self.task.metrics[0], self.task.metric_label, title=self.title)


# ------------------------------------------------------------------------------ setup


def build_trainer(cfg: ResolvedConfig, run: Run, ctx: dist.DistContext) -> Trainer:
    """Data, model, step and the state of the last checkpoint, ready for the first epoch to run."""
    torch.use_deterministic_algorithms(cfg.deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = not cfg.deterministic
    seed_everything(cfg.seed)  # the initial weights depend on the seed only
    task = TASKS[cfg.task]
    spec = resolve_data(cfg.data, cfg.val_split, cfg.seed, cfg.task)
    splits = load_task_splits(spec)
    classes = list(splits.classes)
    issues = getattr(splits, "issues", None)
    if issues:
        _report_issues(issues, len(splits.train) + len(splits.val), cfg, run, ctx)
    state = run.restore()
    model_cfg, init = _model_config(cfg, task, splits, run, state, ctx)
    model: nn.Module = build_model(model_cfg)
    use_fast_depthwise_backward(model)
    if cfg.zero_init_residual:
        zero_init_residual(model)
    pre = task.preprocess(model_cfg, cfg)
    report = None
    if state is not None:
        if state.classes != classes:
            raise ValueError(f"the data's classes {classes[:8]} differ from the checkpoint's {state.classes[:8]}; "
                             "resume with the same data")
        model.load_state_dict(state.model)
    elif init is not None:
        report = init_from_weights(model, init)
        if ctx.is_main:
            print(report.describe(str(cfg.init)))
    model = _place(model, cfg, ctx)
    precision = pick_precision(cfg.amp, ctx.device)
    loaders = _loaders(cfg, task, splits, pre, ctx)
    if report is not None and report.folded_bn and not cfg.freeze_bn:
        _recalibrate(model, report, loaders["loader"], cfg, ctx)
    step_fn = build_train_step(model, cfg, loaders["steps_per_epoch"], ctx.device, precision,
                               task.criterion(model, cfg), forward=dist.wrap(model, ctx))
    trainer = Trainer(cfg, run, ctx, task, model, step_fn, precision, pre, classes, title=f"{cfg.model} on {spec.kind}",
                      weights_meta=dict(classes=classes, preprocessing=pre.to_dict(), dataset=spec.to_dict()),
                      **loaders)
    if state is not None:
        trainer.restore(state)
        if ctx.is_main:
            where = f"epoch {trainer.epoch + 1}" + (f", batch {trainer.skip_batches}" if trainer.skip_batches else "")
            print(f"resuming {run.path} at {where} of {cfg.epochs}")
            if trainer.skip_batches == 0 and trainer.history:
                trainer.write_outputs()  # a kill between the state and its files: finish them from the state
    dist.barrier(ctx)
    return trainer


def _report_issues(issues: DataIssues, usable: int, cfg: ResolvedConfig, run: Run, ctx: dist.DistContext) -> None:
    """Print the data's problems, keep the list in the run folder, and stop when more than
    ``max_bad_fraction`` of the images cannot be used."""
    if ctx.is_main:
        atomic_write_text(run.path / DATA_ISSUES_FILE, issues.text())
        print(f"{issues.summary()}\n  (every one: {run.path / DATA_ISSUES_FILE})")
    total = usable + issues.images_left_out
    if issues.images_left_out > cfg.max_bad_fraction * total:
        raise ValueError(f"{issues.images_left_out} of {total} images could not be used (missing, unreadable or "
                         f"badly annotated; more than {cfg.max_bad_fraction:.0%}): fix the data or raise "
                         f"--max-bad-fraction. The list: {run.path / DATA_ISSUES_FILE}")


def _model_config(cfg: ResolvedConfig, task: Task, splits: Any, run: Run, state: TrainState | None,
                  ctx: dist.DistContext) -> tuple[TaskConfig, LoadedState | None]:
    """The model's configuration, and the init weights when they are to be loaded. The configuration is
    fitted to the data (a detector's anchors, with ``fit_anchors``); fine-tuning takes the init weights'
    input and layer conventions; a resumed run takes its saved weights' configuration."""
    if state is not None and run.last.is_file():
        return config_from_dict(read_metadata(run.last)["config"]), None
    model_cfg, fitted = task.fit_to_data(task.model_config(cfg, list(splits.classes)), splits, cfg)
    if fitted and ctx.is_main:
        print(fitted)
    if not cfg.init:
        return model_cfg, None
    init = load_init_state(cfg.init, getattr(model_cfg, "backbone", model_cfg))
    return init_conventions(init, model_cfg), (init if state is None else None)


def _recalibrate(model: nn.Module, report: InitReport, loader: DataLoader, cfg: ResolvedConfig,
                 ctx: dist.DistContext) -> None:
    """Statistics for the BN layers a folded file left without (on rank 0's view: DDP broadcasts
    its module state)."""
    steps = max(1, math.ceil(RECALIBRATION_IMAGES / cfg.batch_size))
    batches = (x.to(ctx.device).contiguous(memory_format=torch.channels_last) if cfg.channels_last else
               x.to(ctx.device) for x, _, _ in itertools.islice(loader, steps) if len(x))
    t0 = time.perf_counter()
    n = recalibrate_batchnorm(model, report.folded_bn, batches)
    if ctx.is_main:
        print(f"estimated the statistics of {len(report.folded_bn)} folded BatchNorm layers on {n} training images "
              f"({time.perf_counter() - t0:.0f} s)")


def _place(model: nn.Module, cfg: ResolvedConfig, ctx: dist.DistContext) -> nn.Module:
    if cfg.freeze_backbone or cfg.freeze_stages:
        freeze(model, cfg.freeze_backbone, cfg.freeze_stages)
    model.to(ctx.device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    if cfg.sync_bn and ctx.world_size > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def _loaders(cfg: ResolvedConfig, task: Task, splits: Any, preprocess: Preprocess,
             ctx: dist.DistContext) -> dict[str, Any]:
    """Training and validation loaders, each rank reading its shard of a seeded order."""
    train_ds, val_ds = task.datasets(splits, preprocess, cfg)
    streamed = isinstance(train_ds, IterableDataset)
    n_train = len(cast(Sized, train_ds))  # a stream of shards knows its length too
    repeats = repeat_factors(splits.train, cfg.repeat_threshold) if cfg.repeat_threshold > 0 else None
    sampler = None if streamed else EpochSampler(n_train, shuffle=True, seed=cfg.seed, rank=ctx.rank,
                                                 world_size=ctx.world_size, repeat_factors=repeats)
    val_sampler = None if streamed else EpochSampler(len(cast(Sized, val_ds)), shuffle=False, seed=0, rank=ctx.rank,
                                                     world_size=ctx.world_size, pad=False)
    per_rank = len(sampler) if sampler is not None else math.ceil(n_train / ctx.world_size)
    if per_rank < 2:
        raise ValueError(f"{n_train} training image(s): BatchNorm needs batches of at least 2; add images")
    # a last batch of one image would meet BatchNorm in training mode with one value per channel on a 1x1 map
    # (an error): that epoch's one left-over image is skipped (the order is shuffled, so not always the same)
    drop_last = not streamed and per_rank % cfg.batch_size == 1
    steps = per_rank // cfg.batch_size if drop_last else math.ceil(per_rank / cfg.batch_size)
    return dict(train_ds=train_ds, sampler=sampler, val_sampler=val_sampler, steps_per_epoch=steps,
                loader=make_loader(train_ds, cfg.batch_size, sampler=sampler, workers=cfg.workers, device=ctx.device,
                                   seed=cfg.seed, collate_fn=task.collate, drop_last=drop_last),
                val_loader=make_loader(val_ds, cfg.batch_size, sampler=val_sampler, workers=cfg.workers,
                                       device=ctx.device, collate_fn=task.collate))


# ------------------------------------------------------------------------------ epochs


def _to_device(y: Any, dev: torch.device) -> Any:
    """Labels (a tensor) or detection targets (a list of dicts of tensors) on the device."""
    if isinstance(y, torch.Tensor):
        return y.to(dev, non_blocking=True)
    return [{k: v.to(dev, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in t.items()} for t in y]


def _start_epoch(trainer: Trainer, epoch: int) -> int:
    """Seed the epoch (or restore the random state of a mid-epoch checkpoint); the batches to skip."""
    skip = trainer.skip_batches
    if skip and trainer.sampler is not None and trainer.resume_rng is not None:
        set_rng_state(trainer.resume_rng)
    else:  # a stream cannot seek: an interrupted epoch starts again
        skip = 0
        seed_everything(trainer.cfg.seed * 1000 + epoch)
        trainer.partial = EpochSums()
    if trainer.sampler is not None:
        trainer.sampler.set_epoch(epoch, skip=skip * trainer.cfg.batch_size)
    if hasattr(trainer.train_ds, "set_epoch"):  # streams, and datasets that draw new samples every epoch
        trainer.train_ds.set_epoch(epoch)
    trainer.skip_batches, trainer.resume_rng = 0, None
    return skip


def _sums(loss: torch.Tensor, correct: torch.Tensor, seen: int, bad: int, t0: float,
          ctx: dist.DistContext) -> EpochSums:
    """This stretch of batches summed over ranks."""
    lo, co, n, b = dist.all_reduce_sums([float(loss), int(correct), seen, bad], ctx)
    return EpochSums(lo, int(co), int(n), int(b), time.perf_counter() - t0)


def train_one_epoch(trainer: Trainer, epoch: int, stop: StopFlag) -> EpochSums:
    """One pass over the training data (what is left of it after a mid-epoch checkpoint)."""
    cfg, dev = trainer.cfg, trainer.ctx.device
    skip = _start_epoch(trainer, epoch)
    set_train_mode(trainer.model, cfg.freeze_backbone, cfg.freeze_bn, cfg.freeze_stages)
    loss_sum = torch.zeros((), device=dev, dtype=torch.float64)
    correct = torch.zeros((), device=dev, dtype=torch.long)
    seen, bad, t0 = 0, 0, time.perf_counter()
    steps = trainer.steps_per_epoch
    bar = tqdm(itertools.islice(trainer.loader, steps - skip), desc=f"epoch {epoch + 1}/{cfg.epochs}",
               disable=not (cfg.progress and trainer.ctx.is_main), unit="batch", initial=skip, total=steps,
               leave=False, dynamic_ncols=True)
    for batch_idx, (x, y, bad_files) in enumerate(bar, start=skip + 1):
        bad += len(bad_files)
        trainer.bad_examples = (trainer.bad_examples + bad_files)[:3]
        if len(y) == 0:
            continue
        loss, corr = trainer.step_fn(x.to(dev, non_blocking=True), _to_device(y, dev))
        trainer.step += 1
        loss_sum += loss.double() * len(y)
        correct += corr
        seen += len(y)
        if (dev.type == "cpu" or batch_idx % 20 == 0) and not torch.isfinite(loss):
            raise TrainingDiverged(
                f"the loss became {loss.item()} at epoch {epoch + 1}, step {trainer.step}; training stopped. The last "
                f"good checkpoint is kept in {trainer.run.path}. Try a lower learning rate (now {cfg.lr:g}, e.g. "
                f"--lr {cfg.lr / 10:g})")
        if batch_idx % 10 == 0 or batch_idx == trainer.steps_per_epoch:
            acc = {"acc": f"{100 * correct.item() / max(seen, 1):.1f}"} if trainer.task.train_accuracy else {}
            bar.set_postfix(loss=f"{loss_sum.item() / max(seen, 1):.4f}", **acc,
                            img_s=f"{seen * trainer.ctx.world_size / max(time.perf_counter() - t0, 1e-9):.0f}")
        periodic = cfg.save_every_steps and trainer.step % cfg.save_every_steps == 0 and batch_idx < steps
        if periodic or stop.requested:
            trainer.partial = trainer.partial.merge(_sums(loss_sum, correct, seen, bad, t0, trainer.ctx))
            loss_sum.zero_(), correct.zero_()
            seen, bad, t0 = 0, 0, time.perf_counter()
            trainer.save_state(batch_idx)
            if stop.requested:
                bar.close()
                raise TrainingInterrupted(f"stopped by signal after epoch {epoch + 1} batch {batch_idx}; checkpoint "
                                          f"saved. Continue with: mobilenets train --resume {trainer.run.path}")
    bar.close()
    sums = trainer.partial.merge(_sums(loss_sum, correct, seen, bad, t0, trainer.ctx))
    trainer.partial = EpochSums()
    return sums


def evaluates(cfg: ResolvedConfig, epoch: int) -> bool:
    """Whether epoch ``epoch`` (from 0) ends with an evaluation: every ``eval_every``-th, and the last."""
    return (epoch + 1) % cfg.eval_every == 0 or epoch + 1 >= cfg.epochs


def end_epoch(trainer: Trainer, epoch: int, sums: EpochSums) -> dict[str, Any]:
    """Evaluate (every ``eval_every`` epochs and after the last), record, checkpoint (the state first,
    then the files derived from it) and report."""
    cfg = trainer.cfg
    if sums.bad and sums.bad > cfg.max_bad_fraction * (sums.seen + sums.bad):
        raise ValueError(f"{sums.bad} of {sums.seen + sums.bad} training images were unreadable (more than "
                         f"{cfg.max_bad_fraction:.0%}; e.g. {'; '.join(trainer.bad_examples) or 'on another rank'}); "
                         "fix the data or raise --max-bad-fraction")
    ev: Any = None
    if evaluates(cfg, epoch):
        if trainer.val_sampler is not None:
            trainer.val_sampler.set_epoch(0)
        # Evaluated in fp32 whatever the training precision, with rank 0's BN statistics on every rank:
        # the numbers recorded are those of the saved weights as `evaluate`, `predict` and the exports
        # run them, on any machine.
        dist.broadcast_buffers(trainer.eval_model, trainer.ctx)
        device = trainer.ctx.device
        ev = trainer.task.evaluate(trainer.eval_model, trainer.val_loader, trainer.classes, device,
                                   Precision(None, device.type), cfg.channels_last, trainer.pre, trainer.ctx)
    train_acc = {"train_acc": 100 * sums.correct / max(sums.seen, 1)} if trainer.task.train_accuracy else {}
    row = {"epoch": epoch + 1, "step": trainer.step, "train_loss": sums.loss / max(sums.seen, 1), **train_acc,
           **(trainer.task.row(ev) if ev is not None else {}), "lr": trainer.step_fn.optimizer.param_groups[0]["lr"],
           "img_per_s": sums.seen / max(sums.seconds, 1e-9), "epoch_s": sums.seconds, "bad_samples": sums.bad}
    signs = stall_signs(trainer.classes, epoch + 1, row["train_loss"], ev, trainer.step) if ev is not None else []
    if signs:
        row["warning"] = "; ".join(signs)
    trainer.history.append(row)
    if ev is not None and row[trainer.task.metrics[0]] > trainer.best_metric:
        trainer.best_metric, trainer.best_epoch = row[trainer.task.metrics[0]], epoch + 1
    trainer.best_metric, trainer.best_epoch = dist.broadcast_best(trainer.best_metric, trainer.best_epoch, trainer.ctx)
    trainer.epoch = epoch + 1
    trainer.save_state()
    if trainer.ctx.is_main:
        if sums.bad:
            print(f"warning: skipped {sums.bad} unreadable training image(s) in epoch {epoch + 1} (e.g. "
                  f"{'; '.join(trainer.bad_examples)})")
        trainer.write_outputs()
        if signs:
            print(stall_warning(signs, epoch + 1, cfg.lr, cfg.init, cfg.freeze_bn), file=sys.stderr)
        if cfg.progress:
            shown = "  ".join(f"{k.replace('_', ' ')} {row[k]:.2f}" for k in ("train_acc", *trainer.task.metrics)
                              if k in row)
            print(f"epoch {epoch + 1}/{cfg.epochs}  loss {row['train_loss']:.4f}  {shown}  "
                  f"{row['img_per_s']:.0f} img/s")
    return row


# ------------------------------------------------------------------------------ main


def train(config: TrainConfig | None = None, *, resume: str | Path | None = None, **options: Any) -> TrainResult:
    """Train a MobileNet; returns the held-out top-1/top-5 of the best epoch and the weights path.

    ``train()`` with no arguments trains the default model on the embedded digits data.
    ``resume=RUN_DIR`` continues a run from its last checkpoint (``epochs=`` may extend it); a run
    stopped before its first checkpoint starts its saved configuration again.
    """
    t_start = time.perf_counter()
    run, cfg = _open_run(config, resume, options)
    ctx = dist.init_context(cfg.device)
    try:
        trainer = build_trainer(cfg, run, ctx)
        stop = StopFlag()
        with stop.on_signals():
            for epoch in range(trainer.epoch, cfg.epochs):
                end_epoch(trainer, epoch, train_one_epoch(trainer, epoch, stop))
                if stop.requested:
                    raise TrainingInterrupted(f"stopped by signal after epoch {epoch + 1}; checkpoint saved. "
                                              f"Continue with: mobilenets train --resume {run.path}")
        if ctx.is_main and run.best.is_file():
            _report(trainer)
        return _result(trainer, time.perf_counter() - t_start)
    finally:
        dist.teardown(ctx)


def _open_run(config: TrainConfig | None, resume: str | Path | None,
              options: dict[str, Any]) -> tuple[Run, ResolvedConfig]:
    """The run folder and its resolved configuration: a new one, or the one to resume."""
    main = dist.is_main_process()
    if resume is not None:
        run = Run(Path(resume))
        saved = run.saved_config()
        bad = sorted(set(options) - set(RESUMABLE_OPTIONS))
        if bad:
            raise ValueError(f"--resume keeps the run's configuration; only {list(RESUMABLE_OPTIONS)} can change, "
                             f"not {bad}")
        cfg = TrainConfig.from_dict({**saved, **{k: v for k, v in options.items() if v is not None}}).resolved()
        if main and not run.state.exists():
            print(f"{run.path} has no checkpoint yet (stopped before its first one): starting its saved "
                  "configuration from the beginning")
    else:
        cfg = dataclasses.replace(config or TrainConfig(), **options).resolved()
        cfg.out = cfg.out or str(Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.model}")
        run = Run(Path(cfg.out))
        if run.state.exists() and not dist.auto_resume(run.state):
            raise ValueError(f"{cfg.out} already holds a run; use --resume {cfg.out} or another --out")
        if main:
            Run.create(run.path, cfg.to_dict())
            if cfg.model_note:
                print(cfg.model_note)
    if main:
        run.remove_stale_files()
    return run, cfg


def _report(trainer: Trainer) -> None:
    """What a person looks at, for the best weights on the held-out split, in the run folder."""
    ev = evaluate(trainer.run.best, device=str(trainer.ctx.device), workers=trainer.cfg.workers, progress=False,
                  examples=EXAMPLES)
    files = write_report(ev, trainer.run.path, trainer.classes)
    if trainer.cfg.progress:
        print(f"held-out report of the best epoch: {', '.join(f.name for f in files)}")


def _result(trainer: Trainer, wall_s: float) -> TrainResult:
    history = trainer.history
    best = next((h for h in history if h["epoch"] == trainer.best_epoch), history[-1] if history else {})
    metrics = {name: best.get(column, float("nan")) * scale
               for name, (column, scale) in trainer.task.result_metrics.items()}
    result = TrainResult(metrics=metrics, epochs=trainer.cfg.epochs, weights=str(trainer.run.best), wall_s=wall_s,
                         run_dir=str(trainer.run.path), best_epoch=trainer.best_epoch, model=trainer.cfg.model,
                         precision=trainer.precision.name, world_size=trainer.ctx.world_size, task=trainer.task.name,
                         history=history)
    if trainer.ctx.is_main:
        atomic_write_text(trainer.run.summary, json.dumps(result.summary(), indent=1))
    return result


def format_history(history: list[dict[str, Any]]) -> str:
    metrics = [k for k in ("train_acc", "val_top1", "val_top5", "val_map", "val_map50", "val_map75", "val_miou",
                           "val_pixel_acc")
               if any(k in h for h in history)]
    return render_table(
        ["epoch", "train loss", *(k.replace("_", " ").replace("acc", "top-1") for k in metrics), "val loss", "lr",
         "img/s", "s"],
        [[h["epoch"], f"{h['train_loss']:.4f}", *(_cell(h, k, ".2f") for k in metrics), _cell(h, "val_loss", ".4f"),
          f"{h['lr']:.2e}", f"{h['img_per_s']:.0f}", f"{h['epoch_s']:.1f}"] for h in history],
    )


def _cell(row: dict[str, Any], key: str, fmt: str) -> str:
    """A history value, or "-" on an epoch without evaluation (``eval_every``)."""
    return format(row[key], fmt) if key in row else "-"
