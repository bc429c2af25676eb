"""Geometric operator: random translation, up to `shift` times the output size in each direction."""

import numpy as np


def options(config):
    return {'fraction': abs(config.getfloat('augment', 'shift'))}


def matrix(sample, rng, options):
    height, width = sample['size']
    dx, dy = rng.uniform(-options['fraction'], options['fraction'], 2) * (width, height)
    return np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1]], np.float64)
