"""Evaluate a network with COCO's keypoint metric (pycocotools' COCOeval: AP, AP50, AP75, APm, APl, AR)
on the validation split's cache ([dataset] val), or on a COCO annotation file and its image folder, for any
keypoint dataset: its own keypoints and category, the layout's OKS sigmas (pose/evaluate.py).

Each image is resized to [eval] height (aspect kept, padded to the stride), optionally also run at
[eval] scales and mirrored ([eval] flip), decoded with [decode] and mapped back to the image. The network
is --onnx FILE, --checkpoint FILE, or the newest checkpoint of the experiment folder; its layout and input
normalisation come with it; it runs on [eval] backend and precision (model/backends.py: by default the
fastest runtime the machine offers, in f32; --backend and --precision force one). Writes COCO's results
JSON to <folder of the network file>/eval/results-<step or ONNX name>.json (the experiment folder for its
checkpoints), the figures and settings (backend included) beside it in metrics-<...>.json (as the trainer's
evaluation hook does), and prints COCO's keypoint table.
"""

import json
import os

from model import backends, runner
from pose import evaluate as evaluation
from utils import cli
from utils.io import atomic_write_text


def arguments():
    p = cli.parser(__doc__)
    source = p.add_mutually_exclusive_group()
    source.add_argument('--checkpoint', help='checkpoint file (default: newest in the experiment folder)')
    source.add_argument('--onnx', help='ONNX file written by export_onnx.py (runs on ONNX Runtime)')
    p.add_argument('--limit', type=int, help='evaluate the first N images only (default: [eval] limit)')
    p.add_argument('--annotations', help='COCO keypoint annotation file to evaluate on instead of the cache')
    p.add_argument('--images', help='image folder of --annotations')
    p.add_argument('--results', help='results JSON to write (default: see above)')
    p.add_argument('--backend', choices=('auto',) + backends.BACKENDS,
                   help='runtime of the network (default: [eval] backend)')
    p.add_argument('--precision', choices=('auto',) + backends.PRECISIONS,
                   help='arithmetic of the network (default: [eval] precision)')
    return p


def output_paths(network, annotations=None, results=None):
    """(results JSON, metrics JSON): <folder of the network file>/eval/{results,metrics}-<step, or file
    name>[-<annotation file name>].json, or `results` and <its name>.metrics.json."""
    if results:
        return results, os.path.splitext(results)[0] + '.metrics.json'
    step, source = network['step'], network['source']
    name = f'{step:08d}' if isinstance(step, int) else os.path.splitext(os.path.basename(source))[0]
    if annotations:
        name += '-' + os.path.splitext(os.path.basename(annotations))[0]
    folder = os.path.join(os.path.dirname(os.path.abspath(source)), 'eval')
    return os.path.join(folder, f'results-{name}.json'), os.path.join(folder, f'metrics-{name}.json')


def settings(config, limit, source):
    """What the figures depend on, stored beside them."""
    options = {o: config.get('eval', o) for o in ('height', 'scales', 'flip')}
    return {'network': source, 'limit': limit, 'eval': options, 'decode': dict(config['decode'])}


@cli.main
def main():
    args = arguments().parse_args()
    if bool(args.annotations) != bool(args.images):
        raise cli.UserError('--annotations and --images go together (a COCO keypoint file and its images)')
    config = cli.load_config(args)
    network = runner.load(config, args.checkpoint, args.onnx, cli.model_dir(args, config),
                          config.get('eval', 'device'), config.getint('eval', 'threads'), args.backend,
                          args.precision)
    config = network['config']
    for section, option, mine, theirs in network['changed']:
        print(f'note: [{section}] {option} = {theirs} comes with the network (the config says {mine})')
    limit = config.getint('eval', 'limit') if args.limit is None else args.limit
    if args.annotations:
        images = evaluation.coco_images(args.annotations, args.images, network['skeleton'],
                                         config.get('dataset', 'category', fallback=''))
        images, annotations = images[:limit] if limit > 0 else images, args.annotations
    else:
        images, annotations = evaluation.cache_images(config, limit)
    path, metrics = output_paths(network, args.annotations, args.results)
    print(f'evaluating {network["source"]} ({network["backend"]}) on {len(images)} images of {annotations}')
    stats = evaluation.evaluate_images(network['run'], config, network['skeleton'], network['stride'],
                                       images, annotations, path)
    record = {'step': network['step'], 'backend': network['backend'], **stats, 'images': len(images),
              'annotations': annotations,
              **settings(config, limit, network['source'])}
    atomic_write_text(metrics, json.dumps(record, indent=1) + '\n')
    print(' | '.join(f'{name} {stats[name]:.3f}' for name in ('AP', 'AP50', 'AP75', 'APm', 'APl', 'AR')))
    print(f'results: {path}\nmetrics: {metrics}')


if __name__ == '__main__':
    main()
