"""Semantic segmentation: Mobile DeepLabv3 (spec, module, loss and confusion-matrix metrics)."""
