"""Inputs and outputs of detect.py: frames from a camera index, a video file, an image, a folder of images
or a glob (a camera is best read through `newest`, a thread that keeps only the newest frame); annotated
frames to a video file (mp4v in .mp4, MJPG in .avi) or to image files, each written atomically; and
whether this OpenCV build and session can show a window (opencv-python-headless cannot).
"""

import contextlib
import glob
import os
import re
import sys
import threading

import cv2

from utils.cli import UserError
from utils.io import atomic_write_bytes

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
VIDEO_CODECS = {'.mp4': 'mp4v', '.avi': 'MJPG'}
DEFAULT_FPS = 30.0  # written into a video when the camera does not say


def quiet_opencv():
    """Keep OpenCV's and FFmpeg's warnings off stderr, so a failure reads as one line of ours."""
    os.environ.setdefault('OPENCV_FFMPEG_LOGLEVEL', '-8')
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def is_image(path):
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def open_source(spec):
    """The input `spec` (camera index, video, image, folder or glob) as a dict: 'kind' ('camera', 'video'
    or 'images'), 'name', 'fps' (None for images), 'count' (frames, None when unknown) and 'frames', an
    iterator of (name, BGR frame). UserError for a missing input, an unreadable video or image, a
    camera that does not open."""
    quiet_opencv()
    spec = str(spec)
    if spec.isdigit():
        return _capture(int(spec), 'camera', f'camera{spec}', f'camera {spec} does not open')
    if any(c in spec for c in '*?['):
        paths = sorted(p for p in glob.glob(spec) if is_image(p) and os.path.isfile(p))
        if not paths:
            raise UserError(f'no image file matches {spec!r}')
        return _images(paths, spec)
    if os.path.isdir(spec):
        paths = sorted(os.path.join(spec, f) for f in os.listdir(spec) if is_image(f))
        if not paths:
            raise UserError(f'no image file ({" ".join(IMAGE_EXTENSIONS)}) in folder {spec}')
        return _images(paths, spec)
    if not os.path.exists(spec):
        raise UserError(f'input not found: {spec}')
    if is_image(spec):
        return _images([spec], spec)
    return _capture(spec, 'video', os.path.splitext(os.path.basename(spec))[0], f'cannot read video {spec}')


def _images(paths, spec):
    def frames():
        for path in paths:
            image = cv2.imread(path, cv2.IMREAD_COLOR)
            if image is None:
                raise UserError(f'cannot read image {path}')
            yield os.path.basename(path), image
    name = os.path.splitext(os.path.basename(os.path.normpath(spec)))[0].strip('*?[]') or 'images'
    return {'kind': 'images', 'name': name, 'fps': None, 'count': len(paths), 'frames': frames()}


def _capture(target, kind, name, message):
    """A camera or video source; its frames are all named `name`."""
    capture = cv2.VideoCapture(target)
    if kind == 'camera':
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the driver's own queue of old frames, where it has one
    ok, first = capture.read() if capture.isOpened() else (False, None)
    if not ok:
        capture.release()
        raise UserError(message)
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if kind == 'video' else 0
    fps = capture.get(cv2.CAP_PROP_FPS)

    def frames():
        try:
            frame = first
            while frame is not None:
                yield name, frame
                ok, frame = capture.read()
                frame = frame if ok else None
        finally:
            capture.release()
    return {'kind': kind, 'name': name, 'fps': fps if fps and fps > 0 else DEFAULT_FPS,
            'count': count if count > 0 else None, 'frames': frames()}


def newest(frames):
    """The items of `frames` (a live source) as a slow consumer sees them: a thread reads all the time and
    keeps only the newest item, so the consumer skips frames rather than falling ever further behind.
    An exception of `frames` is raised after the item before it; closing this generator stops the
    thread, which closes `frames`."""
    state = {'item': None, 'done': False, 'error': None}
    changed, stop = threading.Condition(), threading.Event()

    def reader():
        try:
            for item in frames:
                with changed:
                    state['item'] = item
                    changed.notify()
                if stop.is_set():
                    break
        except BaseException as error:  # noqa: BLE001 - raised in the consumer's thread
            state['error'] = error
        finally:
            with changed:
                state['done'] = True
                changed.notify()
            close = getattr(frames, 'close', None)
            if close is not None:
                close()

    thread = threading.Thread(target=reader, daemon=True, name='newest-frame')
    thread.start()
    try:
        while True:
            with changed:
                while state['item'] is None and not state['done']:
                    changed.wait(0.1)
                item, state['item'] = state['item'], None
            if item is None:
                if state['error'] is not None:
                    raise state['error']
                return
            yield item
    finally:
        stop.set()
        thread.join(5.0)


def gui_build():
    """Whether this OpenCV has a GUI backend (opencv-python has one, opencv-python-headless none)."""
    gui = re.search(r'^\s*GUI:\s*(\S+)', cv2.getBuildInformation(), re.MULTILINE)
    return not (gui and gui.group(1).upper() == 'NONE')


def can_show():
    """Whether a window can open: OpenCV has a GUI backend and (on Linux) there is a display."""
    display = os.environ.get('DISPLAY') or os.environ.get('WAYLAND_DISPLAY')
    return gui_build() and (bool(display) or not sys.platform.startswith('linux'))


def show(title, frame):
    """Show `frame` in the window `title`; False once the user pressed q or Esc or closed the window.
    UserError when no window can open (e.g. opencv-python-headless)."""
    try:
        cv2.imshow(title, frame)
        key = cv2.waitKey(1) & 0xFF
        closed = cv2.getWindowProperty(title, cv2.WND_PROP_VISIBLE) < 1
    except cv2.error as error:
        reason = str(error).strip().splitlines()[-1]
        raise UserError(f'cannot open a window ({reason}); run with --no-show') from None
    return key not in (ord('q'), 27) and not closed


@contextlib.contextmanager
def video_writer(path, fps):
    """Yield write(frame) for a video at `path` (.mp4: mp4v, .avi: MJPG), opened on the first frame and
    renamed into place when the block ends, also on Ctrl-C; removed when it fails otherwise."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in VIDEO_CODECS:
        raise UserError(f'--output {path}: a video output must end in {" or ".join(VIDEO_CODECS)}')
    folder, base = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    partial = os.path.join(folder, f'.{base}.partial{extension}')
    state = {'writer': None, 'frames': 0}

    def write(frame):
        if state['writer'] is None:
            fourcc = cv2.VideoWriter_fourcc(*VIDEO_CODECS[extension])
            state['writer'] = cv2.VideoWriter(partial, fourcc, float(fps), (frame.shape[1], frame.shape[0]))
            if not state['writer'].isOpened():
                raise UserError(f'cannot write video {path} (codec {VIDEO_CODECS[extension]})')
        state['writer'].write(frame)
        state['frames'] += 1

    done = False
    try:
        yield write
        done = True
    except KeyboardInterrupt:
        done = True
        raise
    finally:
        if state['writer'] is not None:
            state['writer'].release()
        if done and state['frames']:
            os.replace(partial, path)
        elif os.path.exists(partial):
            os.remove(partial)


def write_image(path, image):
    """Write `image` to `path` atomically, in the format of its extension."""
    ok, data = cv2.imencode(os.path.splitext(path)[1] or '.png', image)
    if not ok:
        raise UserError(f'cannot encode image {path}')
    atomic_write_bytes(path, data.tobytes())
