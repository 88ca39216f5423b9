"""Architectures from the study's sources, each adapting to input size, channels and classes.

Every constructor takes ``in_channels``, ``image_size`` and ``num_classes`` (filled in from the
dataset config) plus its own hyper-parameters (from ``conf/model/*.yaml``). All return logits;
the softmax lives in the loss, as in the sources' ``from_logits=True`` variants.
"""

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


class MLP(nn.Module):
    """Flatten + dense layers: dense-256-sigmoid, MLP 300-100, models A, B and C."""

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        num_classes: int,
        hidden: list[int],
        activation: str = "relu",
        dropout: float = 0.0,
    ):
        super().__init__()
        body, width = dense_stack(in_channels * image_size * image_size, list(hidden), activation, dropout)
        self.net = nn.Sequential(nn.Flatten(), body, nn.Linear(width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvNet(nn.Module):
    """conv(3x3, same) blocks, each optionally followed by 2x2 max-pool, then dense layers.

    Covers the CIFAR course's no-pooling CNN (the one that overfits), its conv-pool-dropout CNN,
    and the MNIST lesson's model D.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        num_classes: int,
        channels: list[int],
        pool: bool,
        hidden: list[int],
        hidden_activation: str = "relu",
        dropout: float = 0.0,
        min_pool_size: int = 2,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        size, c_in = image_size, in_channels
        for c_out in channels:
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU()]
            if pool and pool_fits(size, 2, 2, min_pool_size):
                layers.append(nn.MaxPool2d(2))
                size //= 2
            c_in = c_out
        head, width = dense_stack(c_in * size * size, list(hidden), hidden_activation, dropout)
        self.net = nn.Sequential(*layers, nn.Flatten(), head, nn.Linear(width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DeepNetwork(nn.Module):
    """The microscopy study's deep network, with its shared-weight repeated convolutions.

    entry conv16; conv16 applied twice (one module, shared weights), each followed by a pool;
    conv32, pool; conv32_2 applied twice (shared); pool; conv64; conv64_2 applied twice (shared),
    each followed by a pool; dense 512 (optionally dense ``extra_dense``); output.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        num_classes: int,
        extra_dense: int | None = None,
        min_pool_size: int = 2,
    ):
        super().__init__()
        self.entry_conv = nn.Conv2d(in_channels, 16, 3, padding=1)
        self.conv16 = nn.Conv2d(16, 16, 3, padding=1)
        self.conv32 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv32_2 = nn.Conv2d(32, 32, 3, padding=1)
        self.conv64 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv64_2 = nn.Conv2d(64, 64, 3, padding=1)
        # Decide once, from the input size, which of the six pools survive.
        self.pools: list[bool] = []
        size = image_size
        for _ in range(6):
            keep = pool_fits(size, 2, 2, min_pool_size)
            self.pools.append(keep)
            size = size // 2 if keep else size
        hidden = [512] + ([extra_dense] if extra_dense else [])
        head, width = dense_stack(64 * size * size, hidden, "relu", 0.0)
        self.head = nn.Sequential(nn.Flatten(), head, nn.Linear(width, num_classes))

    def _pool(self, x: torch.Tensor, index: int) -> torch.Tensor:
        return nn.functional.max_pool2d(x, 2) if self.pools[index] else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        relu = nn.functional.relu
        out = relu(self.entry_conv(x))
        for i in range(2):
            out = self._pool(relu(self.conv16(out)), i)
        out = self._pool(relu(self.conv32(out)), 2)
        for _ in range(2):
            out = relu(self.conv32_2(out))
        out = relu(self.conv64(self._pool(out, 3)))
        for i in range(2):
            out = self._pool(relu(self.conv64_2(out)), 4 + i)
        return self.head(out)


class AlexNet(nn.Module):
    """AlexNet-style network with batch norm in place of local response normalization.

    Small inputs (below 64 px) get a 3x3 stride-1 first convolution instead of 11x11 stride 4,
    and pools that would shrink the map below ``min_pool_size`` are dropped.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        num_classes: int,
        dense_width: int = 4096,
        dropout: float = 0.5,
        min_pool_size: int = 2,
    ):
        super().__init__()
        small = image_size < 64
        first = nn.Conv2d(
            in_channels, 96, 3 if small else 11, stride=1 if small else 4, padding=1 if small else 2
        )
        size = image_size if small else (image_size + 4 - 11) // 4 + 1
        layers: list[nn.Module] = [first, nn.BatchNorm2d(96), nn.ReLU()]

        def maybe_pool() -> None:
            nonlocal size
            if pool_fits(size, 3, 2, min_pool_size):
                layers.append(nn.MaxPool2d(3, 2))
                size = (size - 3) // 2 + 1

        maybe_pool()
        layers += [nn.Conv2d(96, 256, 5, padding=2), nn.BatchNorm2d(256), nn.ReLU()]
        maybe_pool()
        for c_in, c_out in [(256, 384), (384, 384), (384, 256)]:
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
        maybe_pool()
        head, width = dense_stack(256 * size * size, [dense_width, dense_width], "relu", dropout)
        self.net = nn.Sequential(*layers, nn.Flatten(), head, nn.Linear(width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
