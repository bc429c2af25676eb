"""Lightweight OpenPose stages (Osokin, "Real-time 2D Multi-Person Pose Estimation on CPU: Lightweight
OpenPose", ICPRAM 2019): the two branches share most of their computation and 7x7 convs are replaced by
cheap blocks with the same receptive field.

Stage 1 (the initial stage): three shared 3x3 convs (stage_channels), then per branch a 1x1 conv
(4 x stage_channels) and a 1x1 output. Stage t > 1 (a refinement stage): five shared blocks, each a 1x1
conv followed by a 3x3 conv and a dilation-2 3x3 conv (both with BatchNorm) on a residual path, then per
branch a 1x1 conv (stage_channels) and a 1x1 output. ReLU after every conv except the outputs. With
stage_channels = 128 the initial stage costs 1.3 GMACs and a refinement stage 3.4 GMACs at 368x368, the
paper's figures (its "GFLOPs" count multiply-adds).
"""

from torch import nn

BLOCKS = 5


def conv(in_channels, out_channels, kernel=3, dilation=1, norm=False):
    """Conv (+ BatchNorm) + ReLU, same padding."""
    layers = [nn.Conv2d(in_channels, out_channels, kernel, padding=dilation * (kernel // 2),
                        dilation=dilation, bias=not norm)]
    layers += [nn.BatchNorm2d(out_channels)] if norm else []
    return nn.Sequential(*layers, nn.ReLU(inplace=True))


class Block(nn.Module):
    """1x1 conv, then x + (3x3 conv, dilated 3x3 conv) of it."""

    def __init__(self, in_channels, channels):
        super().__init__()
        self.reduce = conv(in_channels, channels, 1)
        self.trunk = nn.Sequential(conv(channels, channels, norm=True),
                                   conv(channels, channels, dilation=2, norm=True))

    def forward(self, x):
        x = self.reduce(x)
        return x + self.trunk(x)


def head(in_channels, channels, out_channels):
    return nn.Sequential(conv(in_channels, channels, 1), nn.Conv2d(channels, out_channels, 1))


class Stage(nn.Module):
    def __init__(self, in_channels, heatmap_channels, paf_channels, index, config):
        super().__init__()
        width = config.getint('model', 'stage_channels')
        if index == 1:
            self.trunk = nn.Sequential(conv(in_channels, width), conv(width, width), conv(width, width))
            head_width = 4 * width
        else:
            self.trunk = nn.Sequential(*[Block(in_channels if i == 0 else width, width)
                                         for i in range(BLOCKS)])
            head_width = width
        self.heatmaps = head(width, head_width, heatmap_channels)
        self.pafs = head(width, head_width, paf_channels)

    def forward(self, x):
        x = self.trunk(x)
        return self.heatmaps(x), self.pafs(x)
