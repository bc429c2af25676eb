"""Photometric operator: rotate hue by up to `hue` degrees, as a rotation of colours about the grey axis
done by one 3x3 colour matrix (cv2.transform; no HSV round trip)."""

import math

import cv2
import numpy as np


def options(config):
    return {'degrees': abs(config.getfloat('augment', 'hue'))}


def rotation(degrees):
    """The 3x3 matrix that turns BGR colours by `degrees` about the grey axis (1, 1, 1)."""
    angle = math.radians(degrees)
    c, s, k = math.cos(angle), math.sin(angle), 1 / 3
    root = math.sqrt(k)
    axis_cross = np.array([[0, -root, root], [root, 0, -root], [-root, root, 0]], np.float64)
    return (c * np.eye(3) + (1 - c) * k * np.ones((3, 3)) + s * axis_cross).astype(np.float32)


def apply(image, rng, options):
    return cv2.transform(image, rotation(rng.uniform(-options['degrees'], options['degrees'])))
