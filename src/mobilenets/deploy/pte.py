"""ExecuTorch export (``.pte``): the whole network lowered to the XNNPACK delegate, the runtime
PyTorch itself ships to phones and small boards, checked in the ExecuTorch runtime against PyTorch.

The program takes one NCHW image (a static batch of 1: what a device runs, and the memory it plans
is that of one image) and carries our metadata record (model, config, classes, preprocessing) as a
constant method, :data:`PTE_META_METHOD`, which returns it as UTF-8 bytes. A detector's program ends
with every anchor's decoded box and class scores; the NMS runs after it, as for TFLite.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..tasks import config_of
from ..utils.fsutil import atomic_path
from ..utils.quiet import quiet_native_output
from .artifact import META_KEY, ExportResult, export_metadata, export_size, inference_module
from .sessions import PTE_META_METHOD, ExecutorchSession, check_float_export, require_executorch


def export_pte(model: nn.Module, path: str | Path, input_size: int | None = None, argmax: bool = False) -> ExportResult:
    """A ``.pte`` with every op the XNNPACK delegate runs delegated to it, checked in ExecuTorch
    (max abs difference to PyTorch on a seeded batch, run one image at a time)."""
    require_executorch()
    with quiet_native_output():  # ExecuTorch logs on import and on its first program
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

    size = export_size(model, input_size)
    module, _ = inference_module(model, size, argmax, nms=False)
    one = torch.zeros(1, config_of(model).in_chans, size, size)
    record = torch.tensor(list(export_metadata(model)[META_KEY].encode()), dtype=torch.uint8)
    with torch.no_grad():
        program = torch.export.export(module, (one,))
    lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()],
                                          constant_methods={PTE_META_METHOD: record})
    with atomic_path(Path(path)) as tmp:
        Path(tmp).write_bytes(lowered.to_executorch().buffer)
    diff, tolerance = check_float_export(model, module, size, ExecutorchSession(path).run)
    return ExportResult(str(path), "pte", diff, tolerance)
