"""Photometric operator: scale contrast about the image's mean grey level by a factor in [1 - c, 1 + c]."""

import cv2
import numpy as np

from transform import augment


def options(config):
    return {'c': min(1.0, abs(config.getfloat('augment', 'contrast')))}


def table(rng, options, mean):
    """The uint8 lookup table of one random draw; mean() gives the image's mean grey level."""
    factor = rng.uniform(1 - options['c'], 1 + options['c'])
    centre = mean()
    return np.clip((np.arange(256) - centre) * factor + centre, 0, 255).astype(np.uint8)


def apply(image, rng, options):
    return cv2.LUT(image, table(rng, options, lambda: augment.mean_grey(image)))
