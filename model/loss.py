"""The training loss of OpenPose (Cao et al., CVPR 2017): a masked L2 loss on the heatmaps and the PAFs of
every stage (intermediate supervision), summed over stages.

Each stage t and branch b gives the term

    weight_b * sum(mask * (prediction - target) ** 2) / D

with the (N,1,h,w) loss mask broadcast over channels (0 where the ground truth is unknown: crowds,
unannotated people), weight_b = [loss] heatmap_weight or paf_weight, and D set by [loss] normalize:
`batch`: D = 2 N, CMU's Caffe EuclideanLoss (half the squared error summed over a sample, averaged over
the batch; it grows with the map size and the channel count); `mean`: D = N C h w, the mean squared error
per map element (independent of input size and layout). The total is the sum of every term.
"""

import torch

from utils.config import ConfigError

NORMALIZE = ('batch', 'mean')


def weights(config):
    """{'heatmap': w, 'paf': w, 'normalize': 'batch' | 'mean'} from [loss]."""
    normalize = config.get('loss', 'normalize').strip().lower()
    if normalize not in NORMALIZE:
        raise ConfigError(f'[loss] normalize = {normalize!r}: use one of {", ".join(NORMALIZE)}')
    return {'heatmap': config.getfloat('loss', 'heatmap_weight'),
            'paf': config.getfloat('loss', 'paf_weight'), 'normalize': normalize}


def masked_l2(prediction, target, mask, normalize='batch'):
    """sum(mask * (prediction - target)^2) / D, D = 2 N (batch) or N C h w (mean), in float32."""
    if prediction.shape != target.shape:
        raise ValueError(f'prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in '
                         f'shape (input size not a multiple of the stride?)')
    error = (prediction.float() - target.float()) ** 2 * mask.float()
    divisor = 2 * prediction.shape[0] if normalize == 'batch' else prediction.numel()
    return error.sum() / divisor


def compute(outputs, heatmaps, pafs, mask, params):
    """(total, {'stage<t>/heatmap': term, 'stage<t>/paf': term, ...}) of the network `outputs`
    [(heatmaps, pafs) per stage] against the targets, with `params` = weights(config) (read once, not at
    every step); the terms are detached, for logging."""
    total = torch.zeros((), device=heatmaps.device)
    terms = {}
    for t, (predicted_heatmaps, predicted_pafs) in enumerate(outputs, 1):
        for branch, prediction, target in (('heatmap', predicted_heatmaps, heatmaps),
                                           ('paf', predicted_pafs, pafs)):
            term = params[branch] * masked_l2(prediction, target, mask, params['normalize'])
            terms[f'stage{t}/{branch}'] = term.detach()
            total = total + term
    return total, terms
