"""MobileNetV2 (Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018) as a
stride-8 pose backbone, on torchvision's definition so its ImageNet weights load by name.

torchvision's `features` are kept up to block 13 (the last 96-channel block, before the stride-32 group).
The stride-16 group (blocks 7-13) runs at stride 8: block 7's depthwise conv gets stride 1 and the
depthwise convs after it dilation 2, keeping their receptive field (DeepLab's recipe, as Lightweight
OpenPose does with MobileNetV1). A CMU-style adapter (model.cpm: 1x1 and 3x3 conv) maps the 96 channels
to stage_channels. Output stride 8, `[model] stage_channels` channels. `[model] mobilenet_width` is
torchvision's width multiplier (ImageNet weights exist for 1 only).

torch's CPU backward of a dilated depthwise conv is several times slower than of the same conv undilated
(8x384x28x28, one thread: backward 294 ms against 107 ms in the phase form below; with the forward,
324 ms against 174 ms), so in training on the CPU the dilated convs run as PhaseConv2d: the same result
computed on the input's dilation^2 phase images (space-to-batch, as TensorFlow's atrous convolution).
Inference and CUDA use the plain dilated conv.
"""

import torch.nn.functional as F
import torchvision
from torch import nn

from model import cpm, pretrained
from utils.config import ConfigError

# torchvision's features[:LAST + 1] are kept; features[DILATE_FROM:] run at stride 8 with dilation 2.
LAST = 13
DILATE_FROM = 7


class PhaseConv2d(nn.Conv2d):
    """A stride-1 3x3 conv with dilation d and padding d that, in training on the CPU, convolves the d*d
    phase images x[p::d, q::d] of its (zero-padded to a multiple of d) input undilated and interleaves
    the results back: exactly the dilated conv, with a faster backward."""

    def forward(self, x):
        d = self.dilation[0]
        if not self.training or d == 1 or x.device.type != 'cpu':
            return super().forward(x)
        n, c, h, w = x.shape
        x = F.pad(x, (0, -w % d, 0, -h % d))
        rows, cols = x.shape[2] // d, x.shape[3] // d
        x = x.reshape(n, c, rows, d, cols, d).permute(0, 3, 5, 1, 2, 4).reshape(n * d * d, c, rows, cols)
        y = F.conv2d(x, self.weight, self.bias, 1, self.padding[0] // d, 1, self.groups)
        y = y.reshape(n, d, d, -1, rows, cols).permute(0, 3, 4, 1, 5, 2).reshape(n, -1, rows * d, cols * d)
        return y[:, :, :h, :w]


def dilate(block, dilation):
    """Give `block`'s depthwise conv stride 1 and `dilation` (same padding; a PhaseConv2d when dilated)."""
    for module in block.modules():
        if isinstance(module, nn.Conv2d) and module.groups > 1:
            module.stride, module.dilation, module.padding = (1, 1), (dilation,) * 2, (dilation,) * 2
            if dilation > 1:
                module.__class__ = PhaseConv2d  # same parameters and names, only forward differs


class Backbone(nn.Module):
    stride = 8

    def __init__(self, config):
        super().__init__()
        self.channels = config.getint('model', 'stage_channels')
        self.width = config.getfloat('model', 'mobilenet_width')
        if not 0 < self.width <= 4:
            raise ConfigError(f'[model] mobilenet_width = {self.width}: use a multiplier in (0, 4], '
                              f'e.g. 0.5 or 1')
        features = torchvision.models.mobilenet_v2(weights=None, width_mult=self.width).features[:LAST + 1]
        dilate(features[DILATE_FROM], 1)
        for block in features[DILATE_FROM + 1:]:
            dilate(block, 2)
        self.features = features
        self.cpm = cpm(features[-1].out_channels, self.channels)

    def forward(self, x):
        return self.cpm(self.features(x))

    def imagenet_state_dict(self):
        if self.width != 1:
            raise ConfigError(f'[model] pretrained = imagenet: torchvision has ImageNet weights for '
                              f'MobileNetV2 of width 1 only, not [model] mobilenet_width = {self.width}')
        weights = pretrained.torchvision_weights(torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V2)
        return self.from_library(weights)

    def from_library(self, state_dict):
        """torchvision's MobileNetV2 state_dict -> the features this backbone keeps (same names)."""
        return pretrained.same_names(self, state_dict)
