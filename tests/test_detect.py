"""detect.py and its parts: input sources and their errors, video and image outputs, the person-id
tracker, whole runs on images and a generated video with a fake network that sees known people, and the
threaded pipeline's frame order and shutdown (end of video, a read error mid-stream, Ctrl-C)."""

import _thread
import json
import os
import signal
import threading
import time

import cv2
import numpy as np
import pytest
import test_eval
from test_eval import run_main
from test_predict import figure, grey_image, scene_run

import detect
from pose import skeleton as skeletons
from pose.track import Tracker, distances, greedy_match
from utils import config as configlib
from utils import video
from utils.cli import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COCO17 = skeletons.load('coco17')
PLAIN = ['input/channel_order=bgr', 'input/divisor=255', 'input/mean=0 0 0', 'input/std=1 1 1']
SHAPE = (160, 224)
trained = test_eval.trained                      # a real network trained for a few steps (fixture)
keep_torch_threads = test_eval.keep_torch_threads


def write_video(path, frames, fps=10):
    size = (frames[0].shape[1], frames[0].shape[0])
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), fps, size)
    for frame in frames:
        writer.write(frame)
    writer.release()


def test_tracker_keeps_ids_of_moving_people_and_drops_lost_ones():
    a, b = figure(COCO17, 50, 80, 100), figure(COCO17, 150, 80, 100)
    tracker = Tracker(patience=2, max_distance=0.5)
    assert tracker.update([a, b]) == [0, 1]
    step = np.array([4, 2, 0], np.float32)
    assert tracker.update([b + step, a + step]) == [1, 0]       # order of detection does not matter
    assert tracker.update([a + 2 * step]) == [0]                # b unseen for 1 frame ...
    assert tracker.update([a + 3 * step, b + 3 * step]) == [0, 1]  # ... keeps its id
    for _ in range(3):
        tracker.update([a])
    assert tracker.update([a, b]) == [0, 2]                     # b was gone for 3 > 2 frames: new id
    assert tracker.update([a + np.array([80, 0, 0], np.float32), b]) == [3, 2]  # a jumped too far
    assert tracker.update([]) == []


def test_distances_use_only_parts_found_in_both():
    a = figure(COCO17, 50, 80, 100)
    b = a.copy()
    b[:, 0] += 10
    b[:8, 2] = 0
    c = np.zeros_like(a)
    cost = distances(np.stack([a]), np.stack([b, c]))
    assert cost[0, 0] == pytest.approx(10 / np.ptp(a[:, 1]), rel=1e-4) and np.isinf(cost[0, 1])
    assert greedy_match(np.array([[0.3, 0.1], [0.2, 0.9]]), 0.5) == [(0, 1), (1, 0)]
    assert greedy_match(np.array([[0.6]]), 0.5) == []


def test_sources_and_their_errors(tmp_path):
    image = grey_image(SHAPE)
    for name in ('b.png', 'a.jpg'):
        cv2.imwrite(str(tmp_path / name), image)
    (tmp_path / 'notes.txt').write_text('not an image')
    folder = video.open_source(str(tmp_path))
    assert folder['kind'] == 'images' and folder['count'] == 2
    assert [name for name, _ in folder['frames']] == ['a.jpg', 'b.png']
    assert video.open_source(str(tmp_path / '*.png'))['count'] == 1
    single = video.open_source(str(tmp_path / 'a.jpg'))
    assert next(single['frames'])[1].shape == SHAPE + (3,)
    write_video(tmp_path / 'clip.avi', [image] * 4)
    clip = video.open_source(str(tmp_path / 'clip.avi'))
    assert clip['kind'] == 'video' and clip['fps'] == 10 and len(list(clip['frames'])) == 4
    (tmp_path / 'broken.mp4').write_bytes(b'not a video')
    for spec, message in [(tmp_path / 'missing.mp4', 'input not found'),
                          (tmp_path / 'broken.mp4', 'cannot read video'), ('97', 'camera 97 does not open'),
                          (tmp_path / '*.gif', 'no image file matches'),
                          (tmp_path / 'notes.txt', 'cannot read video')]:
        with pytest.raises(UserError, match=message):
            video.open_source(str(spec))
    (tmp_path / 'empty').mkdir()
    with pytest.raises(UserError, match='no image file'):
        video.open_source(str(tmp_path / 'empty'))


