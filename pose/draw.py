"""Drawing people on images: limbs coloured by side (left warm, right cool, centre green, a shade per
limb; sides from the layout's flip pairs, so any layout draws), part dots, optional person ids. Shared by
detect.py, training summaries and data inspection."""

import colorsys
import re

import cv2
import numpy as np


def part_sides(skeleton):
    """'left', 'right' or 'centre' for each part, from the layout's flip pairs: a part that flips onto
    itself is centre; of a pair, the one whose name says left (left, l_, L...) is left, else the first."""
    sides = []
    for k, f in enumerate(skeleton.flip):
        if f == k:
            sides.append('centre')
            continue
        says = [re.match(r'(left|l[_\W]|L[A-Z])', skeleton.parts[i], re.IGNORECASE) is not None
                for i in (k, f)]
        left = says[0] if says[0] != says[1] else k < f
        sides.append('left' if left else 'right')
    return sides


def limb_colors(skeleton):
    """One BGR colour per limb: hue by side (left orange-red, right blue, centre green), shade by limb."""
    hues = {'left': (0.0, 0.12), 'right': (0.55, 0.72), 'centre': (0.25, 0.42)}
    part_side = part_sides(skeleton)
    sides = []
    for a, b in skeleton.limbs:
        pair = {part_side[a], part_side[b]} - {'centre'}
        sides.append(pair.pop() if len(pair) == 1 else 'centre')
    colors = []
    for l, side in enumerate(sides):
        same = [m for m, s in enumerate(sides) if s == side]
        lo, hi = hues[side]
        hue = lo + (hi - lo) * same.index(l) / max(1, len(same) - 1)
        r, g, b = colorsys.hsv_to_rgb(hue, 0.9, 1.0)
        colors.append((int(b * 255), int(g * 255), int(r * 255)))
    return colors


def draw_people(image, keypoints, skeleton, ids=None, threshold=0.0, thickness=None):
    """Draw people on a copy of BGR `image`. keypoints (P,K,3) as (x, y, score or visibility); parts with
    a third value <= threshold are not drawn. ids: one label per person, drawn above the person."""
    canvas = np.ascontiguousarray(image).copy()
    keypoints = np.asarray(keypoints, np.float32).reshape(-1, len(skeleton.parts), 3)
    thickness = thickness or max(1, int(round(max(canvas.shape[:2]) / 300)))
    colors = limb_colors(skeleton)
    for p, person in enumerate(keypoints):
        seen = person[:, 2] > threshold
        for (a, b), color in zip(skeleton.limbs, colors):
            if seen[a] and seen[b]:
                cv2.line(canvas, _pt(person[a]), _pt(person[b]), color, thickness + 1, cv2.LINE_AA)
        for k in np.flatnonzero(seen):
            cv2.circle(canvas, _pt(person[k]), thickness + 1, (255, 255, 255), -1, cv2.LINE_AA)
        if ids is not None and seen.any():
            x, y = person[seen, 0].min(), person[seen, 1].min()
            cv2.putText(canvas, str(ids[p]), (int(x), max(12, int(y) - 6)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.4 + thickness * 0.15, (255, 255, 255), max(1, thickness // 2 + 1), cv2.LINE_AA)
    return canvas


def _pt(point):
    return int(round(float(point[0]))), int(round(float(point[1])))


def colorize(maps, image=None, alpha=0.5):
    """Max over channels of (C,h,w) maps in [0,1] as a colour-mapped BGR image, blended over `image`
    (resized to it) when one is given."""
    heat = np.clip(np.asarray(maps, np.float32).max(axis=0), 0, 1)
    heat = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)
    if image is None:
        return heat
    heat = cv2.resize(heat, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    return cv2.addWeighted(np.ascontiguousarray(image), 1 - alpha, heat, alpha, 0)
