"""Decoder benchmark: pose.decode beside two independent decoders (tf-pose's C++ pafprocess and the
pytorch-openpose decoder of controlnet-aux; benchmarks/decode_peers.py says how they are built and fed), each
given exactly the same maps and timed the same way (CPU time of one decode), with the oracle: the same
heatmap peaks given to the true people with perfect knowledge.

* Synthetic crowds (default): COCO keypoint AP and the share of images with the right number of people for
  1, 5, 15 and 30 people in a 640x480 image (heights 40 to 400 px, overlapping as people do in crowds),
  stride 8, on maps encoded from the people (clean) and on degraded ones (noise, blur, missed parts and
  limbs).
* Real maps (`--real [FOLDER]`, benchmarks/decode_real.py): a pretrained network's maps of the labelled
  images of a COCO-format folder (default: the shared coco-mini set), scored against the labels on the
  tuning half (even image ids) and the held-out half (odd ids) apart.

The scene generator and the COCO AP helper here are also used by tests/test_decode.py and
benchmarks/encode.py. Run: `python benchmarks/decode.py [--real]` (one core); the last line is one JSON
object.
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

from benchmarks import decode_real  # noqa: E402
from benchmarks.common import machine, median_ms, one_core  # noqa: E402
from benchmarks.decode_peers import load_peers  # noqa: E402
from pose import decode as ours  # noqa: E402
from pose import encode  # noqa: E402
from pose.decode import decode, find_peaks  # noqa: E402
from pose.encode import cell_to_pixel  # noqa: E402
from pose.predict import to_original  # noqa: E402
from pose.skeleton import COCO_PARTS, load  # noqa: E402
from utils import cli, realdata  # noqa: E402
from utils import config as configlib  # noqa: E402
from utils.cli import UserError  # noqa: E402

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
    size = (heatmaps.shape[2] * stride, heatmaps.shape[1] * stride)
    grow = lambda m: cv2.resize(m, size, interpolation=cv2.INTER_CUBIC)  # noqa: E731
    return decode(channels_last(grow, heatmaps), channels_last(grow, pafs), skeleton, 1)


def oracle(heatmaps, skeleton, keypoints, stride, reach):
    """People from the decoder's own peaks assigned with perfect knowledge: each labelled part to the
    nearest unused peak of its channel within `reach` pixels (closest pairs first)."""
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


def timed(run, heatmaps, pafs, skeleton, stride, repeat=1):
    """(people of run(heatmaps, pafs, skeleton, stride), median CPU milliseconds over `repeat` calls)."""
    people = []

    def once():
        people[:] = [run(heatmaps, pafs, skeleton, stride)]
    ms = median_ms(once, repeat=max(repeat, 1), warmup=0, clock=time.process_time)
    return people[0], ms


def decoders(skeleton, config, peers=True, upsampled=False):
    """({name: decode function}, lines saying what each peer is or why it is missing): ours with the
    config's [decode] options, then the peers that could be built."""
    options = ours.params(config)
    found = {'ours': lambda h, p, s, stride: ours.decode(h, p, s, stride, **options)}
    if upsampled:
        found['ours-upsampled'] = upsampled_decode
    if not peers:
        return found, ['peers: not run (--no-peers)']
    more, lines = load_peers(skeleton)
    found.update(more)
    return found, lines


def synthetic(skeleton, runs, people, images, repeat, seed, stride=8, sigma=7.0, paf_width=8.0,
              progress=True):
    """[{'people', 'maps' (clean or degraded), 'decoder', 'AP', 'right', 'ms', 'oracle'}]: every decoder of
    `runs` on the same `images` scenes per crowd size of `people`, and perfect grouping of the same peaks."""
    rows = []
    for count in people:
        rng = np.random.default_rng(seed + count)
        truth, found = [], {}
        for _ in tqdm.tqdm(range(images), desc=f'{count} people', leave=False, disable=not progress):
            coco = scene(rng, count)
            keypoints = skeleton.from_coco(coco)
            truth.append(coco)
            maps = {'clean': encode.encode(keypoints, skeleton, SIZE, stride, sigma, paf_width),
                    'degraded': degrade(rng, keypoints, skeleton, stride, sigma, paf_width)}
            for kind, (heatmaps, pafs) in maps.items():
                for name, run in runs.items():
                    decoded, ms = timed(run, heatmaps, pafs, skeleton, stride, repeat)
                    found.setdefault((kind, name), []).append(
                        (to_detections(decoded, skeleton), len(decoded), ms))
                decoded = oracle(heatmaps, skeleton, keypoints, stride, 2 * sigma)
                found.setdefault((kind, 'oracle'), []).append(
                    (to_detections(decoded, skeleton), count, np.nan))
        for kind in ('clean', 'degraded'):
            best = coco_ap(truth, [d for d, _, _ in found[(kind, 'oracle')]])
            for name in list(runs) + ['oracle']:
                detections, counts, ms = zip(*found[(kind, name)])
                rows.append({'people': count, 'maps': kind, 'decoder': name, 'AP': coco_ap(truth, detections),
                             'right': float(np.mean(np.equal(counts, count))), 'ms': float(np.median(ms)),
                             'oracle': best})
    return rows


