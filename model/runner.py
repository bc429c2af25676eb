"""Turn a trained network into a `run` function for pose.predict: run(batch float32 (N,3,H,W), normalised)
-> (heatmaps (N,K+1,h,w), pafs (N,2L,h,w)) as numpy arrays, from the network's last stage.

The network is a torch model (`torch_runner`) or an ONNX file written by export_onnx.py (`onnx_runner`,
ONNX Runtime; model/backends.py adds OpenVINO and bf16). `load` finds the network eval.py and detect.py
were pointed at (--checkpoint, --onnx, or the newest checkpoint of the experiment folder), the config it
was trained with (its [model] and [input] sections (layout, backbone, stages, normalisation) come with
the network; every other section is the user's) and runs it on the backend [eval] backend and precision
choose (model/backends.py).
"""

import os

import numpy as np
import torch

from model import backends, build, layout
from utils import checkpoint as checkpoints
from utils import config as configlib
from utils.cli import UserError

# Sections that describe the network and its input; they travel with a checkpoint or an ONNX file.
MODEL_SECTIONS = ('model', 'input')


def device_for(name='auto'):
    """torch.device for 'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'."""
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        return torch.device(name)
    except RuntimeError as error:
        raise UserError(f'device {name!r}: {error}') from None


def torch_runner(model, device=None, precision='f32'):
    """run(batch) for a torch model returning [(heatmaps, pafs) per stage]; it runs without gradients on
    `device` (default: where the model's parameters are), in `precision` (f32 or bf16). The caller keeps
    the model in eval mode."""
    if device is None:
        device = next(iter(model.parameters()), torch.empty(0)).device
    return backends.torch_runner(model, torch.device(device), precision)


def onnx_session(path, threads=0):
    """(ONNX Runtime session, metadata dict) of an ONNX file from export_onnx.py; UserError when the file
    is missing, unreadable or has no 'config' and 'stride' metadata."""
    import onnxruntime
    if not os.path.isfile(path):
        raise UserError(f'ONNX file not found: {path}')
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    providers = [p for p in ('CUDAExecutionProvider', 'CPUExecutionProvider')
                 if p in onnxruntime.get_available_providers()]
    try:
        session = onnxruntime.InferenceSession(path, options, providers=providers)
    except Exception as error:  # onnxruntime raises its own exception types for bad files
        raise UserError(f'cannot load ONNX file {path}: {str(error).splitlines()[0]}') from None
    return session, checked_metadata(dict(session.get_modelmeta().custom_metadata_map), path)


def checked_metadata(meta, path):
    """`meta`, the metadata of the ONNX file `path`; UserError when it lacks export_onnx.py's 'config' and
    'stride'."""
    missing = [key for key in ('config', 'stride') if key not in meta]
    if missing:
        raise UserError(f'ONNX file {path} has no {" or ".join(repr(k) for k in missing)} metadata: '
                        f'it was not written by export_onnx.py (re-export the checkpoint with it)')
    if not meta['stride'].isdigit():
        raise UserError(f"ONNX file {path}: its 'stride' metadata {meta['stride']!r} is not a whole number")
    return meta


def onnx_backend(path, backend, precision, threads):
    """(run, metadata) of the ONNX file `path` on ONNX Runtime or OpenVINO."""
    if backend == 'onnxruntime':
        session, meta = onnx_session(path, threads)
        return session_runner(session), meta
    if not os.path.isfile(path):
        raise UserError(f'ONNX file not found: {path}')
    meta = checked_metadata(backends.onnx_metadata(path), path)
    return backends.openvino_runner(path, precision, threads), meta


def session_runner(session):
    """run(batch) for an ONNX Runtime session: its outputs `heatmaps` and `pafs` (export_onnx.py's names
    for the last stage), else its last two. A fixed input size or batch size is honoured (backends.fitted)."""
    feed = session.get_inputs()[0]
    names = [output.name for output in session.get_outputs()]
    names = ['heatmaps', 'pafs'] if {'heatmaps', 'pafs'} <= set(names) else names[-2:]
    fixed = [d if isinstance(d, int) else None for d in feed.shape]
    return backends.fitted(lambda batch: tuple(session.run(names, {feed.name: batch})), fixed)


def onnx_runner(path, threads=0):
    """(run, config) for an ONNX file from export_onnx.py; config is the merged config it was exported
    with (from its 'config' metadata). threads: ONNX Runtime intra-op threads (0 = its default)."""
    session, meta = onnx_session(path, threads)
    return session_runner(session), _saved_config(meta['config'], path)


