import cv2
import numpy as np
import pytest

from pose import encode as enc
from pose.skeleton import load

CMU = load('cmu18')


def random_people(rng, count, size, skeleton=CMU, labelled=0.8):
    """(P, K, 3) keypoints scattered over (and a little beyond) an image of `size`, some unlabelled."""
    h, w = size
    kp = np.zeros((count, len(skeleton.parts), 3), np.float32)
    centre = rng.uniform((0, 0), (w, h), (count, 1, 2))
    kp[..., :2] = centre + rng.normal(0, 30, (count, len(skeleton.parts), 2))
    kp[..., 2] = rng.random((count, len(skeleton.parts))) < labelled
    return kp


def dense_reference(kp, skeleton, size, stride, sigma, paf_width):
    """The targets computed the slow, obvious way: every cell against every person."""
    h, w = size[0] // stride, size[1] // stride
    x = np.arange(w) * stride + (stride - 1) / 2
    y = np.arange(h) * stride + (stride - 1) / 2
    X, Y = np.meshgrid(x, y)
    heat = np.zeros((len(skeleton.parts) + 1, h, w))
    for person in kp:
        for k, (px, py, v) in enumerate(person):
            if v > 0:
                g = np.exp(-((X - px) ** 2 + (Y - py) ** 2) / (2 * sigma ** 2))
                heat[k] = np.maximum(heat[k], np.where(g >= np.exp(-enc.TRUNCATE), g, 0))
    heat[-1] = 1 - heat[:-1].max(axis=0)
    paf = np.zeros((len(skeleton.limbs), 2, h, w))
    count = np.zeros((len(skeleton.limbs), h, w))
    for person in kp:
        for l, (a, b) in enumerate(skeleton.limbs):
            if person[a, 2] > 0 and person[b, 2] > 0:
                pa, pb = person[a, :2].astype(float), person[b, :2].astype(float)
                u = (pb - pa) / np.linalg.norm(pb - pa)
                t = np.clip((X - pa[0]) * u[0] + (Y - pa[1]) * u[1], 0, np.linalg.norm(pb - pa))
                near = np.hypot(X - pa[0] - t * u[0], Y - pa[1] - t * u[1]) <= paf_width
                paf[l, 0][near] += u[0]
                paf[l, 1][near] += u[1]
                count[l, near] += 1
    paf /= np.maximum(count, 1)[:, None]
    return heat.astype(np.float32), paf.reshape(-1, h, w).astype(np.float32)


def test_cell_pixel_convention():
    assert enc.cell_to_pixel(0, 8) == 3.5 and enc.cell_to_pixel(2, 1) == 2
    assert enc.pixel_to_cell(3.5, 8) == 0 and enc.pixel_to_cell(-0.5, 8) == -0.5
    xy = np.random.default_rng(0).uniform(-5, 500, (10, 2))
    np.testing.assert_allclose(enc.pixel_to_cell(enc.cell_to_pixel(xy, 4), 4), xy)
    assert enc.cell_to_pixel(np.float32(1), 8).dtype == np.float32


@pytest.mark.parametrize('stride', [2, 4, 8])
def test_convention_matches_cv2_resize(stride):
    """A map upsampled by its stride with cv2.resize lines up with cell_to_pixel."""
    ramp = np.tile(np.arange(10, dtype=np.float32), (6, 1))
    up = cv2.resize(ramp, (10 * stride, 6 * stride), interpolation=cv2.INTER_LINEAR)
    x = np.arange(stride, 9 * stride)  # away from the border, where cv2 clamps
    np.testing.assert_allclose(up[3, x], enc.pixel_to_cell(x, stride), atol=1e-5)


