"""Inception-v4 (Szegedy et al., "Inception-v4, Inception-ResNet and the Impact of Residual Connections on
Learning", AAAI 2017) as a stride-8 pose backbone, on timm's definition with `features_only`, cut at its
stride-8 feature (the stem and the four Inception-A blocks, 384 channels).

Inception's stem uses unpadded convs, so an 8n-pixel input would give fewer than n cells; the input is
zero-padded by PAD pixels on every side, which gives exactly H/8 x W/8 cells whose receptive fields are
centred at input pixel 8j + 3 (the framework's cell centre is 8j + 3.5). A CMU-style adapter (model.cpm)
maps the 384 channels to stage_channels. Output stride 8, `[model] stage_channels` channels.
"""

import timm
import torch.nn.functional as F
from torch import nn

from model import cpm, pretrained

NAME = 'inception_v4'
PAD = 10


class Backbone(nn.Module):
    stride = 8

    def __init__(self, config):
        super().__init__()
        self.channels = config.getint('model', 'stage_channels')
        self.features = timm.create_model(NAME, pretrained=False, features_only=True, out_indices=(2,))
        self.cpm = cpm(self.features.feature_info.channels()[-1], self.channels)

    def forward(self, x):
        return self.cpm(self.features(F.pad(x, (PAD, PAD, PAD, PAD)))[-1])

    def imagenet_state_dict(self):
        return self.from_library(pretrained.timm_weights(NAME))

    def from_library(self, state_dict):
        """timm's Inception-v4 state_dict (features.<i>.*) -> this backbone's (features.features_<i>.*)."""
        own = self.state_dict()
        result = {}
        for key, value in state_dict.items():
            parts = key.split('.')
            if parts[0] == 'features' and len(parts) > 2:
                renamed = '.'.join(['features', f'features_{parts[1]}'] + parts[2:])
                if renamed in own:
                    result[renamed] = value
        return result
