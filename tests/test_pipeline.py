"""utils/pipeline.py and utils/video.newest: steps overlap across items yet results come out in order, once
each; an error mid-stream comes out after every earlier result; stopping early ends every thread and
closes the source; a slow consumer of a live source gets the newest item, not a queue of old ones."""

import threading
import time

import pytest

from utils import video
from utils.pipeline import pipelined


def jittery(function, seed):
    """function with a short sleep before it that varies from call to call (threads interleave)."""
    state = {'n': seed}

    def wrapper(item):
        state['n'] = (state['n'] * 1103515245 + 12345) % 2 ** 31
        time.sleep((state['n'] % 5) / 1000)
        return function(item)
    return wrapper


def pipeline_threads():
    return [t for t in threading.enumerate() if t.name.startswith('pipeline-')]


class Source:
    """Items 0..count-1, raising `error` after `fail_after` of them; records whether it was closed."""

    def __init__(self, count, fail_after=None, error=None):
        self.count, self.fail_after, self.error, self.closed = count, fail_after, error, False
        self.thread = None

    def __iter__(self):
        self.thread = threading.current_thread()
        for i in range(self.count):
            if i == self.fail_after:
                raise self.error
            yield i

    def close(self):
        self.closed = True


def test_results_come_in_order_once_each_and_steps_overlap():
    steps = [jittery(lambda x: (x, threading.current_thread().name), 1),
             jittery(lambda item: item + (threading.current_thread().name,), 2)]
    results = list(pipelined(iter(range(40)), steps))
    assert [r[0] for r in results] == list(range(40))
    assert {r[1] for r in results} == {'pipeline-1'} and {r[2] for r in results} == {'pipeline-2'}
    start = time.perf_counter()
    slow = [lambda x: time.sleep(0.02) or x, lambda x: time.sleep(0.02) or x]
    assert list(pipelined(iter(range(10)), slow)) == list(range(10))
    assert time.perf_counter() - start < 0.36      # 10 x (20 + 20) ms one after the other; overlapped ~220


@pytest.mark.parametrize('where', ['source', 'step'])
def test_an_error_mid_stream_comes_after_the_earlier_results(where):
    source = Source(10, 6 if where == 'source' else None, OSError('frame 6 unreadable'))

    def step(x):
        if where == 'step' and x == 6:
            raise OSError('frame 6 unreadable')
        return x
    seen = []
    with pytest.raises(OSError, match='frame 6'):
        for result in pipelined(source, [jittery(step, 3), jittery(lambda x: x, 4)]):
            seen.append(result)
    assert seen == list(range(6)) and source.closed


def test_stopping_early_ends_every_thread_and_closes_the_source():
    source = Source(1000)
    stream = pipelined(source, [lambda x: x, lambda x: x])
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    stream.close()
    assert source.closed and not pipeline_threads()
    with pytest.raises(KeyboardInterrupt):     # Ctrl-C in the consumer: the same clean stop
        for result in pipelined(Source(1000), [lambda x: x]):
            if result == 4:
                raise KeyboardInterrupt
    assert not pipeline_threads()


def test_newest_skips_what_a_slow_consumer_missed():
    def camera():
        for i in range(60):
            time.sleep(0.002)
            yield i
    seen = []
    for item in video.newest(camera()):
        seen.append(item)
        time.sleep(0.02)
    assert seen == sorted(set(seen)) and seen[-1] == 59 and len(seen) < 30
    source = Source(10, 5, OSError('camera unplugged'))
    got = []
    with pytest.raises(OSError, match='unplugged'):
        for item in video.newest(iter(source)):
            got.append(item)
    assert got == sorted(set(got)) and got[-1] == 4 and source.thread is not threading.current_thread()
