"""The multi-stage heatmap + PAF network of OpenPose (Cao et al., "Realtime Multi-Person 2D Pose
Estimation using Part Affinity Fields", CVPR 2017), assembled from a backbone plugin and stage plugins.

`build(config)` reads [model]: the keypoint layout gives the channel counts (K+1 heatmaps with the
background last, 2L PAF channels), `backbone` names model/backbone/<name>.py, `first_stage` and `stage`
name model/stage/<name>.py for stage 1 and for the `stages - 1` refinement stages. The network returns
[(heatmaps, pafs)] for every stage, each at 1/stride of the input.

Plugin contract (the module name is the registry; an unknown name is an error listing the files):

- model/backbone/<name>.py exports `class Backbone(nn.Module)`, constructed as `Backbone(config)`, with
  attributes `stride` (int) and `channels` (int); `forward(x (N,3,H,W))` returns features
  (N, channels, H/stride, W/stride) for H, W multiples of the stride. Optional, for `[model] pretrained`:
  `imagenet_state_dict()` -> the library's ImageNet weights in the backbone's own parameter names, and
  `from_library(state_dict)` -> the same renaming for a library file given as a path (see pretrained.py).
- model/stage/<name>.py exports `class Stage(nn.Module)`, constructed as
  `Stage(in_channels, heatmap_channels, paf_channels, index, config)` with `index` the 1-based stage
  number (CMU's layer names carry it); `forward(x)` returns (heatmaps, pafs) at the resolution of x.
  Stage 1 gets the backbone features; stage t > 1 gets cat([pafs, heatmaps, features]) of stage t - 1,
  CMU's order (concat_stage2 = Concat(conv5_5_CPM_L1, conv5_5_CPM_L2, conv4_4_CPM) in CMU's
  pose_deploy_linevec.prototxt), so CMU's weights work unchanged.
"""

import importlib
import os

import torch
from torch import nn

from model import pretrained as pretrainedlib
from pose import skeleton as skeletonlib
from utils.config import ConfigError

FOLDER = os.path.dirname(os.path.abspath(__file__))


def available(kind):
    """Plugin names of `kind` ('backbone' or 'stage'): the .py files under model/<kind>/."""
    return sorted(f[:-3] for f in os.listdir(os.path.join(FOLDER, kind))
                  if f.endswith('.py') and not f.startswith('_'))


def plugin(kind, name, option):
    """The module model/<kind>/<name>.py; ConfigError naming `[model] option` and listing the choices."""
    if name not in available(kind):
        raise ConfigError(f'[model] {option} = {name!r}: there is no model/{kind}/{name}.py; '
                          f'available: {", ".join(available(kind))}')
    return importlib.import_module(f'model.{kind}.{name}')


def cpm(in_channels, channels):
    """CMU-style adapter after a library trunk (as conv4_3_CPM/conv4_4_CPM after VGG): a 1x1 conv to
    `channels` (the library backbones use [model] stage_channels) and a 3x3 conv, each with ReLU, so every
    stage sees a narrow feature map."""
    return nn.Sequential(nn.Conv2d(in_channels, channels, 1), nn.ReLU(inplace=True),
                         nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True))


class PoseNet(nn.Module):
    """Backbone + stages; forward(x) -> [(heatmaps (N,K+1,h,w), pafs (N,2L,h,w)) for each stage]."""

    def __init__(self, backbone, stages, skeleton):
        super().__init__()
        self.backbone = backbone
        self.stages = nn.ModuleList(stages)
        self.skeleton = skeleton
        self.stride = backbone.stride

    def forward(self, x):
        return self.head(self.backbone(x))

    def head(self, features):
        """The stages' [(heatmaps, pafs)] from the backbone's `features`."""
        outputs, inputs = [], features
        for t, stage in enumerate(self.stages):
            heatmaps, pafs = stage(inputs)
            outputs.append((heatmaps, pafs))
            if t + 1 < len(self.stages):
                inputs = torch.cat([pafs, heatmaps, features], 1)
        return outputs


def layout(config):
    """The Skeleton of `[model] layout`; ConfigError naming the option when it does not load."""
    name = config.get('model', 'layout')
    try:
        return skeletonlib.load(name)
    except ValueError as error:
        raise ConfigError(f'[model] layout = {name!r}: {error}') from None


def build(config, pretrained=True):
    """The network `config`'s [model] describes, on the CPU (or the current default device).

    pretrained=False skips `[model] pretrained` (use it when a checkpoint's weights are loaded next)."""
    skeleton = layout(config)
    backbone = plugin('backbone', config.get('model', 'backbone'), 'backbone').Backbone(config)
    for attribute in ('stride', 'channels'):
        if not isinstance(getattr(backbone, attribute, None), int):
            raise ConfigError(f'model/backbone/{config.get("model", "backbone")}.py: Backbone has no '
                              f'integer `{attribute}`')
    count = config.getint('model', 'stages')
    if count < 1:
        raise ConfigError(f'[model] stages = {count}: a network needs at least 1 stage')
    heatmap_channels, paf_channels = len(skeleton.parts) + 1, 2 * len(skeleton.limbs)
    first = plugin('stage', config.get('model', 'first_stage'), 'first_stage')
    later = plugin('stage', config.get('model', 'stage'), 'stage') if count > 1 else None
    refine_in = backbone.channels + heatmap_channels + paf_channels
    stages = [(first if index == 1 else later).Stage(
        backbone.channels if index == 1 else refine_in, heatmap_channels, paf_channels, index, config)
        for index in range(1, count + 1)]
    network = PoseNet(backbone, stages, skeleton)
    if pretrained:
        pretrainedlib.initialise(network.backbone, config)
    return network


def cmu_layers(network):
    """{CMU layer name: parameter prefix} for every convolution of `network`, in forward order.

    The layer name is the last part of the module path (backbone.conv1_1 -> conv1_1), which is how the
    vgg19 and openpose plugins name their layers after CMU's prototxt; a converter maps Caffe's blobs
    through it. ValueError when two convolutions share a last name (the network is not CMU's)."""
    layers = {}
    for name, module in network.named_modules():
        if isinstance(module, nn.Conv2d):
            short = name.rsplit('.', 1)[-1]
            if short in layers:
                raise ValueError(f'convolutions {layers[short]} and {name} share the name {short!r}')
            layers[short] = name
    return layers
