"""CMU's OpenPose trunk (Cao et al., CVPR 2017): VGG19 (Simonyan and Zisserman, ICLR 2015) conv1_1 to
conv4_2 with three 2x2 max-pools, then conv4_3_CPM (256) and conv4_4_CPM (128); every conv is 3x3 with
ReLU. Output stride 8, 128 channels.

Parameters are named after CMU's Caffe layers (backbone.conv1_1.weight ... backbone.conv4_4_CPM.bias), so
CMU's caffemodel converts by name. `pretrained = imagenet` fills conv1_1..conv4_2 from torchvision's
ImageNet VGG19, as CMU initialised its model.
"""

import torch.nn.functional as F
from torch import nn

from model import pretrained

POOL = None
# (name, output channels) in forward order; POOL marks a 2x2 max-pool with stride 2.
LAYERS = (('conv1_1', 64), ('conv1_2', 64), POOL,
          ('conv2_1', 128), ('conv2_2', 128), POOL,
          ('conv3_1', 256), ('conv3_2', 256), ('conv3_3', 256), ('conv3_4', 256), POOL,
          ('conv4_1', 512), ('conv4_2', 512), ('conv4_3_CPM', 256), ('conv4_4_CPM', 128))
# The first layers that are VGG19's own (the rest are CMU's additions).
VGG_LAYERS = ('conv1_1', 'conv1_2', 'conv2_1', 'conv2_2', 'conv3_1', 'conv3_2', 'conv3_3', 'conv3_4',
              'conv4_1', 'conv4_2')


class Backbone(nn.Module):
    stride = 8
    channels = 128

    def __init__(self, config):
        super().__init__()
        self.order = [layer and layer[0] for layer in LAYERS]
        in_channels = 3
        for layer in LAYERS:
            if layer is not POOL:
                name, out_channels = layer
                self.add_module(name, nn.Conv2d(in_channels, out_channels, 3, padding=1))
                in_channels = out_channels

    def forward(self, x):
        for name in self.order:
            x = F.max_pool2d(x, 2, 2) if name is POOL else F.relu(getattr(self, name)(x), inplace=True)
        return x

    def imagenet_state_dict(self):
        import torchvision
        weights = torchvision.models.VGG19_Weights.IMAGENET1K_V1
        return self.from_library(pretrained.torchvision_weights(weights))

    def from_library(self, state_dict):
        """torchvision's VGG19 (features.<i>.weight/bias) -> conv1_1..conv4_2, its first ten convs."""
        convs = sorted({int(key.split('.')[1]) for key in state_dict
                        if key.startswith('features.') and key.endswith('.weight')})
        result = {}
        for name, index in zip(VGG_LAYERS, convs):
            for suffix in ('weight', 'bias'):
                result[f'{name}.{suffix}'] = state_dict[f'features.{index}.{suffix}']
        return result
