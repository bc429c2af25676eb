"""Geometric operator: centre the crop on a random annotated person, scaled so that its box height is
`target_height` times the output height (CMU's sample selection); the whole image stays when nobody is
annotated. Later operators (scale, rotate, shift, flip) vary the crop around that person."""

import numpy as np

from transform.augment import apply_matrix, centre_of


def options(config):
    target = config.getfloat('augment', 'target_height')
    if not target > 0:
        from utils.config import ConfigError
        raise ConfigError(f'[augment] target_height = {target}: must be positive')
    return {'target': target}


def matrix(sample, rng, options):
    boxes = sample['boxes']
    if not len(boxes):
        return np.eye(3)
    x, y, w, h = boxes[rng.integers(len(boxes))]
    current = sample['matrix']
    centre = apply_matrix(current, np.array([[x + (w - 1) / 2, y + (h - 1) / 2]]))[0]
    height = max(1.0, float(h)) * np.sqrt(abs(np.linalg.det(current[:2, :2])))
    factor = options['target'] * sample['size'][0] / height
    out_x, out_y = centre_of(sample['size'])
    return np.array([[factor, 0, out_x - factor * centre[0]], [0, factor, out_y - factor * centre[1]],
                     [0, 0, 1]], np.float64)
