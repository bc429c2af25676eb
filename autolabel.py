"""Auto-label images and videos with a trained network: write a COCO-format keypoint dataset (confident people
labelled, people and parts the network is unsure of as ignore regions) that cache.py and train.py read.

    python autolabel.py videos/ clip.mp4 'photos/*.jpg' --checkpoint runs/x/checkpoint-010000.pt -o data/mine
    python cache.py -m dataset/extra=data/mine ...      # or train on it alone: -m dataset/root=data/mine

The network runs at [eval] height, averaging --scales and the mirror image (on by default here: labels are
made once, so accuracy beats speed). See cache/autolabel.py for what becomes a label and what is ignored.
"""

from cache import autolabel
from model import runner
from utils import cli


def arguments():
    p = cli.parser(__doc__.split('\n\n')[0])
    p.add_argument('inputs', nargs='+', help='images, folders of images, globs or video files')
    p.add_argument('-o', '--output', required=True, help='dataset folder to write (COCO layout)')
    source = p.add_mutually_exclusive_group()
    source.add_argument('--checkpoint', help='checkpoint file (default: newest in the experiment folder)')
    source.add_argument('--onnx', help='ONNX file written by export_onnx.py')
    p.add_argument('--split', default='train', help='split name of the written dataset')
    p.add_argument('--every', type=int, default=0, help='label every N-th video frame (0: two per second)')
    p.add_argument('--scales', type=float, nargs='+', default=[1.0, 0.75, 1.25],
                   help='input scales averaged (relative to [eval] height)')
    p.add_argument('--no-flip', action='store_true', help='do not average the mirrored image')
    p.add_argument('--keypoint-threshold', type=float, default=0.3,
                   help='smallest score of a labelled keypoint')
    p.add_argument('--person-threshold', type=float, default=0.3,
                   help='smallest score of a labelled person')
    p.add_argument('--min-keypoints', type=int, default=5,
                   help='fewest confident keypoints of a labelled person')
    p.add_argument('--force', action='store_true', help='replace --output if it exists')
    return p


@cli.main
def main(argv=None):
    args = arguments().parse_args(argv)
    for name in ('keypoint_threshold', 'person_threshold'):
        if not 0 <= getattr(args, name) <= 1:
            raise cli.UserError(f'--{name.replace("_", "-")} {getattr(args, name)}: must be within 0..1')
    if args.every < 0 or args.min_keypoints < 1 or min(args.scales) <= 0:
        raise cli.UserError('--every must be >= 0, --min-keypoints >= 1 and every --scales value > 0')
    config = cli.load_config(args)
    config.set('eval', 'scales', ' '.join(map(str, args.scales)))
    config.set('eval', 'flip', str(not args.no_flip).lower())
    network = runner.load(config, args.checkpoint, args.onnx, cli.model_dir(args, config),
                          config.get('eval', 'device'), config.getint('eval', 'threads'))
    limits = autolabel.thresholds(args.keypoint_threshold, args.person_threshold, args.min_keypoints)
    counts = autolabel.label(network['run'], network['config'], network['skeleton'], network['stride'],
                             args.inputs, args.output, args.split, args.every, limits, args.force)
    print(f'{args.output}: {counts["images"]} images, {counts["people"]} labelled people, '
          f'{counts["ignored"]} ignore regions (annotations/person_keypoints_{args.split}.json)')


if __name__ == '__main__':
    main()
