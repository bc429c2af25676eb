"""Photometric operator: add a random brightness change, up to `brightness` times 255 (a uint8 LUT)."""

import cv2
import numpy as np


def options(config):
    return {'delta': abs(config.getfloat('augment', 'brightness')) * 255}


def table(rng, options, mean):
    """The uint8 lookup table of one random draw (`mean`, the image's mean grey level, is not needed)."""
    delta = rng.uniform(-options['delta'], options['delta'])
    return np.clip(np.arange(256) + delta, 0, 255).astype(np.uint8)


def apply(image, rng, options):
    return cv2.LUT(image, table(rng, options, None))
