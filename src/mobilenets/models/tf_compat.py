"""TensorFlow conventions, converted to PyTorch in one named place.

TF-slim and Keras describe the same things with different numbers than PyTorch:

* BatchNorm *decay* d (weight of the running value) is PyTorch *momentum* 1 - d (weight of the
  new batch statistic). Passing the TF number straight to ``nn.BatchNorm2d`` is a known bug in
  other ports (running statistics then follow each batch almost entirely).
* TF BatchNorm epsilon is 1e-3 (PyTorch: 1e-5).
* ``dropout_keep_prob`` k is PyTorch's drop probability 1 - k.
* TF "SAME" padding puts the extra row/column of a stride-2 conv at the bottom/right.
* Google's checkpoints have 1001 classes, index 0 being "background".
* Their input is mapped to [-1, 1] (mean = std = 0.5 on [0, 1] pixels).
* TF computes an atrous (dilated) "SAME" conv through space_to_batch, on a grid padded to a multiple
  of the rate; its profiler counts that grid's positions (what Google's papers print).
"""

from __future__ import annotations

TF_BN_EPS = 1e-3
TF_V1_BN_DECAY = 0.9997  # mobilenet_v1_arg_scope
TF_V2_BN_DECAY = 0.997  # mobilenet.training_scope
KERAS_V1_BN_DECAY = 0.99  # keras.layers.BatchNormalization default, used by keras MobileNet
KERAS_V2_BN_DECAY = 0.999  # keras MobileNetV2
TF_V1_KEEP_PROB = 0.999
TF_V2_KEEP_PROB = 0.8
TF_NUM_CLASSES = 1001  # background + 1000 ImageNet classes
TF_MEAN = (0.5, 0.5, 0.5)  # (x/255 - 0.5) / 0.5 == (x - 127.5) / 127.5
TF_STD = (0.5, 0.5, 0.5)


def bn_momentum_from_tf_decay(decay: float) -> float:
    """PyTorch BatchNorm momentum equivalent to a TF/Keras moving-average decay."""
    if not 0 <= decay <= 1:
        raise ValueError(f"TF BatchNorm decay must be in [0, 1], got {decay}")
    return 1.0 - decay


def space_to_batch_positions(size: int, kernel: int, rate: int) -> int:
    """Output positions, along one side, that TF's atrous "SAME" conv computes: ``tf.nn.convolution``
    pads the input by the kernel's reach, (kernel - 1) * rate, rounds that up to a multiple of the rate,
    convolves each of the rate x rate phases (space_to_batch) and crops the result back to ``size``.
    A 33-wide map at rates 6, 12 and 18 is computed 36 wide."""
    if rate == 1:
        return size
    reach = (kernel - 1) * rate
    return -(-(size + reach) // rate) * rate - reach


def drop_prob_from_keep_prob(keep_prob: float) -> float:
    """PyTorch dropout probability equivalent to a TF ``keep_prob``."""
    if not 0 < keep_prob <= 1:
        raise ValueError(f"TF keep_prob must be in (0, 1], got {keep_prob}")
    return 1.0 - keep_prob


def tf_overrides(family: str, *, background: bool = True, source: str = "slim") -> dict[str, object]:
    """Model options that reproduce a Google (TF-slim/TFLite) or Keras checkpoint's numerics.

    ``source`` is "slim" (TF-slim / TFLite: 1001 classes with background) or "keras" (1000).
    """
    decay = {
        ("slim", "v1"): TF_V1_BN_DECAY,
        ("slim", "v2"): TF_V2_BN_DECAY,
        ("keras", "v1"): KERAS_V1_BN_DECAY,
        ("keras", "v2"): KERAS_V2_BN_DECAY,
    }[(source, family)]
    keep = TF_V1_KEEP_PROB if family == "v1" else TF_V2_KEEP_PROB
    return {
        "padding": "tf_same",
        "bn_eps": TF_BN_EPS,
        "bn_momentum": bn_momentum_from_tf_decay(decay),
        # Keras MobileNetV2 has no dropout; Keras V1 uses 1e-3 like TF-slim's keep_prob 0.999
        "dropout": 0.0 if (source, family) == ("keras", "v2") else drop_prob_from_keep_prob(keep),
        "num_classes": TF_NUM_CLASSES if background and source == "slim" else 1000,
        "mean": TF_MEAN,
        "std": TF_STD,
    }
