"""Detect people in a camera stream, a video, an image, a folder of images or a glob of images; draw
their skeletons, ids and the frame rate; show them in a window, write them to --output (a video for
video and camera input, image files for image input) and their keypoints to --json.

The network is --onnx FILE (ONNX Runtime), --checkpoint FILE, or the newest checkpoint of the experiment
folder; its layout and input normalisation come with it. Person ids persist across video frames.

--json holds {"layout", "keypoint_names", "source", "frames": [{"frame", "image", "people": [{"id",
"score", "keypoints"}]}]} with keypoints in the layout's own part order (its names listed once, in
"keypoint_names") as [x, y, score] per part in image pixels (a missing point is 0, 0, 0) and the decoder's
person score (pose/decode.py).
"""

import contextlib
import json
import os
import time

import cv2
from tqdm import tqdm

from model import runner
from pose import predict as predictor
from pose.draw import draw_people
from pose.track import Tracker
from utils import cli, video
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
    p.add_argument('--height', type=int, help='network input height (default: [eval] height)')
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


def timed(run, clock):
    """`run` adding its seconds to clock['network']."""
    def wrapper(batch):
        start = time.perf_counter()
        try:
            return run(batch)
        finally:
            clock['network'] += time.perf_counter() - start
    return wrapper


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
    """Seconds spent in the network and in whole frames (without reading and writing them), and frames."""
    return {'network': 0.0, 'total': 0.0, 'frames': 0}


def process(network, source, config, clock, show=False):
    """Run the network over every frame of `source` (utils.video.open_source), adding timings to `clock`;
    yields (frame index, name, people, ids, annotated frame). Stops early when the window is closed."""
    run, skeleton, stride = network['run'], network['skeleton'], network['stride']
    options = predictor.options(config)
    threshold = config.getfloat('detect', 'draw_threshold')
    tracker = Tracker(config.getint('detect', 'track_patience'), config.getfloat('detect', 'track_distance'))
    timed_run, fps = timed(run, clock), 0.0
    for index, (name, frame) in enumerate(source['frames']):
        start = time.perf_counter()
        people = predictor.predict(timed_run, frame, skeleton, stride, **options)
        keypoints = [p['keypoints'] for p in people]
        ids = tracker.update(keypoints) if source['kind'] != 'images' else list(range(len(people)))
        canvas = annotate(frame, people, ids, skeleton, threshold, fps)
        spent = time.perf_counter() - start
        clock['total'] += spent
        clock['frames'] += 1
        fps = 1 / spent if not fps else 0.9 * fps + 0.1 / spent
        yield index, name, people, ids, canvas
        if show and not video.show('detect.py (q to quit)', canvas):
            break


def report(clock):
    """One line: frames, milliseconds per frame in the network and around it."""
    frames = max(clock['frames'], 1)
    network, total = clock['network'] / frames * 1000, clock['total'] / frames * 1000
    overhead = total - network
    return (f'{clock["frames"]} frames: {total:.1f} ms per frame, network {network:.1f} ms, resize + decode '
            f'+ tracking + drawing {overhead:.1f} ms ({100 * overhead / max(total, 1e-9):.1f}% of a frame)')


def detect(network, source, config, output=None, json_path=None, show=False, progress=True, clock=None):
    """Process `source` (showing it when `show`), writing `output` and `json_path` when given, also when
    interrupted; returns the --json frames list. network: model.runner.load's dict."""
    frames, clock = [], new_clock() if clock is None else clock
    bar = tqdm(total=source['count'], unit='frame', disable=not progress)
    with contextlib.ExitStack() as stack:
        write_video = write_image = None
        if output and source['kind'] == 'images':
            write_image = image_writer(output, source['count'])
        elif output:
            write_video = stack.enter_context(video.video_writer(output, source['fps']))
        try:
            for index, name, people, ids, canvas in process(network, source, config, clock, show):
                if write_video:
                    write_video(canvas)
                if write_image:
                    write_image(name, canvas)
                frames.append(frame_record(index, name, people, ids, network['skeleton']))
                bar.update()
        finally:
            bar.close()
            if json_path:
                write_json(json_path, frames, network['skeleton'], source['name'])
    return frames


@cli.main
def main():
    args = arguments().parse_args()
    config = cli.load_config(args)
    if args.height is not None:
        if args.height < 1:
            raise cli.UserError(f'--height {args.height}: must be a positive number of pixels')
        config.set('eval', 'height', str(args.height))
    source = video.open_source(args.input)
    network = runner.load(config, args.checkpoint, args.onnx, cli.model_dir(args, config),
                          config.get('eval', 'device'), config.getint('eval', 'threads'))
    show = not args.no_show and video.can_show()
    output = args.output or (None if show else default_output(source))
    if not show and not args.no_show:
        reason = 'there is no display' if video.gui_build() else \
            'opencv-python-headless has no GUI (the README says how to install opencv-python instead)'
        print(f'no window: {reason}; writing {output}')
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
