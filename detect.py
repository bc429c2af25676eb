"""Detect people in a camera stream, a video, an image, a folder of images or a glob of images; draw
their skeletons, ids and the frame rate; show them in a window, write them to --output (a video for
video and camera input, image files for image input) and their keypoints to --json.

The network is --onnx FILE, --checkpoint FILE, or the newest checkpoint of the experiment folder; its
layout and input normalisation come with it. It runs on the fastest backend the machine offers, in bf16
where the CPU has it (model/backends.py, [detect] precision; --backend and --precision force one) at
[detect] height, without flip averaging unless [detect] flip asks for it. Person ids persist across video
frames.

Frames flow through a pipeline of threads (utils/pipeline.py): reading and resizing the next frame, the
network, and decoding, tracking, drawing and writing the one before overlap, so a frame costs the slowest
of these stages rather than their sum; the drawn frame rate is the measured rate of frames out. A camera
is read by its own thread that keeps only the newest frame. The output and --json hold every frame that
came out, in order, also when the input fails mid-stream or Ctrl-C stops the run.

--json holds {"layout", "keypoint_names", "source", "frames": [{"frame", "image", "people": [{"id",
"score", "keypoints"}]}]} with keypoints in the layout's own part order (its names listed once, in
"keypoint_names") as [x, y, score] per part in image pixels (a missing point is 0, 0, 0) and the decoder's
person score (pose/decode.py).
"""

import contextlib
import json
import os
import signal
import threading
import time

import cv2
from tqdm import tqdm

from model import backends, runner
from pose import predict as predictor
from pose.draw import draw_people
from pose.track import Tracker
from utils import cli, pipeline, video
from utils.io import atomic_write_text


def arguments():
    p = cli.parser(__doc__)
    p.add_argument('-i', '--input', required=True,
                   help='camera index (0), video file, image, folder of images or quoted glob ("imgs/*.jpg")')
    source = p.add_mutually_exclusive_group()
    source.add_argument('--checkpoint', help='checkpoint file (default: newest in the experiment folder)')
    source.add_argument('--onnx', help='ONNX file written by export_onnx.py (runs on ONNX Runtime)')
    p.add_argument('--output', help='annotated output: a .mp4/.avi video for video and camera input, a '
                   'folder (or, for one image, an image file) for image input; default '
                   'outputs/detect/<input name> when no window is shown')
    p.add_argument('--json', help='write every frame\'s people to this JSON file')
    p.add_argument('--no-show', action='store_true', help='never open a window')
    p.add_argument('--height', type=int, help='network input height (default: [detect] height)')
    p.add_argument('--backend', choices=('auto',) + backends.BACKENDS,
                   help='runtime of the network (default: [eval] backend)')
    p.add_argument('--precision', choices=('auto',) + backends.PRECISIONS,
                   help='arithmetic of the network (default: [detect] precision)')
    return p


def default_output(source):
    name = source['name'] + ('' if source['kind'] == 'images' else '.mp4')
    return os.path.join('outputs', 'detect', name)


def image_writer(output, count):
    """write(name, image) for image input: into the folder `output`, or to the image file `output` when
    there is one input image."""
    single = count == 1 and video.is_image(output)
    used = set()

    def write(name, image):
        if single:
            return video.write_image(output, image)
        if name in used:
            stem, extension = os.path.splitext(name)
            name = f'{stem}_{len(used)}{extension}'
        used.add(name)
        video.write_image(os.path.join(output, name), image)
    return write


def timed(clock, key, function, *args, **kwargs):
    """function(*args, **kwargs), adding its seconds to clock[key]."""
    start = time.perf_counter()
    try:
        return function(*args, **kwargs)
    finally:
        clock[key] += time.perf_counter() - start


