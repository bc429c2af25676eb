"""Articulated synthetic people for cache/synthetic.py: a random pose with human proportions, drawn with
cv2 as shaded tapered limbs, a torso with front or back markings and a head with face or hair.

A figure faces the camera or turns its back, so a person's left side appears on the image's right or left.
Keypoints come out in COCO's 17-point order (pose.skeleton.COCO_PARTS) in image pixels, pixel centres at
integer coordinates. Every shape is also drawn into an owner map (one id per person) from which the
caller derives occlusion, segmentation and visibility.
"""

import math

import cv2
import numpy as np

from pose.skeleton import COCO_PARTS

SHIFT = 4  # cv2 fractional bits: shapes are placed to 1/16 pixel
_SCALE = 1 << SHIFT
_P = {name: k for k, name in enumerate(COCO_PARTS)}
SKIN = np.array([(205, 225, 250), (170, 200, 240), (140, 180, 225), (100, 140, 190), (70, 100, 150),
                 (45, 65, 100)], np.float32)  # BGR
HAIR = np.array([(20, 20, 25), (30, 50, 80), (60, 110, 160), (120, 180, 220), (170, 170, 170),
                 (40, 40, 120)], np.float32)


def _rot(angle):
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]], np.float32)


def _limb(start, angle, length, side):
    """End of a segment from `start` at `angle` (radians from straight down, outward positive)."""
    return start + length * np.array([side * math.sin(angle), math.cos(angle)], np.float32)


def _arm_angles(rng):
    family = rng.random()
    low, high = (-10, 45) if family < 0.5 else (45, 120) if family < 0.8 else (120, 175)
    up = rng.uniform(low, high)
    return math.radians(up), math.radians(up + rng.uniform(-130, 60))


def _leg_angles(rng):
    hip = rng.uniform(-8, 25) if rng.random() < 0.7 else rng.uniform(-25, 85)
    return math.radians(hip), math.radians(hip + rng.uniform(-55, 20))


def random_joints(rng):
    """Random joint angles (radians) and segment lengths (body heights) of a still pose, for `pose`."""
    joints = {'lean': math.radians(rng.normal(0, 6))}
    for name in ('left', 'right'):
        upper, lower = _arm_angles(rng)
        arm = (0.165 * rng.uniform(0.75, 1), 0.145 * rng.uniform(0.75, 1))
        thigh, shin = _leg_angles(rng)
        leg = (0.245 * rng.uniform(0.8, 1), 0.235 * rng.uniform(0.8, 1))
        joints[name] = {'arm': (upper, lower), 'arm_length': arm, 'leg': (thigh, shin), 'leg_length': leg}
    joints['head'] = math.radians(rng.normal(0, 10))
    joints['yaw'] = rng.uniform(-0.3, 0.3)
    return joints


def random_pose(rng, front):
    """A random still pose: `pose(random_joints(rng), front)`."""
    return pose(random_joints(rng), front)


