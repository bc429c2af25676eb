"""Decoder benchmark: COCO keypoint AP recovered and milliseconds per image for 1, 5, 15 and 30 people in
a 640x480 image (heights 40 to 400 px, overlapping as people do in crowds), stride 8, on maps encoded from
the people (clean) and on degraded ones (noise, blur, missed parts and limbs).

The scene generator and the COCO AP helper here are also used by tests/test_decode.py and
benchmarks/encode.py. Run: `python benchmarks/decode.py` (one core); the last line is one JSON object.
"""

import argparse
import contextlib
import io
import json
import os
import sys
import time

import cv2
import numpy as np
import tqdm

if __package__ in (None, ''):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import machine, median_ms, one_core  # noqa: E402
from pose.skeleton import COCO_PARTS  # noqa: E402

SIZE = (480, 640)           # (H, W) of the benchmark images
HEIGHTS = (40, 400)         # smallest and largest person height in pixels

# A standing figure one unit tall (top of the head at y = 0, soles at y = 1), person's left at +x,
# as seen from the front: (x, y) of the COCO points the limbs hang from.
_NOSE, _EYE, _EAR = (0.0, 0.09), (0.032, 0.07), (0.065, 0.085)
_NECK_Y, _SHOULDER, _HIP = 0.18, (0.11, 0.19), (0.08, 0.52)
_UPPER_ARM, _FOREARM, _THIGH, _SHIN = 0.17, 0.15, 0.23, 0.22


def _rotate(points, centre, angle):
    c, s = np.cos(angle), np.sin(angle)
    d = points - centre
    return centre + np.stack([c * d[..., 0] - s * d[..., 1], s * d[..., 0] + c * d[..., 1]], -1)


def _chain(rng, root, outward, lengths, first, bend):
    """Two segments from `root`: the first at `first` radians from straight down (positive = outward),
    the second bent by `bend` more; each foreshortened by a random factor."""
    points, angle, at = [], first, np.asarray(root, float)
    for length, turn in zip(lengths, (0.0, bend)):
        angle += turn
        at = at + length * rng.uniform(0.6, 1.0) * np.array([np.sin(angle) * outward, np.cos(angle)])
        points.append(at)
    return points


def figure(rng, hide_face=True):
    """One random plausible pose, COCO-17 (x, y) in a figure one unit tall, and which points show
    (the face is hidden when the person faces away, if `hide_face`)."""
    yaw = rng.uniform(-np.pi, np.pi)
    facing, turn = np.cos(yaw), np.sin(yaw)
    xy = np.zeros((17, 2))
    xy[0] = (_NOSE[0] + 0.045 * turn, _NOSE[1])
    for side, (eye, ear, shoulder, hip) in ((1, (1, 3, 5, 11)), (-1, (2, 4, 6, 12))):
        xy[eye] = (side * _EYE[0] * facing + 0.035 * turn, _EYE[1])
        xy[ear] = (side * _EAR[0] * facing + 0.01 * turn, _EAR[1])
        xy[shoulder] = (side * _SHOULDER[0] * facing, _SHOULDER[1])
        xy[hip] = (side * _HIP[0] * facing, _HIP[1])
        outward = side * (1 if facing >= 0 else -1)
        xy[[shoulder + 2, shoulder + 4]] = _chain(rng, xy[shoulder], outward, (_UPPER_ARM, _FOREARM),
                                                  rng.uniform(-0.4, 2.6), rng.uniform(-0.3, 2.4))
        xy[[hip + 2, hip + 4]] = _chain(rng, xy[hip], outward, (_THIGH, _SHIN),
                                        rng.uniform(-0.3, 0.6), rng.uniform(-1.0, 1.0))
    hip_centre = xy[[11, 12]].mean(axis=0)
    xy[:11] = _rotate(xy[:11], hip_centre, rng.normal(0, 0.15))  # lean of the upper body
    xy = _rotate(xy, hip_centre, rng.normal(0, 0.08))
    shown = np.ones(17, bool)
    shown[:3] = abs(yaw) < np.radians(100) or not hide_face
    return xy, shown


