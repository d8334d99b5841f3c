"""The package's shape: no module uses another module's private (underscore) names, and the stages
of the data flow stay where the README's architecture table says they are."""

from __future__ import annotations

import ast
from pathlib import Path

from .conftest import ROOT

PACKAGE = ROOT / "nerbatch"


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


def test_no_module_uses_another_modules_underscore_names():
    modules = _modules()
    offences = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        is_package = path.name == "__init__.py"
        aliases: dict[str, str] = {}  # local name -> nerbatch module it stands for
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = _resolve(node.module or "", node.level, name, is_package)
                if not target.startswith("nerbatch"):
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in modules:  # `from . import compiled`: a module
                        aliases[alias.asname or alias.name] = sub
                    elif alias.name.startswith("_") and not alias.name.startswith("__") and target != name:
                        offences.append(f"{name} imports {target}.{alias.name}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("nerbatch"):
                        aliases[alias.asname or alias.name] = alias.name
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                mod = aliases.get(node.value.id)
                if mod and mod != name and node.attr.startswith("_") and not node.attr.startswith("__"):
                    offences.append(f"{name} uses {mod}.{node.attr}")
    assert not offences, "\n".join(offences)


def test_the_check_itself_finds_an_offence(tmp_path):
    """The same walk over a made-up module that does reach into another one's private name."""
    tree = ast.parse("from .quantize import _session\nfrom . import compiled\ncompiled._save()\n")
    found = [a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names if a.name.startswith("_")]
    found += [n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr.startswith("_")]
    assert found == ["_session", "_save"]


def test_every_stage_of_the_data_flow_has_its_module():
    """read -> plan -> tokenise/align -> batch -> model -> decode -> write -> report, by name."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for module in ("io", "plan", "align", "batching", "backends", "tagger", "engines", "scoring", "evaluate",
                   "settings", "cache", "checkpoint"):
        assert (PACKAGE / f"{module}.py").exists() or (PACKAGE / module).is_dir(), module
        assert f"nerbatch/{module}" in readme, f"README's architecture table does not name nerbatch/{module}"