def test_window_needs_a_gui_build():
    if video.gui_build():
        pytest.skip('this OpenCV has a GUI backend; the test is for opencv-python-headless')
    assert not video.can_show()
    with pytest.raises(UserError, match='cannot open a window.*--no-show'):
        video.show('test', np.zeros((8, 8, 3), np.uint8))


@pytest.mark.parametrize('extension', ['.mp4', '.avi'])
def test_video_writer_writes_what_opencv_reads_back(tmp_path, extension):
    path = str(tmp_path / 'sub' / f'out{extension}')
    with video.video_writer(path, 12) as write:
        for i in range(5):
            write(np.full((48, 64, 3), 40 * i, np.uint8))
    source = video.open_source(path)  # OpenCV's reader
    frames = [frame for _, frame in source['frames']]
    assert len(frames) == 5 and frames[0].shape == (48, 64, 3) and abs(int(frames[4].mean()) - 160) < 8
    assert source['fps'] == 12
    assert os.listdir(tmp_path / 'sub') == [f'out{extension}']
    with pytest.raises(UserError, match='must end in'):
        with video.video_writer(str(tmp_path / 'out.mkv'), 10):
            pass


def level_frames(count, levels):
    """Frames of a 'video' in which frame i has grey level levels[i] (the fake network reads it)."""
    frames = []
    for level in levels[:count]:
        frame = grey_image(SHAPE)
        frame[frame == 150] = level
        frames.append(frame)
    return frames


def fake_network(scenes, levels):
    """model.runner.load's dict for a fake network: the grey level tells which of `scenes` (people per
    frame) it sees."""
    runs = {level: scene_run(COCO17, people, SHAPE) for level, people in zip(levels, scenes)}

    def run(batch):
        level = float(np.median(batch[0, 0][batch[0, 0] > 0])) * 255
        return runs[min(runs, key=lambda known: abs(known - level))](batch)
    return {'run': run, 'skeleton': COCO17, 'stride': 8}


def test_detect_on_video_keeps_ids_and_writes_json_and_video(tmp_path):
    count, levels = 6, [60 + 20 * i for i in range(6)]
    walkers = [[figure(COCO17, 60 + 3 * i, 80, 110), figure(COCO17, 160 - 2 * i, 85, 100)]
               for i in range(count)]
    scenes = [np.stack(people[:1 + (i > 1)]) for i, people in enumerate(walkers)]  # the second comes in later
    write_video(tmp_path / 'walk.avi', level_frames(count, levels))
    config = configlib.load(mods=PLAIN + ['model/layout=coco17', 'detect/height=160'])
    source = video.open_source(str(tmp_path / 'walk.avi'))
    output, json_path = str(tmp_path / 'out.mp4'), str(tmp_path / 'people.json')
    frames = detect.detect(fake_network(scenes, levels), source, config, output, json_path, progress=False)
    document = json.load(open(json_path))
    assert document['frames'] == frames and len(frames) == count
    assert document['layout'] == 'coco17' and document['keypoint_names'][0] == 'nose'
    ids = [[p['id'] for p in frame['people']] for frame in frames]
    assert ids[:2] == [[0], [0]] and all(sorted(i) == [0, 1] for i in ids[2:]), ids
    first = frames[3]['people'][ids[3].index(0)]
    assert len(first['keypoints']) == 51 and 0 < first['score'] <= 1
    assert np.abs(np.reshape(first['keypoints'], (17, 3))[:, :2] - scenes[3][0][:, :2]).max() < 4
    capture = cv2.VideoCapture(output)
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == count
    assert capture.read()[1].shape == SHAPE + (3,)


