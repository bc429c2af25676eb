"""Inference backends behind model.runner's `run(batch) -> (heatmaps, pafs)`: PyTorch, ONNX Runtime and
OpenVINO (Intel's CPU runtime, the one of Lightweight OpenPose's real-time CPU figures), in f32 or bf16.

`choose` picks the backend and precision from what is installed and what the CPU offers: on a CPU,
OpenVINO when installed (else ONNX Runtime, else PyTorch), in bf16 where the CPU computes it natively
(AVX512-BF16 or AMX; OpenVINO reports it as the 'BF16' capability), else f32; on a GPU, PyTorch (ONNX
Runtime for an ONNX file). Either can be forced ([eval] backend and precision, or --backend / --precision).

A checkpoint that runs on ONNX Runtime or OpenVINO is exported to ONNX once, cached beside it as
`<checkpoint>.onnx` (written atomically, checked against PyTorch by model.onnx_export.export); the file
carries the checkpoint's SHA-256 and is rebuilt when the checkpoint changes.

TOLERANCE is the largest absolute difference from f32 PyTorch on the maps that a precision is held to
(tests/test_backends.py); bf16 keeps 8 bits of mantissa, so a map value near 1 moves by up to ~0.1.
"""

import hashlib
import importlib.util
import os

import numpy as np

from model import onnx_export
from utils import checkpoint
from utils.cli import UserError

BACKENDS = ('torch', 'onnxruntime', 'openvino')
PRECISIONS = ('f32', 'bf16')
TOLERANCE = {'f32': 1e-4, 'bf16': 0.25}
SOURCE_KEY = 'source_sha256'                 # ONNX metadata: the checkpoint a cached export came from


def installed(backend):
    """Whether the backend's Python package is importable."""
    return backend == 'torch' or importlib.util.find_spec(backend) is not None


def cpu_has_bf16():
    """Whether the CPU computes bf16 natively (OpenVINO's 'BF16' capability; else the AVX512-BF16 / AMX-BF16
    flags of /proc/cpuinfo)."""
    if installed('openvino'):
        import openvino
        return 'BF16' in openvino.Core().get_property('CPU', 'OPTIMIZATION_CAPABILITIES')
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            flags = f.read()
    except OSError:
        return False
    return 'avx512_bf16' in flags or 'amx_bf16' in flags


def choose(backend='auto', precision='auto', gpu=False, onnx=False):
    """(backend, precision) to run with: 'auto' resolved as the module docstring says (an ONNX file on a
    GPU: ONNX Runtime, with its CUDA provider where installed); UserError for an unknown name, a backend
    that is not installed, or a precision the backend does not run."""
    if backend not in BACKENDS + ('auto',):
        raise UserError(f'backend {backend!r}: choose one of auto, {", ".join(BACKENDS)}')
    if precision not in PRECISIONS + ('auto',):
        raise UserError(f'precision {precision!r}: choose one of auto, {", ".join(PRECISIONS)}')
    if backend == 'auto':
        cpu_order = ('openvino', 'onnxruntime', 'torch')
        backend = ('onnxruntime' if onnx else 'torch') if gpu else next(b for b in cpu_order if installed(b))
    elif not installed(backend):
        raise UserError(f'backend {backend!r} is not installed (pip install {backend})')
    if precision == 'auto':
        precision = 'bf16' if backend == 'openvino' and cpu_has_bf16() else 'f32'
    if precision == 'bf16' and backend == 'onnxruntime':
        raise UserError('precision bf16: ONNX Runtime runs f32 on a CPU; use backend openvino or torch')
    return backend, precision


def torch_runner(model, device, precision='f32'):
    """run(batch) for a torch model returning [(heatmaps, pafs) per stage], without gradients on `device`;
    bf16 under torch.autocast. The caller keeps the model in eval mode."""
    import torch
    autocast = precision == 'bf16'

    def run(batch):
        x = torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(device)
        with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=autocast):
            heatmaps, pafs = model(x)[-1]
        return heatmaps.float().cpu().numpy(), pafs.float().cpu().numpy()
    return run


