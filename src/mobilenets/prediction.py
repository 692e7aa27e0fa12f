"""Prediction on image files: class names and probabilities, batched, unreadable files reported."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from .data import Preprocess, Transformed, make_loader
from .device import pick_device
from .images import find_images, load_image
from .spec import check_input_size


@dataclass
class Prediction:
    path: str
    top: list[tuple[str, float]]  # (class name, probability), best first

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "predictions": [{"class": c, "prob": round(p, 6)} for c, p in self.top]}


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
    from .runtime import open_session

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
    ds = Transformed(_Files(files), pre.eval_transform())
    result = PredictResult()
    classes = meta.get("classes")
    for x, idx, bad in make_loader(ds, batch_size, workers=workers):
        result.errors += bad
        if not len(idx):
            continue
        probs = torch.from_numpy(session.run(x)).float().softmax(1)
        if classes is None:
            classes = [str(i) for i in range(probs.shape[1])]
        p, c = probs.topk(min(top_k, probs.shape[1]), dim=1)
        for i, pi, ci in zip(idx.tolist(), p.tolist(), c.tolist()):
            result.predictions.append(Prediction(str(files[i]), [(classes[j], v) for j, v in zip(ci, pi)]))
    return result
