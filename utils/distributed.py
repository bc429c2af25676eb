"""Distributed training under torchrun: device choice, process-group setup from the environment
(nccl on CUDA, gloo on CPU), rank and world size, barriers and the few collectives the trainer needs.

A plain `python train.py` is a world of one: every helper then works without a process group, so the
same code path runs single-process, multi-GPU (`torchrun --nproc_per_node N`) and multi-node.
"""

import datetime
import os

import torch
import torch.distributed as dist

from utils.config import ConfigError

# Rank 0 alone evaluates inside the loop while the other ranks wait in their next collective.
TIMEOUT = datetime.timedelta(hours=2)


def launched():
    """True when started by torchrun (or any launcher that sets WORLD_SIZE > 1)."""
    return int(os.environ.get('WORLD_SIZE', '1')) > 1


def initialized():
    return dist.is_available() and dist.is_initialized()


def rank():
    return dist.get_rank() if initialized() else 0


def world_size():
    return dist.get_world_size() if initialized() else 1


def local_rank():
    return int(os.environ.get('LOCAL_RANK', '0'))


def is_main():
    """True on the process that writes files and summaries (rank 0)."""
    return rank() == 0


def select_device(name):
    """torch.device for the [train] device option: auto (CUDA when present), cpu, cuda or cuda:N.

    Under torchrun `auto` and `cuda` mean the GPU of this process's LOCAL_RANK."""
    name = name.strip().lower()
    if name == 'auto':
        name = 'cuda' if torch.cuda.is_available() else 'cpu'
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f'[train] device = {name!r}: use auto, cpu, cuda or cuda:N') from None
    if device.type not in ('cpu', 'cuda'):
        raise ConfigError(f'[train] device = {name!r}: use auto, cpu, cuda or cuda:N')
    if device.type == 'cuda':
        if not torch.cuda.is_available():
            raise ConfigError(f'[train] device = {name!r}: CUDA is not available on this machine')
        index = device.index if device.index is not None else local_rank()
        if index >= torch.cuda.device_count():
            raise ConfigError(f'[train] device = {name!r}: GPU {index} does not exist '
                              f'({torch.cuda.device_count()} visible)')
        device = torch.device('cuda', index)
    return device


def init(device_name='auto'):
    """The device of this process; under torchrun also join the process group (nccl on CUDA, gloo on CPU)."""
    device = select_device(device_name)
    if device.type == 'cuda':
        torch.cuda.set_device(device)
    if launched() and not initialized():
        backend = 'nccl' if device.type == 'cuda' else 'gloo'
        dist.init_process_group(backend, timeout=TIMEOUT,
                                device_id=device if device.type == 'cuda' else None)
    return device


def cleanup():
    if initialized():
        dist.destroy_process_group()


def barrier():
    if world_size() > 1:
        dist.barrier()


def all_reduce_sum(tensor):
    """Sum `tensor` over all processes in place (a no-op in a world of one); returns it."""
    if world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_object(obj):
    """[obj of rank 0, obj of rank 1, ...] on every process."""
    if world_size() == 1:
        return [obj]
    gathered = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj, src=0):
    """Rank `src`'s `obj` on every process (pickled: use it for small objects and trusted state only)."""
    if world_size() == 1:
        return obj
    holder = [obj if rank() == src else None]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def wrap(model, device):
    """`model` inside DistributedDataParallel when there is more than one process, else unchanged."""
    if world_size() == 1:
        return model
    ids = [device.index] if device.type == 'cuda' else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model):
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
