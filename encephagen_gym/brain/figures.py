"""Pictures of the brain's activity: a spike raster (E and I cells coloured) over a region × time rate heatmap.

Shared by ``scripts/brain_activity.py`` and the console's ``raster`` command. matplotlib is imported only when a
figure is drawn (the brain package itself needs only torch and numpy).

Layout: regions are grouped by role (alphabetical, file order within a role) on both panels, with the role
names on the y axis and lines between the role bands; the stimulus window, when given, is shaded on the raster
and outlined on the heatmap; the heatmap has its own colour bar (rate in Hz, from 0 to ``vmax``: pass the same
``vmax`` to compare figures across runs), the raster a legend for the two cell types.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from encephagen_gym.brain.network import Network

__all__ = ["ActivityRecord", "plot_activity", "raster_sample", "role_order"]

EXCITATORY_COLOUR = "tab:blue"
INHIBITORY_COLOUR = "tab:red"


@dataclasses.dataclass(frozen=True)
class ActivityRecord:
    """What a figure shows, on the host.

    ``raster_t_s``: spike times in s; ``raster_row``: the sampled neuron of each spike (index into the sample,
    region-major: row ``r · per_region + k`` is the k-th sampled neuron of region r); ``sample_excitatory``:
    bool per sampled neuron (``[R · per_region]``); ``region_rates_hz``: ``[R, n_bins]`` mean rate per neuron of
    each region in consecutive bins of ``bin_ms`` starting at ``t0_s`` (s).
    """

    raster_t_s: np.ndarray
    raster_row: np.ndarray
    sample_excitatory: np.ndarray
    per_region: int
    region_rates_hz: np.ndarray
    bin_ms: float
    t0_s: float = 0.0

    @property
    def t1_s(self) -> float:
        """End of the last bin (s)."""
        return self.t0_s + self.region_rates_hz.shape[1] * self.bin_ms / 1000.0


def raster_sample(network: Network, per_region: int) -> tuple[torch.Tensor, np.ndarray]:
    """Neuron ids to show in a raster, ``per_region`` per region (at most the region's size): the first
    ``round(per_region · E fraction)`` excitatory cells and the last of the inhibitory cells (at least one of
    each when ``per_region`` ≥ 2). Returns ``(ids [R · k] on the network's device, is_excitatory [R · k])``."""
    if not isinstance(per_region, int) or per_region < 1:
        raise ValueError(f"per_region must be a positive integer, got {per_region!r}")
    n, n_exc = network.neurons_per_region, network.n_exc
    k = min(per_region, n)
    k_exc = min(n_exc, max(1, round(k * n_exc / n)))
    if k >= 2:
        k_exc = min(k_exc, k - 1)  # leave room for at least one inhibitory cell
    k_inh = k - k_exc
    local = np.concatenate([np.arange(k_exc), np.arange(n - k_inh, n)])
    ids = (np.arange(network.n_regions)[:, None] * n + local[None, :]).reshape(-1)
    is_exc = np.tile(local < n_exc, network.n_regions)
    return torch.as_tensor(ids, dtype=torch.int64, device=network.device), is_exc


def role_order(roles: Sequence[str]) -> np.ndarray:
    """Region order for plotting: grouped by role (alphabetical), file order within a role."""
    return np.array(sorted(range(len(roles)), key=lambda r: (roles[r], r)))


def _role_bands(axis, sorted_roles: list[str], scale: float, offset: float) -> None:
    """Lines between role bands and the role names at their centres (row i spans i ± 0.5)."""
    boundaries = [i for i in range(1, len(sorted_roles)) if sorted_roles[i] != sorted_roles[i - 1]]
    starts, ends = [0, *boundaries], [*boundaries, len(sorted_roles)]
    for b in boundaries:
        axis.axhline(b * scale - offset, color="0.6", lw=0.5)
    axis.set_yticks([(s + e) / 2 * scale - offset for s, e in zip(starts, ends, strict=True)])
    axis.set_yticklabels([sorted_roles[s] for s in starts], fontsize=7)


def plot_activity(
    record: ActivityRecord,
    roles: Sequence[str],
    path: str | Path,
    title: str,
    stimulus_window_s: tuple[float, float] | None = None,
    stimulus_label: str = "stimulus",
    vmax: float | None = None,
    time_label: str = "time (s)",
    heatmap_label: str = "region rate (Hz)",
) -> float:
    """Draw ``record`` into the PNG ``path``; returns the colour scale's top (Hz) that was used.

    ``stimulus_window_s`` (start, stop) in s is shaded on the raster and outlined on the heatmap;
    ``vmax`` fixes the top of the colour scale (default: the largest rate in the record) so that figures of
    different runs compare; ``time_label`` names the x axis (its unit is seconds).
    """
    if vmax is not None and not (math.isfinite(vmax) and vmax > 0):
        raise ValueError(f"vmax must be a positive number of Hz, got {vmax!r}")
    rates = np.asarray(record.region_rates_hz, dtype=np.float64)
    if rates.ndim != 2 or rates.shape[0] != len(roles) or rates.shape[1] == 0:
        raise ValueError(f"region_rates_hz must be [{len(roles)} regions, n_bins >= 1], got {rates.shape}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    order = role_order(roles)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    per_region = record.per_region
    rows = np.asarray(record.raster_row, dtype=np.int64)
    y = rank[rows // per_region] * per_region + rows % per_region
    excitatory = np.asarray(record.sample_excitatory, dtype=bool)[rows]
    top = float(vmax) if vmax is not None else max(float(rates.max()), 1e-9)

    fig, axes = plt.subplots(2, 2, figsize=(12, 10), height_ratios=[1.2, 1.0], width_ratios=[1.0, 0.025],
                             layout="constrained")  # fmt: skip
    ax_raster, ax_heat, ax_bar = axes[0, 0], axes[1, 0], axes[1, 1]
    axes[0, 1].axis("off")
    ax_heat.sharex(ax_raster)
    t = np.asarray(record.raster_t_s)
    for mask, colour in ((excitatory, EXCITATORY_COLOUR), (~excitatory, INHIBITORY_COLOUR)):
        ax_raster.scatter(t[mask], y[mask], s=1.5, c=colour, marker="|", linewidths=0.5)
    n_rows = len(roles) * per_region
    ax_raster.set_ylim(n_rows - 0.5, -0.5)  # top to bottom, like the heatmap
    ax_raster.set_xlim(record.t0_s, record.t1_s)
    ax_raster.set_ylabel(f"neuron ({per_region} per region, grouped by role)")
    n_exc_shown = int(record.sample_excitatory[:per_region].sum())
    legend = [
        Line2D([], [], color=EXCITATORY_COLOUR, marker="|", ls="", ms=8, label=f"excitatory ({n_exc_shown}/region)"),
        Line2D([], [], color=INHIBITORY_COLOUR, marker="|", ls="", ms=8,
               label=f"inhibitory ({per_region - n_exc_shown}/region)"),
    ]  # fmt: skip
    extent = (record.t0_s, record.t1_s, len(roles) - 0.5, -0.5)
    image = ax_heat.imshow(rates[order], aspect="auto", cmap="magma", extent=extent, interpolation="nearest",
                           vmin=0.0, vmax=top)  # fmt: skip
    fig.colorbar(image, cax=ax_bar, label=heatmap_label + ("" if vmax is None else " (fixed scale)"))
    ax_heat.set_ylabel("region (grouped by role)")
    ax_heat.set_xlabel(time_label)
    ax_raster.tick_params(labelbottom=False)
    sorted_roles = [roles[r] for r in order]
    _role_bands(ax_raster, sorted_roles, per_region, 0.5)
    _role_bands(ax_heat, sorted_roles, 1, 0.5)
    if stimulus_window_s is not None:
        start, stop = stimulus_window_s
        ax_raster.axvspan(start, stop, color="gold", alpha=0.18, lw=0, zorder=0)
        for edge in (start, stop):
            ax_heat.axvline(edge, color="white", ls="--", lw=1.0)
        legend.append(plt.Rectangle((0, 0), 1, 1, color="gold", alpha=0.4, label=stimulus_label))
    ax_raster.legend(
        handles=legend, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=len(legend), fontsize=8, frameon=False
    )  # above the raster, off the spikes
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return top
