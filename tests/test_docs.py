"""The code examples users copy first (README, package quick starts) run as written."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

import encephagen_gym.plasticity

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
README_BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


@pytest.mark.parametrize("code", README_BLOCKS, ids=[f"readme-{i}" for i in range(len(README_BLOCKS))])
def test_readme_python_examples_run(code: str) -> None:
    exec(compile(code, "README.md", "exec"), {})


def test_plasticity_quick_start_runs() -> None:
    doc = encephagen_gym.plasticity.__doc__
    code = textwrap.dedent(doc.split("runs as written)::")[1].split("\nMemory:")[0])
    namespace: dict[str, object] = {}
    exec(compile(code, "encephagen_gym/plasticity/__init__.py", "exec"), namespace)
    assert namespace["delta"].shape == (4,)
