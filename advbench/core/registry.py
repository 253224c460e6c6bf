"""Registries that name classes without importing them: a plain dict from CLI name to
``"module:Class"`` is the one list of names (the CLI's choices read it without importing
TensorFlow), and the dict of classes is built from it on first use."""

from __future__ import annotations

import importlib
from typing import Any, Callable


def load_classes(package: str, references: dict[str, str]) -> dict[str, Any]:
    """``{name: class}`` from ``{name: "module:Class"}``, modules relative to ``package``.

    Example:
        >>> load_classes("advbench.attacks", {"fgsm": "fgsm:FGSM"})
        {'fgsm': <class 'advbench.attacks.fgsm.FGSM'>}
    """
    classes = {}
    for name, reference in references.items():
        module, _, attribute = reference.partition(":")
        classes[name] = getattr(importlib.import_module(f"{package}.{module}"), attribute)
    return classes


def lazy_attributes(namespace: dict[str, Any],
                    loaders: dict[str, Callable[[], Any]]) -> Callable[[str], Any]:
    """A module ``__getattr__`` (PEP 562) that computes each attribute of ``loaders`` on
    first access and keeps it in the module's ``namespace``, so later accesses (and edits of
    a registry dict) see the same object."""
    def __getattr__(name: str) -> Any:
        if name not in loaders:
            raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")
        namespace[name] = loaders[name]()
        return namespace[name]
    return __getattr__
