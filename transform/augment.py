"""Composition of augmentation operators chosen by name (transform/<name>.py) from the config's [augment]
lists: geometric operators give 3x3 matrices composed into ONE affine matrix, applied by a single warp to
image and ignore mask and by the matrix to keypoints; photometric operators then change colours.

Coordinates follow pose/encode.py: pixel centres at integer coordinates. The matrix maps source pixel
coordinates to output pixel coordinates, and cv2.warpAffine samples the source at exactly that inverse,
so a pixel at source point p lands at output point M p. A mirroring matrix (negative determinant, e.g.
after the flip operator) also swaps left and right parts by the layout's flip table.
"""

import functools
import importlib
import os

import cv2
import numpy as np

from utils.config import ConfigError

FOLDER = os.path.dirname(os.path.abspath(__file__))
_NOT_OPERATORS = {'__init__', 'augment', 'normalize'}
BORDER = (128, 128, 128)  # grey fill outside the source image, ~0 after normalisation (as CMU)


def check_range(low_name, low, high_name, high, minimum=None):
    if low > high or (minimum is not None and low < minimum):
        raise ConfigError(f'[augment] {low_name} = {low}, {high_name} = {high}: need '
                          f'{"" if minimum is None else f"{minimum} <= "}{low_name} <= {high_name}')


def check_probability(name, value):
    if not 0 <= value <= 1:
        raise ConfigError(f'[augment] {name} = {value}: a probability must be in [0, 1]')
    return value


def centre_of(size):
    """The output's centre point (x, y) for size (H, W), pixel centres at integers."""
    return (size[1] - 1) / 2, (size[0] - 1) / 2


def about_centre(linear, size):
    """The 3x3 matrix applying the 2x2 `linear` map about the output centre."""
    cx, cy = centre_of(size)
    a = np.asarray(linear, np.float64)
    out = np.eye(3)
    out[:2, :2] = a
    out[:2, 2] = np.array([cx, cy]) - a @ np.array([cx, cy])
    return out


def fit(image_size, size):
    """The matrix that scales a source of image_size (h, w) to fit inside size (H, W), centred."""
    (h, w), (H, W) = image_size, size
    s = min(H / h, W / w)
    return np.array([[s, 0, (W - 1) / 2 - s * (w - 1) / 2], [0, s, (H - 1) / 2 - s * (h - 1) / 2], [0, 0, 1]])


def apply_matrix(matrix, points):
    """Points (..., 2) through a 3x3 affine matrix."""
    points = np.asarray(points, np.float64)
    return points @ matrix[:2, :2].T + matrix[:2, 2]


def available(kind):
    """Names of the operators of `kind` ('geometric': with matrix(), 'photometric': with apply())."""
    attribute = 'matrix' if kind == 'geometric' else 'apply'
    names = sorted(os.path.splitext(f)[0] for f in os.listdir(FOLDER) if f.endswith('.py'))
    return [n for n in names if n not in _NOT_OPERATORS and hasattr(_module(n), attribute)]


@functools.cache
def _module(name):
    return importlib.import_module(f'transform.{name}')


def operators(config, kind):
    """[(name, module, options)] of the [augment] `kind` list ('geometric' or 'photometric'), in order."""
    attribute = 'matrix' if kind == 'geometric' else 'apply'
    result = []
    for name in config.getlist('augment', kind):
        if not name.isidentifier() or not os.path.isfile(os.path.join(FOLDER, name + '.py')) \
                or name in _NOT_OPERATORS or not hasattr(_module(name), attribute):
            raise ConfigError(f'[augment] {kind}: unknown operator {name!r}; available: '
                              f'{", ".join(available(kind))}')
        module = _module(name)
        result.append((name, module, module.options(config)))
    return result


def plan(config, train=True):
    """What augment() needs, read from the config once: the operators and the photometric probability."""
    if not train:
        return {'geometric': [], 'photometric': [], 'p': 0.0}
    return {'geometric': operators(config, 'geometric'), 'photometric': operators(config, 'photometric'),
            'p': check_probability('photometric_p', config.getfloat('augment', 'photometric_p'))}