def annotate(frame, people, ids, skeleton, threshold, fps):
    """The frame with skeletons, ids and the frame rate (when known, fps > 0) drawn on it."""
    keypoints = [person['keypoints'] for person in people]
    canvas = draw_people(frame, keypoints, skeleton, ids=ids, threshold=threshold) if people else frame.copy()
    if fps <= 0:
        return canvas
    text = f'{fps:.1f} FPS'
    cv2.putText(canvas, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 4, cv2.LINE_AA)
    cv2.putText(canvas, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas


def frame_record(index, name, people, ids, skeleton):
    """One frame of the --json output."""
    return {'frame': index, 'image': name, 'people': [
        {'id': int(i), 'score': round(float(p['score']), 5),
         'keypoints': [round(float(v), 2) for x, y, score in p['keypoints']
                       for v in ((x, y, score) if score > 0 else (0, 0, 0))]}
        for p, i in zip(people, ids)]}


def write_json(path, frames, skeleton, source):
    document = {'layout': skeleton.name, 'keypoint_names': list(skeleton.parts), 'source': source,
                'frames': frames}
    atomic_write_text(path, json.dumps(document))


def new_clock():
    """Seconds spent per stage (reading + resizing, network, decoding + tracking + drawing + writing), frames
    out, and the times the first and the last came out."""
    return {'read': 0.0, 'network': 0.0, 'decode': 0.0, 'frames': 0, 'first': None, 'last': None}


def options(config):
    """predict's keyword arguments for detection: [eval]'s, with [detect] height (0: [eval] height) and
    [detect] flip."""
    found = predictor.options(config)
    found['height'] = config.getint('detect', 'height') or found['height']
    found['flip'] = config.getboolean('detect', 'flip')
    return found


def numbered(frames, clock):
    """(index, (name, frame)) of `frames`, which are closed when this is; adds the reading time to
    clock['read']."""
    with contextlib.closing(frames):
        index, start = 0, time.perf_counter()
        for item in frames:
            clock['read'] += time.perf_counter() - start
            yield index, item
            index, start = index + 1, time.perf_counter()


def process(network, source, config, clock, show=False):
    """Run the network over every frame of `source` (utils.video.open_source), adding timings to `clock`;
    yields (frame index, name, people, ids, annotated frame) in order. Reading + resizing and the network
    run in threads of their own (utils.pipeline); the caller's work on a frame (writing it) counts in
    its stage. Stops early when the window is closed."""
    run, skeleton, stride = network['run'], network['skeleton'], network['stride']
    settings = options(config)
    decode_params = settings.pop('decode_params')
    threshold = config.getfloat('detect', 'draw_threshold')
    tracker = Tracker(config.getint('detect', 'track_patience'), config.getfloat('detect', 'track_distance'))
    frames = video.newest(source['frames']) if source['kind'] == 'camera' else source['frames']

    def read(item):
        index, (name, frame) = item
        return index, name, frame, predictor.inputs(frame, stride, **settings)

    def infer(item):
        index, name, frame, prepared = item
        return index, name, frame, prepared, predictor.outputs(run, prepared, stride)

    steps = [lambda item: timed(clock, 'read', read, item), lambda item: timed(clock, 'network', infer, item)]
    fps = 0.0
    with contextlib.closing(pipeline.pipelined(numbered(frames, clock), steps)) as stream:
        for index, name, frame, prepared, maps in stream:
            start = time.perf_counter()
            heatmaps, pafs, geometry = predictor.combine(prepared, maps, skeleton, stride)
            people = predictor.people(heatmaps, pafs, geometry, skeleton, decode_params)
            ids = tracker.update([p['keypoints'] for p in people]) if source['kind'] != 'images' else \
                list(range(len(people)))
            canvas = annotate(frame, people, ids, skeleton, threshold, fps)
            yield index, name, people, ids, canvas
            now = time.perf_counter()
            clock['decode'] += now - start
            if clock['last'] is not None:
                interval = max(now - clock['last'], 1e-9)
                fps = 1 / interval if not fps else 0.9 * fps + 0.1 / interval
            clock['first'] = now if clock['first'] is None else clock['first']
            clock['last'], clock['frames'] = now, clock['frames'] + 1
            if show and not video.show('detect.py (q to quit)', canvas):
                break


def report(clock):
    """One line: frames, the rate they came out at, and each stage's milliseconds per frame."""
    frames = clock['frames']
    rate = (frames - 1) / (clock['last'] - clock['first']) if frames > 1 else 0.0
    stages = ', '.join(f'{label} {clock[key] / max(frames, 1) * 1000:.1f} ms' for key, label in (
        ('read', 'reading + resizing'), ('network', 'network'),
        ('decode', 'decode + tracking + drawing + writing')))
    count = f'{frames} frames at {rate:.1f} FPS' if frames > 1 else f'{frames} frame'
    return f'{count}; per frame, in overlapping stages: {stages}'


@contextlib.contextmanager
def whole_frame():
    """Hold a Ctrl-C (SIGINT) that arrives inside the block until its end, then raise KeyboardInterrupt
    (in the main thread; elsewhere signals never arrive), so no frame is half written."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if held:
        raise KeyboardInterrupt


def detect(network, source, config, output=None, json_path=None, show=False, progress=True, clock=None):
    """Process `source` (showing it when `show`), writing `output` and `json_path` when given, also when
    interrupted; returns the --json frames list. network: model.runner.load's dict. When the input fails
    mid-stream (a UserError from reading it), the outputs keep every frame before, then the error is
    raised."""
    frames, clock, failure = [], new_clock() if clock is None else clock, None
    bar = tqdm(total=source['count'], unit='frame', disable=not progress)
    with contextlib.ExitStack() as stack:
        write_video = write_image = None
        if output and source['kind'] == 'images':
            write_image = image_writer(output, source['count'])
        elif output:
            write_video = stack.enter_context(video.video_writer(output, source['fps']))
        try:
            stream = stack.enter_context(contextlib.closing(process(network, source, config, clock, show)))
            for index, name, people, ids, canvas in stream:
                with whole_frame():     # a Ctrl-C lands after the frame is in the video and the JSON
                    if write_video:
                        write_video(canvas)
                    if write_image:
                        write_image(name, canvas)
                    frames.append(frame_record(index, name, people, ids, network['skeleton']))
                bar.update()
        except cli.UserError as error:  # e.g. an unreadable image: the video so far is kept, as the JSON
            failure = error
        finally:
            bar.close()
            if json_path:
                with whole_frame():     # a second Ctrl-C waits for the JSON of every frame that came out
                    write_json(json_path, frames, network['skeleton'], source['name'])
    if failure is not None:
        raise failure
    return frames


@cli.main
def main():
    args = arguments().parse_args()
    config = cli.load_config(args)
    if args.height is not None:
        if args.height < 1:
            raise cli.UserError(f'--height {args.height}: must be a positive number of pixels')
        config.set('detect', 'height', str(args.height))
    source = video.open_source(args.input)
    network = runner.load(config, args.checkpoint, args.onnx, cli.model_dir(args, config),
                          config.get('eval', 'device'), config.getint('eval', 'threads'), args.backend,
                          args.precision or config.get('detect', 'precision'))
    show = not args.no_show and video.can_show()
    output = args.output or (None if show else default_output(source))
    if not show and not args.no_show:
        reason = 'there is no display' if video.gui_build() else \
            'opencv-python-headless has no GUI (docs/evaluation-and-detection.md: install opencv-python)'
        print(f'no window: {reason}; writing {output}')
    print(f'{network["source"]} on {network["backend"]}, input height {options(network["config"])["height"]}')
    clock = new_clock()
    try:
        detect(network, source, network['config'], output, args.json, show, clock=clock)
    except KeyboardInterrupt:
        print('stopped')
    print(report(clock))
    for label, path in (('video' if source['kind'] != 'images' else 'images', output), ('json', args.json)):
        if path:
            print(f'{label}: {path}')


if __name__ == '__main__':
    main()
