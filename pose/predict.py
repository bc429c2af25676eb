"""Inference pipeline shared by eval.py, detect.py and the trainer's summaries (pure numpy + OpenCV).

An image is resized to the network's input height (aspect ratio kept), normalised and padded right and
bottom to a multiple of the stride; the network runs on it (optionally at extra scales and on its mirror
image, as in Cao et al., "Realtime Multi-Person 2D Pose Estimation using Part Affinity Fields", CVPR 2017);
all maps are resampled onto the grid of the main scale and averaged; pose.decode groups them into people,
whose keypoints are mapped back to the original image.

Geometry: cells and pixels follow the one convention of pose/encode.py (cell_to_pixel, pixel_to_cell);
resizing an image from width W to W' maps pixel x to (x + 0.5) * W' / W - 0.5, which is what cv2.resize
does. A mirrored input is the mirror of the whole padded input, so mirroring its maps back is exact.
"""

import cv2
import numpy as np

from pose import decode as decoder
from pose.encode import cell_to_pixel, pixel_to_cell
from transform import normalize as normalization


def options(config):
    """The keyword arguments of `predict` (all but run, image, skeleton, stride) from the config."""
    extra = [s for s in config.getfloatlist('eval', 'scales') if s != 1]
    return {'norm': normalization.params(config), 'height': config.getint('eval', 'height'),
            'scales': [1.0] + extra, 'flip': config.getboolean('eval', 'flip'),
            'decode_params': decoder.params(config)}


