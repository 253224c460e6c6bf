"""Registries that name classes without importing them: a plain dict from CLI name to
``"module:Class"`` is the one list of names (the CLI's choices read it without importing
TensorFlow), and the dict of classes is built from it on first use."""

from __future__ import annotations

import importlib
from typing import Any


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
