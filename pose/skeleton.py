"""Keypoint layouts: part names in channel order, limbs in PAF channel order, flip pairs, how each part
derives from the dataset's own keypoints, and the OKS sigma of each dataset keypoint for evaluation.

A layout is a data file `config/skeleton/<name>.ini` (see cmu18.ini and body25.ini for the format); adding
a file adds a layout. A part is one keypoint the dataset's annotation file declares
(categories[...]["keypoints"], spelled as the dataset spells it) or the mean of several, visible only when
all of them are; keypoints of extra annotation fields (COCO-WholeBody's `foot_kpts`) join that vocabulary
through the layout's [fields] section. Every other module reads skeleton facts from here and nowhere else.
"""

import configparser
import dataclasses
import functools
import os
import re
import shlex

import numpy as np

FOLDER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'config', 'skeleton')

# COCO's keypoint names in COCO's order (person_keypoints_*.json "keypoints" of category 1).
COCO_PARTS = (
    'nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear', 'left_shoulder', 'right_shoulder',
    'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist', 'left_hip', 'right_hip', 'left_knee',
    'right_knee', 'left_ankle', 'right_ankle')
# COCO's official OKS sigmas of those keypoints (pycocotools' COCOeval defaults), the default for COCO's names
COCO_SIGMAS = dict(zip(COCO_PARTS, (.026, .025, .025, .035, .035, .079, .079, .072, .072, .062, .062, .107,
                                    .107, .087, .087, .089, .089)))
# The "skeleton" of COCO's person category as COCO's own json files give it (1-based keypoint pairs):
# metadata for COCO tools only; the framework's limbs are the layouts' (config/skeleton/*.ini).
COCO_SKELETON = ((16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8),
                 (7, 9), (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7))
MAIN_FIELD = 'keypoints'  # the annotation field whose names categories[...]["keypoints"] declares


@dataclasses.dataclass(frozen=True)
class Skeleton:
    name: str
    parts: tuple          # part names, heatmap channel order (background channel follows)
    limbs: tuple          # (from, to) part indices, PAF channel order: x at 2l, y at 2l+1
    flip: tuple           # flip[k]: the part that k becomes under a horizontal flip
    sources: tuple        # sources[k]: the dataset keypoint names whose mean is part k
    fields: tuple = ()    # ((annotation field, its keypoint names in order), ...) beside MAIN_FIELD
    sigmas: tuple = ()    # ((dataset keypoint name, OKS sigma), ...) of the layout's [sigmas]

    @property
    def limb_flip(self):
        """For each limb l, (m, reversed): under a horizontal flip limb l's PAF comes from limb m,
        with both components negated when m runs the other way (and x negated by the mirror)."""
        index = {limb: m for m, limb in enumerate(self.limbs)}
        result = []
        for a, b in self.limbs:
            fa, fb = self.flip[a], self.flip[b]
            if (fa, fb) in index:
                result.append((index[(fa, fb)], False))
            else:
                result.append((index[(fb, fa)], True))
        return tuple(result)

    def keypoint_names(self, declared):
        """The dataset vocabulary: the names `declared` for MAIN_FIELD, then those of the layout's fields."""
        names = tuple(declared) + tuple(n for _, field_names in self.fields for n in field_names)
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f'layout {self.name!r}: keypoint names {twice} occur twice among the dataset\'s '
                             f'keypoints and the layout\'s [fields]')
        return names

    def source_index(self, names):
        """For each part, the indices in `names` (a dataset vocabulary) of its sources; ValueError naming the
        first keypoint the vocabulary lacks and listing the vocabulary."""
        return _source_index(self, tuple(names))

    def dataset_index(self, names):
        """index[j]: the part that is keypoint names[j] itself, or -1 (derived parts are not)."""
        index = [-1] * len(names)
        for k, source in enumerate(self.source_index(names)):
            if len(source) == 1:
                index[source[0]] = k
        return tuple(index)

    def from_dataset(self, keypoints, names):
        """Dataset keypoints (P,N,3) as (x, y, v) in the order of `names` -> this layout's (P,K,3); a derived
        part is the mean of its sources, visible (v = the smallest of theirs) only when every source is."""
        keypoints = np.asarray(keypoints, np.float32).reshape(-1, len(names), 3)
        out = np.zeros((len(keypoints), len(self.parts), 3), np.float32)
        for k, source in enumerate(self.source_index(names)):
            points = keypoints[:, list(source)]
            v = points[:, :, 2].min(axis=1)
            labelled = v > 0
            out[labelled, k, :2] = points[labelled, :, :2].mean(axis=1)
            out[labelled, k, 2] = v[labelled]
        return out

    def to_dataset(self, keypoints, names):
        """This layout's (P,K,3) -> the dataset's (P,N,3) in the order of `names`; keypoints no part is
        itself are zero."""
        keypoints = np.asarray(keypoints, np.float32).reshape(-1, len(self.parts), 3)
        out = np.zeros((len(keypoints), len(names), 3), np.float32)
        for j, k in enumerate(self.dataset_index(names)):
            if k >= 0:
                out[:, j] = keypoints[:, k]
        return out

    def from_coco(self, keypoints):
        """from_dataset with COCO's 17 keypoints."""
        return self.from_dataset(keypoints, COCO_PARTS)

    def to_coco(self, keypoints):
        """to_dataset with COCO's 17 keypoints."""
        return self.to_dataset(keypoints, COCO_PARTS)

    def sigma_values(self, names):
        """OKS sigmas (N,) of `names`: the layout's [sigmas], else COCO's official sigma of a COCO name;
        ValueError naming a keypoint that has neither."""
        own = dict(self.sigmas)
        missing = [n for n in names if n not in own and n not in COCO_SIGMAS]
        if missing:
            raise ValueError(f'layout {self.name!r} gives no OKS sigma for keypoint(s) {missing}: add '
                             f'them to its [sigmas] section as "name = value"')
        return np.array([own.get(n, COCO_SIGMAS.get(n)) for n in names], np.float64)

    def flip_keypoints(self, keypoints, width):
        """Mirror keypoints (P,K,3) horizontally in an image `width` pixels wide and swap left/right.

        Pixel centres are at integer coordinates, so x maps to width - 1 - x."""
        out = np.asarray(keypoints, np.float32)[:, list(self.flip)].copy()
        out[..., 0] = width - 1 - out[..., 0]
        return out


