"""Photometric operator: add a random brightness change, up to `brightness` times 255 (a uint8 LUT)."""

import cv2
import numpy as np


def options(config):
    return {'delta': abs(config.getfloat('augment', 'brightness')) * 255}


def apply(image, rng, options):
    delta = rng.uniform(-options['delta'], options['delta'])
    lut = np.clip(np.arange(256) + delta, 0, 255).astype(np.uint8)
    return cv2.LUT(image, lut)
