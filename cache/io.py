"""Cache files: one pickle per split, a header (format version, keypoint layout, source) then the records.

A record is a dict: 'image' (absolute path), 'image_id' (COCO id), 'size' (h, w), 'keypoints' float32
(P,K,3) as (x, y, v) in the layout's part order, 'boxes' float32 (P,4) as COCO xywh, and 'ignore', a COCO
RLE dict covering crowds and people without labelled keypoints (None when there are none). The header is
pickled first, so checking whether a cache is up to date does not load its records.
"""

import os
import pickle

from utils.cli import UserError
from utils.io import atomic_path

VERSION = 1


class CacheError(UserError):
    """A cache file is missing, unreadable, or of another format version or layout."""


def path(config, split, root=None):
    """The cache file of `split`: <[dataset] cache>/<layout>_<split>.pkl, or for the dataset at `root` (one
    of [dataset] extra) <layout>_<split>@<root's folder name>.pkl."""
    layout = os.path.splitext(os.path.basename(config.get('model', 'layout')))[0]
    suffix = f'@{os.path.basename(os.path.normpath(root))}' if root else ''
    return os.path.join(config.get('dataset', 'cache'), f'{layout}_{split}{suffix}.pkl')


def extras(config):
    """The roots of [dataset] extra: more COCO-format datasets whose [dataset] train split joins training."""
    roots = config.getlist('dataset', 'extra')
    names = [os.path.basename(os.path.normpath(r)) for r in roots]
    if len(set(names)) < len(names):
        raise UserError(f'[dataset] extra = {" ".join(roots)}: two datasets share a folder name, so their '
                        f'caches would collide; rename one')
    return roots


def files(config, split):
    """The cache files of `split`: its own, and for the training split those of the [dataset] extra sets."""
    own = [path(config, split)]
    if split != config.get('dataset', 'train'):
        return own
    return own + [path(config, split, root) for root in extras(config)]


def write(file, header, records):
    """Write `header` (VERSION is added) and `records` to `file` atomically."""
    header = dict(header, version=VERSION, count=len(records))
    with atomic_path(file) as tmp, open(tmp, 'wb') as f:
        pickle.dump(header, f, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.dump(records, f, protocol=pickle.HIGHEST_PROTOCOL)


def _load(file, records):
    if not os.path.isfile(file):
        raise CacheError(f'cache file not found: {file} (build it with: python cache.py -c <your overlays>)')
    try:
        with open(file, 'rb') as f:
            header = pickle.load(f)
            body = pickle.load(f) if records else None
    except Exception as error:  # truncated or foreign files fail anywhere inside pickle
        raise CacheError(f'cannot read cache file {file}: {error}; rebuild it with cache.py --force') \
            from None
    if not isinstance(header, dict) or 'version' not in header:
        raise CacheError(f'{file} is not a cache file written by cache.py')
    return header, body


def read_header(file):
    """The header of a cache file, without its records."""
    return _load(file, records=False)[0]


def read(file, layout=None):
    """(header, records) of a cache file; CacheError when its format version or (if given) its layout
    (a name or a Skeleton) differs from this code's."""
    header, records = _load(file, records=True)
    check(header, file, layout)
    return header, records


def check(header, file, layout=None):
    """CacheError when `header` has another format version or layout than expected."""
    if header['version'] != VERSION:
        raise CacheError(f'{file} has cache format version {header["version"]}, this code reads version '
                         f'{VERSION}; rebuild it with cache.py --force')
    name = getattr(layout, 'name', layout)
    if name is not None and header.get('layout') != name:
        raise CacheError(f'{file} holds keypoints in layout {header.get("layout")!r}, not {name!r}; '
                         f'build a cache for {name!r} with cache.py -m model/layout={name}')
    parts = getattr(layout, 'parts', None)
    if parts is not None and tuple(header.get('parts', ())) != tuple(parts):
        raise CacheError(f'{file} was built for another version of layout {name!r} (its parts differ); '
                         f'rebuild it with cache.py --force')
