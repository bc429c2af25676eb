"""Backbone initialisation from `[model] pretrained = imagenet | none | PATH`.

- `none`: the plugins' own random initialisation.
- `imagenet`: the backbone's `imagenet_state_dict()`, the library's ImageNet weights (torchvision's file in
  the torch hub cache, $TORCH_HOME/hub/checkpoints; timm's in the Hugging Face cache). A missing file is
  downloaded when the host answers within a few seconds; offline (or with POSE_OFFLINE=1 in the
  environment) it is a one-line error naming the URL and the file to provide, never a hang.
- PATH: a state_dict of the backbone (its own parameter names), a checkpoint of this framework (its
  `backbone.*` weights), or the library's ImageNet file itself (renamed by the backbone's
  `from_library`). Keys that do not fit are listed in a warning; a file where nothing fits is an error.

Library weights were trained on RGB input; with `[input] channel_order = bgr` the first conv's input
channels are reversed, so the weights see the colours they were trained on.
"""

import os
import socket
import threading
import urllib.parse
import warnings

import torch

from utils.checkpoint import load_weights
from utils.cli import UserError
from utils.config import ConfigError

CONNECT_TIMEOUT = 3.0


def offline(url):
    """True when `url`'s host cannot be reached within CONNECT_TIMEOUT seconds (or POSE_OFFLINE is set)."""
    if os.environ.get('POSE_OFFLINE', '').strip() not in ('', '0'):
        return True
    host = urllib.parse.urlparse(url).hostname
    reached = []

    def connect():  # a thread, because name resolution ignores socket timeouts
        try:
            socket.create_connection((host, 443), timeout=CONNECT_TIMEOUT).close()
            reached.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(CONNECT_TIMEOUT)
    return not reached


def _missing(what, url, path):
    return UserError(f'{what} is not on disk and cannot be downloaded (offline): download {url} to {path} '
                     f'or set [model] pretrained = PATH to a copy of it')


def torchvision_weights(weights):
    """The state_dict of a torchvision weights enum member, from the torch hub cache (downloaded if
    missing and online)."""
    url = weights.url
    path = os.path.join(torch.hub.get_dir(), 'checkpoints', os.path.basename(url))
    if not os.path.isfile(path):
        if offline(url):
            raise _missing(f'torchvision weights {weights}', url, path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        torch.hub.download_url_to_file(url, path, progress=True)
    return read(path)


def _hf_cache():
    if os.environ.get('HF_HUB_CACHE'):
        return os.environ['HF_HUB_CACHE']
    home = os.environ.get('HF_HOME') or os.path.join(os.path.expanduser('~'), '.cache', 'huggingface')
    return os.path.join(home, 'hub')


def timm_weights(name):
    """The state_dict of timm model `name`'s default pretrained weights (a Hugging Face hub file)."""
    import huggingface_hub
    import timm
    repo = timm.models.get_pretrained_cfg(name).hf_hub_id
    filename = 'model.safetensors'
    url = f'https://huggingface.co/{repo}/resolve/main/{filename}'
    cache = _hf_cache()
    path = huggingface_hub.try_to_load_from_cache(repo, filename, cache_dir=cache)
    if not isinstance(path, str):
        if offline(url) or os.environ.get('HF_HUB_OFFLINE', '').strip() not in ('', '0'):
            folder = os.path.join(cache, 'models--' + repo.replace('/', '--'))
            raise _missing(f'timm weights {repo}', url, folder)
        path = huggingface_hub.hf_hub_download(repo, filename, cache_dir=cache)
    return read(path)


def read(path):
    """A state_dict from a .pt/.pth (torch.load, weights only) or .safetensors file."""
    try:
        if path.endswith('.safetensors'):
            import safetensors.torch
            return safetensors.torch.load_file(path)
        return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as error:  # a damaged file can fail in zipfile, pickle, torch or safetensors
        raise UserError(f'cannot read weights file {path}: {error}') from None


def _rgb_to_bgr(state_dict):
    """Reverse the input channels of the first conv (the 4-D weight with 3 input channels)."""
    for key, value in state_dict.items():
        if value.dim() == 4 and value.shape[1] == 3:
            state_dict[key] = value.flip(1)
    return state_dict


def same_names(module, state_dict):
    """The entries of a library's state_dict that `module` has under the same names: the from_library of a
    backbone that keeps part of a library network as it is (mobilenet_v2, resnet)."""
    own = module.state_dict()
    return {key: value for key, value in state_dict.items() if key in own}


def from_path(backbone, path):
    """(state_dict in the backbone's names, came from a library file) of a weights file `path`."""
    state = read(path)
    if isinstance(state, dict) and isinstance(state.get('model'), dict):
        state = state['model']
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ConfigError(f'[model] pretrained = {path}: not a state_dict or checkpoint')
    if any(key.startswith('backbone.') for key in state):
        state = {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}
    own = backbone.state_dict()
    if not any(key in own for key in state) and hasattr(backbone, 'from_library'):
        return backbone.from_library(state), True
    return state, False


def initialise(backbone, config):
    """Load `[model] pretrained` into `backbone` (nothing for `none`)."""
    spec = config.get('model', 'pretrained').strip()
    name = config.get('model', 'backbone')
    if spec.lower() == 'none':
        return
    if spec.lower() == 'imagenet':
        if not hasattr(backbone, 'imagenet_state_dict'):
            raise ConfigError(f'[model] pretrained = imagenet: backbone {name} has no ImageNet weights; '
                              f'use none or a path')
        state, library, origin = backbone.imagenet_state_dict(), True, 'ImageNet weights'
    elif not os.path.isfile(spec):
        raise ConfigError(f'[model] pretrained = {spec!r}: no such file (use imagenet, none or a path)')
    else:
        state, library = from_path(backbone, spec)
        origin = spec
    if library and config.get('input', 'channel_order').strip().lower() == 'bgr':
        state = _rgb_to_bgr(dict(state))
    missing, unexpected = load_weights(backbone, state, strict=False)
    loaded = len(backbone.state_dict()) - len(missing)
    if loaded == 0:
        raise ConfigError(f'[model] pretrained = {spec}: no parameter of backbone {name} is in {origin} '
                          f'(its keys: {", ".join(list(state)[:5])} ...)')
    if unexpected or (missing and not library):
        warnings.warn(f'{origin} -> backbone {name}: loaded {loaded} tensors; left at initialisation '
                      f'({len(missing)}): {", ".join(missing[:10])}{" ..." if len(missing) > 10 else ""}; '
                      f'not used ({len(unexpected)}): {", ".join(unexpected[:10])}'
                      f'{" ..." if len(unexpected) > 10 else ""}', stacklevel=2)
