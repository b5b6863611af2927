"""Shared pytest setup: headless MuJoCo rendering and the list of registered env ids."""

from __future__ import annotations

import os

# MuJoCo's offscreen rendering on a machine without a display: EGL (set before mujoco is imported).
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
