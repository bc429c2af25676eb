"""Build the cache files of the [dataset] train and val splits and of the training split of every
[dataset] extra set (COCO-format keypoints mapped to the [model] layout, ignore masks as RLE), or
render one augmented sample with its skeleton, heatmaps and PAFs. Every bad annotation and unusable image
is listed (file, annotation id, image, what is wrong) and skipped.

  python cache.py -c overlay.ini                 build both caches unless up to date (--force rebuilds)
  python cache.py --show 3 -o sample.jpg         draw record 3 of the training cache after augmentation
"""

import os

import cv2

from cache import coco, dataset
from cache import io as cacheio
from utils import cli
from utils.io import atomic_write_bytes


def build(config, splits, force):
    train = config.get('dataset', 'train')
    jobs = [(split, None) for split in splits]
    jobs += [(train, root) for root in cacheio.extras(config) if train in splits]
    for split, root in jobs:
        # [dataset] extra sets keep their images without people: they show the network where nobody is
        keep_empty = split != train or root is not None or config.getboolean('dataset', 'train_empty')
        path, report = coco.build(config, split, force=force, keep_empty=keep_empty, root=root)
        if report is None:
            print(f'{path}: up to date (--force rebuilds it)')
            continue
        print(f'{path}: {report["records"]} images, {report["people"]} people')
        for line in report['annotations']:
            print(f'  {line}')
        for problem in ('missing', 'unreadable'):
            files = report[problem]
            if files:
                print(f'  skipped {len(files)} {problem} image(s):')
                for file in files:
                    print(f'    {file}: {report["why"][file]}')
    files = cacheio.files(config, train) + [cacheio.path(config, config.get('dataset', 'val'))]
    if all(os.path.isfile(f) for f in files):
        coco.check_disjoint(config)


def show(config, split, index, output, epoch, stride):
    data = dataset.PoseDataset(config, split, train=True, stride=stride)
    if not 0 <= index < len(data):
        raise cli.UserError(f'--show {index}: {data.file} has records 0..{len(data) - 1}')
    picture = dataset.render(data, (index, *data.sizes[0], epoch))
    ok, encoded = cv2.imencode(os.path.splitext(output)[1] or '.jpg', picture)
    if not ok:
        raise cli.UserError(f'-o {output}: cannot encode an image of that type (use .jpg or .png)')
    atomic_write_bytes(output, encoded.tobytes())
    print(f'wrote {output} (record {index} of {data.file}: {data.records[index]["image"]})')


@cli.main
def main(argv=None):
    p = cli.parser(__doc__.split('\n\n')[0])
    p.add_argument('--split', nargs='+', help='splits to cache (default: [dataset] train and val)')
    p.add_argument('--force', action='store_true', help='rebuild caches that are up to date')
    p.add_argument('--show', type=int, metavar='N', help='render record N of the (first) split instead')
    p.add_argument('-o', '--output', default='sample.jpg', help='image file written by --show')
    p.add_argument('--epoch', type=int, default=0, help='epoch whose random augmentation --show draws')
    p.add_argument('--stride', type=int, default=8, help='network output stride the --show maps use')
    args = p.parse_args(argv)
    config = cli.load_config(args)
    splits = args.split or [config.get('dataset', 'train'), config.get('dataset', 'val')]
    if args.show is not None:
        show(config, splits[0], args.show, args.output, args.epoch, args.stride)
    else:
        build(config, splits, args.force)


if __name__ == '__main__':
    main()