def pose(joints, front):
    """Joint positions in a unit-height body frame (pelvis at the origin, y down) and head geometry.

    `joints` (see random_joints): 'lean' and 'head' tilt (radians), 'yaw' (head turn, -0.3..0.3), and per
    side ('left', 'right') the 'arm' (upper, lower) and 'leg' (thigh, shin) angles from straight down,
    outward positive, with their 'arm_length' and 'leg_length' in body heights. Returns (points (17,2) in
    COCO order, extra) where extra holds the head centre, radii and angle, the hand and foot tips.
    `front`: the figure faces the camera (its left side on the image's right)."""
    s = 1.0 if front else -1.0  # image x direction of the person's left side
    lean = joints['lean']
    up = _rot(lean)
    neck = up @ np.array([0, -0.30], np.float32)
    pts = np.zeros((17, 2), np.float32)
    for name, side in (('left', s), ('right', -s)):
        limb = joints[name]
        shoulder = neck + up @ np.array([side * 0.105, 0.025], np.float32)
        elbow = _limb(shoulder, limb['arm'][0] - lean * side, limb['arm_length'][0], side)
        wrist = _limb(elbow, limb['arm'][1] - lean * side, limb['arm_length'][1], side)
        hip = np.array([side * 0.075, 0], np.float32)
        knee = _limb(hip, limb['leg'][0], limb['leg_length'][0], side)
        ankle = _limb(knee, limb['leg'][1], limb['leg_length'][1], side)
        for part, point in (('shoulder', shoulder), ('elbow', elbow), ('wrist', wrist), ('hip', hip),
                            ('knee', knee), ('ankle', ankle)):
            pts[_P[f'{name}_{part}']] = point
    head_angle = lean + joints['head']
    head = _rot(head_angle)
    centre = neck + head @ np.array([0, -0.085], np.float32)
    rx, ry = 0.052, 0.066
    yaw = joints['yaw']
    for name, side in (('left', s), ('right', -s)):
        pts[_P[f'{name}_eye']] = centre + head @ np.array([(side * 0.38 + yaw) * rx, -0.1 * ry], np.float32)
        pts[_P[f'{name}_ear']] = centre + head @ np.array([(side * 0.98 + 0.3 * yaw) * rx, 0.05 * ry],
                                                          np.float32)
    pts[_P['nose']] = centre + head @ np.array([0.9 * yaw * rx, 0.3 * ry], np.float32)
    extra = {'head': centre, 'radii': (rx, ry), 'head_angle': head_angle, 'neck': neck, 'yaw': yaw,
             'side': s}
    for name in ('left', 'right'):
        wrist, elbow = pts[_P[f'{name}_wrist']], pts[_P[f'{name}_elbow']]
        direction = (wrist - elbow) / max(1e-6, float(np.linalg.norm(wrist - elbow)))
        extra[f'{name}_hand'] = wrist + 0.04 * direction
        side = s if name == 'left' else -s
        extra[f'{name}_toe'] = pts[_P[f'{name}_ankle']] + np.array([side * 0.03, 0.035], np.float32)
    return pts, extra


def walking_joints(body, phase):
    """The joints of `body` (random_joints of one person: lengths, lean, head) at gait `phase` (radians):
    arms and legs swing sinusoidally, left and right half a cycle apart. Seen from the front, a knee that
    comes forward shortens the thigh's image, and the shin follows the thigh."""
    joints = dict(body)
    for name, offset in (('left', 0.0), ('right', math.pi)):
        swing = math.sin(phase + offset)
        lift = max(0.0, math.cos(phase + offset))  # the knee comes forward while the leg swings through
        upper = math.radians(18 - 16 * swing)  # each arm swings against its leg
        thigh = math.radians(8 + 10 * swing)
        thigh_length, shin_length = body[name]['leg_length']
        joints[name] = dict(body[name], arm=(upper, upper + math.radians(25 - 15 * swing)),
                            leg=(thigh, thigh - math.radians(10 * lift)),
                            leg_length=(thigh_length * (1 - 0.3 * lift), shin_length))
    return joints


def appearance(rng):
    """Colours of one person (BGR float): skin, hair, shirt, trousers, shoes; sleeve and leg lengths."""
    def colour(hue, sat, val):
        hsv = np.uint8([[[hue % 180, sat, val]]])
        return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)
    shirt_hue = rng.uniform(0, 180)
    trouser_hue = shirt_hue + rng.uniform(35, 145)  # upper and lower body always differ in hue
    return {
        'skin': SKIN[rng.integers(len(SKIN))] * rng.uniform(0.9, 1.1),
        'hair': HAIR[rng.integers(len(HAIR))] * rng.uniform(0.8, 1.2),
        'shirt': colour(shirt_hue, rng.uniform(90, 255), rng.uniform(110, 255)),
        'trousers': colour(trouser_hue, rng.uniform(60, 255), rng.uniform(50, 200)),
        'shoes': np.float32([rng.uniform(10, 60)] * 3) if rng.random() < 0.8 else np.float32([235] * 3),
        'long_sleeves': rng.random() < 0.5,
        'shorts': rng.random() < 0.3,
    }


def _fix(points):
    return np.round(np.asarray(points, np.float32) * _SCALE).astype(np.int32)