@functools.lru_cache(maxsize=64)
def _source_index(skeleton, names):
    position = {n: j for j, n in enumerate(names)}
    index = []
    for part, source in zip(skeleton.parts, skeleton.sources):
        unknown = [n for n in source if n not in position]
        if unknown:
            raise ValueError(f'layout {skeleton.name!r}: part {part!r} derives from keypoint {unknown[0]!r}, '
                             f'which the dataset lacks; its keypoints: {", ".join(names)}')
        index.append(tuple(position[n] for n in source))
    return tuple(index)


def available():
    """Names of the shipped layouts."""
    return sorted(os.path.splitext(f)[0] for f in os.listdir(FOLDER) if f.endswith('.ini'))


class LayoutError(ValueError):
    """A layout file that cannot be read: the message names the file and the line."""


class _Reader:
    """A layout file's text, for messages that name the line of an entry."""

    def __init__(self, path, text):
        self.path, self.lines = path, text.splitlines()

    def line(self, section, needle):
        """The 1-based line of the first line of `section` that starts with `needle` (0 if none)."""
        inside = False
        for number, line in enumerate(self.lines, 1):
            stripped = line.strip()
            if stripped.startswith('['):
                inside = stripped.strip('[]').strip() == section
            elif inside and any(form.startswith(needle) for form in _forms(stripped)):
                return number
        return 0

    def error(self, section, needle, message):
        number = self.line(section, needle)
        where = f', line {number}' if number else ''
        return LayoutError(f'layout file {self.path}{where}: {message}')


def _forms(line):
    """A layout line as written, its value after '=', and both with quotes resolved (to find an entry)."""
    forms = [line, line.split('=', 1)[-1].strip()]
    for form in forms[:2]:
        try:
            forms.append(' '.join(_split(form)))
        except ValueError:
            pass
    return forms


def _split(text):
    """Names separated by spaces; a name with spaces is quoted ("left shoulder")."""
    return shlex.split(text, comments=False, posix=True)


def _parse(path):
    """A ConfigParser of the layout file, its text, and a one-line LayoutError for what cannot be parsed."""
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as error:
        raise LayoutError(f'layout file {path}: cannot read it: {error}') from None
    parser = configparser.ConfigParser(interpolation=None, delimiters=('=',))
    parser.optionxform = str  # keypoint names keep their capitals
    try:
        parser.read_string(text, source=path)
    except configparser.MissingSectionHeaderError as error:
        raise LayoutError(f'layout file {path}, line {error.lineno}: {error.line.strip()!r} comes before any '
                          f'[section]') from None
    except configparser.ParsingError as error:
        lineno, line = error.errors[0]
        raise LayoutError(f'layout file {path}, line {lineno}: cannot read {line.strip()!r} (expected '
                          f'"name = value" or an indented continuation line)') from None
    except (configparser.DuplicateOptionError, configparser.DuplicateSectionError) as error:
        what = f'[{error.section}] {error.option!r}' if hasattr(error, 'option') else f'[{error.section}]'
        raise LayoutError(f'layout file {path}, line {error.lineno}: {what} occurs twice') from None
    return parser, _Reader(path, text)


