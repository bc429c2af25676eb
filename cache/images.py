"""Checking dataset images before they enter a cache: each is read by its content (a PNG under a .jpg
name, a grayscale or 4-channel image are fine), and what makes one unusable is said exactly: missing,
empty, truncated, not an image, or another size than its annotation file declares.
"""

import os

import cv2
import numpy as np
import simplejpeg

_JPEG_TAIL = 1024  # bytes searched for the JPEG end-of-image marker
# OpenCV flag for dataset images: COCO-format annotations describe an image's stored pixels (its width and
# height in the annotations say so), so an EXIF orientation tag is not applied, as libjpeg-turbo does not
# (detect.py, on a user's own photos, does apply it)
AS_STORED = cv2.IMREAD_IGNORE_ORIENTATION


def _jpeg_size(data):
    """(h, w) of JPEG bytes from their header, or None."""
    try:
        height, width, *_ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    return height, width


def problem(file, size):
    """None when `file` decodes to the size (h, w) annotated, else (kind, why): kind 'missing' or
    'unreadable', why a few words saying exactly what is wrong."""
    if not os.path.isfile(file):
        return 'missing', 'no such file'
    try:
        with open(file, 'rb') as f:
            data = f.read()
    except OSError as error:
        return 'unreadable', f'cannot be read ({error.strerror})'
    if not data:
        return 'unreadable', 'empty file (0 bytes)'
    buffer = np.frombuffer(data, np.uint8)
    if data[:2] == b'\xff\xd8':  # a JPEG, whatever its name says
        if b'\xff\xd9' not in data[-_JPEG_TAIL:]:
            return 'unreadable', 'truncated JPEG (no end-of-image marker)'  # libjpeg would pad it with grey
        real = _jpeg_size(data)
        # at 1/8 scale: cheap, and it still runs every entropy-coded block through the decoder
        decoded = cv2.imdecode(buffer, cv2.IMREAD_REDUCED_GRAYSCALE_8 | AS_STORED)
    else:
        decoded = cv2.imdecode(buffer, cv2.IMREAD_GRAYSCALE | AS_STORED)
        real = decoded.shape[:2] if decoded is not None else None
    if decoded is None or real is None:
        return 'unreadable', 'not a readable image (corrupt, or a format OpenCV cannot decode)'
    if tuple(real) != tuple(size):
        return 'unreadable', (f'is {real[1]}x{real[0]} pixels, but the annotation file says '
                              f'{size[1]}x{size[0]} (width x height)')
    return None
