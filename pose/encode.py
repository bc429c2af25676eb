"""Training targets from keypoints: part heatmaps, part affinity fields (PAFs) and the loss mask, as in
Cao et al., "Realtime Multi-Person 2D Pose Estimation using Part Affinity Fields" (CVPR 2017).

The pixel <-> cell convention (the one every encode, decode and resize in the project uses):

- pixel centres sit at integer coordinates, so the input pixel in column x covers [x - 0.5, x + 0.5);
- a map at stride s of an H x W input has h = H // s rows and w = W // s columns (inputs are padded to
  multiples of s); cell (i, j) covers input pixels [j*s, j*s + s) x [i*s, i*s + s);
- the centre of cell (i, j) is input pixel x = j*s + (s - 1)/2, y = i*s + (s - 1)/2
  (`cell_to_pixel`), and input pixel (x, y) sits at cell ((x - (s - 1)/2) / s, (y - (s - 1)/2) / s)
  (`pixel_to_cell`). This is the half-pixel-centre convention of cv2.resize and of
  torch.nn.functional.interpolate(align_corners=False), so resizing a map by s with either lines it up
  with the input.

Targets, each value taken at the cell centre:

- heatmap k: exp(-d^2 / (2 sigma^2)) for the distance d in input pixels from the cell centre to each
  labelled part k, maximum over people, zero where the exponent passes CMU's cut-off (values < 0.01);
  the last channel is the background, 1 - the maximum over the parts;
- PAF of limb l = (a, b): the unit vector from part a to part b (x in channel 2l, y in 2l + 1) in the
  cells whose centre lies within `paf_width` input pixels of the segment a-b (a band with rounded ends,
  so that limbs shorter than a cell still reach a cell centre), averaged over the people whose band
  covers the cell;
- loss mask: 1 - the fraction of the cell's input pixels that are ignored.

Only each Gaussian's and each limb band's neighbourhood is computed, vectorised over all of them.
"""

import functools

import cv2
import numpy as np

# CMU's cut-off: Gaussian exponents above this (values below exp(-4.6052) = 0.01) are set to zero.
TRUNCATE = 4.6052


def cell_to_pixel(xy, stride):
    """Map coordinates (in cells, any shape) at `stride` -> input pixel coordinates (float32 stays
    float32, anything else becomes float64)."""
    return np.asarray(xy) * stride + (stride - 1) / 2


def pixel_to_cell(xy, stride):
    """Input pixel coordinates (any shape) -> map coordinates (in cells) at `stride`."""
    return (np.asarray(xy) - (stride - 1) / 2) / stride


def map_size(size, stride):
    """(h, w) of the maps at `stride` for an input of `size` = (H, W)."""
    height, width = size
    return int(height) // stride, int(width) // stride


def _check(keypoints, skeleton, stride, **positive):
    keypoints = np.asarray(keypoints, np.float32)
    parts = len(skeleton.parts)
    if keypoints.size == 0:
        keypoints = keypoints.reshape(0, parts, 3)
    if keypoints.ndim != 3 or keypoints.shape[1:] != (parts, 3):
        raise ValueError(f'keypoints must be (people, {parts}, 3) for layout {skeleton.name!r}, '
                         f'got shape {keypoints.shape}')
    if int(stride) != stride or stride < 1:
        raise ValueError(f'stride must be a positive integer, got {stride!r}')
    for name, value in positive.items():
        if not value > 0:
            raise ValueError(f'{name} must be positive, got {value!r}')
    return keypoints


def heatmaps(keypoints, skeleton, size, stride, sigma):
    """Part heatmaps (K+1, h, w) float32 for keypoints (P, K, 3) as (x, y, v) in input pixels (v > 0 =
    labelled) of an input of `size` = (H, W); the last channel is the background."""
    keypoints = _check(keypoints, skeleton, stride, sigma=sigma)
    parts = len(skeleton.parts)
    h, w = map_size(size, stride)
    out = np.zeros((parts + 1, h, w), np.float32)
    person, part = np.nonzero((keypoints[:, :, 2] > 0) & np.isfinite(keypoints[:, :, :2]).all(axis=2))
    if len(person) and h and w:
        cells, factor = _gaussian_window(keypoints[person, part, :2], stride, sigma, (w, h))
        value = factor[:, 1, :, None] * factor[:, 0, None, :]
        value *= value >= _CUT
        # cells off the map were clipped onto its border with value 0, which the maximum ignores
        index = ((part[:, None] * h + cells[:, 1]) * w)[:, :, None] + cells[:, 0, None, :]
        np.maximum.at(out.reshape(-1), index.reshape(-1), value.reshape(-1))
    out[parts] = 1 - out[:parts].max(axis=0, initial=0)
    return out


_CUT = np.float32(np.exp(-TRUNCATE))


def _gaussian_window(centre, stride, sigma, size):
    """Cell indices (N, 2, n) around each centre (N, 2) in input pixels along x and y, clipped to the map
    of `size` (w, h), and the Gaussian's factor along each axis (0 for cells off the map)."""
    radius = sigma * np.sqrt(2 * TRUNCATE) / stride
    first = np.floor(pixel_to_cell(centre, stride) - radius).astype(np.int32)
    cells = first[:, :, None] + np.arange(int(np.ceil(2 * radius)) + 2, dtype=np.int32)
    distance = cell_to_pixel(cells.astype(np.float32), stride) - centre[:, :, None]
    factor = np.exp(distance * distance * np.float32(-0.5 / sigma ** 2))
    limit = np.array(size, np.int32)[:, None]
    factor[(cells < 0) | (cells >= limit)] = 0
    return np.minimum(np.maximum(cells, 0), limit - 1), factor


