import numpy as np
import pytest

from pose import skeleton as skeletons
from pose.skeleton import COCO_PARTS

LAYOUTS = skeletons.available()


def test_shipped_layouts():
    assert {'cmu18', 'coco17'} <= set(LAYOUTS)


@pytest.mark.parametrize('name', LAYOUTS)
def test_layout_is_consistent(name):
    s = skeletons.load(name)
    assert len(set(s.parts)) == len(s.parts)
    for a, b in s.limbs:
        assert 0 <= a < len(s.parts) and 0 <= b < len(s.parts) and a != b
    assert len(set(s.limbs)) == len(s.limbs)
    assert [s.flip[s.flip[k]] for k in range(len(s.parts))] == list(range(len(s.parts)))
    for k, f in enumerate(s.flip):
        a, b = s.parts[k], s.parts[f]
        if 'left' in a or 'right' in a:
            assert f != k, f'{a} has no flip partner'
            assert b == a.replace('left', 'X').replace('right', 'left').replace('X', 'right')
        else:
            assert f == k
    for l, (m, rev) in enumerate(s.limb_flip):
        a, b = s.limbs[l]
        assert s.limbs[m] == ((s.flip[b], s.flip[a]) if rev else (s.flip[a], s.flip[b]))
    # the limbs connect every part
    reached, changed = {0}, True
    while changed:
        changed = False
        for a, b in s.limbs:
            if (a in reached) != (b in reached):
                reached |= {a, b}
                changed = True
    assert reached == set(range(len(s.parts)))


def test_cmu18_order():
    s = skeletons.load('cmu18')
    assert s.parts[:3] == ('nose', 'neck', 'right_shoulder') and len(s.parts) == 18
    names = [f'{s.parts[a]}-{s.parts[b]}' for a, b in s.limbs]
    assert names[:3] == ['neck-right_hip', 'right_hip-right_knee', 'right_knee-right_ankle']
    assert names[9] == 'right_shoulder-right_ear' and names[13] == 'left_shoulder-left_ear'
    assert names[-1] == 'left_eye-left_ear' and len(names) == 19
    # the arms: the original project swapped these
    flip = {s.parts[k]: s.parts[f] for k, f in enumerate(s.flip)}
    assert flip['right_elbow'] == 'left_elbow' and flip['left_wrist'] == 'right_wrist'


def test_derived_neck():
    s = skeletons.load('cmu18')
    coco = np.zeros((2, 17, 3), np.float32)
    coco[:, COCO_PARTS.index('left_shoulder')] = (10, 20, 2)
    coco[:, COCO_PARTS.index('right_shoulder')] = (30, 40, 1)
    coco[1, COCO_PARTS.index('right_shoulder'), 2] = 0
    out = s.from_coco(coco)
    neck = s.parts.index('neck')
    assert out[0, neck].tolist() == [20, 30, 1]
    assert out[1, neck, 2] == 0
    back = s.to_coco(out)
    assert np.array_equal(back[0], coco[0])


def test_flip_keypoints_swaps_sides():
    s = skeletons.load('coco17')
    kp = np.zeros((1, 17, 3), np.float32)
    kp[0, 5] = (2, 3, 2)  # left_shoulder
    flipped = s.flip_keypoints(kp, width=10)
    assert flipped[0, 6].tolist() == [7, 3, 2] and flipped[0, 5, 2] == 0


def test_unknown_layout_lists_available(tmp_path):
    with pytest.raises(ValueError, match='available: .*cmu18'):
        skeletons.load('nope')
    bad = tmp_path / 'bad.ini'
    bad.write_text('[parts]\nnose = nose\n[limbs]\nlimbs = nose elbow\n')
    with pytest.raises(ValueError, match='bad.ini.*limb'):
        skeletons.load(str(bad))


def test_coco_names_keep_cocos_official_sigmas():
    s = skeletons.load('cmu18')
    assert s.sigma_values(COCO_PARTS).tolist() == [.026, .025, .025, .035, .035, .079, .079, .072, .072, .062,
                                                   .062, .107, .107, .087, .087, .089, .089]
    with pytest.raises(ValueError, match=r"no OKS sigma for keypoint\(s\) \['head'\].*\[sigmas\]"):
        s.sigma_values(COCO_PARTS + ('head',))
    crowd = skeletons.load('crowdpose14')
    assert crowd.sigma_values(('head', 'neck', 'left_hip')).tolist() == [0.079, 0.079, 0.107]