def test_detect_on_images_writes_drawn_images(tmp_path):
    levels = [80, 140]
    scenes = [np.stack([figure(COCO17, 70, 80, 110)]), np.stack([figure(COCO17, 120, 80, 120, 0.2)])]
    for name, frame in zip(('x.png', 'y.png'), level_frames(2, levels)):
        cv2.imwrite(str(tmp_path / name), frame)
    config = configlib.load(mods=PLAIN + ['model/layout=coco17', 'detect/height=160'])
    out = tmp_path / 'drawn'
    frames = detect.detect(fake_network(scenes, levels), video.open_source(str(tmp_path / '*.png')), config,
                           str(out), progress=False)
    assert [f['image'] for f in frames] == ['x.png', 'y.png'] and [len(f['people']) for f in frames] == [1, 1]
    assert sorted(os.listdir(out)) == ['x.png', 'y.png']
    drawn = cv2.imread(str(out / 'x.png'))
    assert drawn.shape == SHAPE + (3,) and (drawn != level_frames(1, levels)[0]).any()
    single = str(tmp_path / 'one.jpg')
    detect.detect(fake_network(scenes, levels), video.open_source(str(tmp_path / 'y.png')), config, single,
                  progress=False)
    assert cv2.imread(single).shape == SHAPE + (3,)


@pytest.mark.parametrize('args,message', [(['-i', 'missing.mp4'], 'input not found'),
                                          (['-i', 'broken.mp4'], 'cannot read video'),
                                          (['-i', '97'], 'camera 97 does not open'),
                                          (['-i', 'x.png', '--height', '0'], '--height'),
                                          (['-i', 'x.png', '-m', 'train/root=.'], 'no checkpoint')])
def test_detect_errors_are_one_line(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'broken.mp4').write_bytes(b'not a video')
    cv2.imwrite(str(tmp_path / 'x.png'), grey_image(SHAPE))
    status, _, err = run_main(detect.main, args, monkeypatch, capsys)
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and lines[0].startswith('error:') and message in lines[0], err


def check_document(path, count, names):
    document = json.load(open(path))
    assert document['layout'] == 'coco17' and len(document['keypoint_names']) == 17
    assert [f['frame'] for f in document['frames']] == list(range(count))
    assert [f['image'] for f in document['frames']] == names
    for frame in document['frames']:
        for person in frame['people']:
            assert set(person) == {'id', 'score', 'keypoints'} and isinstance(person['id'], int)
            assert len(person['keypoints']) == 51 and 0 <= person['score'] <= 1
    return document


@pytest.mark.parametrize('network', ['checkpoint', 'onnx'])
def test_detect_script_on_images_and_video(trained, tmp_path, monkeypatch, capsys, network):
    root, _ = trained
    model = ['--checkpoint', f'{root}/runs/exp/checkpoint-00000006.pt'] if network == 'checkpoint' else \
        ['--onnx', f'{root}/tiny.onnx']
    images = sorted(os.listdir(f'{root}/data/images/val'))[:2]
    folder = tmp_path / 'in'
    folder.mkdir()
    for name in images:
        os.link(f'{root}/data/images/val/{name}', folder / name)
    args = model + ['-i', folder, '--output', tmp_path / 'drawn', '--json', tmp_path / 'images.json',
                    '--no-show', '--height', '96', '-m', 'eval/threads=1']
    status, out, err = run_main(detect.main, args, monkeypatch, capsys)
    assert status == 0, err
    assert '2 frames at' in out and 'FPS' in out and 'network' in out
    check_document(tmp_path / 'images.json', 2, images)
    assert sorted(os.listdir(tmp_path / 'drawn')) == images
    for name in images:
        assert cv2.imread(str(tmp_path / 'drawn' / name)).shape == cv2.imread(str(folder / name)).shape

    frame = cv2.resize(cv2.imread(str(folder / images[0])), (128, 96))
    write_video(tmp_path / 'clip.avi', [np.roll(frame, 3 * i, axis=1) for i in range(5)])
    # [detect] precision, not eval.py's, sets the arithmetic (PyTorch computes bf16 on any CPU)
    arithmetic = ['--backend', 'torch', '-m', 'detect/precision=bf16'] if network == 'checkpoint' else []
    args = model + arithmetic + ['-i', tmp_path / 'clip.avi', '--output', tmp_path / 'out.mp4',
                                 '--json', tmp_path / 'clip.json', '--no-show', '--height', '96',
                                 '-m', 'eval/threads=1']
    status, out, err = run_main(detect.main, args, monkeypatch, capsys)
    assert status == 0, err
    assert network == 'onnx' or ' on torch bf16, input height 96' in out, out
    check_document(tmp_path / 'clip.json', 5, ['clip'] * 5)
    capture = cv2.VideoCapture(str(tmp_path / 'out.mp4'))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 5 and capture.get(cv2.CAP_PROP_FPS) == 10
    assert capture.read()[1].shape == (96, 128, 3)


