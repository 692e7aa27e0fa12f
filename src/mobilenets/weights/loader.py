"""Reading weights: one entry point for every format.

``load_model(src)`` accepts our self-describing ``.safetensors``; torchvision and timm
checkpoints (``.pth`` loaded with ``weights_only=True``, or ``.safetensors``); Keras ``.h5`` /
``.weights.h5`` / ``.keras``; Google's TFLite flatbuffers (float and quantized; a V1 split into
body + head is given as ``"body.tflite+head.tflite"``); and the id of a published weights entry
(``mobilenets weights`` lists them), downloaded to a cache and verified. Loading never executes
code from the file.
"""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..models import ModelConfig
from ..models.fake_quant import emulate_activation_quantization, emulate_integer_kernels
from ..models.registry import published_widths
from ..models.spec import build_arch
from ..tasks import TaskConfig, TaskModule, build_model, config_from_dict, kind_of, parse_model_name
from .keras import KERAS_SUFFIXES, keras_candidates, keras_state_dict, read_keras_h5
from .native import WeightsError, load_state_dict_checked, read_metadata, read_tensors
from .published import PUBLISHED, fetch, get_weights
from .tflite import load_tflite
from .zoo_keys import convert_state_dict

_TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".tar")


@dataclasses.dataclass
class LoadedState:
    config: TaskConfig
    state: dict[str, torch.Tensor]
    meta: dict[str, Any]


def sniff_format(path: Path) -> str:
    """The file's format from its suffix, else from its first bytes."""
    name = path.name.lower()
    if name.endswith(".tflite"):
        return "tflite"
    if name.endswith(KERAS_SUFFIXES):
        return "keras"
    if name.endswith(".safetensors"):
        return "safetensors"
    if name.endswith(_TORCH_SUFFIXES):
        return "torch"
    with open(path, "rb") as f:
        head = f.read(16)
    if head[4:8] == b"TFL3":
        return "tflite"
    if head.startswith(b"\x89HDF"):
        return "keras"
    if head.startswith(b"PK") or head[:1] == b"\x80":
        return "torch"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    exported = (" (an exported graph: `predict`, `bench` and `eval` run it in its runtime)"
                if name.endswith((".onnx", ".pte")) else "")
    raise WeightsError(f"{path}: unknown weights format; expected .safetensors, .pth, .h5/.weights.h5, .tflite"
                       + exported)