def real(folder, checkpoint, skeleton_check, runs, repeat, progress=True):
    """(rows [{'half', 'decoder', 'AP', 'AP50', 'right', 'extra', 'missed', 'images', 'ms', 'oracle'}], a line
    naming the maps): every decoder of `runs` on the same real network maps, scored against the labels."""
    gt, images, skeleton, stride, source = decode_real.real_maps(folder, checkpoint, progress=progress)
    skeleton_check(skeleton)
    scores = {}
    for name, run in runs.items():
        people, seconds = [], []
        for image in tqdm.tqdm(images, desc=name, leave=False, disable=not progress):
            decoded, ms = timed(run, image['heatmaps'], image['pafs'], skeleton, stride, repeat)
            people.append(to_original(decoded, image['geometry']))
            seconds.append(ms / 1000)
        scores[name] = decode_real.score(gt, images, people, skeleton, seconds)
    people = [decode_real.oracle(gt, image, skeleton) for image in images]
    scores['oracle'] = decode_real.score(gt, images, people, skeleton, [None] * len(images))
    rows = [{'half': half, 'decoder': name, **scores[name][half], 'oracle': scores['oracle'][half]['AP']}
            for half in decode_real.HALVES for name in scores]
    return rows, source


@cli.main
def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--real', nargs='?', const='coco-mini', metavar='FOLDER',
                        help='score on real network maps of a COCO-format folder instead of synthetic crowds '
                             '(no value: the shared coco-mini set)')
    parser.add_argument('--checkpoint', default=None,
                        help='network for --real (default downloads/tf_mobilenet_thin.pt)')
    parser.add_argument('--images', type=int, default=20, help='synthetic scenes per crowd size')
    parser.add_argument('--repeat', type=int, default=1, help='timed decodes per map set (median)')
    parser.add_argument('--people', type=int, nargs='+', default=[1, 5, 15, 30], help='crowd sizes')
    parser.add_argument('--layout', default='cmu18', help='keypoint layout of the synthetic crowds')
    parser.add_argument('--no-peers', action='store_true', help="run only this project's decoder")
    parser.add_argument('--upsampled', action='store_true',
                        help="also decode CMU's way: every map resized to the input first")
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('-m', '--mod', action='append', default=[], metavar='SECTION/OPTION=VALUE',
                        help='set a config option of our decoder, e.g. decode/min_parts=4')
    args = parser.parse_args()
    one_core()
    config = configlib.load(mods=args.mod)
    try:
        skeleton = load(args.layout)
    except ValueError as error:
        raise cli.UserError(f'--layout: {error}') from None
    runs, lines = decoders(skeleton, config, not args.no_peers, args.upsampled)
    print(f'machine: {machine()}')
    for line in lines:
        print(line)
    print('ms = CPU milliseconds (time.process_time) of one decode of one image\'s maps, median over '
          f'images (of {args.repeat} decodes each); oracle: the same peaks given to people with perfect '
          'knowledge; gap = oracle AP - AP')
    result = _real(args, runs) if args.real else _synthetic(args, skeleton, runs)
    print(json.dumps(result))


def _real(args, runs):
    folder = realdata.folder(args.real) if args.real == 'coco-mini' else args.real
    if not folder or not os.path.isdir(folder):
        raise UserError(f'--real: no folder {args.real!r} (the shared coco-mini set is looked for at '
                        f'{realdata.root()})')

    def check(skeleton):
        if skeleton.name != args.layout:
            raise UserError(f'the network predicts layout {skeleton.name!r}; pass --layout {skeleton.name}')

    rows, source = real(folder, args.checkpoint or decode_real.CHECKPOINT, check, runs, args.repeat)
    print(f'maps: {source}; halves by image id parity: even = tuning, odd = held-out')
    print(f'{"half":>9} {"decoder":>14} {"AP":>6} {"AP50":>6} {"right":>6} {"extra":>6} {"missed":>6} '
          f'{"ms":>8} {"gap":>6}')
    for r in rows:
        print(f'{r["half"]:>9} {r["decoder"]:>14} {r["AP"]:6.3f} {r["AP50"]:6.3f} {r["right"]:6.2f} '
              f'{r["extra"]:6d} {r["missed"]:6d} {r["ms"]:8.2f} {r["oracle"] - r["AP"]:6.3f}', flush=True)
    return {f'{r["half"]}/{r["decoder"]}': {k: round(r[k], 4) for k in ('AP', 'AP50', 'right', 'ms')}
            for r in rows}


def _synthetic(args, skeleton, runs):
    print(f'{args.layout}, stride 8, sigma 7, PAF width 8, {SIZE[1]}x{SIZE[0]}, heights {HEIGHTS[0]}-'
          f'{HEIGHTS[1]} px, {args.images} scenes per size; degraded: {MISSED:.0%} parts and limbs missed, '
          f'blur {BLUR} cell, noise {NOISE}')
    rows = synthetic(skeleton, runs, args.people, args.images, args.repeat, args.seed)
    print(f'{"people":>6} {"maps":>8} {"decoder":>14} {"AP":>6} {"right":>6} {"ms":>8} {"gap":>6}')
    for r in rows:
        print(f'{r["people"]:>6} {r["maps"]:>8} {r["decoder"]:>14} {r["AP"]:6.3f} {r["right"]:6.2f} '
              f'{r["ms"]:8.2f} {r["oracle"] - r["AP"]:6.3f}', flush=True)
    return {f'{r["maps"]}/{r["decoder"]}/{r["people"]}': {k: round(r[k], 4) for k in ('AP', 'right', 'ms')}
            for r in rows}


if __name__ == '__main__':
    main()
