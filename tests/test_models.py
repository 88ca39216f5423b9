"""Every architecture in conf/model builds from its config for any input shape and class count."""

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from overfitlab.training.models.deep_network import DeepNetwork
from overfitlab.training.models.layers import count_parameters, pool_fits

MODEL_CONFIGS = sorted((Path(__file__).resolve().parents[1] / "conf" / "model").glob("*.yaml"))


@pytest.mark.parametrize("config", MODEL_CONFIGS, ids=lambda p: p.stem)
@pytest.mark.parametrize("channels,size,classes", [(1, 28, 10), (3, 32, 2), (1, 64, 5)])
def test_every_model_config_adapts_to_input_and_classes(config, channels, size, classes):
    import overfitlab.resolvers  # noqa: F401  (the `repeat` resolver of mlp_search)

    # Inside the composed config, as in a run: mlp_search reads the searched sizes from `search`.
    cfg = OmegaConf.create(
        {"search": {"layers": 2, "units": 16, "dropout": 0.1}, "model": OmegaConf.load(config)}
    ).model
    if cfg.name == "alexnet":
        cfg.net.dense_width = 64  # the real width works too; this keeps the test light
    assert cfg.name == config.stem
    net = instantiate(cfg.net, in_channels=channels, image_size=size, num_classes=classes)
    out = net(torch.rand(3, channels, size, size))
    assert out.shape == (3, classes)
    assert count_parameters(net) > 0


def test_deep_network_shares_weights_and_drops_pools_for_small_inputs():
    net = DeepNetwork(1, 28, 10)
    # Six pools in the source; for 28x28 only those leaving >= 2x2 remain: 28->14->7->3.
    assert net.pools == [True, True, True, False, False, False]
    # Shared-weight convolutions count once: 6 conv layers + dense 512 + output.
    convs = [(1, 16), (16, 16), (16, 32), (32, 32), (32, 64), (64, 64)]
    expected = sum(9 * a * b + b for a, b in convs) + (64 * 3 * 3 * 512 + 512) + (512 * 10 + 10)
    assert count_parameters(net) == expected == 372_346
    big = DeepNetwork(3, 256, 2)
    assert big.pools == [True] * 6  # the source's 256x256 microscopy input keeps all six


def test_pool_rule():
    assert pool_fits(4, 2, 2, 2) and not pool_fits(3, 2, 2, 2) and pool_fits(3, 2, 2, 1)


def test_feature_maps_are_every_convolution_call_in_order():
    from overfitlab.training.models.layers import conv_feature_maps
    from overfitlab.training.models.mlp import MLP

    torch.manual_seed(0)
    net = DeepNetwork(in_channels=1, image_size=28, num_classes=10).train()
    image = torch.rand(1, 28, 28)
    maps = conv_feature_maps(net, image)
    # entry conv, conv16 twice (shared weights), conv32, conv32_2 twice, conv64, conv64_2 twice
    assert [k.split("_", 1)[1] for k in maps] == [
        "entry_conv",
        "conv16",
        "conv16",
        "conv32",
        "conv32_2",
        "conv32_2",
        "conv64",
        "conv64_2",
        "conv64_2",
    ]
    assert maps["01_entry_conv"].shape == (16, 28, 28)
    expected = net.entry_conv.eval()(image[None])[0]
    assert torch.allclose(maps["01_entry_conv"], expected.detach())
    assert net.training  # the caller's mode is restored
    assert conv_feature_maps(MLP(1, 28, 10, hidden=[20]), image) == {}


def test_model_init_keras_gives_glorot_weights_and_zero_biases_and_null_keeps_the_default(project):
    """model.init: keras is what the source studies' Keras networks started from; null changes nothing."""
    import math

    from conftest import compose
    from overfitlab.training.fitting import build_classifier
    from overfitlab.training.models.layers import initialize

    torch.manual_seed(0)
    default = DeepNetwork(1, 28, 10)
    torch.manual_seed(0)
    same = initialize(DeepNetwork(1, 28, 10), None)
    assert all(torch.equal(a, b) for a, b in zip(default.state_dict().values(), same.state_dict().values()))
    keras = initialize(DeepNetwork(1, 28, 10), "keras")
    layers = [m for m in keras.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    for layer in layers:
        assert torch.count_nonzero(layer.bias) == 0
        fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(layer.weight)
        assert layer.weight.abs().max() <= math.sqrt(6 / (fan_in + fan_out))
    # Through the config, as a run builds it
    cfg = compose("train", ["model=mlp_300_100", "model.init=keras"])

    class Data:
        in_channels, image_size, num_classes, images = 1, 28, 10, {}
        labels = {"train": torch.zeros(4, dtype=torch.long), "val": torch.zeros(2, dtype=torch.long)}

    net = build_classifier(cfg, Data()).net
    assert all(torch.count_nonzero(m.bias) == 0 for m in net.modules() if isinstance(m, torch.nn.Linear))


@pytest.mark.parametrize(
    "name,source_count",
    [("keras_deep_network", 179_728), ("keras_alexnet", 10_040_714)],
)
def test_the_source_architectures_have_the_sources_parameter_counts(name, source_count):
    """shared/seeds 000: the deep network for Fashion-MNIST has "~180,000" parameters, the AlexNet
    clone "over ten million"; the configs read from the source's code give exactly these counts."""
    cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "model" / f"{name}.yaml")
    net = instantiate(cfg.net, in_channels=1, image_size=28, num_classes=10)
    assert count_parameters(net) == source_count
    assert cfg.init == "keras"
