"""torch.distributed glue: one process or many under ``torchrun`` (gloo on CPU, nccl on CUDA).

``torchrun --nproc_per_node N -m mobilenets train ...`` sets RANK/WORLD_SIZE/LOCAL_RANK; with
``--max-restarts K`` torchelastic restarts all workers when one dies, and the restarted workers
resume from the run folder's latest complete checkpoint on their own.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..tasks.classification import ClassificationEvalResult
from ..utils.device import pick_device


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def init_context(device: str = "auto") -> DistContext:
    """Join the process group when launched by torchrun; otherwise a single-process context."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = pick_device(device)
    if world <= 1:
        return DistContext(0, 1, 0, dev)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        restart = os.environ.get("TORCHELASTIC_RESTART_COUNT")
        if restart is not None and "MASTER_ADDR" in os.environ:
            # Under torchelastic the store can outlive a failed attempt: keys written by the
            # previous attempt's workers (their listening addresses) would be read by the restarted
            # ones, which then connect to dead peers. One key prefix per attempt avoids that.
            agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
            base = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world,
                                 is_master=rank == 0 and not agent_store, timeout=timedelta(minutes=30),
                                 multi_tenant=True)
            store = dist.PrefixStore(f"mobilenets/attempt_{restart}", base)
            dist.init_process_group(backend, store=store, rank=rank, world_size=world)
        else:
            dist.init_process_group(backend)
        owns = True
    if dev.type == "cpu":  # share the cores between the local workers
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    return DistContext(rank, world, local, dev, owns)


def is_main_process() -> bool:
    """Rank 0 (or the only process), known from the environment before any group is joined."""
    return int(os.environ.get("RANK", "0")) == 0


def teardown(ctx: DistContext) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def auto_resume(state_path: Path) -> bool:
    """True for workers that torchelastic restarted after a failure, when a checkpoint exists."""
    restarts = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    return restarts > 0 and state_path.exists()


def wrap(model: nn.Module, ctx: DistContext) -> nn.Module:
    if not ctx.active:
        return model
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def broadcast_buffers(model: nn.Module, ctx: DistContext) -> None:
    """Rank 0's buffers (BN statistics) on every rank. DDP sends them at the start of each training
    forward, so after the last step each rank holds the statistics of its own last batch; evaluating
    with these would score a model that no one saves (rank 0 writes the weights)."""
    if ctx.active:
        for b in model.buffers():
            dist.broadcast(b.data, 0)


def barrier(ctx: DistContext) -> None:
    if ctx.active:
        dist.barrier()


def all_reduce_sums(values: list[float], ctx: DistContext) -> list[float]:
    """Element-wise sum over ranks (one small collective)."""
    if not ctx.active:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return t.tolist()


def reduce_eval(res: ClassificationEvalResult, ctx: DistContext) -> ClassificationEvalResult:
    """Combine per-rank evaluation results (each rank saw a disjoint shard) into one."""
    if not ctx.active:
        return res
    conf = res.confusion.to(ctx.device)
    dist.all_reduce(conf)
    loss, top5, count = all_reduce_sums([res.loss * res.count, res.top5 * res.count / 100, res.count], ctx)
    conf = conf.cpu()
    gathered: list[list[str]] = [[] for _ in range(ctx.world_size)]
    dist.all_gather_object(gathered, res.skipped)
    return dataclasses.replace(
        res, top1=float(conf.diag().sum()) / count * 100, top5=top5 / count * 100, loss=loss / count,
        count=int(count), confusion=conf, skipped=[s for part in gathered for s in part],
    )


def gather_objects(obj: object, ctx: DistContext) -> list[object]:
    """Every rank's ``obj`` (picklable), rank order."""
    if not ctx.active:
        return [obj]
    out: list[object] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_best(best: float, epoch: int, ctx: DistContext) -> tuple[float, int]:
    if not ctx.active:
        return best, epoch
    t = torch.tensor([best, float(epoch)], dtype=torch.float64, device=ctx.device)
    dist.broadcast(t, 0)
    return float(t[0]), int(t[1])
