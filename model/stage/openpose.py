"""CMU's OpenPose stages (Cao et al., "Realtime Multi-Person 2D Pose Estimation using Part Affinity
Fields", CVPR 2017): two branches, L1 for the PAFs and L2 for the heatmaps.

Stage 1, per branch: three 3x3 convs (stage_channels), a 1x1 conv (4 x stage_channels = CMU's 512) and a
1x1 output, named conv5_{1..5}_CPM_L{1,2}. Stage t > 1, per branch: five 7x7 convs, a 1x1 conv
(stage_channels) and a 1x1 output, named Mconv{1..7}_stage{t}_L{1,2}. ReLU after every conv except the
outputs. The names are CMU's Caffe layer names, so its caffemodel converts by name.
"""

import torch.nn.functional as F
from torch import nn


def _layers(index, branch, in_channels, width, out_channels):
    """[(name, in, out, kernel)] of one branch of stage `index`."""
    if index == 1:
        convs = [(f'conv5_{i}_CPM_{branch}', 3) for i in (1, 2, 3)]
        convs += [(f'conv5_4_CPM_{branch}', 1), (f'conv5_5_CPM_{branch}', 1)]
        widths = [width, width, width, 4 * width, out_channels]
    else:
        convs = [(f'Mconv{i}_stage{index}_{branch}', 7) for i in range(1, 6)]
        convs += [(f'Mconv6_stage{index}_{branch}', 1), (f'Mconv7_stage{index}_{branch}', 1)]
        widths = [width] * 6 + [out_channels]
    ins = [in_channels] + widths[:-1]
    return [(name, i, o, k) for (name, k), i, o in zip(convs, ins, widths)]


class Stage(nn.Module):
    def __init__(self, in_channels, heatmap_channels, paf_channels, index, config):
        super().__init__()
        width = config.getint('model', 'stage_channels')
        self.branches = []
        for branch, out_channels in (('L1', paf_channels), ('L2', heatmap_channels)):
            names = []
            for name, i, o, k in _layers(index, branch, in_channels, width, out_channels):
                self.add_module(name, nn.Conv2d(i, o, k, padding=k // 2))
                names.append(name)
            self.branches.append(names)

    def _branch(self, names, x):
        for name in names[:-1]:
            x = F.relu(getattr(self, name)(x), inplace=True)
        return getattr(self, names[-1])(x)

    def forward(self, x):
        pafs = self._branch(self.branches[0], x)
        heatmaps = self._branch(self.branches[1], x)
        return heatmaps, pafs