def _shade(colour, factor):
    return tuple(float(min(255.0, c * factor)) for c in colour)


class Canvas:
    """An image and its owner map, drawn together; `owner` gets `id` wherever a shape covers."""

    def __init__(self, image, owner):
        self.image, self.owner, self.id = image, owner, 0

    def polygon(self, points, colour):
        pts = _fix(points)
        cv2.fillConvexPoly(self.image, pts, colour, cv2.LINE_AA, SHIFT)
        cv2.fillConvexPoly(self.owner, pts, self.id, cv2.LINE_8, SHIFT)

    def ellipse(self, centre, axes, angle, colour, owned=True):
        centre, axes = tuple(_fix(centre).tolist()), tuple(_fix(np.maximum(axes, 0.5)).tolist())
        cv2.ellipse(self.image, centre, axes, angle, 0, 360, colour, -1, cv2.LINE_AA, SHIFT)
        if owned:
            cv2.ellipse(self.owner, centre, axes, angle, 0, 360, self.id, -1, cv2.LINE_8, SHIFT)

    def capsule(self, p0, p1, r0, r1, colour, shaded=True):
        """A tapered limb from p0 (radius r0) to p1 (radius r1): a dark rim, the colour, a highlight."""
        d = np.asarray(p1, np.float32) - p0
        n = np.array([-d[1], d[0]], np.float32) / max(1e-6, float(np.linalg.norm(d)))
        layers = [(1.0, _shade(colour, 0.55), 0.0), (0.82, tuple(map(float, colour)), 0.0)]
        if shaded:
            layers.append((0.32, _shade(colour, 1.35), 0.35))
        for fraction, tone, offset in layers:
            a, b = r0 * fraction, r1 * fraction
            o0, o1 = p0 - n * offset * r0, p1 - n * offset * r1
            self.polygon([o0 + n * a, o1 + n * b, o1 - n * b, o0 - n * a], tone)
            self.ellipse(o0, (a, a), 0, tone, owned=fraction == 1.0)
            self.ellipse(o1, (b, b), 0, tone, owned=fraction == 1.0)


def draw_person(canvas, pts, extra, look, height):
    """Draw a posed person (points already in image pixels, `height` its height in pixels)."""
    P = {name: pts[k] for name, k in _P.items()}
    w = height  # widths below are fractions of the body height
    legs = look['skin'] if look['shorts'] else look['trousers']
    for name in ('left', 'right'):
        canvas.capsule(P[f'{name}_hip'], P[f'{name}_knee'], 0.065 * w, 0.048 * w, look['trousers'])
        canvas.capsule(P[f'{name}_knee'], P[f'{name}_ankle'], 0.048 * w, 0.036 * w, legs)
        canvas.capsule(P[f'{name}_ankle'], extra[f'{name}_toe'], 0.032 * w, 0.026 * w, look['shoes'],
                       shaded=False)
    _torso(canvas, P, extra, look, w)
    forearm = look['shirt'] if look['long_sleeves'] else look['skin']
    for name in ('left', 'right'):
        canvas.capsule(P[f'{name}_shoulder'], P[f'{name}_elbow'], 0.044 * w, 0.035 * w, look['shirt'])
        canvas.capsule(P[f'{name}_elbow'], P[f'{name}_wrist'], 0.034 * w, 0.027 * w, forearm)
        canvas.capsule(P[f'{name}_wrist'], extra[f'{name}_hand'], 0.03 * w, 0.026 * w, look['skin'],
                       shaded=False)
    _head(canvas, P, extra, look, w)


