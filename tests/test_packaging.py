"""Packaging: every sub-package is listed for non-editable installs, and the console scripts resolve."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_subpackage_is_listed() -> None:
    setuptools = PYPROJECT["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    for package, directory in setuptools["package-dir"].items():
        for init in (ROOT / directory).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / directory)
            name = ".".join([package, *relative.parts]) if relative.parts else package
            assert name in listed, f"{name} ({init.parent}) is missing from [tool.setuptools] packages"


def test_console_scripts_resolve() -> None:
    for command, target in PYPROJECT["project"]["scripts"].items():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), command
