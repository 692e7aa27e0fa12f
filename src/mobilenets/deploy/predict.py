"""Prediction on image files through any runtime: class names and probabilities, batched, with
unreadable files reported instead of stopping the run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ..data import Transformed, find_images, load_image, make_loader
from ..models import Preprocess, check_input_size
from ..tasks import classification
from ..tasks.classification import Prediction
from ..utils.device import pick_device
from .session import open_session


@dataclass
class PredictResult:
    predictions: list[Prediction] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # "path: reason" for each unreadable file

    def to_dict(self) -> dict[str, Any]:
        return {"predictions": [p.to_dict() for p in self.predictions], "errors": self.errors}


class _Files(Dataset):
    def __init__(self, files: list[Path]) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        return load_image(self.files[i]), i


def predict(
    weights: str | Path | nn.Module,
    inputs: list[str | Path],
    *,
    top_k: int = 5,
    batch_size: int = 32,
    device: str = "auto",
    runtime: str = "torch",
    workers: int = 0,
    input_size: int | None = None,
) -> PredictResult:
    """Top-k classes for each image file (folders are searched recursively).

    ``weights``: any weights file we load, a published id, a model, or (with
    ``runtime="onnxruntime"``) an exported ``.onnx`` file. ``input_size`` overrides the size the
    weights' preprocessing records.
    """
    if input_size is not None:
        check_input_size(input_size)
    if top_k < 1:
        raise ValueError(f"invalid top-k {top_k}; it must be >= 1")
    if batch_size < 1:
        raise ValueError(f"invalid batch size {batch_size}; it must be >= 1")
    files = find_images(list(inputs))
    if not files:
        raise ValueError("no images given (or none found in the given folders)")
    session = open_session(weights, runtime, device=str(pick_device(device)))
    meta = session.meta
    if meta.get("preprocessing"):
        pre = Preprocess.from_dict(meta["preprocessing"])
    elif session.config is not None:
        pre = Preprocess.for_config(session.config)
    else:
        raise ValueError("this file records no preprocessing; export it with mobilenets export")
    if input_size is not None:
        pre = pre.replace(input_size=input_size)
    result = PredictResult()
    for x, idx, bad in make_loader(Transformed(_Files(files), pre.eval_transform()), batch_size, workers=workers):
        result.errors += bad
        if len(idx):
            tops = classification.top_k(torch.from_numpy(session.run(x)), meta.get("classes"), top_k)
            result.predictions += [Prediction(str(files[i]), top) for i, top in zip(idx.tolist(), tops)]
    return result