@pytest.mark.parametrize('stride', [1, 4, 8])
def test_targets_match_dense_reference(stride):
    rng = np.random.default_rng(stride)
    size = (96, 128)
    kp = random_people(rng, 4, size)
    kp[0, 3, :2] = (-20, 50)   # a part off the image, its Gaussian's tail still inside
    heat, paf = enc.encode(kp, CMU, size, stride, sigma=7, paf_width=8)
    ref_heat, ref_paf = dense_reference(kp, CMU, size, stride, 7, 8)
    assert heat.shape == (19, 96 // stride, 128 // stride) and paf.shape == (38, 96 // stride, 128 // stride)
    assert heat.dtype == np.float32 and paf.dtype == np.float32
    off = np.abs(heat - ref_heat) > 1e-5
    assert np.all(np.abs(ref_heat[off] - np.exp(-enc.TRUNCATE)) < 1e-3), 'differs away from the cut-off'
    np.testing.assert_allclose(paf, ref_paf, atol=1e-5)


def log_parabola_peak(channel):
    """Sub-cell (x, y) of a map's maximum from a parabola through the log of it and its neighbours."""
    i, j = np.unravel_index(channel.argmax(), channel.shape)
    log = np.log(np.maximum(channel[i - 1:i + 2, j - 1:j + 2], 1e-12))
    dx = (log[1, 0] - log[1, 2]) / (2 * (log[1, 0] - 2 * log[1, 1] + log[1, 2]))
    dy = (log[0, 1] - log[2, 1]) / (2 * (log[0, 1] - 2 * log[1, 1] + log[2, 1]))
    return j + dx, i + dy


@pytest.mark.parametrize('stride', [1, 4, 8])
def test_heatmap_peak_within_half_a_pixel(stride):
    rng = np.random.default_rng(1)
    for _ in range(20):
        kp = np.zeros((1, 18, 3), np.float32)
        kp[0, 5] = (*rng.uniform(40, 200, 2), 2)
        heat = enc.heatmaps(kp, CMU, (256, 256), stride, sigma=7)
        if stride == 1:
            i, j = np.unravel_index(heat[5].argmax(), heat[5].shape)
            peak = np.array([j, i], float)
        else:
            peak = enc.cell_to_pixel(np.array(log_parabola_peak(heat[5])), stride)
        assert np.abs(peak - kp[0, 5, :2]).max() <= 0.5
        assert heat[5].max() <= 1 and heat[-1].min() >= 0


def test_max_over_people_and_background():
    kp = np.zeros((2, 18, 3), np.float32)
    kp[:, 0] = [(50, 50, 1), (60, 50, 1)]
    heat = enc.heatmaps(kp, CMU, (128, 128), 4, sigma=5)
    one = [enc.heatmaps(kp[p:p + 1], CMU, (128, 128), 4, sigma=5)[0] for p in range(2)]
    np.testing.assert_array_equal(heat[0], np.maximum(*one))
    np.testing.assert_allclose(heat[-1], 1 - heat[0])
    assert not heat[1:-1].any()


def test_paf_points_from_first_part_to_second():
    kp = np.zeros((1, 18, 3), np.float32)
    kp[0, :, :2] = np.random.default_rng(2).uniform(20, 230, (18, 2))
    kp[0, :, 2] = 2
    paf = enc.pafs(kp, CMU, (256, 256), 8, paf_width=8)
    for l, (a, b) in enumerate(CMU.limbs):
        direction = (kp[0, b, :2] - kp[0, a, :2]) / np.linalg.norm(kp[0, b, :2] - kp[0, a, :2])
        x, y = np.rint(enc.pixel_to_cell((kp[0, a, :2] + kp[0, b, :2]) / 2, 8)).astype(int)
        assert paf[2 * l:2 * l + 2, y, x] @ direction > 0.999, CMU.limbs[l]


def test_short_limb_still_reaches_a_cell():
    kp = np.zeros((1, 18, 3), np.float32)
    kp[0, 0] = (101.2, 60.3, 2)   # nose
    kp[0, 14] = (102.9, 59.1, 2)  # right eye, 2 px away: far less than a cell at stride 8
    paf = enc.pafs(kp, CMU, (128, 160), 8, paf_width=8)
    limb = CMU.limbs.index((0, 14))
    assert np.abs(paf[2 * limb]).max() > 0.5
    assert np.count_nonzero(paf) == np.count_nonzero(paf[2 * limb:2 * limb + 2])


def test_overlapping_limbs_average():
    kp = np.zeros((2, 18, 3), np.float32)
    neck, nose = 1, 0
    kp[0, neck], kp[0, nose] = (40.3, 60.2, 2), (120.1, 60.7, 2)    # pointing right
    kp[1, neck], kp[1, nose] = (80.4, 20.9, 2), (80.8, 100.2, 2)    # pointing down, crossing it
    paf = enc.pafs(kp, CMU, (128, 160), 4, paf_width=4)
    limb = CMU.limbs.index((neck, nose))
    x, y = np.rint(enc.pixel_to_cell(np.array([80.5, 60.5]), 4)).astype(int)
    np.testing.assert_allclose(paf[2 * limb:2 * limb + 2, y, x], [0.5, 0.5], atol=0.02)


def test_unlabelled_and_empty():
    kp = np.zeros((1, 18, 3), np.float32)
    kp[0, :, :2] = 50
    heat, paf = enc.encode(kp, CMU, (64, 64), 8, 7, 8)
    assert not heat[:-1].any() and (heat[-1] == 1).all() and not paf.any()
    heat, paf = enc.encode(np.zeros((0, 18, 3)), CMU, (64, 80), 8, 7, 8)
    assert heat.shape == (19, 8, 10) and paf.shape == (38, 8, 10) and not paf.any()


def test_loss_mask():
    ignore = np.zeros((32, 48), np.uint8)
    ignore[0:8, 0:8] = 1       # one whole cell
    ignore[8:12, 16:24] = 1    # half a cell
    mask = enc.loss_mask(ignore, 8)
    assert mask.shape == (1, 4, 6) and mask.dtype == np.float32
    assert mask[0, 0, 0] == 0 and mask[0, 1, 2] == 0.5
    assert mask.sum() == 4 * 6 - 1.5
    assert (enc.loss_mask(np.zeros((35, 50), bool), 8) == 1).all()
    assert enc.loss_mask(np.ones((5, 50), bool), 8).shape == (1, 0, 6)


@pytest.mark.parametrize('stride', [1, 3, 4, 8])
def test_loss_mask_is_one_minus_the_ignored_fraction_of_each_cell(stride):
    rng = np.random.default_rng(stride)
    ignore = (rng.random((5 * stride + stride // 2, 8 * stride - 1)) < 0.4).astype(np.uint8) * 255
    cells = ignore[:5 * stride, :7 * stride].reshape(5, stride, 7, stride) != 0  # 5 x 7 whole cells
    expected = 1 - cells.mean(axis=(1, 3))
    np.testing.assert_allclose(enc.loss_mask(ignore, stride)[0], expected, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(enc.loss_mask(ignore > 0, stride), enc.loss_mask(ignore, stride))


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r'keypoints must be \(people, 18, 3\).*cmu18.*\(2, 17, 3\)'):
        enc.encode(np.zeros((2, 17, 3)), CMU, (64, 64), 8, 7, 8)
    with pytest.raises(ValueError, match='sigma must be positive'):
        enc.heatmaps(np.zeros((1, 18, 3)), CMU, (64, 64), 8, 0)
    with pytest.raises(ValueError, match='stride'):
        enc.pafs(np.zeros((1, 18, 3)), CMU, (64, 64), 0, 8)
    with pytest.raises(ValueError, match='ignore mask'):
        enc.loss_mask(np.zeros((2, 3, 4)), 8)


def test_params_from_config():
    from utils import config as configlib
    config = configlib.load(mods=['encode/sigma=5'])
    assert enc.params(config) == {'sigma': 5.0, 'paf_width': 8.0}