def person(rng, height, centre_x, top, hide_face=True):
    """COCO keypoints (17, 3) as (x, y, v = 2 or 0) of a random pose `height` pixels tall."""
    xy, shown = figure(rng, hide_face)
    keypoints = np.zeros((17, 3), np.float32)
    keypoints[:, :2] = xy * height + (centre_x, top)
    keypoints[:, 2] = np.where(shown, 2, 0)
    return keypoints


def _box(keypoints):
    seen = keypoints[keypoints[:, 2] > 0, :2]
    return np.concatenate([seen.min(axis=0), seen.max(axis=0)])


def scene(rng, count, size=SIZE, heights=HEIGHTS, overlap=True, margin=24.0, hide_face=True):
    """COCO keypoints (P, 17, 3) of `count` people with their keypoints inside an image of `size` =
    (H, W), heights log-uniform in `heights` (a person that does not fit is shrunk). With overlap=True
    they are placed anywhere, overlapping as in crowds; with overlap=False their keypoint boxes stay
    `margin` pixels apart and from the image's edges. With hide_face=False, people who face away still
    have their nose and eyes labelled."""
    H, W = size
    edge = 2.0 if overlap else margin / 2
    people, boxes = [], []
    for height in sorted(np.exp(rng.uniform(*np.log(heights), count)), reverse=True):
        for attempt in range(2000):
            if attempt and attempt % 25 == 0:
                height = max(heights[0], height * 0.85)
            top = rng.uniform(0, max(H - height, 1))
            candidate = person(rng, height, rng.uniform(0, W), top, hide_face)
            box = _box(candidate)
            if (box[:2] >= edge).all() and (box[2:] <= (W - 1 - edge, H - 1 - edge)).all() and (
                    overlap or all(_apart(box, other, margin) for other in boxes)):
                boxes.append(box)
                break
        else:
            raise RuntimeError(f'cannot place {count} people apart in a {W}x{H} image')
        people.append(candidate)
    return np.stack(people) if people else np.zeros((0, 17, 3), np.float32)


def _apart(a, b, margin):
    return bool(a[0] > b[2] + margin or b[0] > a[2] + margin or a[1] > b[3] + margin or b[1] > a[3] + margin)