def _pairs(parser, reader, section, option, parts, what):
    """The part-index pairs listed one a line under [section] option."""
    if not parser.has_option(section, option):
        return []
    pairs = []
    for line in parser[section][option].strip().splitlines():
        if not line.strip():
            continue
        try:
            pair = _split(line)
        except ValueError as error:
            raise reader.error(section, line.strip(), f'{what} {line.strip()!r}: {error}') from None
        if len(pair) != 2 or any(p not in parts for p in pair) or pair[0] == pair[1]:
            raise reader.error(section, line.strip(), f'{what} {line.strip()!r} must name two different '
                                                      f'parts of [parts]')
        pairs.append((parts.index(pair[0]), parts.index(pair[1])))
    return pairs


def _sigmas(parser, reader):
    sigmas = []
    for name, value in (parser['sigmas'].items() if parser.has_section('sigmas') else ()):
        try:
            sigma = float(value)
        except ValueError:
            sigma = float('nan')
        if not 0 < sigma < 10:
            raise reader.error('sigmas', name, f'[sigmas] {name} = {value!r} is not a positive number')
        sigmas.append((name, sigma))
    return tuple(sigmas)


def _fields(parser, reader):
    fields = []
    for field, value in (parser['fields'].items() if parser.has_section('fields') else ()):
        if field == MAIN_FIELD or not re.fullmatch(r'\w+', field):
            raise reader.error('fields', field, f'[fields] {field!r}: an extra annotation field other than '
                                                f'{MAIN_FIELD!r}, a plain identifier')
        try:
            names = tuple(_split(value))
        except ValueError as error:
            raise reader.error('fields', field, f'[fields] {field}: {error}') from None
        if not names:
            raise reader.error('fields', field, f'[fields] {field} lists no keypoint names')
        fields.append((field, names))
    return tuple(fields)


@functools.cache
def load(name):
    """The layout `name` (a file under config/skeleton/) or at a path to such a file. LayoutError (a
    ValueError) with a one-line message naming the file and line of what is wrong."""
    path = name if os.path.sep in name or name.endswith('.ini') else os.path.join(FOLDER, name + '.ini')
    if not os.path.isfile(path):
        raise ValueError(f'unknown keypoint layout {name!r}; available: {", ".join(available())} '
                         f'(or a path to a layout .ini file)')
    parser, reader = _parse(path)
    for section in ('parts', 'limbs'):
        if not parser.has_section(section):
            raise LayoutError(f'layout file {path}: no [{section}] section')
    parts = list(parser['parts'].keys())
    if not parts:
        raise LayoutError(f'layout file {path}: [parts] lists no part')
    sources = []
    for part in parts:
        try:
            names = tuple(_split(parser['parts'][part]))
        except ValueError as error:
            raise reader.error('parts', part, f'part {part!r}: {error}') from None
        if not names:
            raise reader.error('parts', part, f'part {part!r} names no keypoint')
        sources.append(names)
    limbs = _pairs(parser, reader, 'limbs', 'limbs', parts, 'limb')
    if not limbs:
        raise LayoutError(f'layout file {path}: [limbs] limbs lists no limb')
    flip = list(range(len(parts)))
    for a, b in _pairs(parser, reader, 'flip', 'pairs', parts, 'flip pair'):
        if flip[a] != a or flip[b] != b:
            twice = parts[a] if flip[a] != a else parts[b]
            raise reader.error('flip', f'{parts[a]} {parts[b]}', f'flip pairs: part {twice!r} is in two '
                                                                 f'pairs')
        flip[a], flip[b] = b, a
    for a, b in limbs:
        if (flip[a], flip[b]) not in limbs and (flip[b], flip[a]) not in limbs:
            raise reader.error('limbs', f'{parts[a]} {parts[b]}',
                               f'limb {parts[a]!r} -> {parts[b]!r}: its mirror image {parts[flip[a]]!r} -> '
                               f'{parts[flip[b]]!r} is not a limb (a flip would lose it)')
    return Skeleton(os.path.splitext(os.path.basename(path))[0], tuple(parts), tuple(limbs), tuple(flip),
                    tuple(sources), _fields(parser, reader), _sigmas(parser, reader))
