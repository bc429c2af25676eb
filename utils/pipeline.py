"""Overlap the steps of a per-item computation across items: each step runs in its own thread, so item
i+1's first step runs while item i is in its second (OpenCV, ONNX Runtime, OpenVINO, PyTorch and most of
numpy release the GIL in their heavy work), and a stream runs at its slowest step's rate, not at the sum
of its steps. detect.py reads and resizes frame i+2 while the network runs on frame i+1 and frame i is
decoded, tracked and drawn.

`pipelined(items, steps)` yields the last step's results in the caller's thread, in the order of `items`,
each exactly once. An exception raised by `items` or by a step comes out of the generator after the
results of every item before it (a read error mid-stream ends a video after its last good frame).
Closing the generator (the caller stops, fails, or is interrupted by Ctrl-C) stops the threads, drops
the items still inside and closes `items`.
"""

import queue
import threading

_END = object()
POLL = 0.05          # seconds between looks at the stop flag while a queue is full or empty
JOIN = 10.0          # seconds to wait for a thread to finish its current item when stopping


class _Raised:
    """An exception on its way to the caller's thread."""

    def __init__(self, error):
        self.error = error


def _put(channel, item, stop):
    """Put `item` into `channel` unless stopped first; whether it went in."""
    while not stop.is_set():
        try:
            channel.put(item, timeout=POLL)
            return True
        except queue.Full:
            pass
    return False


def _get(channel, stop):
    """The next item of `channel`, or _END once stopped."""
    while not stop.is_set():
        try:
            return channel.get(timeout=POLL)
        except queue.Empty:
            pass
    return _END


def _feed(items, step, out, stop):
    """The first thread: step(item) for each of `items`, then _END (or the exception)."""
    try:
        for item in items:
            if stop.is_set() or not _put(out, step(item), stop):
                return
        _put(out, _END, stop)
    except BaseException as error:  # noqa: BLE001 - handed to the caller's thread, raised there in order
        _put(out, _Raised(error), stop)
    finally:
        close = getattr(items, 'close', None)
        if close is not None:
            close()


def _relay(step, source, out, stop):
    """A later thread: step(item) for each item of `source`; _END and exceptions pass through."""
    while True:
        item = _get(source, stop)
        if item is _END or isinstance(item, _Raised):
            _put(out, item, stop)
            return
        try:
            result = step(item)
        except BaseException as error:  # noqa: BLE001 - see _feed
            _put(out, _Raised(error), stop)
            return
        if not _put(out, result, stop):
            return


def pipelined(items, steps, depth=1):
    """Yield steps[-1](...steps[0](item)) for each of `items`, each step in its own thread, in order.
    `depth`: results waiting between two steps (1 keeps a live source's frames fresh)."""
    stop = threading.Event()
    channels = [queue.Queue(depth) for _ in steps]
    threads = [threading.Thread(target=_feed, args=(items, steps[0], channels[0], stop), daemon=True,
                                name='pipeline-1')]
    threads += [threading.Thread(target=_relay, args=(step, channels[i], channels[i + 1], stop), daemon=True,
                                 name=f'pipeline-{i + 2}') for i, step in enumerate(steps[1:])]
    for thread in threads:
        thread.start()
    try:
        while True:
            try:
                item = channels[-1].get(timeout=POLL)
            except queue.Empty:
                continue
            if item is _END:
                return
            if isinstance(item, _Raised):
                raise item.error
            yield item
    finally:
        stop.set()
        for thread in threads:
            thread.join(JOIN)
