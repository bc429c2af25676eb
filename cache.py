"""cache entry point (filled in by its issue)."""

from utils import cli


@cli.main
def main():
    args = cli.parser(__doc__).parse_args()
    cli.load_config(args)
    raise cli.UserError('cache.py is not implemented yet')


if __name__ == '__main__':
    main()
