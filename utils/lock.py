"""A lock on a model directory so that two runs never write the same experiment folder.

`fcntl.flock` on `<folder>/lock`, which holds the owner's pid for the error message. The kernel drops
the lock when its process dies, however it dies, so a killed run never leaves a stale lock behind.
"""

import contextlib
import fcntl
import os

from utils.cli import UserError

NAME = 'lock'


def acquire(folder):
    """Lock `folder` (created if needed) for this process; UserError naming the owner when it is taken.

    Returns the open lock file; keep it open for as long as the lock should hold."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, NAME)
    handle = open(path, 'a+')
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or 'unknown'
        handle.close()
        raise UserError(f'model directory {folder} is in use by another run (pid {owner}, lock file {path}); '
                        f'wait for it to finish, stop it, or pick another --name') from None
    handle.seek(0)
    handle.truncate()
    handle.write(f'{os.getpid()}\n')
    handle.flush()
    return handle


def release(handle):
    """Unlock; the file stays (removing it would let a third run lock a different inode)."""
    fcntl.flock(handle, fcntl.LOCK_UN)
    handle.close()


@contextlib.contextmanager
def hold(folder, enabled=True):
    """Hold the lock on `folder` for the `with` block (a no-op when not `enabled`)."""
    handle = acquire(folder) if enabled else None
    try:
        yield
    finally:
        if handle is not None:
            release(handle)
