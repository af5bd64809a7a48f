"""The package imports downward only (CONTRIBUTING.md, "Layers").

Every module of ``mnemonic_mu`` is parsed (never imported) and each of its imports of the
package, at module level or inside a function, is checked: it may point to its own layer or a
lower one, never a higher one; the imports form no cycle; no module imports another module's
private (``_name``) names; and an import inside a function is a deliberate lazy import, with its
reason in a ``# lazy: ...`` comment, never a way round a cycle.
"""

from __future__ import annotations

import ast
import dataclasses
import graphlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "mnemonic_mu"

# The layers, low to high: a module imports its own layer or lower ones.  A module not listed
# here fails the test (place it).
LAYERS = (
    ("leaf", ("errors", "defaults", "paths", "version")),  # import nothing of the package but each other
    ("algorithms", ("algorithms",)),  # compute: no settings, no files
    ("io", ("io",)),  # datasets, checkpoints, the artifact store
    ("settings", ("overrides", "settings", "options", "runtime")),  # the settings and their adapters
    ("stages", ("bands", "plots", "pipeline", "notebook_stages")),  # the method's stages and their outputs
    ("drivers", ("drivers",)),  # the command line, sweep, report ...
    ("package", ("__init__", "__main__")),  # the package's own namespace and entry point
)
TOP = {"mnemonic_mu.drivers.cli": "the top of the drivers"}  # no module of its own layer imports these
LAZY = "# lazy:"  # the comment a function-local import carries, with its reason
MAX_LOCAL_IMPORTS = 0  # function-local package imports left (44 before the layers were drawn)


