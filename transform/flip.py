"""Geometric operator: horizontal flip with probability `flip`. With pixel centres at integer coordinates
a W pixels wide output maps x to W - 1 - x. The flip mirrors the matrix (negative determinant), and
augment.transform_keypoints then swaps left and right parts by the layout's flip table."""

import numpy as np

from transform.augment import check_probability


def options(config):
    return {'p': check_probability('flip', config.getfloat('augment', 'flip'))}


def matrix(sample, rng, options):
    if rng.random() >= options['p']:
        return np.eye(3)
    width = sample['size'][1]
    return np.array([[-1, 0, width - 1], [0, 1, 0], [0, 0, 1]], np.float64)
