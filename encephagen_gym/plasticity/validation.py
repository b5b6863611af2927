"""Input checks shared by the rules: clear ValueErrors for wrong shapes and non-finite signals.

Shape checks cost nothing; finiteness checks read one boolean back from the device, so the rules run them
on learning signals (once per environment step or trial), never inside the per-simulation-step trace
updates.
"""

from __future__ import annotations

import torch

from encephagen_gym.brain.network import check_same_network

__all__ = [
    "check_activity",
    "check_finite",
    "check_made_for",
    "check_rate",
    "check_shape",
    "check_state_network",
    "check_synapse_rows",
]


def check_shape(name: str, tensor: torch.Tensor, shape: tuple[int | None, ...]) -> None:
    """ValueError unless ``tensor`` is a tensor of ``shape`` (``None`` matches any size)."""
    if isinstance(tensor, torch.Tensor) and tensor.shape == shape:  # the common case, first (per-step checks)
        return
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


def check_made_for(projection, obj: object, what: str) -> None:
    """ValueError unless ``obj`` (a network, state, readout or projection: anything with a ``fingerprint``)
    belongs to the network ``projection`` was made for; the message says what differs. O(1)."""
    check_same_network(projection.fingerprint, getattr(obj, "fingerprint", None), what, "the projection")


def check_state_network(projection, state: object) -> None:
    """Like :func:`check_made_for` for the activity passed to a rule's ``step``: a brain state is checked; a
    bare spike tensor (or another object without a fingerprint) is left to the shape checks."""
    fingerprint = getattr(state, "fingerprint", None)
    if fingerprint is not None and fingerprint is not projection.fingerprint:
        check_same_network(projection.fingerprint, fingerprint, "the state", "the projection")


def check_synapse_rows(name: str, tensor: torch.Tensor, n_rows: int) -> None:
    """ValueError unless ``tensor`` has ``n_rows`` rows (traces of another rule or projection have not)."""
    if tensor.dim() < 1 or tensor.shape[0] != n_rows:
        raise ValueError(f"{name} have {tensor.shape[0] if tensor.dim() else 0} rows, this rule's projection "
                         f"{n_rows}: they were made by another rule or projection")  # fmt: skip


def check_rate(name: str, value: float) -> float:
    """``value`` as a float if it is a finite number >= 0 (a learning rate), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0 or value == float("inf"):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)
