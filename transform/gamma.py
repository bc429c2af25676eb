"""Photometric operator: gamma correction with an exponent in [1 - g, 1 + g] (a uint8 LUT)."""

import cv2
import numpy as np


def options(config):
    return {'g': min(0.95, abs(config.getfloat('augment', 'gamma')))}


def apply(image, rng, options):
    exponent = rng.uniform(1 - options['g'], 1 + options['g'])
    lut = np.clip(np.rint(255 * (np.arange(256) / 255) ** exponent), 0, 255).astype(np.uint8)
    return cv2.LUT(image, lut)