def input_size(shape, height, stride, scale=1.0):
    """((h, w) of the resized image, (H, W) padded to a multiple of `stride`) for an image `shape`."""
    h0, w0 = shape[:2]
    h = max(1, int(round(height * scale)))
    w = max(1, int(round(w0 * h / h0)))
    return (h, w), (-(-h // stride) * stride, -(-w // stride) * stride)


def resize(image, size):
    """`image` resized to `size` (h, w): halved by pixel averaging while it is at least twice as large
    (anti-aliased, and fast at exactly 1/2), then bilinearly. Each step maps pixel centres as
    x -> (x + 0.5) * scale - 0.5, so together they do too, with the overall scale."""
    while image.shape[0] >= 2 * size[0] and image.shape[1] >= 2 * size[1]:
        image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def prepare(image, size, padded, norm, flip=False):
    """Batch (1, or 2 with the mirror image, 3, H, W) float32: `image` resized to `size` (h, w),
    normalised and zero-padded (the mean colour) to `padded` (H, W)."""
    resized = resize(image, size)
    batch = np.zeros((2 if flip else 1, 3) + tuple(padded), np.float32)
    batch[0, :, :size[0], :size[1]] = normalization.normalize(resized, norm)
    if flip:
        batch[1] = batch[0, :, :, ::-1]
    return batch


def flip_channels(skeleton):
    """(heatmap channels, PAF channels, PAF signs) that mirror maps back (unflip): heatmap channel k comes
    from channel flip[k] (background kept); limb l's PAF from limb m = limb_flip[l][0], the mirror negating
    its x component, and a limb that runs the other way negating both."""
    index, sign = [], []
    for m, reverse in skeleton.limb_flip:
        index += [2 * m, 2 * m + 1]
        sign += [1.0, -1.0] if reverse else [-1.0, 1.0]
    return list(skeleton.flip) + [len(skeleton.parts)], index, sign


def unflip(heatmaps, pafs, skeleton):
    """Maps (..., C, h, w) predicted for a mirrored input, mirrored back into the input's frame
    (flip_channels). Applying it twice gives the maps back."""
    channels, index, sign = flip_channels(skeleton)
    heat = np.take(heatmaps, channels, axis=-3)[..., ::-1]
    paf = np.take(pafs, index, axis=-3)[..., ::-1] * np.asarray(sign, np.float32)[:, None, None]
    return np.ascontiguousarray(heat), np.ascontiguousarray(paf.astype(pafs.dtype, copy=False))


def _axis_map(stride, ratio):
    """(a, b): target map cell c lies at source map cell a * c + b, where the source input is the same
    image resized `ratio` times as large as the target input (both maps at `stride`)."""
    def source_cell(c):
        return float(pixel_to_cell((cell_to_pixel(c, stride) + 0.5) * ratio - 0.5, stride))
    b = source_cell(0.0)
    return source_cell(1.0) - b, b


def resample(maps, stride, ratio, size):
    """Maps (C, h, w) at `stride` of an input `ratio` (ry, rx) times as large as the target input,
    bilinearly resampled onto the target's grid of `size` (h, w) cells (edges replicated)."""
    ay, by = _axis_map(stride, ratio[0])
    ax, bx = _axis_map(stride, ratio[1])
    if (ay, by, ax, bx) == (1.0, 0.0, 1.0, 0.0):
        return maps[:, :size[0], :size[1]]
    matrix = np.float32([[ax, 0, bx], [0, ay, by]])
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    chunks = [cv2.warpAffine(np.ascontiguousarray(chunk.transpose(1, 2, 0)), matrix, (size[1], size[0]),
                             flags=flags, borderMode=cv2.BORDER_REPLICATE).reshape(size[0], size[1], -1)
              for chunk in np.array_split(maps, -(-len(maps) // 256))]  # OpenCV takes <= 512 channels
    return np.concatenate(chunks, axis=-1).transpose(2, 0, 1)


def inputs(image, stride, norm, height, scales=(1.0,), flip=False):
    """The network's inputs for a BGR uint8 image: {'shape': image shape, 'flip', 'batches': [(batch,
    resized size, padded size) per scale]} (resizing and normalising, the part before the network)."""
    batches = []
    for scale in scales:
        size, padded = input_size(image.shape, height, stride, scale)
        batches.append((prepare(image, size, padded, norm, flip), size, padded))
    return {'shape': image.shape, 'flip': flip, 'height': height, 'batches': batches}


def outputs(run, prepared, stride):
    """[(heatmaps, pafs) float32 per scale] of run on `inputs`' batches (the network's part)."""
    found = []
    for batch, _, padded in prepared['batches']:
        heatmaps, pafs = run(batch)
        heatmaps, pafs = np.asarray(heatmaps, np.float32), np.asarray(pafs, np.float32)
        if heatmaps.shape[-2:] != (padded[0] // stride, padded[1] // stride):
            raise ValueError(f'the network gave {heatmaps.shape[-2]}x{heatmaps.shape[-1]} maps for a '
                             f'{padded[0]}x{padded[1]} input: its stride is not {stride}')
        found.append((heatmaps, pafs))
    return found


def combine(prepared, maps, skeleton, stride):
    """Averaged (heatmaps (K+1,h,w), pafs (2L,h,w), geometry) from `inputs` and `outputs`: every scale's
    (and mirror's) maps resampled onto the scale-1 grid; see predict_maps."""
    shape, flip = prepared['shape'], prepared['flip']
    (h1, w1), padded = input_size(shape, prepared['height'], stride)
    grid = (padded[0] // stride, padded[1] // stride)
    total, count = None, 0
    for (_, size, _), (heatmaps, pafs) in zip(prepared['batches'], maps):
        if flip:
            mirrored = unflip(heatmaps[1], pafs[1], skeleton)
            heatmaps, pafs = heatmaps[:1] + mirrored[0], pafs[:1] + mirrored[1]
        both = np.concatenate([heatmaps[0], pafs[0]])
        both = resample(both, stride, (size[0] / h1, size[1] / w1), grid)
        total = both if total is None else total + both
        count += 2 if flip else 1
    total = total / count
    k = len(skeleton.parts) + 1
    geometry = {'stride': stride, 'ratio': (shape[0] / h1, shape[1] / w1)}
    return np.ascontiguousarray(total[:k]), np.ascontiguousarray(total[k:]), geometry


def predict_maps(run, image, skeleton, stride, norm, height, scales=(1.0,), flip=False):
    """Averaged (heatmaps (K+1,h,w), pafs (2L,h,w), geometry) for a BGR uint8 image.

    The maps lie on the grid of the scale-1 input at `stride` (maps of other scales are resampled onto
    it); geometry = {'stride': stride, 'ratio': (ry, rx) original pixels per input pixel} as
    `to_original` needs it. run: batch (N,3,H,W) -> (heatmaps, pafs) numpy arrays. The three parts,
    `inputs`, `outputs` and `combine`, also run apart (detect.py overlaps them across frames).

    The maps are not upsampled: pose.decode refines peaks below a cell, which bilinear upsampling would
    spoil (its maxima sit on the coarse grid's cells)."""
    prepared = inputs(image, stride, norm, height, scales, flip)
    return combine(prepared, outputs(run, prepared, stride), skeleton, stride)


def to_original(people, geometry):
    """People with keypoints in input pixels -> the same people in original image pixels (missing
    parts, score 0, stay at 0, 0)."""
    ry, rx = geometry['ratio']
    out = []
    for person in people:
        keypoints = np.array(person['keypoints'], np.float32, copy=True)
        found = keypoints[:, 2] > 0
        keypoints[found, 0] = (keypoints[found, 0] + 0.5) * rx - 0.5
        keypoints[found, 1] = (keypoints[found, 1] + 0.5) * ry - 0.5
        keypoints[~found, :2] = 0
        out.append({**person, 'keypoints': keypoints})
    return out


def people(heatmaps, pafs, geometry, skeleton, decode_params=None):
    """The people `combine`'s maps show, in original image pixels."""
    found = decoder.decode(heatmaps, pafs, skeleton, geometry['stride'], **(decode_params or {}))
    return to_original(found, geometry)


def predict(run, image, skeleton, stride, norm, height, scales=(1.0,), flip=False, decode_params=None):
    """People in a BGR uint8 image: [{'keypoints': float32 (K,3) (x, y, score) in original image pixels,
    score 0 = missing, 'score': float}], as pose.decode returns them."""
    heatmaps, pafs, geometry = predict_maps(run, image, skeleton, stride, norm, height, scales, flip)
    return people(heatmaps, pafs, geometry, skeleton, decode_params)
