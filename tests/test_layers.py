"""The floor plan holds (../shared/DESIGN.md): scripts -> cache / model / pose / transform -> utils. Every
import of the project's own modules counts, at the top of a file or inside a function: no package module
imports a command-line script, utils imports no other package of the project, and no modules import each
other in a circle. And the project's own modules are imported at the top of a file, not inside a function,
except where LOCAL_IMPORTS says why."""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ('cache', 'model', 'pose', 'transform', 'utils')
SCRIPTS = {os.path.splitext(f)[0] for f in os.listdir(ROOT) if f.endswith('.py')} - set(PACKAGES)


def modules():
    """{module name: file} of every package module."""
    found = {}
    for package in PACKAGES:
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if name.endswith('.py'):
                    path = os.path.join(folder, name)
                    dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, '.')
                    found[dotted[:-len('.__init__')] if dotted.endswith('.__init__') else dotted] = path
    return found


def imports(path, known):
    """The project modules (of `known`, or script names) that the file at `path` imports anywhere."""
    tree = ast.parse(open(path, encoding='utf-8').read(), path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names |= {f'{node.module}.{alias.name}' for alias in node.names} | {node.module}
    found = set()
    for name in names:
        while name and name not in known and name not in SCRIPTS:
            name = name.rpartition('.')[0]
        if name:
            found.add(name)
    return found


def graph():
    known = modules()
    return {name: imports(path, known) - {name} for name, path in known.items()}


def test_no_package_module_imports_a_script():
    offenders = {m: sorted(i & SCRIPTS) for m, i in graph().items() if i & SCRIPTS}
    assert not offenders, f'package modules import command-line scripts: {offenders}'


def test_utils_imports_no_other_package_of_the_project():
    offenders = {m: sorted(i for i in imports_ if i.split('.')[0] != 'utils')
                 for m, imports_ in graph().items() if m.split('.')[0] == 'utils'}
    offenders = {m: i for m, i in offenders.items() if i}
    assert not offenders, f'utils modules import packages above them: {offenders}'


def cycle(edges):
    """One import circle of `edges` ({module: imported modules}) as a list, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = 'open'
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 'open':
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 'done'
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_modules_import_each_other_in_a_circle():
    edges = {m: {i for i in imported if i not in SCRIPTS} for m, imported in graph().items()}
    found = cycle(edges)
    assert found is None, 'import circle: ' + ' -> '.join(found)


@pytest.mark.parametrize('edges, circle', [({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}, True),
                                           ({'a': {'b', 'c'}, 'b': {'c'}, 'c': set()}, False)])
def test_the_circle_finder_finds_circles(edges, circle):
    assert (cycle(edges) is not None) == circle


# Function-local imports of the project's own modules, {'file:function': why}: only where importing the
# module at the top would pull a heavy optional dependency or do something at import time.
LOCAL_IMPORTS = {}


def project_files():
    """Paths relative to ROOT of every package module, command-line script and benchmark."""
    found = sorted(f for f in os.listdir(ROOT) if f.endswith('.py'))
    for package in PACKAGES + ('benchmarks',):
        for folder, _, files in sorted(os.walk(os.path.join(ROOT, package))):
            found += sorted(os.path.relpath(os.path.join(folder, name), ROOT).replace(os.sep, '/')
                            for name in files if name.endswith('.py'))
    return found


def local_imports(path):
    """{'path:function': [imported project modules]} of the imports inside functions of the file `path`
    (relative to ROOT); a method's function is Class.method."""
    own = set(PACKAGES) | {'benchmarks'} | SCRIPTS
    found = {}

    def visit(node, names, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                visit(child, names + [child.name], in_function or not isinstance(child, ast.ClassDef))
                continue
            if in_function and isinstance(child, ast.Import):
                modules = [alias.name for alias in child.names]
            elif in_function and isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                modules = [child.module]
            else:
                modules = []
            modules = [m for m in modules if m.split('.')[0] in own]
            if modules:
                found.setdefault(f'{path}:{".".join(names)}', []).extend(modules)
            visit(child, names, in_function)

    visit(ast.parse(open(os.path.join(ROOT, path), encoding='utf-8').read(), path), [], False)
    return found


def test_the_projects_own_modules_are_imported_at_the_top():
    found = {}
    for path in project_files():
        found.update(local_imports(path))
    offenders = {where: modules for where, modules in found.items() if where not in LOCAL_IMPORTS}
    assert not offenders, ('function-local imports of project modules (import them at the top of the file, '
                           f'or say in LOCAL_IMPORTS why they cannot be): {offenders}')
    stale = sorted(set(LOCAL_IMPORTS) - set(found))
    assert not stale, f'LOCAL_IMPORTS names functions without a local import of a project module: {stale}'
