"""Photometric operator: Gaussian blur with a sigma uniform in [0, blur] pixels (kernel cut at 2 sigma:
a third cheaper than OpenCV's default size, and 95% of the Gaussian's weight)."""

import math

import cv2


def options(config):
    return {'sigma': abs(config.getfloat('augment', 'blur'))}


def apply(image, rng, options):
    sigma = rng.uniform(0, options['sigma'])
    if sigma < 0.2:
        return image
    size = 2 * math.ceil(2 * sigma) + 1
    return cv2.GaussianBlur(image, (size, size), sigma)
