"""Atomic file writes for run directories: a crash mid-write leaves the previous file intact.

Everything is written to a temporary file in the target's directory and moved into place with ``os.replace``
(atomic on POSIX and Windows within one filesystem).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

__all__ = ["atomic_write", "atomic_write_json", "atomic_write_text", "atomic_write_yaml", "read_json", "yaml_safe"]


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None], suffix: str = "") -> Path:
    """Call ``write(tmp_path)`` for a temporary path next to ``path`` (ending in ``suffix``, e.g. ``".zip"``
    for writers that add one), then move it onto ``path``. The temporary file is removed if ``write`` fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private; give it the usual permissions
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented JSON atomically (NaN written as ``NaN``, which Python's json reads back)."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def atomic_write_yaml(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` (made YAML-safe with :func:`yaml_safe`) as block YAML atomically, keys in given order."""
    return atomic_write_text(path, yaml.safe_dump(yaml_safe(data), sort_keys=False, default_flow_style=False))


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def yaml_safe(value: Any) -> Any:
    """``value`` with everything YAML cannot represent safely turned into its ``repr`` string (classes,
    schedules, numpy scalars become Python numbers, tuples become lists)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item") and getattr(value, "shape", None) == ():  # numpy scalar
        return value.item()
    if isinstance(value, dict):
        return {str(k): yaml_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [yaml_safe(v) for v in value]
    return repr(value)
