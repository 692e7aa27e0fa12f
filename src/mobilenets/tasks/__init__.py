"""What each task adds on top of the models: its metrics and how its outputs read.

``classification`` is the papers' ImageNet task. Detection (SSD/SSDLite heads, anchors, box
coding) and segmentation (DeepLabv3 heads) go here as packages of their own, on top of
``mobilenets.models``; training, evaluation, export and prediction reach them through this layer.
"""
