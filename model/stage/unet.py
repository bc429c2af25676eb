"""U-Net stages (Ronneberger et al., "U-Net: Convolutional Networks for Biomedical Image Segmentation",
MICCAI 2015): each branch (heatmaps, PAFs) is a small U-Net of its own.

Per branch: an encoder level at the stage's resolution, DEPTH levels each 2x max-pooled (ceil mode, so
odd sizes work) with twice the channels, and a decoder that upsamples bilinearly to the skip tensor's
exact size, concatenates the skip and convolves; every level is two 3x3 conv + BatchNorm + ReLU, the
output a 1x1 conv. Widths start at stage_channels. Upsampling to the skip's size (no adaptive pooling,
no fixed sizes) keeps the stage exportable to ONNX with dynamic height and width.
"""

import torch
import torch.nn.functional as F
from torch import nn

DEPTH = 2


def double_conv(in_channels, out_channels):
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True))


class UNet(nn.Module):
    def __init__(self, in_channels, width, out_channels, depth=DEPTH):
        super().__init__()
        widths = [width * 2 ** level for level in range(depth + 1)]
        self.down = nn.ModuleList(double_conv(i, o) for i, o in zip([in_channels] + widths[:-1], widths))
        self.up = nn.ModuleList(double_conv(widths[level] + widths[level + 1], widths[level])
                                for level in reversed(range(depth)))
        self.output = nn.Conv2d(width, out_channels, 1)

    def forward(self, x):
        skips = []
        for level, block in enumerate(self.down):
            if level:
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)
            x = block(x)
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode='bilinear', align_corners=False)
            x = block(torch.cat([skip, x], 1))
        return self.output(x)


class Stage(nn.Module):
    def __init__(self, in_channels, heatmap_channels, paf_channels, index, config):
        super().__init__()
        width = config.getint('model', 'stage_channels')
        self.heatmaps = UNet(in_channels, width, heatmap_channels)
        self.pafs = UNet(in_channels, width, paf_channels)

    def forward(self, x):
        return self.heatmaps(x), self.pafs(x)