def torch_load(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a torch.save file, without executing code (``weights_only=True``)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise WeightsError(f"{path}: refused to load - the file needs code execution to unpickle, which is unsafe "
                           f"for downloaded files ({first_line(e)})") from None
    except Exception as e:
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({first_line(e)})") from None
    for key in ("state_dict", "model", "model_ema", "state_dict_ema"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def state_source(sd: dict[str, torch.Tensor]) -> str:
    if "stem.conv.weight" in sd:
        return "mobilenets"
    if "features.0.0.weight" in sd:
        return "torchvision"
    if "conv_stem.weight" in sd:
        return "timm"
    raise WeightsError(f"unrecognized state dict (first keys: {list(sd)[:4]}); expected mobilenets, torchvision or "
                       "timm keys")


def state_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape for ``cfg``, from the spec (no module is built)."""
    out: dict[str, tuple[int, ...]] = {}
    for layer in build_arch(cfg).layers():
        if layer.kind == "fc":
            out["classifier.weight"] = (layer.out_ch, layer.in_ch)
            out["classifier.bias"] = (layer.out_ch,)
            continue
        out[f"{layer.name}.conv.weight"] = (layer.out_ch, layer.in_ch // layer.groups, layer.kernel, layer.kernel)
        for k in ("weight", "bias", "running_mean", "running_var"):
            out[f"{layer.name}.bn.{k}"] = (layer.out_ch,)
    return out


def _fits(state: dict[str, torch.Tensor], cfg: ModelConfig) -> bool:
    want = state_shapes(cfg)
    return all(k in state and tuple(state[k].shape) == s for k, s in want.items())


def _first_fitting(candidates: Sequence[ModelConfig], make: Callable[[ModelConfig], dict[str, torch.Tensor]],
                   what: str) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    tried = []
    for cfg in candidates:
        try:
            state = make(cfg)
        except (KeyError, WeightsError, ValueError):
            tried.append(cfg.name)
            continue
        if _fits(state, cfg):
            return cfg, state
        tried.append(cfg.name)
    raise WeightsError(f"{what} fits none of {', '.join(dict.fromkeys(tried))}; pass --model NAME if it is "
                       "another width, and check that it is a MobileNet V1/V2")


def _zoo_state(sd: dict[str, torch.Tensor], hint: ModelConfig | None, path: Path) -> LoadedState:
    source = state_source(sd)
    cls_key = {"mobilenets": "classifier.weight", "torchvision": "classifier.1.weight", "timm": "classifier.weight"}
    num_classes = int(sd[cls_key[source]].shape[0]) if cls_key[source] in sd else 0
    cands = ([hint] if hint else []) + published_widths("v2" if source == "torchvision" else None)
    cands = [c.replace(num_classes=num_classes) for c in cands]

    def make(cfg: ModelConfig) -> dict[str, torch.Tensor]:
        return dict(sd) if source == "mobilenets" else convert_state_dict(sd, source, cfg)

    cfg, state = _first_fitting(cands, make, f"{path} ({source} layout)")
    return LoadedState(cfg, state, {"source": {"format": source, "files": [str(path)]}})


def load_state(weights: str | Path, model: str | TaskConfig | None = None) -> LoadedState:
    """Config, our-keyed state dict and metadata from any supported weights file or published id."""
    hint = parse_model_name(model) if model is not None else None
    src = str(weights)
    entry = None
    if src in PUBLISHED or (src.split("/", 1)[0] in ("torchvision", "timm", "keras", "tflite")
                            and not Path(src).exists()):
        entry = get_weights(src)
        hint = hint or parse_model_name(entry.model)
        src = str(fetch(entry))
    paths = [Path(p) for p in src.split("+")] if src.endswith(".tflite") and "+" in src else [Path(src)]
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"weights file not found: {p}")
        if p.is_dir():
            raise WeightsError(f"{p} is a folder; pass a weights file (e.g. {p}/best.safetensors)")
    fmt = "tflite" if len(paths) > 1 else sniff_format(paths[0])
    try:
        loaded = _load_format(fmt, paths, hint)
    except (WeightsError, FileNotFoundError):
        raise
    except Exception as e:
        raise WeightsError(f"{paths[0]}: cannot read it as {fmt} weights ({first_line(e)})") from None
    if hint is not None and kind_of(hint).arch_key(hint) != kind_of(loaded.config).arch_key(loaded.config):
        raise WeightsError(f"{src} holds {loaded.config.name}, not {hint.name}")
    if entry is not None:
        loaded.meta.update(published=entry.id, preprocessing=entry.preprocessing,
                           metrics={"imagenet_top1": entry.top1, "imagenet_top5": entry.top5,
                                    "source": entry.accuracy_source})
        loaded.config = loaded.config.replace(mean=entry.mean, std=entry.std)
    if hint is not None and hint.resolution != loaded.config.resolution and fmt != "tflite":
        loaded.config = kind_of(loaded.config).with_resolution(loaded.config, hint.resolution)
    return loaded


def _load_format(fmt: str, paths: list[Path], hint: TaskConfig | None) -> LoadedState:
    path = paths[0]
    classifier = hint if isinstance(hint, ModelConfig) else None  # the zoos' files hold classifiers
    if fmt == "tflite":
        cfg, state, meta = load_tflite(paths, None if hint is None else hint.name)
        loaded = LoadedState(cfg, state, meta)
    elif fmt == "keras":
        layers = read_keras_h5(path)
        cfg, state = _first_fitting(keras_candidates(layers, classifier), lambda c: keras_state_dict(layers, c),
                                    f"{path} (Keras layout)")
        res = cfg.resolution
        loaded = LoadedState(cfg, state, {
            "source": {"format": "keras", "files": [str(path)]},
            "preprocessing": {"input_size": res, "crop_pct": 1.0, "mean": list(cfg.mean), "std": list(cfg.std),
                              "interpolation": "bilinear", "resize": "squash"}})
    elif fmt == "safetensors":
        meta = read_metadata(path)
        if meta.get("config"):
            try:
                cfg = config_from_dict(meta["config"])
            except (ValueError, TypeError, KeyError) as e:
                raise WeightsError(f"{path}: malformed model config in the metadata ({first_line(e)})") from None
            loaded = LoadedState(cfg, read_tensors(path), meta)
        else:
            loaded = _zoo_state(read_tensors(path), classifier, path)
    else:
        loaded = _zoo_state(torch_load(path), classifier, path)
    return loaded


def without_background(loaded: LoadedState) -> LoadedState:
    """1001-class TF classifier -> 1000 classes (row 0 is "background")."""
    if loaded.config.num_classes != 1001:
        raise WeightsError(f"drop_background needs a 1001-class classifier, this one has {loaded.config.num_classes}")
    st = dict(loaded.state)
    st["classifier.weight"] = st["classifier.weight"][1:]
    st["classifier.bias"] = st["classifier.bias"][1:]
    return dataclasses.replace(loaded, config=loaded.config.replace(num_classes=1000), state=st)


def load_model(weights: str | Path, model: str | TaskConfig | None = None, *, drop_background: bool = False,
               emulate_quantization: bool = False, **overrides: Any) -> TaskModule:
    """Build the model a weights file (or published id) describes, load it, and return it in eval mode.

    ``model`` names the architecture when the file cannot tell (e.g. an unusual width).
    ``drop_background=True`` turns a 1001-class TF classifier into 1000 ImageNet classes.
    ``emulate_quantization=True`` rounds the activations to a quantized TFLite file's grids and computes
    its convs and residual adds as XNNPACK's integer kernels do, so the model outputs what the device
    computes (see :mod:`mobilenets.models.fake_quant`).
    The returned model carries ``model.weights_meta``: classes, preprocessing, dataset, metrics, source.
    """
    loaded = load_state(weights, model)
    if drop_background:
        loaded = without_background(loaded)
    cfg = loaded.config.replace(**overrides) if overrides else loaded.config
    net = build_model(cfg)
    load_state_dict_checked(net, loaded.state, str(weights))
    meta = dict(loaded.meta)
    meta.setdefault("classes", None)
    if meta["classes"] is None or len(meta["classes"]) != cfg.num_classes:
        meta["classes"] = kind_of(cfg).default_classes(cfg.num_classes)
    net.weights_meta = meta
    if emulate_quantization:
        grids = meta.get("source", {}).get("activation_quantization")
        if not grids:
            raise WeightsError(f"{weights}: no activation quantization to emulate (only quantized TFLite files "
                               f"carry it)")
        emulate_activation_quantization(net, grids)
        emulate_integer_kernels(net, meta["source"].get("integer_kernels", {}))
    return net.eval()


def load_init_state(path: str | Path, hint: TaskConfig) -> LoadedState:
    """Any supported weights file (or published id) in our key names, for fine-tuning (``--init``);
    ``hint`` is the architecture the file most likely holds (a detector's backbone for a classifier file)."""
    try:
        return load_state(path, hint)
    except WeightsError:
        return load_state(path)
