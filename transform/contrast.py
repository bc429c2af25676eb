"""Photometric operator: scale contrast about the image's mean grey level by a factor in [1 - c, 1 + c]."""

import cv2
import numpy as np


def options(config):
    return {'c': min(1.0, abs(config.getfloat('augment', 'contrast')))}


def apply(image, rng, options):
    factor = rng.uniform(1 - options['c'], 1 + options['c'])
    mean = float(np.mean(cv2.mean(image)[:3]))
    lut = np.clip((np.arange(256) - mean) * factor + mean, 0, 255).astype(np.uint8)
    return cv2.LUT(image, lut)
