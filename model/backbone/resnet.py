"""ResNet-18/50 (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016) as a stride-8 pose
backbone, on torchvision's definition so its ImageNet weights load by name; `[model] resnet_depth`
picks 18 or 50.

layer3 and layer4 run at stride 8 with dilation 2 and 4 (DeepLab's recipe). ResNet-50 gets it from
torchvision's `replace_stride_with_dilation`. torchvision refuses dilation in ResNet-18's BasicBlock, so
for 18 the same change is made after construction: the first block of layer3/layer4 gets stride 1
(conv1 and the downsample shortcut) and, as torchvision does for Bottleneck, each 3x3 conv of a dilated
layer gets the layer's dilation except the first block's first conv, which keeps the previous one.
A CMU-style adapter (model.cpm) maps layer4's 512 / 2048 channels to stage_channels. Output stride 8,
`[model] stage_channels` channels.
"""

import torchvision
from torch import nn

from model import cpm, pretrained
from utils.config import ConfigError

WEIGHTS = {18: 'ResNet18_Weights.IMAGENET1K_V1', 50: 'ResNet50_Weights.IMAGENET1K_V2'}
TRUNK = ('conv1', 'bn1', 'relu', 'maxpool', 'layer1', 'layer2', 'layer3', 'layer4')


def _set(conv, stride, dilation):
    conv.stride, conv.dilation = (stride, stride), (dilation, dilation)
    conv.padding = (dilation * (conv.kernel_size[0] // 2),) * 2


def dilate_basic(layer, previous, dilation):
    """ResNet-18's `layer` (BasicBlocks) at stride 1 with `dilation`, its first conv at `previous`."""
    first = layer[0]
    _set(first.conv1, 1, previous)
    _set(first.conv2, 1, dilation)
    if first.downsample is not None:
        first.downsample[0].stride = (1, 1)
    for block in layer[1:]:
        _set(block.conv1, 1, dilation)
        _set(block.conv2, 1, dilation)


class Backbone(nn.Module):
    stride = 8

    def __init__(self, config):
        super().__init__()
        self.channels = config.getint('model', 'stage_channels')
        self.depth = config.getint('model', 'resnet_depth')
        if self.depth == 18:
            net = torchvision.models.resnet18(weights=None)
            dilate_basic(net.layer3, 1, 2)
            dilate_basic(net.layer4, 2, 4)
        elif self.depth == 50:
            net = torchvision.models.resnet50(weights=None, replace_stride_with_dilation=[False, True, True])
        else:
            raise ConfigError(f'[model] resnet_depth = {self.depth}: use 18 or 50')
        for name in TRUNK:
            self.add_module(name, getattr(net, name))
        self.cpm = cpm(net.fc.in_features, self.channels)

    def forward(self, x):
        for name in TRUNK:
            x = getattr(self, name)(x)
        return self.cpm(x)

    def imagenet_state_dict(self):
        enum, member = WEIGHTS[self.depth].split('.')
        weights = getattr(getattr(torchvision.models, enum), member)
        return self.from_library(pretrained.torchvision_weights(weights))

    def from_library(self, state_dict):
        """torchvision's ResNet state_dict -> the trunk this backbone keeps (same names, no fc)."""
        return pretrained.same_names(self, state_dict)
