"""Synthetic COCO-format people: a keypoint dataset in COCO's own layout, so everything runs with no download.

Writes <root>/images/<split>/*.jpg and <root>/annotations/person_keypoints_<split>.json with images,
annotations (keypoints, num_keypoints, bbox, area, segmentation, iscrowd) and COCO's person category.
Each image holds 1..max_people articulated figures (cache/people.py) at widely varying scales, facing
front or back, overlapping and partly outside the frame, on a textured background. Some people are left
unannotated (num_keypoints = 0 with a segmentation polygon: COCO's convention for people to ignore) and
some images hold a crowd (iscrowd = 1, uncompressed RLE). Visibility follows COCO: 2 visible, 1 labelled
but hidden behind someone drawn later, 0 not labelled (outside the image, or the face of a back view).

Every image draws from its own random stream seeded by (seed, split, index): the same seed writes the
same files, and splits never share an image. Run: python -m cache.synthetic [-c overlay.ini] [--force]

A video for detect.py demos and tests (write_video): the same people walk across one background,
turning back at the edges, arms and legs swinging, so a tracker can keep their ids. Run:
python -m cache.synthetic --video walk.mp4 [--frames 60] [--fps 15] [--size 640 480] [--people 3]
"""

import json
import math
import multiprocessing
import os
import zlib

import cv2
import numpy as np
from tqdm import tqdm

from cache import people
from pose.skeleton import COCO_PARTS, COCO_SKELETON
from utils import cli, video
from utils.io import atomic_write_bytes, atomic_write_text

CROWD = 255  # owner-map id of crowd members; people get 1, 2, ...
_FACE = [COCO_PARTS.index(n) for n in ('nose', 'left_eye', 'right_eye')]
_IDS_PER_SPLIT = 100_000


def options(config):
    """The [synthetic] options as a dict (also stored in the json, to tell when to regenerate)."""
    opts = {name: config.getint('synthetic', name) for name in ('min_size', 'max_size', 'max_people', 'seed')}
    opts.update({name: config.getfloat('synthetic', name)
                 for name in ('unannotated', 'crowd', 'person_min', 'person_max')})
    if not 16 <= opts['min_size'] <= opts['max_size']:
        raise cli.UserError(f'[synthetic] min_size = {opts["min_size"]}, max_size = {opts["max_size"]}: '
                            f'need 16 <= min_size <= max_size')
    if not 0 < opts['person_min'] <= opts['person_max']:
        raise cli.UserError(f'[synthetic] person_min = {opts["person_min"]}, person_max = '
                            f'{opts["person_max"]}: need 0 < person_min <= person_max')
    if not 1 <= opts['max_people'] < CROWD:
        raise cli.UserError(f'[synthetic] max_people = {opts["max_people"]}: need 1 ..{CROWD - 1}')
    return opts


def stream(split):
    """A number of its own for each split name: it seeds the split's images and offsets their ids."""
    return zlib.crc32(split.encode('utf-8')) % 20000