def _torso(canvas, P, extra, look, w):
    ls, rs, lh, rh = P['left_shoulder'], P['right_shoulder'], P['left_hip'], P['right_hip']
    across = (ls - rs) / max(1e-6, float(np.linalg.norm(ls - rs)))
    down = ((lh + rh) - (ls + rs)) / 2
    pelvis = [lh + across * 0.035 * w - down * 0.12, rh - across * 0.035 * w - down * 0.12,
              rh - across * 0.04 * w + down * 0.12, lh + across * 0.04 * w + down * 0.12]
    canvas.polygon(pelvis, _shade(look['trousers'], 0.9))
    body = [ls + across * 0.03 * w - down * 0.06, rs - across * 0.03 * w - down * 0.06,
            rh - across * 0.04 * w - down * 0.07, lh + across * 0.04 * w - down * 0.07]
    canvas.polygon(body, _shade(look['shirt'], 0.6))
    inner = [p + (c - p) * 0.08 for p, c in zip(body, [sum(body) / 4] * 4)]
    canvas.polygon(inner, tuple(map(float, look['shirt'])))
    neck, centre = extra['neck'], extra['head']
    canvas.capsule(neck, neck + (centre - neck) * 0.5, 0.03 * w, 0.026 * w, look['skin'], shaded=False)
    if extra['side'] > 0:  # the front: a collar V and buttons
        collar = [ls * 0.35 + rs * 0.65 - down * 0.05, ls * 0.65 + rs * 0.35 - down * 0.05,
                  (ls + rs) / 2 + down * 0.2]
        canvas.polygon(collar, tuple(map(float, look['skin'])))
        for t in (0.35, 0.55, 0.75):
            button = (ls + rs) / 2 + down * t
            canvas.ellipse(button, (0.01 * w, 0.01 * w), 0, _shade(look['shirt'], 0.45), owned=False)


def _head(canvas, P, extra, look, w):
    centre, (rx, ry), angle = extra['head'], extra['radii'], math.degrees(extra['head_angle'])
    rx, ry = rx * w, ry * w
    for name in ('left', 'right'):
        canvas.ellipse(P[f'{name}_ear'], (0.22 * rx, 0.32 * ry), angle, _shade(look['skin'], 0.85))
    canvas.ellipse(centre, (rx * 1.04, ry * 1.04), angle, _shade(look['skin'], 0.5))
    canvas.ellipse(centre, (rx, ry), angle, tuple(map(float, look['skin'])))
    up = np.array([math.sin(extra['head_angle']), -math.cos(extra['head_angle'])], np.float32)
    if extra['side'] > 0:  # the face
        canvas.ellipse(centre + up * 0.55 * ry, (rx * 0.95, ry * 0.5), angle, tuple(map(float, look['hair'])))
        for name in ('left', 'right'):
            eye = P[f'{name}_eye']
            canvas.ellipse(eye, (0.2 * rx, 0.12 * ry), angle, (250.0, 250.0, 250.0), owned=False)
            canvas.ellipse(eye, (0.1 * rx, 0.1 * ry), angle, (40.0, 25.0, 20.0), owned=False)
        canvas.ellipse(P['nose'], (0.12 * rx, 0.14 * ry), angle, _shade(look['skin'], 0.7), owned=False)
        mouth = P['nose'] - up * 0.3 * ry
        canvas.ellipse(mouth, (0.3 * rx, 0.06 * ry), angle, (60.0, 50.0, 150.0), owned=False)
    else:  # the back of the head: hair down to the neck, the ears stay visible
        canvas.ellipse(centre + up * 0.1 * ry, (rx * 0.98, ry * 0.95), angle, tuple(map(float, look['hair'])))
        for name in ('left', 'right'):
            canvas.ellipse(P[f'{name}_ear'], (0.2 * rx, 0.3 * ry), angle, _shade(look['skin'], 0.85))


def place(points, extra, height, centre, angle):
    """Body-frame points and extras -> image pixels: scale by `height`, rotate by `angle`, move the
    pelvis to `centre`."""
    rotation = _rot(angle) * height
    centre = np.asarray(centre, np.float32)
    out = {key: (value @ rotation.T + centre if isinstance(value, np.ndarray) else value)
           for key, value in extra.items()}
    out['head_angle'] = extra['head_angle'] + angle
    return points @ rotation.T + centre, out


def pose_family_angle(rng):
    """Whole-body rotation: mostly upright, sometimes leaning far or lying."""
    r = rng.random()
    if r < 0.85:
        return math.radians(rng.normal(0, 5))
    if r < 0.97:
        return math.radians(rng.uniform(-60, 60))
    return math.radians(rng.choice([-90, 90]) + rng.normal(0, 10))