# ---- the pipeline: frame order and shutdown, with no frame lost or duplicated in the JSON -------------

def numbered_stream(count, fail_after=None):
    """A video source dict of `count` (<= 30) frames whose grey levels number them, its fake network
    (frame i sees one person at x = 40 + 3 i) and the person's expected nose x per frame. With
    `fail_after`, reading frame `fail_after` raises UserError (a read error mid-stream)."""
    levels = [20 + 6 * i for i in range(count)]
    scenes = [np.stack([figure(COCO17, 40 + 3 * i, 80, 110)]) for i in range(count)]

    def frames():
        for i, frame in enumerate(level_frames(count, levels)):
            if i == fail_after:
                raise UserError(f'cannot read frame {i} of clip')
            yield 'clip', frame
    source = {'kind': 'video', 'name': 'clip', 'fps': 10.0, 'count': count, 'frames': frames()}
    return source, fake_network(scenes, levels), [scene[0][0, 0] for scene in scenes]


def check_frames(frames, json_path, output, noses):
    """The JSON holds frames 0..n-1 in order, each with its own content; the video has the same n frames."""
    document = json.load(open(json_path))
    assert document['frames'] == frames
    assert [f['frame'] for f in frames] == list(range(len(frames)))
    for frame, nose in zip(frames, noses):
        assert len(frame['people']) == 1 and abs(frame['people'][0]['keypoints'][0] - nose) < 2
    if frames:
        assert cv2.VideoCapture(output).get(cv2.CAP_PROP_FRAME_COUNT) == len(frames)
    return len(frames)


def pipeline_threads():
    """detect.py's threads still alive."""
    return [t for t in threading.enumerate() if t.name.startswith(('pipeline-', 'newest-frame'))]


def slowly(run, delay=0.003):
    def wrapper(batch):
        time.sleep(delay)
        return run(batch)
    return wrapper


def test_pipeline_keeps_order_to_the_end_of_a_video(tmp_path):
    source, network, noses = numbered_stream(14)
    network['run'] = slowly(network['run'])
    config = configlib.load(mods=PLAIN + ['model/layout=coco17', 'detect/height=160'])
    output, json_path, clock = str(tmp_path / 'out.mp4'), str(tmp_path / 'people.json'), detect.new_clock()
    frames = detect.detect(network, source, config, output, json_path, progress=False, clock=clock)
    assert check_frames(frames, json_path, output, noses) == 14 and clock['frames'] == 14
    assert clock['network'] > 14 * 0.003 and '14 frames at' in detect.report(clock)
    assert not pipeline_threads()


def test_a_read_error_mid_stream_keeps_the_frames_before_it(tmp_path):
    source, network, noses = numbered_stream(12, fail_after=7)
    config = configlib.load(mods=PLAIN + ['model/layout=coco17', 'detect/height=160'])
    output, json_path = str(tmp_path / 'out.mp4'), str(tmp_path / 'people.json')
    with pytest.raises(UserError, match='cannot read frame 7'):
        detect.detect(network, source, config, output, json_path, progress=False)
    frames = json.load(open(json_path))['frames']
    assert check_frames(frames, json_path, output, noses) == 7
    assert not pipeline_threads()


