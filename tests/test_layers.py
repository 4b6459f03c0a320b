"""The import contract: each layer of ``coordinator/`` imports only itself and the layers below.

Read from the source with ``ast``, so it holds for imports inside functions too. The order is
declared here and in docs/architecture.md; the project modules (settings, urls, wsgi, asgi,
``coordinator.testing``) sit on top and may import anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "coordinator"

# Bottom to top: an app may import its own modules and those of the apps before it.
LAYERS = (
    "core",
    "accounts",
    "shares",
    "work",
    "standing",
    "validation",
    "scheduler",
    "science",
    "community",
    "boinc",
    "web",
)
DOMAIN_APPS = LAYERS[1:]

# Imports that go up today, as (importer module, imported module). Fix one and delete its
# line: this list must only shrink, never grow. A new upward import fails the test; move the
# code down, pass a function in, or register from the upper app's AppConfig.ready() instead.
ALLOWED: frozenset[tuple[str, str]] = frozenset()  # none left

Edge = tuple[str, str]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(name: str, root: Path) -> bool:
    path = root.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported_modules(tree: ast.AST, root: Path) -> set[str]:
    """The ``coordinator`` modules a source imports; ``from package import module`` counts as
    the module, ``from module import name`` as the module."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if is_module(child, root) else node.module)
    return {name for name in found if name == PACKAGE or name.startswith(PACKAGE + ".")}


def rank(module: str) -> int:
    """The module's layer; the project modules are above every app."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    return len(LAYERS)


def app_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else PACKAGE


def source_files(root: Path) -> list[Path]:
    """Every module of ``coordinator/`` but its tests and migrations."""
    skipped = {"tests", "migrations", "__pycache__"}
    return sorted(
        path
        for path in (root / PACKAGE).rglob("*.py")
        if not skipped & set(path.relative_to(root).parts) and not path.name.startswith("test_")
    )


def upward_imports(root: Path) -> set[Edge]:
    """Every (importer, imported) pair where an app imports a module of an app above it."""
    edges: set[Edge] = set()
    for path in source_files(root):
        importer = module_name(path, root)
        if rank(importer) == len(LAYERS):
            continue  # settings, urls, wsgi, asgi, testing: the top may import anything
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for imported in imported_modules(tree, root):
            if app_of(imported) != app_of(importer) and rank(imported) > rank(importer):
                edges.add((importer, imported))
    return edges


def describe(edges: set[Edge]) -> str:
    return "\n".join(f"  {importer} imports {imported}" for importer, imported in sorted(edges))


def test_the_installed_apps_are_the_layers_in_order():
    from django.conf import settings

    ours = [app.split(".")[1] for app in settings.INSTALLED_APPS if app.startswith(PACKAGE + ".")]
    assert tuple(ours) == LAYERS


def test_core_imports_no_domain_app():
    from_core = {edge for edge in upward_imports(ROOT) if app_of(edge[0]) == "core"}
    assert not from_core, "coordinator.core is the bottom layer and imports no app:\n" + describe(from_core)
    assert not {edge for edge in ALLOWED if app_of(edge[0]) == "core"}, "core gets no exceptions"


def test_no_app_imports_an_app_above_it():
    new = upward_imports(ROOT) - ALLOWED
    assert not new, (
        f"imports against the layer order {' < '.join(LAYERS)} (docs/architecture.md):\n" + describe(new)
    )


def test_the_allowlist_only_holds_imports_that_still_exist():
    gone = ALLOWED - upward_imports(ROOT)
    assert not gone, "these upward imports are gone: delete them from ALLOWED\n" + describe(gone)


@pytest.mark.parametrize(
    ("importer", "source", "upward"),
    [
        ("core/bad.py", "from coordinator.accounts.models import Host\n", True),
        ("core/bad.py", "def f():\n    import coordinator.web.views\n", True),
        ("work/bad.py", "from coordinator.validation import compare\n", True),
        ("work/bad.py", "from coordinator.standing.services import record_events\n", True),
        ("validation/fine.py", "from coordinator.standing.services import record_events\n", False),
        ("web/fine.py", "from coordinator.work.selectors import unit_counts\n", False),
        ("work/fine.py", "from coordinator.core import keys\n", False),
    ],
)
def test_the_check_sees_an_upward_import(tmp_path, importer, source, upward):
    """The checker on a scratch tree, so the rule is known to bite."""
    for app in LAYERS:
        (tmp_path / PACKAGE / app).mkdir(parents=True)
        (tmp_path / PACKAGE / app / "__init__.py").write_text("")
    modules = ("accounts/models.py", "standing/services.py", "validation/compare.py", "web/views.py")
    for module in (*modules, "work/selectors.py"):
        (tmp_path / PACKAGE / module).write_text("")
    (tmp_path / PACKAGE / "core" / "keys.py").write_text("")
    (tmp_path / PACKAGE / importer).write_text(source)

    assert bool(upward_imports(tmp_path)) is upward
