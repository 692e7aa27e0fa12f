"""MobileNet V1 and V2 for PyTorch, built from the papers' tables."""

from .cost import Profile, profile
from .model import MobileNet
from .registry import create_model, list_models, parse_name
from .spec import ModelConfig, build_arch

__all__ = ["MobileNet", "ModelConfig", "Profile", "build_arch", "create_model", "list_models", "parse_name", "profile"]
__version__ = "0.1.0"
