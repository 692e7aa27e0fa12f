"""Weights: every format we read and write, the published-weights registry and the zoo key maps.

``loader`` reads any format (ours, torchvision, timm, Keras, TFLite, published ids), ``writer``
writes ours and theirs; ``native`` is our self-describing safetensors; ``tflite``, ``keras`` and
``zoo_keys`` (torchvision/timm state-dict names) hold one format each; ``published`` lists the
downloadable files with their hashes and reported accuracies. Loading never executes code.
"""

from .loader import LoadedState, load_init_state, load_model, load_state
from .native import WeightsError, read_metadata, save_weights
from .writer import convert_weights
from .zoo_keys import convert_state_dict

__all__ = ["LoadedState", "WeightsError", "convert_state_dict", "convert_weights", "load_init_state", "load_model",
           "load_state", "read_metadata", "save_weights"]