def module_name(path: str) -> str:
    parts = list(Path(path).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int | None:
    rest = module.split(".")[1:] or ["__init__"]
    for rank, (_, heads) in enumerate(LAYERS):
        if rest[0] in heads:
            return rank
    return None


@dataclasses.dataclass(frozen=True)
class Edge:
    source: str  # the importing module
    target: str  # the imported module
    names: tuple[str, ...]  # the names taken from it (from ... import ...)
    path: str
    line: int
    local: bool  # inside a function
    reason: bool  # a "# lazy:" comment on its line or the line above

    def __str__(self) -> str:
        where = "function-local " if self.local else ""
        return f"{self.path}:{self.line}: {where}{self.source} -> {self.target}"


def imports(sources: dict[str, str]) -> list[Edge]:
    """Every import of the package by the modules of ``sources`` (``{path: text}``)."""
    modules = {module_name(p) for p in sources}
    edges = []
    for path, text in sources.items():
        mod = module_name(path)
        package = mod if path.endswith("__init__.py") else mod.rpartition(".")[0]
        lines = text.splitlines()
        tree = ast.parse(text)
        inside: dict[ast.AST, bool] = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                inside[child] = inside.get(node, False) or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            said = " ".join(lines[max(node.lineno - 2, 0) : node.end_lineno])
            common = dict(path=path, line=node.lineno, local=inside.get(node, False), reason=LAZY in said)
            found: dict[str, tuple[str, ...]] = {}  # {imported module: the names taken from it}
            if isinstance(node, ast.Import):
                found = {a.name: () for a in node.names}
            else:
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for a in node.names:
                    sub = f"{target}.{a.name}"
                    if sub in modules:  # from package import submodule
                        found.setdefault(sub, ())
                    else:
                        found[target] = found.get(target, ()) + (a.name,)
            for target, names in found.items():
                if target == PACKAGE or target.startswith(PACKAGE + "."):
                    edges.append(Edge(mod, target, names, **common))
    return edges


def problems(sources: dict[str, str]) -> list[str]:
    """What breaks the layers in ``sources``: one line per offending import."""
    out = []
    edges = imports(sources)
    for path in sources:
        if layer_of(module_name(path)) is None:
            out.append(f"{path}: in no layer; place {module_name(path)} in tests/test_layers.py: LAYERS")
    for e in edges:
        low, high = layer_of(e.source), layer_of(e.target)
        if low is not None and high is not None and high > low:
            out.append(f"{e} imports upward ({LAYERS[low][0]} -> {LAYERS[high][0]})")
        if e.target in TOP and low == high and e.source != e.target:
            out.append(f"{e} imports {TOP[e.target]}")
        private = [n for n in e.names if n.startswith("_") and not n.startswith("__")]
        if private:
            out.append(f"{e} imports the private name(s) {', '.join(private)}")
        if e.local and not e.reason:
            out.append(f"{e} sits inside a function without a '{LAZY} why' comment; import it at the top")
    graph: dict[str, set[str]] = {}
    for e in edges:
        if e.source != e.target:
            graph.setdefault(e.source, set()).add(e.target)
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        out.append(f"an import cycle: {' -> '.join(reversed(exc.args[1]))}")
    return out


def package_sources() -> dict[str, str]:
    return {p.relative_to(ROOT).as_posix(): p.read_text() for p in sorted((ROOT / PACKAGE).rglob("*.py"))}


def test_the_package_imports_downward_only():
    sources = package_sources()
    assert len(sources) > 30  # the whole package was read
    found = problems(sources)
    assert not found, "imports that break the layers (CONTRIBUTING.md, 'Layers'):\n" + "\n".join(found)


def local_imports(sources: dict[str, str]) -> list[Edge]:
    """The function-local import statements of the package (one per statement)."""
    return list({(e.path, e.line): e for e in imports(sources) if e.local}.values())


def test_function_local_package_imports_stay_few():
    local = local_imports(package_sources())
    print(f"function-local package imports: {len(local)}")
    assert len(local) <= MAX_LOCAL_IMPORTS, "\n".join(map(str, local))


def test_the_checker_flags_each_kind_of_violation():
    """The check can fail: hand-made modules beside the real ones, each breaking one rule."""
    real = package_sources()
    bad = {
        # algorithms reading the settings (upward), at module level and inside a function
        "mnemonic_mu/algorithms/toy_up.py": "from ..settings import Settings\n",
        "mnemonic_mu/algorithms/toy_local.py": "def f():\n    from ..io.data import load_dataset\n    return 1\n",
        # a driver importing the top of the drivers
        "mnemonic_mu/drivers/toy_cli.py": "from .cli import build_parser\n",
        # another module's private name
        "mnemonic_mu/drivers/toy_private.py": "from .report import _NotebookError\n",
        # a lazy import with its reason is allowed, but only downward
        "mnemonic_mu/io/toy_lazy.py": "def f():\n    from ..algorithms import models  # lazy: torch models\n",
        "mnemonic_mu/io/toy_lazy_up.py": "def f():\n    # lazy: says why, yet points up\n    from .. import pipeline\n",
        # a cycle within one layer
        "mnemonic_mu/algorithms/toy_a.py": "from . import toy_b\n",
        "mnemonic_mu/algorithms/toy_b.py": "from .toy_a import x\n",
        # the package itself, as a name (its __init__ is the top layer)
        "mnemonic_mu/io/toy_version.py": "from .. import __version__\n",
        # a module in no layer
        "mnemonic_mu/toy_nowhere.py": "",
    }
    found = problems(real | bad)
    text = "\n".join(found)

    def flagged(path: str, what: str) -> bool:
        return any(line.startswith(path) and what in line for line in found)

    assert flagged("mnemonic_mu/algorithms/toy_up.py:1", "imports upward (algorithms -> settings)"), text
    assert flagged("mnemonic_mu/algorithms/toy_local.py:2", "imports upward (algorithms -> io)"), text
    assert flagged("mnemonic_mu/algorithms/toy_local.py:2", "without a '# lazy: why' comment"), text
    assert flagged("mnemonic_mu/drivers/toy_cli.py:1", "imports the top of the drivers"), text
    assert flagged("mnemonic_mu/drivers/toy_private.py:1", "private name(s) _NotebookError"), text
    assert not any(line.startswith("mnemonic_mu/io/toy_lazy.py") for line in found), text
    assert flagged("mnemonic_mu/io/toy_lazy_up.py:3", "imports upward (io -> stages)"), text
    assert not flagged("mnemonic_mu/io/toy_lazy_up.py:3", "without a"), text
    assert any("an import cycle" in line and "toy_a" in line and "toy_b" in line for line in found), text
    assert flagged("mnemonic_mu/io/toy_version.py:1", "-> mnemonic_mu imports upward (io -> package)"), text
    assert flagged("mnemonic_mu/toy_nowhere.py", "in no layer"), text
    assert not problems(real)  # and none of it came from the real package
    assert len(local_imports(real | bad)) == len(local_imports(real)) + 3  # the three hand-made ones are counted


def test_the_defaults_table_is_the_settings_table():
    """The leaf table the algorithms read is the one Settings is built on: the same fields in the
    same order, the same defaults (``attacks``: the registry's, filled in by Settings), one comment each."""
    from mnemonic_mu import defaults
    from mnemonic_mu.algorithms.attacks import ATTACKS
    from mnemonic_mu.settings import Settings

    names = [f.name for f in dataclasses.fields(defaults.Defaults)]
    assert names == Settings.names() and len(names) == len(set(names))
    for name in names:
        if name in defaults.FILLED_BY_SETTINGS:
            continue
        assert defaults.default(name) == Settings.default(name) == getattr(Settings(), name), name
    assert Settings.default("attacks") == Settings().attacks == tuple(ATTACKS)
    assert set(defaults.comments()) == set(names)
    assert all(defaults.comments().values())
