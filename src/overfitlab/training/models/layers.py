"""What the model families share: activations, dense stacks, the pool rule, parameter counts and the
feature-map probe. A change here changes every family's runs (it is in each family's code hash)."""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "identity": nn.Identity}


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; allowed: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def dense_stack(in_features: int, hidden: list[int], act: str, dropout: float) -> tuple[nn.Sequential, int]:
    """Dense layers ``hidden`` with one activation and optional dropout after each."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_features, width), activation(act)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        in_features = width
    return nn.Sequential(*layers), in_features


def pool_fits(size: int, kernel: int, stride: int, min_size: int) -> bool:
    """A pool is kept only while its output stays at least ``min_size`` pixels wide.

    The source removed the deep network's last pools for 28x28 inputs; this rule does the same
    for any input size instead of hard-coding which pools to drop.
    """
    return (size - kernel) // stride + 1 >= min_size


INITS = (None, "keras")  # model.init


def initialize(net: nn.Module, init: str | None) -> nn.Module:
    """``model.init``: ``null`` keeps the framework's default (PyTorch's); ``keras`` gives every dense
    and convolution layer Glorot-uniform weights and zero biases, as Keras' ``Dense`` and ``Conv2D``
    do (the source studies' networks), drawn in module order from torch's seeded generator."""
    if init is None:
        return net
    for module in net.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return net


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def conv_feature_maps(net: nn.Module, image: torch.Tensor) -> dict[str, torch.Tensor]:
    """The output of every convolution call for one image (C, H, W), in eval mode and call order.

    Keys are ``<call number>_<module name>``: a shared-weight convolution applied twice (the
    deep network's) appears twice. Empty for models without convolutions.
    """
    names = {m: n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)}
    maps: dict[str, torch.Tensor] = {}

    def keep(module, _inputs, output):
        maps[f"{len(maps) + 1:02d}_{names[module]}"] = output[0].detach().cpu()

    hooks = [m.register_forward_hook(keep) for m in names]
    was_training = net.training
    try:
        net.eval()
        net(image[None].to(next(net.parameters()).device))
    finally:
        net.train(was_training)
        for h in hooks:
            h.remove()
    return maps
