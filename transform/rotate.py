"""Geometric operator: random rotation about the output centre, uniform in [-rotate, rotate] degrees."""

import math

from transform.augment import about_centre


def options(config):
    return {'degrees': abs(config.getfloat('augment', 'rotate'))}


def matrix(sample, rng, options):
    angle = math.radians(rng.uniform(-options['degrees'], options['degrees']))
    c, s = math.cos(angle), math.sin(angle)
    return about_centre([[c, -s], [s, c]], sample['size'])
