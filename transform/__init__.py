"""Augmentation operators, one file each, chosen by name from the config's [augment] lists, and input
normalisation (normalize.py). Geometric operators (crop, scale, rotate, shift, flip) export `options(config)`
and `matrix(sample, rng, options)`; photometric ones (brightness, contrast, saturation, hue, gamma, blur)
export `options(config)` and `apply(image, rng, options)`. augment.py composes and applies them."""
