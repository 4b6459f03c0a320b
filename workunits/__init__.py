"""The science: one package per app, plain Python, no Django (docs/science-apps.md).

Each app package holds ``MANIFEST`` and the functions ``split``, ``compute``, ``compare``
and ``assimilate``; :mod:`workunits.interface` says what each must do.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def available() -> list[str]:
    """The names of the apps in this folder."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.ispkg and not m.name.startswith("_"))


def load(name: str) -> ModuleType:
    """An app's package, checked against the interface; ``LookupError`` for an unknown name."""
    if name not in available():
        raise LookupError(f"there is no app {name!r} in workunits/ (there are: {', '.join(available())})")
    from workunits.interface import check_app

    module = importlib.import_module(f"workunits.{name}")
    check_app(module)
    return module