def compose(record, size, rng, operators):
    """The source -> output matrix for `record` (uses its 'size', 'keypoints', 'boxes'): fit the whole
    image into size (H, W), then each geometric operator's matrix in turn."""
    sample = {'matrix': fit(record['size'], size), 'size': tuple(size), 'keypoints': record['keypoints'],
              'boxes': record['boxes'], 'image_size': tuple(record['size'])}
    for _, module, options in operators:
        sample['matrix'] = np.asarray(module.matrix(sample, rng, options), np.float64) @ sample['matrix']
    return sample['matrix']


def mirrored(matrix):
    return np.linalg.det(matrix[:2, :2]) < 0


def transform_keypoints(keypoints, matrix, size, flip):
    """Keypoints (P,K,3) through `matrix` into an output of size (H, W): points outside become v = 0;
    a mirroring matrix swaps parts by `flip` (the layout's flip table)."""
    keypoints = np.asarray(keypoints, np.float32)
    out = keypoints.copy()
    out[..., :2] = apply_matrix(matrix, keypoints[..., :2])
    x, y = out[..., 0], out[..., 1]
    inside = (x >= -0.5) & (x < size[1] - 0.5) & (y >= -0.5) & (y < size[0] - 0.5)
    out[..., 2] = np.where(inside, out[..., 2], 0)
    if mirrored(matrix):
        out = out[:, list(flip)]
    return out


def warp_image(image, matrix, size):
    """The BGR image warped by `matrix` into an output of size (H, W) (bilinear, grey outside). A BGRX source
    (4 channels, X ignored) is warped a quarter faster, and comes out BGR."""
    out = cv2.warpAffine(image, matrix[:2], (size[1], size[0]), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=BORDER + (0,))
    return cv2.cvtColor(out, cv2.COLOR_BGRA2BGR) if image.ndim == 3 and image.shape[2] == 4 else out


def sampled_region(matrix, size, source_size, margin=2):
    """(x0, y0, x1, y1): the source pixels [x0, x1) x [y0, y1) that a warp by `matrix` into an output of
    size (H, W) can read from a source of source_size (h, w), with `margin` pixels for the interpolation
    neighbours; clipped to the source (empty when the output sees none of it)."""
    (height, width), (h, w) = size, source_size
    corners = np.array([[-0.5, -0.5], [width - 0.5, -0.5], [-0.5, height - 0.5], [width - 0.5, height - 0.5]])
    inverse = np.linalg.inv(np.asarray(matrix, np.float64))
    points = apply_matrix(inverse, corners)
    low = np.floor(points.min(axis=0)).astype(int) - margin
    high = np.ceil(points.max(axis=0)).astype(int) + margin + 1
    return (max(0, low[0]), max(0, low[1]), min(w, high[0]), min(h, high[1]))


def warp_mask(mask, matrix, size):
    """A uint8 0/1 mask warped by nearest neighbour; outside the source counts as not ignored."""
    return cv2.warpAffine(mask, matrix[:2], (size[1], size[0]), flags=cv2.INTER_NEAREST,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def photometric(image, rng, plan):
    """Each photometric operator of `plan`, applied with probability plan['p']. Operators that are per-channel
    lookup tables (those with table()) and follow one another compose into one table, applied in one pass:
    the same image as applying them in turn (a contrast step then takes its mean grey level from the
    histogram, which can differ in the last bits only)."""
    table = None
    for _, module, options in plan['photometric']:
        if rng.random() >= plan['p']:
            continue
        if hasattr(module, 'table'):
            step = module.table(rng, options, functools.partial(mean_grey, image, table))
            table = step if table is None else step[table]
        else:
            image = apply_table(image, table)
            table = None
            image = module.apply(image, rng, options)
    return apply_table(image, table)


def apply_table(image, table):
    return image if table is None else cv2.LUT(image, table)


def mean_grey(image, table=None):
    """The mean over all pixels and channels of `image`, or of the image that the uint8 lookup table
    `table` would make of it (from its histogram, without making it)."""
    if table is None:
        return float(np.mean(cv2.mean(image)[:3]))
    histogram = cv2.calcHist([image.reshape(image.shape[0], -1)], [0], None, [256], [0, 256]).ravel()
    return float(histogram.astype(np.float64) @ table / histogram.sum())
