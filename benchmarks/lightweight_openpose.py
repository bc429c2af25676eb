"""Lightweight OpenPose's network (Osokin, "Real-time 2D Multi-Person Pose Estimation on CPU: Lightweight
OpenPose", ICPRAM 2019), rebuilt from its published architecture (the paper and its reference code's
PoseEstimationWithMobileNet) as a peer in speed comparisons; random weights, since speed does not depend
on them.

MobileNet-v1 (width 1) to conv5_5 with conv4_2 at stride 8 and conv5_1 dilated, a CPM block (1x1 conv to
128 channels, three depthwise separable convs with ELU on a residual path, a 3x3 conv), the initial stage
(three 3x3 convs, per branch a 1x1 conv to 512 and a 1x1 output) and one refinement stage (five blocks of
1x1 conv, 3x3 conv and dilation-2 3x3 conv with BatchNorm on a residual path; per branch 1x1 convs).
CMU's 19 heatmaps and 38 PAF channels; forward returns [(heatmaps, pafs) per stage] like model.build's
networks, so the same runners and ONNX export apply.
"""

import torch
from torch import nn

HEATMAPS, PAFS, WIDTH = 19, 38, 128


def conv(in_channels, out_channels, kernel=3, padding=1, bn=True, dilation=1, stride=1, relu=True, bias=True):
    layers = [nn.Conv2d(in_channels, out_channels, kernel, stride, padding, dilation, bias=bias)]
    layers += [nn.BatchNorm2d(out_channels)] if bn else []
    layers += [nn.ReLU(inplace=True)] if relu else []
    return nn.Sequential(*layers)


def conv_dw(in_channels, out_channels, stride=1, dilation=1, norm=True):
    """Depthwise 3x3 + pointwise 1x1, each with BatchNorm + ReLU (or, without norm, ELU only)."""
    def after(channels):
        return [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)] if norm else [nn.ELU(inplace=True)]
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, 3, stride, dilation, dilation=dilation, groups=in_channels,
                  bias=False), *after(in_channels),
        nn.Conv2d(in_channels, out_channels, 1, bias=False), *after(out_channels))


class Cpm(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.align = conv(in_channels, out_channels, 1, 0, bn=False)
        self.trunk = nn.Sequential(*[conv_dw(out_channels, out_channels, norm=False) for _ in range(3)])
        self.conv = conv(out_channels, out_channels, bn=False)

    def forward(self, x):
        x = self.align(x)
        return self.conv(x + self.trunk(x))


def heads(channels, width):
    def head(out):
        return nn.Sequential(conv(channels, width, 1, 0, bn=False),
                             conv(width, out, 1, 0, bn=False, relu=False))
    return head(HEATMAPS), head(PAFS)


class InitialStage(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.trunk = nn.Sequential(*[conv(channels, channels, bn=False) for _ in range(3)])
        self.heatmaps, self.pafs = heads(channels, 512)

    def forward(self, x):
        x = self.trunk(x)
        return self.heatmaps(x), self.pafs(x)


class RefinementBlock(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.initial = conv(in_channels, out_channels, 1, 0, bn=False)
        self.trunk = nn.Sequential(conv(out_channels, out_channels),
                                   conv(out_channels, out_channels, dilation=2, padding=2))

    def forward(self, x):
        x = self.initial(x)
        return x + self.trunk(x)


class RefinementStage(nn.Module):
    def __init__(self, in_channels, channels):
        super().__init__()
        self.trunk = nn.Sequential(RefinementBlock(in_channels, channels),
                                   *[RefinementBlock(channels, channels) for _ in range(4)])
        self.heatmaps, self.pafs = heads(channels, channels)

    def forward(self, x):
        x = self.trunk(x)
        return self.heatmaps(x), self.pafs(x)


class LightweightOpenPose(nn.Module):
    stride = 8

    def __init__(self, refinement_stages=1, channels=WIDTH):
        super().__init__()
        self.model = nn.Sequential(
            conv(3, 32, stride=2, bias=False), conv_dw(32, 64), conv_dw(64, 128, stride=2), conv_dw(128, 128),
            conv_dw(128, 256, stride=2), conv_dw(256, 256), conv_dw(256, 512), conv_dw(512, 512, dilation=2),
            *[conv_dw(512, 512) for _ in range(4)])
        self.cpm = Cpm(512, channels)
        self.initial_stage = InitialStage(channels)
        self.refinement_stages = nn.ModuleList([RefinementStage(channels + HEATMAPS + PAFS, channels)
                                                for _ in range(refinement_stages)])

    def forward(self, x):
        features = self.cpm(self.model(x))
        stages = [self.initial_stage(features)]
        for stage in self.refinement_stages:
            stages.append(stage(torch.cat([features, *stages[-1]], dim=1)))
        return stages
