"""Photometric operator: gamma correction with an exponent in [1 - g, 1 + g] (a uint8 LUT)."""

import cv2
import numpy as np


def options(config):
    return {'g': min(0.95, abs(config.getfloat('augment', 'gamma')))}


def table(rng, options, mean):
    """The uint8 lookup table of one random draw (`mean`, the image's mean grey level, is not needed)."""
    exponent = rng.uniform(1 - options['g'], 1 + options['g'])
    return np.clip(np.rint(255 * (np.arange(256) / 255) ** exponent), 0, 255).astype(np.uint8)


def apply(image, rng, options):
    return cv2.LUT(image, table(rng, options, None))