@pytest.fixture
def ctrl_c():
    """Ctrl-C raising KeyboardInterrupt as in a terminal, also where the suite was started with SIGINT ignored
    (a shell's background job), in which case Python installs no handler and interrupt_main() does nothing."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_keeps_every_frame_that_came_out(tmp_path, ctrl_c):
    """Ctrl-C arrives in the main thread while the pipeline's threads work on later frames."""
    source, network, noses = numbered_stream(30)
    run, calls = network['run'], []

    def interrupting(batch):
        calls.append(1)
        if len(calls) == 6:
            _thread.interrupt_main()            # what SIGINT does
        time.sleep(0.002)
        return run(batch)
    network['run'] = interrupting
    config = configlib.load(mods=PLAIN + ['model/layout=coco17', 'detect/height=160'])
    output, json_path = str(tmp_path / 'out.mp4'), str(tmp_path / 'people.json')
    with pytest.raises(KeyboardInterrupt):
        detect.detect(network, source, config, output, json_path, progress=False)
    frames = json.load(open(json_path))['frames']
    assert 1 <= check_frames(frames, json_path, output, noses) < 30
    assert not pipeline_threads()


def test_a_second_ctrl_c_while_the_json_is_written_waits_for_it(tmp_path, monkeypatch, ctrl_c):
    source, network, noses = numbered_stream(8)
    written = detect.write_json

    def interrupted_write(*args):
        _thread.interrupt_main()                    # pressed (again) as the file is about to be written
        time.sleep(0.01)
        sum(range(1000))                            # bytecode, where the main thread notices it
        written(*args)
    monkeypatch.setattr(detect, 'write_json', interrupted_write)
    config = configlib.load(mods=PLAIN + ['model/layout=coco17', 'detect/height=160'])
    json_path = str(tmp_path / 'people.json')
    with pytest.raises(KeyboardInterrupt):
        detect.detect(network, source, config, json_path=json_path, progress=False)
    assert len(json.load(open(json_path))['frames']) == 8


def test_detection_settings_come_from_the_detect_section():
    settings = detect.options(configlib.load(mods=['eval/flip=true', 'eval/height=320']))
    assert settings['height'] == 256 and settings['flip'] is False      # the speed defaults
    settings = detect.options(configlib.load(mods=['eval/height=320', 'detect/height=0', 'detect/flip=true']))
    assert settings['height'] == 320 and settings['flip'] is True


def test_a_camera_skips_stale_frames_and_never_repeats_one(tmp_path):
    """A live source faster than the network: frames come out in capture order, each at most once, the
    last one included, and fewer than were captured (the stale ones were dropped, not queued)."""
    source, network, noses = numbered_stream(30)
    frames_in = source['frames']

    def camera():
        for item in frames_in:
            time.sleep(0.002)
            yield item
    source.update(kind='camera', count=None, frames=camera())
    network['run'] = slowly(network['run'], 0.02)
    config = configlib.load(mods=PLAIN + ['model/layout=coco17', 'detect/height=160'])
    frames = detect.detect(network, source, config, progress=False)
    seen = [int(np.argmin(np.abs(np.array(noses) - frame['people'][0]['keypoints'][0]))) for frame in frames]
    assert seen == sorted(set(seen)) and seen[-1] == 29 and len(seen) < 30
    assert [f['frame'] for f in frames] == list(range(len(frames))) and not pipeline_threads()


def test_a_ctrl_c_inside_a_frame_waits_for_the_frame_to_be_written():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with detect.whole_frame():
            _thread.interrupt_main()            # what SIGINT does, between the video and the JSON
            time.sleep(0.01)
            done.append('video')
            done.append('json')
    assert done == ['video', 'json']
    with detect.whole_frame():                  # the usual handler is back, nothing is held over
        pass
