"""Which project files each DVC stage runs, read from the code, and which of them its deps miss.

A stage's command ``python -m tasks.<stage> [...]`` runs that module; it runs every
project module it imports, at the top or inside a function, and every module a registry
names lazily as a ``"package.module:attr"`` string, directly or through other project
modules, along with the packages' ``__init__.py`` files. A file is covered when a dep
of the stage is the file itself or a folder above it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGES = ("visionflow", "tasks", "flows")
MODULE_STRING = re.compile(r"^((?:%s)(?:\.\w+)*)(?::\w+)?$" % "|".join(PACKAGES))


def module_path(root: Path, module: str) -> Path | None:
    base = root.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _package_inits(root: Path, module: str) -> set[Path]:
    parts = module.split(".")
    return {p for i in range(1, len(parts)) if (p := root.joinpath(*parts[:i], "__init__.py")).is_file()}


def _named_modules(root: Path, path: Path) -> set[str]:
    """Project modules that ``path`` imports anywhere, or names in a string."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}  # ``from package import module``
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_STRING.match(node.value):
            names.add(MODULE_STRING.match(node.value).group(1))
    return {n for n in names if n.split(".")[0] in PACKAGES and module_path(root, n)}


def import_closure(root: Path, module: str) -> set[Path]:
    """Every project file that running ``module`` may execute (paths relative to ``root``)."""
    seen, todo, files = set(), [module], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_path(root, name)
        files |= {path, *_package_inits(root, name)}
        todo += sorted(_named_modules(root, path))
    return {f.relative_to(root) for f in files}


def stage_module(cmd: str) -> str:
    match = re.match(r"python -m (tasks\.\w+)", cmd)
    if not match:
        raise ValueError(f"not a `python -m tasks.<stage>` command: {cmd!r}")
    return match.group(1)


def uncovered(root: Path, stages: dict[str, tuple[str, list[str]]]) -> list[tuple[str, str]]:
    """``(stage, file)`` for every file a stage runs that none of its deps covers.

    ``stages`` maps a stage name to its command and its deps' paths.
    """
    missing = []
    for stage, (cmd, deps) in sorted(stages.items()):
        covered = [Path(d) for d in deps]
        for file in sorted(import_closure(root, stage_module(cmd))):
            if not any(file == dep or dep in file.parents for dep in covered):
                missing.append((stage, str(file)))
    return missing


def dvc_stages(repo_root: Path) -> dict[str, tuple[str, list[str]]]:
    """Each stage of ``dvc.yaml`` (foreach stages expanded) -> (command, deps' paths)."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(repo_root)) as repo:
        return {s.name: (s.cmd, [d.def_path for d in s.deps if not isinstance(d, ParamsDependency)])
                for s in repo.index.stages}
