"""Experiment (not product code): the microscopy deep network initialized as Keras does by default
(Glorot-uniform weights, zero biases) instead of PyTorch's default (Kaiming-uniform, a = sqrt(5))."""

from torch import nn

from overfitlab.training.models.deep_network import DeepNetwork


def deep_network_glorot(**kwargs) -> DeepNetwork:
    net = DeepNetwork(**kwargs)
    for module in net.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
    return net
