"""Geometric operator: random zoom about the output centre by a factor uniform in [scale_min, scale_max]."""

from transform.augment import about_centre, check_range


def options(config):
    low, high = config.getfloat('augment', 'scale_min'), config.getfloat('augment', 'scale_max')
    check_range('scale_min', low, 'scale_max', high, minimum=1e-3)
    return {'low': low, 'high': high}


def matrix(sample, rng, options):
    factor = rng.uniform(options['low'], options['high'])
    return about_centre([[factor, 0], [0, factor]], sample['size'])
