"""Augmentation operators, one file each, chosen by name from the config's [augment] lists, and input
normalisation (normalize.py). Geometric operators (crop, scale, rotate, shift, flip) export `options(config)`
and `matrix(sample, rng, options)`; photometric ones (brightness, contrast, saturation, hue, gamma, blur)
export `options(config)` and `apply(image, rng, options)`, and those that are per-channel lookup tables
(brightness, contrast, gamma) also `table(rng, options, mean)`, so that augment.py can compose a run of
them into one table. augment.py composes and applies them."""
