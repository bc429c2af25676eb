"""Geometric operator: centre the crop on a random annotated person. Its scale comes from one of two rules:

- `image_height` = 0 (CMU's sample selection): the person's box height becomes `target_height` times the
  output height, whatever the person's size in the image, so every person is trained at about one size;
- `image_height` > 0: the whole image is scaled to `image_height` pixels high, as eval.py and detect.py
  scale it at that [eval] height, so people keep the sizes they will have there (small ones stay small; a
  pretrained network's own scale distribution is kept). An image with nobody annotated is then cropped
  about a random point.

The whole image stays when nobody is annotated under the first rule. Later operators (scale, rotate,
shift, flip) vary the crop around that person."""

import numpy as np

from transform.augment import apply_matrix, centre_of


def options(config):
    from utils.config import ConfigError
    target = config.getfloat('augment', 'target_height')
    if not target > 0:
        raise ConfigError(f'[augment] target_height = {target}: must be positive')
    image_height = config.getfloat('augment', 'image_height')
    if not image_height >= 0:
        raise ConfigError(f'[augment] image_height = {image_height}: must be 0 (scale by the person) or '
                          f'a height in pixels')
    return {'target': target, 'image_height': image_height}


def matrix(sample, rng, options):
    boxes = sample['boxes']
    current = sample['matrix']
    if len(boxes):
        x, y, w, h = boxes[rng.integers(len(boxes))]
        point = np.array([x + (w - 1) / 2, y + (h - 1) / 2])
    elif options['image_height']:
        point = rng.uniform(0, 1, 2) * (np.array(sample['image_size'][::-1]) - 1)
    else:
        return np.eye(3)
    scale = np.sqrt(abs(np.linalg.det(current[:2, :2])))
    if options['image_height']:
        factor = options['image_height'] / (sample['image_size'][0] * scale)
    else:
        factor = options['target'] * sample['size'][0] / (max(1.0, float(h)) * scale)
    centre = apply_matrix(current, point[None])[0]
    out_x, out_y = centre_of(sample['size'])
    return np.array([[factor, 0, out_x - factor * centre[0]], [0, factor, out_y - factor * centre[1]],
                     [0, 0, 1]], np.float64)