def fitted(infer, fixed):
    """run(batch) for infer(batch float32 (N,3,H,W)) -> (heatmaps, pafs) of a model whose input dimensions
    `fixed` (N, C, H, W; None where dynamic) may be fixed: smaller inputs are zero-padded to a fixed size
    and the maps cropped back, larger ones are a UserError; batches run one image at a time when the
    batch size is fixed."""
    def one(batch):
        n, _, h, w = batch.shape
        size = (fixed[2] or h, fixed[3] or w)
        if size[0] < h or size[1] < w:
            raise UserError(f'the ONNX model takes a fixed {size[0]}x{size[1]} input, smaller than the '
                            f'{h}x{w} input asked for (lower the input height, or re-export with dynamic '
                            f'axes)')
        if size != (h, w):
            padded = np.zeros((n, 3) + size, np.float32)
            padded[:, :, :h, :w] = batch
            batch = padded
        heatmaps, pafs = infer(batch)
        stride = size[0] // heatmaps.shape[2]
        return heatmaps[:, :, :h // stride, :w // stride], pafs[:, :, :h // stride, :w // stride]

    def run(batch):
        batch = np.ascontiguousarray(batch, np.float32)
        if fixed[0] is None or fixed[0] == len(batch):
            return one(batch)
        outputs = [one(batch[i:i + 1]) for i in range(len(batch))]
        return np.concatenate([o[0] for o in outputs]), np.concatenate([o[1] for o in outputs])
    return run


def openvino_runner(path, precision='f32', threads=0):
    """run(batch) for an ONNX file on OpenVINO's CPU plugin (latency mode, `threads` inference threads,
    0 = OpenVINO's choice), computing in `precision`. Its outputs `heatmaps` and `pafs`, else its last
    two, copied out of the request's buffers (a pipeline holds them while the next frame runs); a fixed
    input size is honoured as `fitted` says. One thread at a time may call it."""
    import openvino
    core = openvino.Core()
    settings = {'PERFORMANCE_HINT': 'LATENCY', 'INFERENCE_PRECISION_HINT': precision}
    if threads:
        settings['INFERENCE_NUM_THREADS'] = int(threads)
    try:
        compiled = core.compile_model(path, 'CPU', settings)
    except Exception as error:  # OpenVINO raises RuntimeError subclasses with multi-line reasons
        raise UserError(f'OpenVINO cannot load {path}: {first_line(error)}') from None
    names = [output.get_any_name() for output in compiled.outputs]
    outputs = [compiled.outputs[names.index(n)] for n in ('heatmaps', 'pafs')] \
        if {'heatmaps', 'pafs'} <= set(names) else list(compiled.outputs[-2:])
    request = compiled.create_infer_request()
    shape = compiled.inputs[0].get_partial_shape()
    fixed = [d.get_length() if d.is_static else None for d in shape] if shape.rank.is_static else [None] * 4

    def infer(batch):
        try:
            result = request.infer({0: batch})
        except RuntimeError as error:
            raise UserError(f'OpenVINO cannot run {path} on a {"x".join(map(str, batch.shape))} input: '
                            f'{first_line(error)}') from None
        return np.array(result[outputs[0]]), np.array(result[outputs[1]])
    return fitted(infer, fixed)


def first_line(error):
    """The first line of an exception's message (its type's name when it has none)."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def onnx_metadata(path):
    """{key: value} of an ONNX file's metadata_props; UserError when it does not parse."""
    import onnx
    try:
        proto = onnx.load(path, load_external_data=False)
    except Exception as error:  # protobuf's DecodeError and onnx's own errors on a foreign or cut file
        raise UserError(f'cannot load ONNX file {path}: {first_line(error)}') from None
    return {p.key: p.value for p in proto.metadata_props}


def _fresh(path, key):
    """Whether the cached export `path` exists and was made from the checkpoint with SHA-256 `key`."""
    try:
        return os.path.isfile(path) and onnx_metadata(path).get(SOURCE_KEY) == key
    except UserError:  # a cut or foreign file in the cache's place: rebuild it
        return False


def cache_path(source):
    """Where the ONNX export of the checkpoint `source` is cached: beside it, as <source>.onnx."""
    return source + checkpoint.ONNX_SUFFIX


def cached_onnx(source, build):
    """The ONNX file of the checkpoint `source`: the cached export when it was made from the same bytes,
    else a new export written by model.onnx_export.export(*build()), where build() -> (network, config).
    Returns (path, whether it was (re)built)."""
    path, key = cache_path(source), file_sha256(source)
    if _fresh(path, key):
        return path, False
    network, config = build()
    try:
        onnx_export.export(network, config, path, extra_metadata={SOURCE_KEY: key})
    except OSError as error:
        raise UserError(f'cannot write the ONNX export {path} beside the checkpoint ({error.strerror}): copy '
                        f'the checkpoint into a writable folder, or run it with --backend torch') from None
    return path, True
