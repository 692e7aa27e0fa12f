"""The models: the papers' tables as data (``spec``), the modules built from them (``layers``,
``mobilenet``), names (``registry``), TF conventions (``tf_compat``), and model transforms
(``fold``: BatchNorm folding; ``memory_efficient``: the V2 paper's t-way split executor).
``preprocess`` describes the input a model expects. Nothing here imports a higher layer."""

from .fold import fold_batchnorm
from .layers import zero_init_residual
from .memory_efficient import memory_efficient
from .mobilenet import MobileNet
from .preprocess import Preprocess
from .registry import create_mobilenet, list_models, parse_name, resolve_config
from .spec import ALPHAS, MIN_INPUT_SIZE, Arch, ModelConfig, build_arch, check_input_size

__all__ = ["ALPHAS", "MIN_INPUT_SIZE", "Arch", "MobileNet", "ModelConfig", "Preprocess", "build_arch",
           "check_input_size", "create_mobilenet", "fold_batchnorm", "list_models", "memory_efficient", "parse_name",
           "resolve_config", "zero_init_residual"]
