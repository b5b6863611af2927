"""Input checks shared by the rules: clear ValueErrors for wrong shapes and non-finite signals.

Shape checks cost nothing; finiteness checks read one boolean back from the device, so the rules run them
on learning signals (once per environment step or trial), never inside the per-simulation-step trace
updates.
"""

from __future__ import annotations

import torch

__all__ = ["check_activity", "check_finite", "check_rate", "check_shape"]


def check_shape(name: str, tensor: torch.Tensor, shape: tuple[int | None, ...]) -> None:
    """ValueError unless ``tensor`` is a tensor of ``shape`` (``None`` matches any size)."""
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dim() != len(shape) or any(
        want is not None and got != want for got, want in zip(tensor.shape, shape, strict=True)
    ):
        expected = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"{name} must have shape {expected}, got {list(tensor.shape)}")


def check_finite(name: str, tensor: torch.Tensor) -> None:
    """ValueError if ``tensor`` holds NaN or infinite values."""
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} contains NaN or infinite values")


def check_activity(spikes: torch.Tensor, batch_size: int, n_neurons: int) -> None:
    """ValueError unless ``spikes`` is ``[batch_size, n_neurons]`` (the traces' batch size)."""
    check_shape("spikes", spikes, (batch_size, n_neurons))


def check_rate(name: str, value: float) -> float:
    """``value`` as a float if it is a finite number >= 0 (a learning rate), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0 or value == float("inf"):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)
