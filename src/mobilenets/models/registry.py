"""Model names (paper, TF-checkpoint and timm spellings) and ``create_mobilenet``."""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import re
from typing import Any

from .mobilenet import MobileNet
from .spec import ALPHAS, FAMILIES, RESOLUTIONS, Family, ModelConfig

ABLATIONS = (
    "1.0-MobileNet-224-conv",
    "1.0-MobileNet-224-shallow",
    "1.0-MobileNetV2-224-nonlinear",
    "1.0-MobileNetV2-224-noshortcut",
    "1.0-MobileNetV2-224-t4",
)

_SUFFIXES = {"conv": "conv", "shallow": "shallow", "nonlinear": "nonlinear", "noshortcut": "no_shortcut"}
_PAPER = re.compile(
    r"^(?:(?P<alpha>\d*\.?\d+)[-_ ]?)?(?P<pre>conv|shallow)?[-_ ]?mobilenet[-_ ]?(?P<v>v1|v2)?"
    r"(?:[-_ ](?P<res>\d+))?(?P<suffix>(?:-[a-z0-9.]+)*)$"
)
_TF = re.compile(r"^mobilenet_v(?P<v>[12])_(?P<alpha>\d*\.?\d+)_(?P<res>\d+)(?:_quant)?$")
_TIMM = re.compile(r"^mobilenetv(?P<v>[12])_(?P<alpha>\d{3})(?:\.[\w.]+)?$")
_ALIASES = {"mobilenet_v2": "1.0-MobileNetV2-224", "mobilenet_v1": "1.0-MobileNet-224"}


def list_models(pattern: str | None = None) -> list[str]:
    """Registered names: the published alpha x resolution grids and the paper ablations.

    Any other width/resolution can still be built from a name such as ``0.6-MobileNet-200``.
    ``pattern`` is a case-insensitive shell pattern, e.g. ``"*MobileNetV2-224"``.
    """
    names = [ModelConfig(family=f, alpha=a, resolution=r).name for f in FAMILIES for a in ALPHAS[f]
             for r in RESOLUTIONS[f]]
    names += list(ABLATIONS)
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n.lower(), pattern.lower())]
    return names


def _unknown(name: str) -> ValueError:
    close = difflib.get_close_matches(name, list_models() + list(_ALIASES), n=5, cutoff=0.5)
    hint = f"; closest: {', '.join(close)}" if close else ""
    return ValueError(
        f"unknown model name {name!r}{hint}. Names look like 0.75-MobileNet-128, 1.4-MobileNetV2-224 "
        "(paper), mobilenet_v1_0.25_128 (TF) or mobilenetv2_140 (timm), detectors 0.75-SSD-MobileNet-300, "
        "1.0-SSDLite-MobileNetV2-320 or 1.0-FasterRCNN-MobileNet-600, and segmenters 1.0-DeepLabV3-MobileNetV2-513; "
        "`mobilenets models` lists the classifiers"
    )


def parse_name(name: str) -> ModelConfig:
    """Resolve a model name to its architecture config (alpha, resolution, variant, t)."""
    if not isinstance(name, str):
        raise TypeError(f"a model name must be a string, got {type(name).__name__}")
    if not name.strip():
        raise _unknown(name)
    key = _ALIASES.get(name.strip().lower(), name.strip())
    low = key.lower()
    fields: dict[str, Any]
    if m := _TF.match(low):
        fields = dict(family=f"v{m['v']}", alpha=float(m["alpha"]), resolution=int(m["res"]))
    elif m := _TIMM.match(low):
        fields = dict(family=f"v{m['v']}", alpha=int(m["alpha"]) / 100, resolution=224)
    elif m := _PAPER.match(low):
        fields = dict(
            family="v2" if m["v"] == "v2" else "v1",
            alpha=float(m["alpha"]) if m["alpha"] else 1.0,
            resolution=int(m["res"]) if m["res"] else 224,
        )
        suffixes = [s for s in (m["suffix"] or "").split("-") if s]
        if m["pre"]:
            suffixes.insert(0, m["pre"])
        for s in suffixes:
            if s in _SUFFIXES:
                if "variant" in fields:
                    raise ValueError(f"model name {name!r} combines two variants; use one of {sorted(_SUFFIXES)}")
                fields["variant"] = _SUFFIXES[s]
            elif re.fullmatch(r"t\d*\.?\d+", s):
                fields["expansion"] = float(s[1:])
            elif re.fullmatch(r"os\d+", s):
                fields["output_stride"] = int(s[2:])
            else:
                raise ValueError(f"unknown suffix {s!r} in model name {name!r}; valid: "
                                 f"{', '.join(sorted(_SUFFIXES))}, t<expansion>, os<output stride>")
    else:
        raise _unknown(name)
    return ModelConfig(**fields)


def published_widths(family: Family | None = None, **overrides: Any) -> list[ModelConfig]:
    """One config per published width (of ``family``, or both): the candidates tried when a weights
    file must be matched to an architecture by its tensor shapes."""
    families = FAMILIES if family is None else (family,)
    return [ModelConfig(family=f, alpha=a).replace(**overrides) for f in families for a in ALPHAS[f]]


_MODEL_KWARGS = ("features_only", "out_indices")
_CONFIG_KWARGS = tuple(f.name for f in dataclasses.fields(ModelConfig))


def resolve_config(name: str | ModelConfig, **overrides: Any) -> ModelConfig:
    """A name (or config) with keyword overrides applied and validated."""
    cfg = name if isinstance(name, ModelConfig) else parse_name(name)
    bad = sorted(set(overrides) - set(_CONFIG_KWARGS))
    if bad:
        raise ValueError(f"unknown option(s) {bad}; valid: {', '.join(_CONFIG_KWARGS + _MODEL_KWARGS)}")
    for k in ("mean", "std"):
        if k in overrides:
            overrides[k] = tuple(overrides[k])
    return cfg.replace(**overrides)


def create_mobilenet(name: str | ModelConfig, **options: Any) -> MobileNet:
    """Build a MobileNet classifier by name with random weights, e.g.
    ``create_mobilenet("0.75-MobileNet-128", num_classes=10)``.

    Options: any :class:`~mobilenets.models.spec.ModelConfig` field (``num_classes``, ``dropout``,
    ``in_chans``, ``activation``, ``bn_eps``, ``bn_momentum``, ``padding``, ``variant``,
    ``expansion``, ``alpha``, ``resolution``) plus ``features_only`` and ``out_indices``.
    (``mobilenets.create_model`` also takes ``weights=``.)
    """
    model_kwargs = {k: options.pop(k) for k in _MODEL_KWARGS if k in options}
    return MobileNet(resolve_config(name, **options), **model_kwargs)
