"""Photometric operator: Gaussian blur with a sigma uniform in [0, blur] pixels."""

import cv2


def options(config):
    return {'sigma': abs(config.getfloat('augment', 'blur'))}


def apply(image, rng, options):
    sigma = rng.uniform(0, options['sigma'])
    if sigma < 0.2:
        return image
    return cv2.GaussianBlur(image, (0, 0), sigma)
