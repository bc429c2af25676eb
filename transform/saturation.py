"""Photometric operator: scale colour saturation by a factor in [1 - s, 1 + s], as a blend with the
grey image done by one 3x3 colour matrix (cv2.transform; no HSV round trip)."""

import cv2
import numpy as np

GREY = np.array([0.114, 0.587, 0.299], np.float32)  # BGR luma weights (ITU-R BT.601)


def options(config):
    return {'s': min(1.0, abs(config.getfloat('augment', 'saturation')))}


def apply(image, rng, options):
    factor = rng.uniform(1 - options['s'], 1 + options['s'])
    matrix = factor * np.eye(3, dtype=np.float32) + (1 - factor) * np.tile(GREY, (3, 1))
    return cv2.transform(image, matrix)
