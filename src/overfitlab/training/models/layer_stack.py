"""A network written as the list of layers a Keras ``Sequential`` lists, so that a source study's
architecture reads in its config as it reads in the source (conf/model/keras_*.yaml).

Each entry is one layer: ``{conv: 16, kernel: 3}`` (``padding: same`` unless ``valid``, ``stride``),
``{pool: 2}`` (max-pool of that size, ``stride`` = size unless given), ``{batchnorm: true}``,
``{dropout: 0.5}``, ``{dense: 512}``. Convolutions and dense layers use ReLU; the input is flattened
before the first dense layer, and the output layer (``num_classes`` logits) is added last. A pool
that would leave less than one pixel is an error naming the layer, not a silent drop: the config
says which pools the source kept. One model family per file: a run hashes only its own family's code.
"""

from __future__ import annotations

import torch
from torch import nn


class LayerStack(nn.Module):
    def __init__(self, in_channels: int, image_size: int, num_classes: int, layers: list[dict]):
        super().__init__()
        modules: list[nn.Module] = []
        channels, size, features = in_channels, image_size, None  # features: set once flattened
        for index, layer in enumerate(layers):
            layer = dict(layer)
            if "conv" in layer:
                kernel, stride = int(layer.get("kernel", 3)), int(layer.get("stride", 1))
                same = layer.get("padding", "same") == "same"
                modules += [
                    nn.Conv2d(
                        channels, int(layer["conv"]), kernel, stride, padding=kernel // 2 if same else 0
                    ),
                    nn.ReLU(),
                ]
                channels = int(layer["conv"])
                size = (size + 2 * (kernel // 2 if same else 0) - kernel) // stride + 1
            elif "pool" in layer:
                pool, stride = int(layer["pool"]), int(layer.get("stride", layer["pool"]))
                size = (size - pool) // stride + 1
                if size < 1:
                    raise ValueError(f"layer {index} {layer}: a {image_size} px input is pooled to nothing")
                modules.append(nn.MaxPool2d(pool, stride))
            elif "batchnorm" in layer:
                modules.append(nn.BatchNorm2d(channels))
            elif "dropout" in layer:
                modules.append(nn.Dropout(float(layer["dropout"])))
            elif "dense" in layer:
                if features is None:
                    modules.append(nn.Flatten())
                    features = channels * size * size
                modules += [nn.Linear(features, int(layer["dense"])), nn.ReLU()]
                features = int(layer["dense"])
            else:
                raise ValueError(f"layer {index} {layer}: one of conv, pool, batchnorm, dropout, dense")
        if features is None:
            modules.append(nn.Flatten())
            features = channels * size * size
        self.net = nn.Sequential(*modules, nn.Linear(features, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