def coco_gt(images):
    """An in-memory COCO keypoint ground truth from a list of COCO keypoints arrays (P, 17, 3), one per
    image (image ids 1, 2, ...); a person's area is its keypoint box area."""
    annotations, listed = [], []
    for image_id, people in enumerate(images, 1):
        listed.append({'id': image_id, 'width': SIZE[1], 'height': SIZE[0], 'file_name': f'{image_id}.png'})
        for keypoints in people:
            if not (keypoints[:, 2] > 0).any():
                continue
            x0, y0, x1, y1 = _box(keypoints)
            annotations.append({
                'id': len(annotations) + 1, 'image_id': image_id, 'category_id': 1, 'iscrowd': 0,
                'keypoints': keypoints.reshape(-1).tolist(),
                'num_keypoints': int((keypoints[:, 2] > 0).sum()),
                'bbox': [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                'area': float(max(x1 - x0, 1) * max(y1 - y0, 1))})
    return {'images': listed, 'annotations': annotations,
            'categories': [{'id': 1, 'name': 'person', 'keypoints': list(COCO_PARTS)}]}


def coco_ap(images, detections):
    """COCO keypoint AP (OKS 0.50:0.95, up to 100 detections per image) of `detections`, per image a list
    of (COCO keypoints (17, 3) as (x, y, score), person score), against `images` as for coco_gt."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    results = [{'image_id': image_id, 'category_id': 1, 'score': float(score),
                'keypoints': np.asarray(keypoints, np.float64).reshape(-1).tolist()}
               for image_id, people in enumerate(detections, 1) for keypoints, score in people]
    if not results:
        return 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = coco_gt(images)
        gt.createIndex()
        evaluation = COCOeval(gt, gt.loadRes(results), iouType='keypoints')
        evaluation.params.maxDets = [100]
        evaluation.evaluate()
        evaluation.accumulate()
    precision = evaluation.eval['precision'][:, :, 0, 0, 0]
    return float(precision[precision > -1].mean()) if (precision > -1).any() else 0.0


def to_detections(people, skeleton):
    """decode's people -> [(COCO keypoints (17, 3), score)] for coco_ap."""
    return [(skeleton.to_coco(p['keypoints'][None])[0], p['score']) for p in people]


def channels_last(function, maps):
    """Apply an OpenCV image function to (C, h, w) maps at once."""
    return np.ascontiguousarray(function(np.ascontiguousarray(maps.transpose(1, 2, 0))).transpose(2, 0, 1))


def degrade(rng, keypoints, skeleton, stride, sigma, paf_width):
    """Maps as a worse network might give them: each part's peak and each limb's field missing with
    probability MISSED, every map blurred by a Gaussian of BLUR cells and perturbed by smooth noise of
    about NOISE standard deviation."""
    from pose import encode
    seen = keypoints.copy()
    seen[rng.random(seen.shape[:2]) < MISSED, 2] = 0
    heatmaps = encode.heatmaps(seen, skeleton, SIZE, stride, sigma)
    drawn = rng.random((len(keypoints), len(skeleton.limbs))) >= MISSED
    pafs = encode.pafs(keypoints, skeleton, SIZE, stride, paf_width, drawn=drawn)
    out = []
    for maps in (heatmaps[:-1], pafs):
        noise = rng.normal(0, NOISE * 4, maps.shape).astype(np.float32)  # blurring by 1 cell divides by ~4
        noise = channels_last(lambda m: cv2.GaussianBlur(m, (0, 0), 1.0), noise)
        blurred = channels_last(lambda m: cv2.GaussianBlur(m, (0, 0), BLUR), maps) if BLUR else maps
        out.append(blurred + noise)
    heat = np.concatenate([out[0], 1 - out[0].max(axis=0, keepdims=True)])
    return heat, out[1]


MISSED, BLUR, NOISE = 0.05, 1.0, 0.01


def upsampled_decode(heatmaps, pafs, skeleton, stride):
    """CMU's way: every map resized by the stride (bicubic) to the input size, then peaks and PAFs read
    at full resolution (decode at stride 1)."""
    from pose.decode import decode
    size = (heatmaps.shape[2] * stride, heatmaps.shape[1] * stride)
    grow = lambda m: cv2.resize(m, size, interpolation=cv2.INTER_CUBIC)  # noqa: E731
    return decode(channels_last(grow, heatmaps), channels_last(grow, pafs), skeleton, 1)


def oracle(heatmaps, skeleton, keypoints, stride, reach):
    """People from the decoder's own peaks assigned with perfect knowledge: each labelled part to the
    nearest unused peak of its channel within `reach` pixels (closest pairs first)."""
    from pose.decode import find_peaks
    from pose.encode import cell_to_pixel
    parts, xy, scores = find_peaks(heatmaps[:len(skeleton.parts)], 0.05)
    xy = cell_to_pixel(xy, stride)
    person, part = np.nonzero(keypoints[:, :, 2] > 0)
    distance = np.linalg.norm(keypoints[person, part, None, :2] - xy[None], axis=2)
    distance[part[:, None] != parts[None]] = np.inf
    found = np.zeros(keypoints.shape, np.float32)
    used_a, used_b = set(), set()
    for flat in np.argsort(distance, axis=None):
        a, b = np.unravel_index(flat, distance.shape)
        if distance[a, b] > reach:
            break
        if a not in used_a and b not in used_b:
            used_a.add(a)
            used_b.add(b)
            found[person[a], part[a]] = (*xy[b], scores[b])
    return [{'keypoints': k, 'score': float(k[:, 2].sum() / len(k))} for k in found if k[:, 2].any()]


def measure(rng, count, images, repeat, skeleton, variants, stride=8, sigma=7.0, paf_width=8.0):
    """{variant: (AP, median wall ms per image, median CPU ms per image)} over `images` scenes of `count`
    people. Variants: clean, degraded, upsampled (decoders); oracle, oracle-degraded (perfect grouping)."""
    from pose import encode
    from pose.decode import decode
    truth, found = [], {v: [] for v in variants}
    times = {v: [] for v in variants}
    for _ in tqdm.tqdm(range(images), desc=f'{count} people', leave=False):
        coco = scene(rng, count)
        keypoints = skeleton.from_coco(coco)
        truth.append(coco)
        clean = encode.encode(keypoints, skeleton, SIZE, stride, sigma, paf_width)
        degraded = degrade(rng, keypoints, skeleton, stride, sigma, paf_width)
        for variant in variants:
            heatmaps, pafs = degraded if variant.endswith('degraded') else clean
            if variant.startswith('oracle'):
                people, ms = oracle(heatmaps, skeleton, keypoints, stride, 2 * sigma), (np.nan, np.nan)
            else:
                run = upsampled_decode if variant == 'upsampled' else decode
                people = run(heatmaps, pafs, skeleton, stride)
                call = lambda: run(heatmaps, pafs, skeleton, stride)  # noqa: E731,B023
                ms = (median_ms(call, repeat, warmup=0), median_ms(call, repeat, 0, time.process_time))
            found[variant].append(to_detections(people, skeleton))
            times[variant].append(ms)
    return {v: (coco_ap(truth, found[v]), *np.median(times[v], axis=0)) for v in variants}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--images', type=int, default=20, help='scenes per crowd size')
    parser.add_argument('--repeat', type=int, default=5, help='timed decodes per scene (median)')
    parser.add_argument('--people', type=int, nargs='+', default=[1, 5, 15, 30], help='crowd sizes')
    parser.add_argument('--layout', default='cmu18', help='keypoint layout')
    parser.add_argument('--upsampled', type=int, default=5,
                        help='scenes per crowd size for the upsample-first variant (0 = skip it)')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    one_core()
    from pose.skeleton import load
    skeleton = load(args.layout)
    print(f'machine: {machine()}')
    print(f'{args.layout}, stride 8, sigma 7, PAF width 8, {SIZE[1]}x{SIZE[0]}, heights {HEIGHTS[0]}-'
          f'{HEIGHTS[1]} px; degraded: {MISSED:.0%} parts and limbs missed, blur {BLUR} cell, noise {NOISE}; '
          f'{args.images} scenes per size, ms = median over scenes of the median of {args.repeat} decodes')
    print('oracle: the decoder\'s peaks assigned to people with perfect knowledge; upsampled: every map '
          'resized to the input first (CMU\'s way), then decoded, with clean(N) on the same N scenes')
    print(f'{"people":>6} {"variant":>16} {"AP":>6} {"wall ms":>8} {"CPU ms":>8}')
    summary = {}
    for count in args.people:
        rng = np.random.default_rng(args.seed + count)
        result = measure(rng, count, args.images, args.repeat, skeleton,
                         ['clean', 'degraded', 'oracle', 'oracle-degraded'])
        if args.upsampled:  # the same first scenes again, decoded both ways
            rng = np.random.default_rng(args.seed + count)
            both = measure(rng, count, args.upsampled, args.repeat, skeleton, ['upsampled', 'clean'])
            result['upsampled'] = both['upsampled']
            result[f'clean({args.upsampled})'] = both['clean']
        for variant, (ap, wall, cpu) in result.items():
            print(f'{count:>6} {variant:>16} {ap:6.3f} {wall:8.2f} {cpu:8.2f}', flush=True)
        summary[f'ms_{count}'] = round(result['clean'][1], 3)
        summary[f'ap_{count}'] = round(result['clean'][0], 4)
        summary[f'cpu_ms_{count}'] = round(result['clean'][2], 3)
    print(json.dumps({k: summary[k] for prefix in ('ms_', 'ap_', 'cpu_ms_') for k in summary
                      if k.startswith(prefix)}))


if __name__ == '__main__':
    main()