def _saved_config(text, origin):
    try:
        return configlib.loads(text)
    except (configlib.ConfigError, ValueError) as error:
        raise UserError(f'{origin}: its saved config does not load: {error}') from None


def merge(user, saved, sections=MODEL_SECTIONS):
    """The user's config with `sections` taken from `saved` (the network's own config); returns
    (config, [(section, option, user value, network value)] of the options that differed)."""
    merged = configlib.loads(configlib.dumps(user))
    changed = configlib.differences(merged, saved, sections)
    for section in sections:
        for option in saved[section]:
            merged.set(section, option, saved.get(section, option))
    return merged, changed


def _torch_network(config, state, origin, device):
    network = build(config, pretrained=False)
    try:
        checkpoints.load_weights(network, state['model'], strict=True)
    except checkpoints.CheckpointError as error:
        raise UserError(f'{origin}: {error} (model config: {_describe(config)})') from None
    return network.to(device).eval()


def _describe(config):
    options = ('layout', 'backbone', 'stages', 'first_stage', 'stage', 'stage_channels')
    return ', '.join(f'{o} = {config.get("model", o)}' for o in options)


def read_checkpoint(path=None, folder=None):
    """(state, path) of the checkpoint at `path`, else of the newest one in `folder`."""
    if path:
        try:
            return checkpoints.load(path), path
        except checkpoints.CheckpointError as error:  # torch's reasons run over several lines
            raise UserError(str(error).splitlines()[0]) from None
    state, found = checkpoints.load_latest(folder) if folder and os.path.isdir(folder) else (None, None)
    if state is None:
        raise UserError(f'no checkpoint in {folder} (train this experiment first, or pass --checkpoint '
                        f'or --onnx)')
    return state, found


def load(config, checkpoint=None, onnx=None, folder=None, device='auto', threads=0, backend=None,
         precision=None):
    """Everything eval.py and detect.py need to run a network: a dict with 'run', 'config' (the user's
    config with the network's [model] and [input]), 'skeleton', 'stride', 'source' (the file),
    'step' (training step, None for ONNX), 'changed' (the user's model options the network overrode),
    'backend' (e.g. 'openvino bf16').

    The network is the ONNX file `onnx`, else the checkpoint `checkpoint`, else the newest checkpoint in
    `folder`. A checkpoint without a saved config is built from the user's config; one whose weights do
    not fit gives a UserError listing the mismatched keys. backend, precision: as model.backends.choose
    takes them (default: the config's [eval] backend and precision)."""
    device = device_for(device)
    backend, precision = backends.choose(backend or config.get('eval', 'backend'),
                                         precision or config.get('eval', 'precision'), device.type == 'cuda',
                                         onnx=bool(onnx))
    if onnx:
        if backend == 'torch':
            raise UserError(f'--onnx {onnx}: an ONNX file runs on onnxruntime or openvino, not torch')
        run, meta = onnx_backend(onnx, backend, precision, threads)
        merged, changed = merge(config, _saved_config(meta['config'], onnx))
        return {'run': run, 'config': merged, 'skeleton': layout(merged), 'stride': int(meta['stride']),
                'source': onnx, 'step': None, 'changed': changed, 'backend': f'{backend} {precision}'}
    state, path = read_checkpoint(checkpoint, folder)
    if not isinstance(state, dict) or 'model' not in state:
        raise UserError(f'{path} holds no model weights (no "model" entry)')
    merged, changed = config, []
    if state.get('config'):
        merged, changed = merge(config, _saved_config(state['config'], path))
    found = {'config': merged, 'skeleton': layout(merged), 'source': path, 'step': state.get('step'),
             'changed': changed, 'backend': f'{backend} {precision}'}
    if backend != 'torch':
        file, _ = backends.cached_onnx(path, lambda: (_torch_network(merged, state, path, 'cpu'), merged))
        run, meta = onnx_backend(file, backend, precision, threads)
        return {**found, 'run': run, 'stride': int(meta['stride'])}
    if threads:
        torch.set_num_threads(threads)
    network = _torch_network(merged, state, path, device)
    return {**found, 'run': torch_runner(network, device, precision), 'stride': int(network.stride)}


def infer_stride(run, size=256):
    """The output stride of `run`, from the map size it returns for a size x size input."""
    heatmaps, _ = run(np.zeros((1, 3, size, size), np.float32))
    return size // heatmaps.shape[-1]
