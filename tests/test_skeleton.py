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