def pafs(keypoints, skeleton, size, stride, paf_width, drawn=None):
    """Part affinity fields (2L, h, w) float32 for keypoints (P, K, 3) in input pixels. A limb is drawn for
    each person with both its parts labelled (and `drawn[p, l]` true, when a (P, L) bool array is given)."""
    keypoints = _check(keypoints, skeleton, stride, paf_width=paf_width)
    first, second = _limb_ends(skeleton)
    h, w = map_size(size, stride)
    out = np.zeros(2 * len(first) * h * w, np.float32)
    labelled = keypoints[:, :, 2] > 0
    both = labelled[:, first] & labelled[:, second]
    if drawn is not None:
        both &= np.asarray(drawn, bool).reshape(both.shape)
    person, limb = np.nonzero(both)
    cells = pixel_to_cell(keypoints[:, :, :2], stride)
    a = cells[person, first[limb]]
    d = cells[person, second[limb]] - a
    length = np.sqrt((d * d).sum(axis=1))
    if not (length > 1e-6).all():  # a limb of zero length has no direction
        keep = length > 1e-6
        a, d, length, limb = a[keep], d[keep], length[keep], limb[keep]
    if not len(limb) or not h or not w:
        return out.reshape(2 * len(first), h, w)
    radius = paf_width / stride
    unit = d / length[:, None]
    instance, rows, cols, low = _band_cells(a, a + d, radius, h, w)
    ux, uy = unit[:, 0][instance], unit[:, 1][instance]
    dx = (low[:, 0] - a[:, 0])[instance] + cols
    dy = (low[:, 1] - a[:, 1])[instance] + rows
    along = np.minimum(np.maximum(dx * ux + dy * uy, 0), length[instance])
    dx -= along * ux
    dy -= along * uy
    inside = dx * dx + dy * dy <= radius * radius
    # the x channel of each covered cell; its y channel is one map further
    base = (2 * limb * h + low[:, 1]) * w + low[:, 0]
    flat = (base[instance] + rows * w + cols)[inside]
    share = np.bincount(flat, minlength=len(out))[flat].astype(np.float32)
    np.add.at(out, flat, ux[inside] / share)
    np.add.at(out, flat + h * w, uy[inside] / share)
    return out.reshape(2 * len(first), h, w)


@functools.cache
def _limb_ends(skeleton):
    limbs = np.asarray(skeleton.limbs, np.intp).reshape(-1, 2)
    return limbs[:, 0].copy(), limbs[:, 1].copy()


def _band_cells(a, b, radius, h, w):
    """Every cell of each limb's bounding box grown by `radius` cells (clipped to the map), as flat arrays
    (instance, row, col) with rows and columns counted from the box's corner `low` (per instance, (x, y)),
    with no padding between limbs of different sizes."""
    low = np.maximum(np.ceil(np.minimum(a, b) - radius), 0).astype(np.int32)
    high = np.minimum(np.floor(np.maximum(a, b) + radius), (w - 1, h - 1)).astype(np.int32)
    span = np.maximum(high - low + 1, 0)
    count = span[:, 0] * span[:, 1]
    instance = np.repeat(np.arange(len(a), dtype=np.int32), count)
    starts = np.cumsum(count, dtype=np.int32) - count
    local = np.arange(count.sum(), dtype=np.int32) - np.repeat(starts, count)
    width = span[:, 0][instance]
    row = local // width
    return instance, row, local - row * width, low


def encode(keypoints, skeleton, size, stride, sigma, paf_width):
    """(heatmaps (K+1, h, w), pafs (2L, h, w)), float32, for keypoints (P, K, 3) as (x, y, v) in input
    pixels of an input of `size` = (H, W) at `stride`; sigma and paf_width in input pixels."""
    return (heatmaps(keypoints, skeleton, size, stride, sigma),
            pafs(keypoints, skeleton, size, stride, paf_width))


def loss_mask(ignore, stride):
    """float32 (1, h, w): 1 - the fraction of ignored input pixels in each cell; `ignore` is an (H, W)
    bool/uint8 array, nonzero = ignore."""
    ignore = np.asarray(ignore)
    if ignore.ndim != 2:
        raise ValueError(f'ignore mask must be (H, W), got shape {ignore.shape}')
    h, w = map_size(ignore.shape, stride)
    if not h or not w:
        return np.ones((1, h, w), np.float32)
    ignored = np.not_equal(ignore[:h * stride, :w * stride], 0).astype(np.float32)
    # an exact shrink by an integer factor: INTER_AREA gives each cell's mean (4x faster than numpy sums)
    fraction = cv2.resize(ignored, (w, h), interpolation=cv2.INTER_AREA).reshape(h, w)
    return np.subtract(1, fraction, dtype=np.float32)[None]


def params(config):
    """The [encode] options: {'sigma': float, 'paf_width': float} (input pixels)."""
    return {'sigma': config.getfloat('encode', 'sigma'), 'paf_width': config.getfloat('encode', 'paf_width')}
