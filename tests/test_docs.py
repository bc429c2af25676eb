"""The documentation holds together: README.md stays a short front page, and every relative link in it and in
docs/*.md (Markdown links and images) points at a file of the repository."""

import glob
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, 'README.md')
PAGES = [README] + sorted(glob.glob(os.path.join(ROOT, 'docs', '*.md')))

# the target of [text](target) and ![alt](target), up to whitespace or ')' (an optional "title" may follow),
# also of an image inside a link ([![alt](image)](target) holds two); and of definitions [name]: target
_LINK = re.compile(r'\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
_REFERENCE = re.compile(r'^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)', re.MULTILINE)
_FENCE = re.compile(r'^ *(```|~~~).*?^ *\1', re.MULTILINE | re.DOTALL)
_CODE = re.compile(r'`[^`\n]*`')


def links(path):
    """Link targets of a Markdown file, outside code blocks and code spans."""
    with open(path, encoding='utf-8') as f:
        text = f.read()
    text = _CODE.sub('', _FENCE.sub('', text))
    return _LINK.findall(text) + _REFERENCE.findall(text)


def test_the_guide_pages_exist():
    names = {os.path.basename(p) for p in PAGES}
    for page in ('getting-started.md', 'training.md', 'custom-keypoints.md', 'evaluation-and-detection.md',
                 'converting-and-exporting.md', 'extending.md', 'configuration.md', 'benchmarks.md'):
        assert page in names, f'docs/{page} is missing'


def test_relative_links_resolve():
    broken = []
    for page in PAGES:
        for target in links(page):
            if re.match(r'(https?|mailto):', target, re.IGNORECASE) or target.startswith('#'):
                continue
            file = target.split('#', 1)[0]
            if not os.path.exists(os.path.normpath(os.path.join(os.path.dirname(page), file))):
                broken.append(f'{os.path.relpath(page, ROOT)}: {target}')
    assert not broken, 'links to missing files:\n' + '\n'.join(broken)


def test_links_are_found(tmp_path):
    page = tmp_path / 'page.md'
    page.write_text('[a](a.md) ![b](img/b.png "title") [c](#c) [d](https://d.org) `[e](code.md)`\n'
                    '[![f](f.png)](g.md#part)\n'
                    '   ```\n   [h](fenced.md)\n   ```\n'
                    '[i]: ref.md\n', encoding='utf-8')
    assert links(str(page)) == ['a.md', 'img/b.png', '#c', 'https://d.org', 'f.png', 'g.md#part', 'ref.md']
    assert any(t.startswith('docs/') for t in links(README))


def test_readme_is_a_short_front_page():
    size = os.path.getsize(README)
    assert size <= 12 * 1024, f'README.md is {size} bytes, over 12 KB: move detail into docs/'