def test_body25_is_cmus_order_with_feet_from_foot_kpts():
    s = skeletons.load('body25')
    assert len(s.parts) == 25 and s.parts[8] == 'mid_hip' and s.parts[19:] == (
        'left_big_toe', 'left_small_toe', 'left_heel', 'right_big_toe', 'right_small_toe', 'right_heel')
    # CMU's pairs (POSE_BODY_PART_PAIRS) sorted by their PAF channels (POSE_MAP_INDEX)
    pairs = [(1, 8), (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (8, 9), (9, 10), (10, 11), (8, 12),
             (12, 13), (13, 14), (1, 0), (0, 15), (15, 17), (0, 16), (16, 18), (2, 17), (5, 18), (14, 19),
             (19, 20), (14, 21), (11, 22), (22, 23), (11, 24)]
    channels = [0, 14, 22, 16, 18, 24, 26, 6, 2, 4, 8, 10, 12, 30, 32, 36, 34, 38, 20, 28, 40, 42, 44, 46, 48,
                50]
    assert list(s.limbs) == [pair for _, pair in sorted(zip(channels, pairs))]
    names = s.keypoint_names(COCO_PARTS)
    assert names[17:] == s.parts[19:] and dict(s.fields)['foot_kpts'] == s.parts[19:]
    kp = np.zeros((1, len(names), 3), np.float32)
    kp[0, names.index('left_hip')] = (10, 50, 2)
    kp[0, names.index('right_hip')] = (30, 70, 1)
    kp[0, names.index('right_heel')] = (5, 6, 2)
    out = s.from_dataset(kp, names)
    assert out[0, 8].tolist() == [20, 60, 1] and out[0, 24].tolist() == [5, 6, 2]
    back = s.to_dataset(out, names)
    assert np.array_equal(back, kp)  # the mid-hip is derived: nothing maps back from it
    with pytest.raises(ValueError, match="derives from keypoint 'left_big_toe', which the dataset lacks"):
        s.from_coco(np.zeros((1, 17, 3)))


LAYOUT = '''[parts]
Head Top = "Head Top"
neck = "Left Shoulder" right-shoulder
Left Shoulder = "Left Shoulder"
right-shoulder = right-shoulder
[limbs]
limbs =
    "Head Top" neck
    neck "Left Shoulder"
    neck right-shoulder
[flip]
pairs =
    "Left Shoulder" right-shoulder
[sigmas]
Head Top = 0.05
'''


def test_the_datasets_own_spelling(tmp_path):
    path = tmp_path / 'mine.ini'
    path.write_text(LAYOUT)
    s = skeletons.load(str(path))
    assert s.parts == ('Head Top', 'neck', 'Left Shoulder', 'right-shoulder')
    assert s.sources[1] == ('Left Shoulder', 'right-shoulder') and s.flip == (0, 1, 3, 2)
    names = ('right-shoulder', 'Head Top', 'Left Shoulder', 'Tail')
    kp = np.array([[[4, 4, 2], [1, 1, 2], [2, 2, 1], [9, 9, 2]]], np.float32)
    assert s.from_dataset(kp, names)[0].tolist() == [[1, 1, 2], [3, 3, 1], [2, 2, 1], [4, 4, 2]]
    with pytest.raises(ValueError, match="lacks; its keypoints: right-shoulder, Head Top, Tail"):
        s.from_dataset(np.zeros((1, 3, 3)), ('right-shoulder', 'Head Top', 'Tail'))
    assert s.sigma_values(('Head Top',)).tolist() == [0.05]


@pytest.mark.parametrize('text,words', [
    ('nose = nose\n[limbs]\n', r'mine.ini, line 1: .nose = nose. comes before any \[section\]'),
    ('[parts]\nnose = nose\nthis line has no equals sign\n', r'mine.ini, line 3: cannot read'),
    ('[parts]\nnose = nose\nnose = eye\n[limbs]\nlimbs = nose eye\n',
     r"mine.ini, line 3: \[parts\] 'nose' occurs twice"),
    ('[parts]\nnose = nose\neye = eye\n[limbs]\nlimbs =\n    nose eye\n    nose elbow\n',
     r"mine.ini, line 7: limb 'nose elbow' must name two different parts"),
    ('[parts]\nnose = nose\nLeft Eye = eye\n[limbs]\nlimbs = nose "Left Eye" \n  nose Eye\n',
     r"mine.ini, line 6: limb 'nose Eye' must name two different parts"),
    ('[parts]\nnose = nose\neye = eye\n[limbs]\nlimbs = nose eye\n[sigmas]\nnose = wide\n',
     r"mine.ini, line 7: \[sigmas\] nose = 'wide' is not a positive number"),
    ('[parts]\nnose = "nose\n[limbs]\nlimbs = nose eye\n',
     r"mine.ini, line 2: part 'nose': No closing quotation"),
    ('[parts]\nnose = nose\n', r'mine.ini: no \[limbs\] section'),
    ('[parts]\na = a\nleft = l\nright = r\n[limbs]\nlimbs =\n    a left\n[flip]\npairs = left right\n',
     r"mine.ini, line 7: limb 'a' -> 'left': its mirror image 'a' -> 'right' is not a limb"),
    ('[parts]\na = a\nb = b\nc = c\n[limbs]\nlimbs = a b\n    b c\n[flip]\npairs =\n    a b\n    a c\n',
     r"mine.ini, line 11: flip pairs: part 'a' is in two pairs"),
])
def test_malformed_layout_files_are_one_line_errors_naming_file_and_line(tmp_path, text, words):
    path = tmp_path / 'mine.ini'
    path.write_text(text)
    with pytest.raises(skeletons.LayoutError, match=words) as error:
        skeletons.load(str(path))
    assert '\n' not in str(error.value)


@pytest.mark.parametrize('name', LAYOUTS)
def test_drawing_sides_follow_flip_pairs(name):
    from pose import draw
    s = skeletons.load(name)
    sides = draw.part_sides(s)
    for k, part in enumerate(s.parts):
        assert sides[k] == ('left' if part.startswith('left') else 'right' if part.startswith('right')
                            else 'centre')
    assert len(draw.limb_colors(s)) == len(s.limbs)
