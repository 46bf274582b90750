"""No import cycles in minilm_np (with minilm_np.serve and minilm_np.kernels) or in bench/.

The modules are parsed with :mod:`ast`, never imported, and every import counts: module-level and
function-level (lazy) ones alike, absolute and relative, and ``importlib.import_module("...")``
with a literal name. An import is an edge to the module it needs to have run:

* ``import a.b.c`` and ``from a.b import c`` (``c`` a submodule) need ``a.b.c``, and the packages
  above it (``a``, ``a.b``) that are not the importer's own: those a submodule only needs to exist
  in ``sys.modules``, which Python sees to before the submodule runs;
* ``from a.b import name`` (``name`` not a submodule) needs ``a.b``'s ``__init__`` to have bound
  ``name``: an edge to the package, the importer's own included. A submodule that takes a name
  from its own package (``from . import load``, ``from minilm_np import load``, ``import
  minilm_np``) while that package's ``__init__`` imports it is a cycle.

bench/'s scripts run with bench/ on ``sys.path``, and import each other as top-level modules
(``import peers``): those names are bench's modules. kernels/ is installed as minilm_np.kernels
(minilm_np/kernels is a symlink to it, not walked twice).

``python tests/test_import_cycles.py`` prints the cycles.
"""
import ast
import os
import sys
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (folder under the root, the module name it is imported as, whether its modules are scripts that
# import each other as top-level modules)
SOURCES = (("minilm_np", "minilm_np", False), ("kernels", "minilm_np.kernels", False), ("bench", "bench", True))


@dataclass(frozen=True)
class Edge:
    source: str  # importing module
    target: str  # imported module
    path: str  # the importing file, relative to the root
    line: int

    def __str__(self):
        return f"{self.source} -> {self.target}  ({self.path}:{self.line})"


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool  # an __init__.py
    script_dir: str | None  # the prefix of a folder of scripts (bench), whose top-level names it imports


def discover(root, sources=SOURCES):
    """{module name: Module} for every .py under the sources' folders."""
    modules = {}
    for folder, prefix, scripts in sources:
        top = Path(root, folder)
        for dirpath, dirnames, filenames in os.walk(top):
            # a symlinked folder (minilm_np/kernels -> ../kernels) is walked as its own source
            dirnames[:] = sorted(d for d in dirnames
                                 if d != "__pycache__" and not os.path.islink(os.path.join(dirpath, d)))
            rel = Path(dirpath).relative_to(top).parts
            for filename in sorted(filenames):
                if not filename.endswith(".py"):
                    continue
                stem = filename[:-3]
                parts = [prefix, *rel] + ([] if stem == "__init__" else [stem])
                name = ".".join(parts)
                modules[name] = Module(name, Path(dirpath, filename), stem == "__init__",
                                       prefix if scripts else None)
    return modules


def _package_of(module):
    return module.name if module.is_package else module.name.rpartition(".")[0]


def _absolute(module, level, name):
    """The absolute name of ``from <level dots><name> import ...`` in module (None: beyond the top)."""
    if not level:
        return name
    base = _package_of(module)
    for _ in range(level - 1):
        if not base:
            return None
        base = base.rpartition(".")[0]
    if not base:
        return None
    return f"{base}.{name}" if name else base


def _ancestors(name):
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


class _Resolver:
    def __init__(self, modules):
        self.modules = modules
        self.script_names = defaultdict(set)  # script dir prefix -> its top-level module names
        for m in modules.values():
            if m.script_dir and m.name.count(".") == 1:
                self.script_names[m.script_dir].add(m.name.partition(".")[2])

    def canonical(self, module, name):
        """An absolute import name as named in the graph (bench's ``run`` is bench.run)."""
        if module.script_dir and name.partition(".")[0] in self.script_names[module.script_dir]:
            return f"{module.script_dir}.{name}"
        return name

    def needs(self, module, target):
        """The modules that importing ``target`` (a module or package name) in ``module`` runs."""
        own = set(_ancestors(module.name))
        found = [a for a in _ancestors(target) if a in self.modules and a not in own]
        if target in self.modules:
            found.append(target)
        return [t for t in found if t != module.name]

    def edges(self, module, root):
        try:
            tree = ast.parse(module.path.read_bytes(), filename=str(module.path))
        except SyntaxError as exc:
            raise AssertionError(f"{module.path}: {exc}") from exc
        path = os.path.relpath(module.path, root)
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [self.canonical(module, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(module, node.level, node.module)
                if base is None:
                    continue
                base = self.canonical(module, base) if not node.level else base
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    # a submodule, or a name its package's __init__ binds
                    targets.append(sub if alias.name != "*" and sub in self.modules else base)
            elif isinstance(node, ast.Call) and _is_import_module(node):
                name = node.args[0].value
                level = len(name) - len(name.lstrip("."))
                base = _absolute(module, level, name[level:]) if level else self.canonical(module, name)
                if base is not None:
                    targets = [base]
            for target in targets:
                for needed in self.needs(module, target):
                    yield Edge(module.name, needed, path, node.lineno)


def _is_import_module(node):
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    return (name == "import_module" and node.args and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str))


def import_graph(root, sources=SOURCES):
    """{source: {target: [Edge, ...]}} for every import between the sources' modules."""
    modules = discover(root, sources)
    resolver = _Resolver(modules)
    graph = {name: defaultdict(list) for name in modules}
    for module in modules.values():
        for edge in resolver.edges(module, root):
            if edge not in graph[edge.source][edge.target]:  # `from .x import a, b`: one edge
                graph[edge.source][edge.target].append(edge)
    return graph


def strongly_connected(graph):
    """Tarjan's strongly connected components, iteratively; those of more than one module."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        work = [(start, iter(sorted(graph[start])))]
        while work:
            v, successors = work[-1]
            for w in successors:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    component = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.append(w)
                        if w == v:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
    return sorted(components)


def _shortest_cycle(graph, component):
    """One shortest cycle through the component's first module, as a list of modules."""
    members = set(component)
    start = component[0]
    parent = {start: None}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w in sorted(graph[v]):
            if w == start:
                path = [v]
                while parent[path[-1]] is not None:
                    path.append(parent[path[-1]])
                return path[::-1] + [start]
            if w in members and w not in parent:
                parent[w] = v
                queue.append(w)
    return component


def describe(graph, components):
    lines = []
    for component in components:
        cycle = _shortest_cycle(graph, component)
        lines.append(f"cycle of {len(component)} modules: {', '.join(component)}")
        lines.append(f"  e.g. {' -> '.join(cycle)}")
        lines.append("  its imports:")
        for source in component:
            for target in sorted(set(graph[source]) & set(component)):
                for edge in graph[source][target]:
                    lines.append(f"    {edge}")
    return "\n".join(lines)


def find_cycles(root, sources=SOURCES):
    graph = import_graph(root, sources)
    components = strongly_connected(graph)
    return components, describe(graph, components)


# --- the finder on small trees ----------------------------------------------------------------

def _tree(tmp_path, files):
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


SYNTHETIC = (("pkg", "pkg", False), ("scripts", "scripts", True))


def test_finder_sees_a_lazy_relative_cycle(tmp_path):
    root = _tree(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from .b import g\n",
        "pkg/b.py": "import os\n\ndef g():\n    from . import a\n    return a\n",
    })
    components, message = find_cycles(root, SYNTHETIC)
    assert components == [["pkg.a", "pkg.b"]]
    assert "pkg.a -> pkg.b  (pkg/a.py:1)" in message
    assert "pkg.b -> pkg.a  (pkg/b.py:4)" in message


def test_finder_without_a_cycle(tmp_path):
    root = _tree(tmp_path, {
        "pkg/__init__.py": "from .a import f\n",
        "pkg/a.py": "from .b import g\nfrom . import b\nimport pkg.b\n",
        "pkg/b.py": "import json\n",
        "scripts/run.py": "import helpers\nfrom pkg import f\n",
        "scripts/helpers.py": "import pkg.a\n",
    })
    graph = import_graph(root, SYNTHETIC)
    assert strongly_connected(graph) == []
    assert set(graph["pkg.a"]) == {"pkg.b"}  # `from . import b`: the submodule, not pkg's __init__
    assert set(graph["scripts.run"]) == {"scripts.helpers", "pkg"}
    assert set(graph["scripts.helpers"]) == {"pkg", "pkg.a"}


def test_finder_sees_a_submodule_importing_its_package(tmp_path):
    root = _tree(tmp_path, {
        "pkg/__init__.py": "from .a import f\nfrom .b import VERSION\n",
        "pkg/a.py": "def f():\n    from . import VERSION\n    return VERSION\n",
        "pkg/b.py": "VERSION = 1\n",
        "pkg/sub/__init__.py": "import importlib\nimportlib.import_module('.c', __package__)\n",
        "pkg/sub/c.py": "from pkg.sub import *\n",
        "scripts/run.py": "import accuracy\n",
        "scripts/accuracy.py": "def main():\n    import run\n",
    })
    components, message = find_cycles(root, SYNTHETIC)
    assert components == [["pkg", "pkg.a"], ["pkg.sub", "pkg.sub.c"], ["scripts.accuracy", "scripts.run"]]
    assert "pkg.a -> pkg  (pkg/a.py:2)" in message
    assert "pkg.sub -> pkg.sub.c  (pkg/sub/__init__.py:2)" in message
    assert "scripts.accuracy -> scripts.run  (scripts/accuracy.py:2)" in message


# --- the project ------------------------------------------------------------------------------

def test_the_graph_covers_the_project():
    modules = discover(ROOT)
    assert {"minilm_np", "minilm_np.serve.app", "minilm_np.kernels.backend", "bench.run"} <= set(modules)
    # kernels/ once, not again through the minilm_np/kernels symlink
    assert modules["minilm_np.kernels.backend"].path == ROOT / "kernels" / "backend.py"
    assert not any(m.path.is_relative_to(ROOT / "minilm_np" / "kernels") for m in modules.values())
    graph = import_graph(ROOT)
    assert "bench.peers" in graph["bench.run"]  # bench/'s top-level `import peers`
    assert "minilm_np.kernels.jit" in graph["minilm_np.kernels.backend"]  # importlib.import_module(".jit", ...)


def test_no_import_cycles():
    components, message = find_cycles(ROOT)
    assert not components, "import cycles (each edge is an import, file:line):\n" + message


if __name__ == "__main__":
    found, text = find_cycles(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
    print(text or "no import cycles")
    sys.exit(1 if found else 0)
