"""Region-level readouts accumulated on the device: spike counts and rates per region and per role."""

from __future__ import annotations

import torch

from encephagen_gym.brain.network import Network

__all__ = ["RegionActivity"]


class RegionActivity:
    """Spike counts per (batch element, region) over a window, accumulated on the network's device.

    Call :meth:`update` with the step's ``spikes`` ``[B, N]`` (two tensor ops, no host copy); read
    :meth:`counts`, :meth:`rates_hz` or :meth:`role_rates_hz` at the end of the window; :meth:`reset` to
    start a new one. ``population`` selects which neurons count: ``"all"``, ``"excitatory"`` or
    ``"inhibitory"``.
    """

    def __init__(self, network: Network, batch_size: int, population: str = "all") -> None:
        if population not in ("all", "excitatory", "inhibitory"):
            raise ValueError(f"population must be 'all', 'excitatory' or 'inhibitory', got {population!r}")
        self.network = network
        self.population = population
        n, n_exc = network.neurons_per_region, network.n_exc
        self._columns = {"all": slice(0, n), "excitatory": slice(0, n_exc), "inhibitory": slice(n_exc, n)}[population]
        self._neurons_per_region = self._columns.stop - self._columns.start
        self._counts = torch.zeros((batch_size, network.n_regions), device=network.device)
        self._scratch = torch.zeros_like(self._counts)
        self.steps = 0

    def reset(self) -> None:
        """Start a new window."""
        self._counts.zero_()
        self.steps = 0

    def update(self, spikes: torch.Tensor) -> None:
        """Add one step's spikes (``[B, N]``, 0/1) to the per-region counts."""
        if spikes.shape != (self._counts.shape[0], self.network.n_neurons):
            raise ValueError(f"spikes must have shape [{self._counts.shape[0]}, {self.network.n_neurons}] (this "
                             f"accumulator's batch and network), got {list(spikes.shape)}")  # fmt: skip
        per_region = spikes.view(spikes.shape[0], self.network.n_regions, self.network.neurons_per_region)
        if self.population != "all":
            per_region = per_region[:, :, self._columns]
        torch.sum(per_region, dim=2, out=self._scratch)
        self._counts.add_(self._scratch)
        self.steps += 1

    def counts(self) -> torch.Tensor:
        """``[B, R]`` spike counts in the window (a copy, on the device)."""
        return self._counts.clone()

    @property
    def window_ms(self) -> float:
        """Length of the window so far in ms."""
        return self.steps * self.network.config.dt_ms

    def rates_hz(self) -> torch.Tensor:
        """``[B, R]`` mean firing rate per neuron of each region over the window, in Hz."""
        if self.steps == 0:
            raise ValueError("no steps accumulated yet")
        return self._counts / (self._neurons_per_region * self.window_ms * 1e-3)

    def role_rates_hz(self) -> dict[str, torch.Tensor]:
        """Mean rate (Hz, ``[B]``) of the neurons of each role, weighting regions equally (equal sizes)."""
        rates = self.rates_hz()
        roles = self.network.roles
        out = {}
        for role in sorted(set(roles)):
            index = torch.as_tensor(self.network.connectome.regions_with_role(role), device=rates.device)
            out[role] = rates.index_select(1, index).mean(dim=1)
        return out
