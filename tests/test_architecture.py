"""The package's shape: the data-flow rooms exist and the README names them, no module uses another
module's private (underscore) names, no import circles (imports inside functions included), and no
module below the command line imports it."""

from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import Iterator

from .conftest import ROOT

PACKAGE = ROOT / "nerbatch"

# the rooms of the data flow, in order: read -> plan -> tokenise/align -> batch -> model -> decode -> write -> report
ROOMS = ("core", "io", "model", "tagging", "run", "evaluation", "training")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        name = ".".join(rel.parts)
        if name.endswith(".__init__"):
            name = name[: -len(".__init__")]
        out[name] = path
    return out


def _resolve(module: str, level: int, current: str, is_package: bool) -> str:
    if level == 0:
        return module
    parts = current.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


@functools.lru_cache(maxsize=None)
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def _from_imports(modules: dict[str, Path]) -> Iterator[tuple[str, ast.ImportFrom, str]]:
    """``(module, node, target)`` for every ``from X import ...`` of a nerbatch module, anywhere in
    the file (functions included), ``target`` resolved to its dotted name."""
    for name, path in modules.items():
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.ImportFrom):
                target = _resolve(node.module or "", node.level, name, path.name == "__init__.py")
                if target.startswith("nerbatch"):
                    yield name, node, target


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the nerbatch modules it imports, anywhere in the file (functions included)."""
    found: dict[str, set[str]] = {name: set() for name in modules}
    for name, node, target in _from_imports(modules):
        for alias in node.names:
            sub = f"{target}.{alias.name}"
            found[name].add(sub if sub in modules else target)
    for name, path in modules.items():
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Import):
                found[name].update(a.name for a in node.names if a.name.startswith("nerbatch"))
    return {name: {m for m in deps if m in modules and m != name} for name, deps in found.items()}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The same imports between rooms (``nerbatch.tagging.align`` -> ``nerbatch.tagging``); a package's
    ``__init__`` (its public face, re-exporting its rooms) is left out."""

    def room(m: str) -> str:
        return ".".join(m.split(".")[:2])

    out: dict[str, set[str]] = {}
    for m, deps in graph.items():
        if m == "nerbatch":
            continue
        out.setdefault(room(m), set()).update(room(d) for d in deps if d != "nerbatch" and room(d) != room(m))
    return out


def test_no_import_circles_between_modules():
    circles = _circles(_imports(_modules()))
    assert not circles, "import circles: " + "; ".join(" <-> ".join(c) for c in circles)


def test_no_import_circles_between_rooms():
    circles = _circles(_package_graph(_imports(_modules())))
    assert not circles, "import circles between subpackages: " + "; ".join(" <-> ".join(c) for c in circles)


def test_the_circle_check_finds_a_circle():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


def test_nothing_below_the_command_line_imports_it():
    graph = _imports(_modules())
    offenders = sorted(m for m, deps in graph.items() if "nerbatch.cli" in deps and m != "nerbatch.__main__")
    assert not offenders, f"modules importing nerbatch.cli: {offenders}"


def test_no_module_uses_another_modules_underscore_names():
    modules = _modules()
    offences = []
    aliases: dict[str, dict[str, str]] = {name: {} for name in modules}  # module -> local name -> nerbatch module
    for name, node, target in _from_imports(modules):
        for alias in node.names:
            sub = f"{target}.{alias.name}"
            if sub in modules:  # `from . import compiled`: a module
                aliases[name][alias.asname or alias.name] = sub
            elif alias.name.startswith("_") and not alias.name.startswith("__") and target != name:
                offences.append(f"{name} imports {target}.{alias.name}")
    for name, path in modules.items():
        tree = _tree(path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("nerbatch"):
                        aliases[name][alias.asname or alias.name] = alias.name
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                mod = aliases[name].get(node.value.id)
                if mod and mod != name and node.attr.startswith("_") and not node.attr.startswith("__"):
                    offences.append(f"{name} uses {mod}.{node.attr}")
    assert not offences, "\n".join(offences)


def test_the_check_itself_finds_an_offence(tmp_path):
    """The same walk over a made-up module that does reach into another one's private name."""
    tree = ast.parse("from .int8 import _session\nfrom . import compiled\ncompiled._save()\n")
    found = [a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names if a.name.startswith("_")]
    found += [n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr.startswith("_")]
    assert found == ["_session", "_save"]


def test_every_stage_of_the_data_flow_has_its_room():
    """read -> plan -> tokenise/align -> batch -> model -> decode -> write -> report, by folder and name."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8") + (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    for room in ROOMS:
        assert (PACKAGE / room / "__init__.py").exists(), room
        assert f"nerbatch/{room}/" in readme, f"the architecture page does not name nerbatch/{room}/"
    stages = {
        "read": "io/base.py", "plan": "run/plan.py", "align": "tagging/align.py", "batch": "tagging/batching.py",
        "model": "tagging/backends.py", "decode": "tagging/decode.py", "write": "io/base.py",
        "report": "evaluation/scoring.py",
    }
    for stage, path in stages.items():
        assert (PACKAGE / path).exists(), f"{stage}: nerbatch/{path}"
    documented = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if path.name != "__init__.py" and f"nerbatch/{rel}" in readme:
            documented.add(rel)
    missing = sorted(
        p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py") and p.relative_to(PACKAGE).as_posix() not in documented
    )
    assert not missing, f"modules the architecture page does not name: {missing}"


def test_every_import_of_a_nerbatch_module_resolves():
    """Imports inside functions run late (a command, a format, an error path): each must name a module
    and a name that exist, which importing the package alone would not show."""
    import importlib
    import importlib.util

    modules = _modules()
    missing = []
    for name, node, target in _from_imports(modules):
        if target not in modules:
            missing.append(f"{name}:{node.lineno}: no module {target}")
            continue
        module = importlib.import_module(target)
        is_package = hasattr(module, "__path__")
        for alias in node.names:
            if not hasattr(module, alias.name) and not (is_package and importlib.util.find_spec(f"{target}.{alias.name}")):
                missing.append(f"{name}:{node.lineno}: {target} has no {alias.name}")
    assert not missing, "\n".join(missing)