def background(rng, h, w):
    """A textured background: a gradient, smooth noise, stripes or tiles, then random shapes and grain."""
    c1, c2 = rng.uniform(0, 255, 3).astype(np.float32), rng.uniform(0, 255, 3).astype(np.float32)
    kind = rng.integers(4)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, math.pi)
    along = x * math.cos(angle) + y * math.sin(angle)
    if kind == 0:
        t = (along - along.min()) / max(1.0, float(np.ptp(along)))
    elif kind == 1:
        small = rng.uniform(0, 1, (rng.integers(2, 12), rng.integers(2, 12))).astype(np.float32)
        t = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    elif kind == 2:
        t = 0.5 + 0.5 * np.sin(along * (2 * math.pi / rng.uniform(6, 80)) + rng.uniform(0, 6.3))
    else:
        size = rng.uniform(8, 64)
        t = ((x // size + y // size) % 2).astype(np.float32)
    image = c1 + t[..., None] * (c2 - c1)
    for _ in range(rng.integers(0, 14)):
        _shape(image, rng, h, w)
    image += rng.normal(0, rng.uniform(0, 10), (h, w, 3)).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def _shape(image, rng, h, w):
    colour = tuple(float(c) for c in rng.uniform(0, 255, 3))
    x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
    size = int(rng.uniform(0.03, 0.3) * min(h, w)) + 1
    kind = rng.integers(4)
    if kind == 0:
        cv2.rectangle(image, (x, y), (x + size, y + int(size * rng.uniform(0.3, 3))), colour, -1)
    elif kind == 1:
        cv2.circle(image, (x, y), size // 2 + 1, colour, -1, cv2.LINE_AA)
    elif kind == 2:
        end = (x + int(rng.normal(0, size)), y + int(rng.normal(0, size)))
        cv2.line(image, (x, y), end, colour, int(rng.integers(1, max(2, size // 4))), cv2.LINE_AA)
    else:
        cv2.ellipse(image, (x, y), (size // 2 + 1, size // 5 + 1), rng.uniform(0, 180), 0, 360, colour, -1,
                    cv2.LINE_AA)


def _person(canvas, rng, height, centre):
    points, extra = people.random_pose(rng, front=rng.random() < 0.5)
    points, extra = people.place(points, extra, height, centre, people.pose_family_angle(rng))
    people.draw_person(canvas, points, extra, people.appearance(rng), height)
    return points, extra['side'] > 0


def _crowd(canvas, rng, h, w):
    """A crowd: many small overlapping people inside one region, all drawn with the CROWD id."""
    canvas.id = CROWD
    rw, rh = rng.uniform(0.2, 0.5) * w, rng.uniform(0.15, 0.35) * h
    x0, y0 = rng.uniform(-0.1 * w, w - 0.5 * rw), rng.uniform(0, h - 0.5 * rh)
    for _ in range(rng.integers(6, 16)):
        height = rh * rng.uniform(0.5, 0.9)
        _person(canvas, rng, height, (x0 + rng.uniform(0, rw), y0 + rng.uniform(0.4, 1) * rh))


def render(rng, opts):
    """(image BGR uint8, owner map, people) for one random image; people are dicts with 'id',
    'keypoints' (17,2) in pixels, 'front' and 'annotated'."""
    h, w = (int(rng.integers(opts['min_size'], opts['max_size'] + 1)) for _ in range(2))
    image = background(rng, h, w)
    owner = np.zeros((h, w), np.uint8)
    canvas = people.Canvas(image, owner)
    has_crowd = rng.random() < opts['crowd']
    if has_crowd:
        _crowd(canvas, rng, h, w)
    count = int(rng.integers(1, opts['max_people'] + 1))
    heights = np.sort(np.exp(rng.uniform(math.log(opts['person_min']), math.log(opts['person_max']),
                                         count))) * h  # small (far) people first, so near ones occlude
    persons = []
    for i, height in enumerate(heights):
        canvas.id = i + 1
        lo, hi = 0.25 * height, h - 0.1 * height
        centre = (rng.uniform(0, w), rng.uniform(min(lo, hi), max(lo, hi)))
        points, front = _person(canvas, rng, height, centre)
        persons.append({'id': i + 1, 'keypoints': points, 'front': front,
                        'annotated': rng.random() >= opts['unannotated']})
    if rng.random() < 0.2:
        image[:] = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.4, 1.2))
    return image, owner, persons, has_crowd


def coco_keypoints(person, owner):
    """COCO's 51 keypoint values and num_keypoints: v=2 visible, 1 hidden by someone drawn later,
    0 not labelled (outside the image, or the face of a figure seen from behind)."""
    h, w = owner.shape
    out = np.zeros((17, 3), np.float64)
    for k, (x, y) in enumerate(person['keypoints']):
        inside = 0 <= x <= w - 1 and 0 <= y <= h - 1
        if not inside or (k in _FACE and not person['front']):
            continue
        visible = owner[int(round(y)), int(round(x))] == person['id']
        out[k] = (round(float(x), 2), round(float(y), 2), 2 if visible else 1)
    return out.ravel().tolist(), int((out[:, 2] > 0).sum())


def polygons(mask):
    """COCO segmentation polygons (flat x, y lists) of a binary mask's outer contours."""
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    result = []
    for contour in contours:
        contour = cv2.approxPolyDP(contour, 0.8, True)
        if len(contour) >= 3:
            result.append(contour.reshape(-1).astype(float).tolist())
    return result


def rle_counts(mask):
    """COCO's uncompressed RLE counts of a binary mask (column-major runs, starting with zeros)."""
    flat = mask.ravel(order='F') > 0
    bounds = np.concatenate([[0], np.flatnonzero(flat[1:] != flat[:-1]) + 1, [flat.size]])
    counts = np.diff(bounds).tolist()
    return [0] + counts if flat[0] else counts


def annotations(owner, persons, has_crowd):
    """COCO annotation dicts (without ids) for the people and the crowd of one rendered image."""
    result = []
    h, w = owner.shape
    for person in persons:
        mask = (owner == person['id']).astype(np.uint8)
        segmentation = polygons(mask)
        if not segmentation:
            continue  # hidden entirely
        keypoints, count = coco_keypoints(person, owner) if person['annotated'] else ([0] * 51, 0)
        x, y, bw, bh = cv2.boundingRect(mask)
        result.append({'category_id': 1, 'iscrowd': 0, 'keypoints': keypoints, 'num_keypoints': count,
                       'bbox': [x, y, bw, bh], 'area': float(mask.sum()), 'segmentation': segmentation})
    crowd = (owner == CROWD).astype(np.uint8)
    if has_crowd and crowd.any():
        x, y, bw, bh = cv2.boundingRect(crowd)
        result.append({'category_id': 1, 'iscrowd': 1, 'keypoints': [0] * 51, 'num_keypoints': 0,
                       'bbox': [x, y, bw, bh], 'area': float(crowd.sum()),
                       'segmentation': {'counts': rle_counts(crowd), 'size': [h, w]}})
    return result


def generate(job):
    """One image: (JPEG bytes, COCO image entry, annotations with ids). job = (opts, split, index)."""
    opts, split, index = job
    rng = np.random.default_rng([opts['seed'], stream(split), index])
    image, owner, persons, has_crowd = render(rng, opts)
    image_id = (stream(split) + 1) * _IDS_PER_SPLIT + index + 1
    ok, jpeg = cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(80, 96))])
    entry = {'id': image_id, 'file_name': f'{image_id:012d}.jpg', 'height': image.shape[0],
             'width': image.shape[1]}
    anns = [dict(a, id=image_id * 100 + j, image_id=image_id)
            for j, a in enumerate(annotations(owner, persons, has_crowd))]
    return jpeg.tobytes(), entry, anns


def category():
    return {'id': 1, 'name': 'person', 'supercategory': 'person', 'keypoints': list(COCO_PARTS),
            'skeleton': [list(pair) for pair in COCO_SKELETON]}


def annotation_file(root, split):
    return os.path.join(root, 'annotations', f'person_keypoints_{split}.json')


def is_current(root, split, count, opts):
    """True when the split's annotation file exists and was written with these options and count."""
    try:
        with open(annotation_file(root, split), encoding='utf-8') as f:
            info = json.load(f).get('info', {})
    except (OSError, ValueError):
        return False
    return info.get('synthetic') == dict(opts, images=count, split=split)


def write_split(root, split, count, opts, workers=1):
    """Generate `count` images of `split` under `root`; the json is written last, atomically."""
    if not 0 < count < _IDS_PER_SPLIT:
        raise cli.UserError(f'{split}: image count {count} must be 1..{_IDS_PER_SPLIT - 1}')
    folder = os.path.join(root, 'images', split)
    os.makedirs(folder, exist_ok=True)
    data = {'info': {'description': 'synthetic people (cache/synthetic.py)',
                     'synthetic': dict(opts, images=count, split=split)},
            'licenses': [], 'images': [], 'annotations': [], 'categories': [category()]}
    jobs = [(opts, split, i) for i in range(count)]
    with multiprocessing.Pool(workers) if workers > 1 else _Serial() as pool:
        for jpeg, entry, anns in tqdm(pool.imap(generate, jobs, chunksize=4), total=count,
                                      desc=f'synthetic {split}', unit='img'):
            atomic_write_bytes(os.path.join(folder, entry['file_name']), jpeg)
            data['images'].append(entry)
            data['annotations'].extend(anns)
    path = annotation_file(root, split)
    atomic_write_text(path, json.dumps(data, separators=(',', ':')))
    return path


def walkers(rng, count, size, fps):
    """The people of a video of `size` (w, h): body, look and facing, height (pixels), feet line y, start
    x, speed (pixels per frame, signed) and gait phase. People start spread across the width; taller
    (nearer) people stand lower and come last, so they are drawn over the others."""
    w, h = size
    fractions = np.sort(rng.uniform(0.3, 0.6, count))
    starts = 0.05 + 0.9 * (rng.permutation(count) + rng.uniform(0.2, 0.8, count)) / max(1, count)
    result = []
    for fraction, start in zip(fractions, starts):
        height = fraction * h
        speed = rng.uniform(0.35, 0.65) * height / fps * rng.choice([-1.0, 1.0])  # body heights per second
        result.append({'body': people.random_joints(rng), 'look': people.appearance(rng),
                       'front': bool(rng.random() < 0.5), 'height': height,
                       'feet': h * (0.55 + 0.4 * (fraction - 0.3) / 0.3) + rng.uniform(-0.02, 0.02) * h,
                       'x': start * w, 'speed': speed, 'phase': rng.uniform(0, 2 * math.pi)})
    return result


def _bounce(x, low, high):
    """x folded into [low, high] as a walker that turns back at either end."""
    span = high - low
    t = (x - low) % (2 * span)
    return low + (t if t <= span else 2 * span - t)


def walker_pose(walker, frame, width):
    """(points (17,2), extra) in image pixels of `walker` at `frame`: one gait cycle every 0.8 body
    heights walked; the pelvis rises a little as the legs pass each other."""
    travelled = walker['speed'] * frame
    phase = walker['phase'] + 2 * math.pi * abs(travelled) / (0.8 * walker['height'])
    height = walker['height']
    x = _bounce(walker['x'] + travelled, 0.05 * width, 0.95 * width)
    y = walker['feet'] - 0.47 * height - 0.012 * height * abs(math.cos(phase))
    points, extra = people.pose(people.walking_joints(walker['body'], phase), walker['front'])
    return people.place(points, extra, height, (x, y), 0.0)


def video_frames(frames, fps, size, count, seed):
    """Yield (BGR frame (h, w, 3) uint8, COCO keypoints (count, 17, 3) with v as in coco_keypoints) for a
    video of `count` people walking on one background; the same seed gives the same video."""
    rng = np.random.default_rng([seed, zlib.crc32(b'video')])
    w, h = size
    backdrop = background(rng, h, w)
    persons = walkers(rng, count, size, fps)
    for frame in range(frames):
        canvas = people.Canvas(backdrop.copy(), np.zeros((h, w), np.uint8))
        placed = []
        for i, walker in enumerate(persons):
            canvas.id = i + 1
            points, extra = walker_pose(walker, frame, w)
            people.draw_person(canvas, points, extra, walker['look'], walker['height'])
            placed.append({'id': i + 1, 'keypoints': points, 'front': walker['front']})
        keypoints = [np.reshape(coco_keypoints(p, canvas.owner)[0], (17, 3)) for p in placed]
        yield canvas.image, np.array(keypoints, np.float32).reshape(count, 17, 3)


def write_video(path, frames=60, fps=15.0, size=(640, 480), people=3, seed=0):
    """Write a video of `people` synthetic people walking (video_frames) to `path` (.mp4: mp4v, .avi: MJPG),
    atomically, with a progress bar; returns their COCO keypoints per frame, float32 (frames, people, 17, 3).
    `size` is (width, height)."""
    w, h = (int(v) for v in size)
    for name, value, ok in (('frames', frames, frames >= 1), ('fps', fps, fps > 0),
                            ('size', f'{w} {h}', min(w, h) >= 32), ('people', people, 0 <= people < CROWD)):
        if not ok:
            raise cli.UserError(f'synthetic video: {name} = {value} is out of range (frames >= 1, fps > 0, '
                                f'sides >= 32 pixels, people 0..{CROWD - 1})')
    if os.path.splitext(path)[1].lower() not in video.VIDEO_CODECS:
        raise cli.UserError(f'synthetic video {path}: the name must end in {" or ".join(video.VIDEO_CODECS)}')
    tracks = np.zeros((frames, people, 17, 3), np.float32)
    with video.video_writer(path, fps) as write:
        for i, (image, keypoints) in enumerate(tqdm(video_frames(frames, fps, (w, h), people, seed),
                                                    total=frames, desc='synthetic video', unit='frame')):
            write(image)
            tracks[i] = keypoints
    return tracks


class _Serial:
    """The part of multiprocessing.Pool that write_split uses, run in this process."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def imap(self, function, jobs, chunksize=1):
        return map(function, jobs)


@cli.main
def main(argv=None):
    p = cli.parser(__doc__.split('\n\n')[0])
    p.add_argument('--root', help='output folder (default: [dataset] root)')
    p.add_argument('--split', nargs='+', help='splits to write (default: [dataset] train and val)')
    p.add_argument('--images', type=int, help='images per split (default: [synthetic] train_images / '
                                              'val_images)')
    p.add_argument('--workers', type=int, default=os.cpu_count(), help='processes drawing images')
    p.add_argument('--force', action='store_true', help='regenerate splits that are already up to date')
    p.add_argument('--video', metavar='PATH', help='write a video of people walking instead (.mp4 or .avi)')
    p.add_argument('--frames', type=int, default=60, help='video frames')
    p.add_argument('--fps', type=float, default=15.0, help='video frames per second')
    p.add_argument('--size', type=int, nargs=2, default=(640, 480), metavar=('W', 'H'), help='video size')
    p.add_argument('--people', type=int, default=3, help='people in the video')
    p.add_argument('--seed', type=int, default=0, help='the video\'s random seed')
    args = p.parse_args(argv)
    if args.video:
        write_video(args.video, args.frames, args.fps, args.size, args.people, args.seed)
        print(f'wrote {args.video} ({args.frames} frames)')
        return
    config = cli.load_config(args)
    opts = options(config)
    root = args.root or config.get('dataset', 'root')
    roles = {config.get('dataset', 'train'): 'train_images', config.get('dataset', 'val'): 'val_images'}
    for split in args.split or list(roles):
        count = args.images or config.getint('synthetic', roles.get(split, 'val_images'))
        if not args.force and is_current(root, split, count, opts):
            print(f'{annotation_file(root, split)} is up to date ({count} images); --force regenerates it')
            continue
        print(f'wrote {write_split(root, split, count, opts, max(1, args.workers))}')


if __name__ == '__main__':
    main()
