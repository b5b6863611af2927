"""How the console prints results: rich tables and bars for people, one JSON object per result for programs.

A result is the plain dict a :class:`~encephagen_gym.scripts.console_lab.Lab` command returns (``result["command"]``
names it). :class:`RichView` draws it; :class:`JsonView` prints it as one line of JSON (NaN → null).
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from encephagen_gym.stats import format_mean_ci

__all__ = ["JsonView", "RichView", "json_ready"]

BAR_WIDTH = 16
#: Width used when the output is not a terminal (scripts, pipes, transcripts).
PLAIN_WIDTH = 132
_BLOCKS = " ▏▎▍▌▋▊▉█"


def json_ready(value: Any) -> Any:
    """``value`` with non-finite floats replaced by None and tuples by lists (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value


def _ci(pair: list[float | None] | None, digits: int = 2) -> str:
    if pair is None or pair[0] is None:
        return "n/a"
    return format_mean_ci(pair[0], pair[1] if pair[1] is not None else float("nan"), digits)


def _significant(pair: list[float | None]) -> bool:
    """The 95 % interval excludes zero."""
    return pair[0] is not None and pair[1] is not None and abs(pair[0]) > pair[1]


def bar(value: float | None, scale: float, width: int = BAR_WIDTH) -> Text:
    """A horizontal bar of ``|value| / scale × width`` cells (eighths of a cell), green up, red down."""
    if value is None or not math.isfinite(value) or scale <= 0:
        return Text("")
    cells = min(abs(value) / scale, 1.0) * width
    full, part = int(cells), round((cells - int(cells)) * 8)
    text = "█" * full + (_BLOCKS[part] if part and full < width else "")
    return Text(text, style="green" if value >= 0 else "red")


def _latency(entry: dict[str, Any]) -> tuple[str, str]:
    """(latency, its 95 % bootstrap interval) as text; ``?`` marks a latency found in fewer than half of the
    bootstrap resamples, ``!`` one earlier than any synaptic path from the driven cells (not stimulus-locked)."""
    latency = entry.get("latency_ms")
    if latency is None:
        return "—", ""
    interval = entry.get("latency_interval_ms")
    mark = "!" if entry.get("latency_before_arrival") else ""
    if interval is None:
        return f"{latency:g}?{mark}", ""
    return f"{latency:g}{mark}", f"{interval[0]:g}–{interval[1]:g}"


def _delay(entry: dict[str, Any]) -> str:
    delay = entry.get("min_delay_ms")
    if delay is None:
        return "—"
    return "input" if delay == 0 else f"{delay:g}"


class JsonView:
    """One JSON object per line on stdout."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stdout

    def _emit(self, obj: dict[str, Any]) -> None:
        self.stream.write(json.dumps(json_ready(obj), allow_nan=False) + "\n")
        self.stream.flush()

    def show(self, result: dict[str, Any]) -> None:
        self._emit(result)

    def error(self, command: str, message: str) -> None:
        self._emit({"command": command, "error": message})

    def echo(self, line: str) -> None:
        """Commands are not echoed in JSON mode (each result names its command)."""

    @contextlib.contextmanager
    def progress(self, label: str) -> Iterator[Callable[[float], None] | None]:
        yield None

    @contextlib.contextmanager
    def live(self) -> Iterator[Callable[[dict[str, Any]], None]]:
        yield self.show


class RichView:
    """Tables, bars and colour for a terminal (plain text when the output is not a terminal)."""

    def __init__(self, console: Console | None = None, show_progress: bool = True) -> None:
        if console is None:
            console = Console(highlight=False)
            if not console.is_terminal:
                console = Console(highlight=False, width=PLAIN_WIDTH)
        self.console = console
        self.show_progress = show_progress and self.console.is_terminal

    def echo(self, line: str) -> None:
        self.console.print(Text(f"brain> {line}", style="bold"))

    def error(self, command: str, message: str) -> None:
        self.console.print(Text.assemble(("error: ", "bold red"), message.replace("\n", " ")), soft_wrap=True)

    @contextlib.contextmanager
    def progress(self, label: str) -> Iterator[Callable[[float], None] | None]:
        if not self.show_progress:
            yield None
            return
        columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
        with Progress(*columns, console=self.console, transient=True) as progress:
            task = progress.add_task(label, total=1.0)
            yield lambda fraction: progress.update(task, completed=fraction)

    @contextlib.contextmanager
    def live(self) -> Iterator[Callable[[dict[str, Any]], None]]:
        with Live(console=self.console, auto_refresh=False, transient=False) as live:
            yield lambda result: live.update(self._status_table(result), refresh=True)

    def show(self, result: dict[str, Any]) -> None:
        render = getattr(self, f"_show_{result['command']}", None)
        if render is None:
            self.console.print(result)
        else:
            render(result)
        if "wall_s" in result and not result.get("live"):
            self.console.print(Text(f"({result['wall_s']:.1f} s wall)", style="dim"))

    # ------------------------------------------------------------------------------------- results

    def _show_start(self, r: dict[str, Any]) -> None:
        self.console.print(
            f"[bold]{r['connectome']}[/]: {r['neurons']:,} LIF neurons ({r['neurons_per_region']}/region × "
            f"{r['regions']} regions), {r['synapses']:,} synapses, dt {r['dt_ms']:g} ms, wiring seed {r['seed']}, "
            f"{r['backend']} on {r['device']}. Every measurement: {r['repeats']} copies with fresh noise, "
            f"mean ± 95 % CI (Student t). Type [bold]help[/] for commands.",
            soft_wrap=False,
        )

    def _show_look(self, r: dict[str, Any]) -> None:
        self._responses(r, f"look {r['pattern']}: image into {r['driven_neurons']} visual E cells (pixel → cells)")

    def _show_sound(self, r: dict[str, Any]) -> None:
        self._responses(r, f"sound {r['hz']:g} Hz: tonotopic drive of {r['driven_neurons']} auditory E cells")

    def _show_touch(self, r: dict[str, Any]) -> None:
        self._responses(r, f"touch {r['side']}: {r['driven_neurons']} somatosensory E cells (opposite hemisphere)")

    def _responses(self, r: dict[str, Any], what: str) -> None:
        roles = r["roles"]

        def order(item: tuple[str, dict[str, Any]]) -> tuple:
            entry = item[1]
            latency = entry["latency_ms"]
            return (latency is None, latency or 0.0, -(entry["response_hz"][0] or 0.0))

        rows = sorted(roles.items(), key=order)
        scale = max((abs(e["response_hz"][0] or 0.0) for _, e in rows), default=1.0) or 1.0
        table = Table(title=f"{what}; {r['amplitude_mv']:g} mV, baseline {r['baseline_ms']:g} ms → stimulus "
                      f"{r['stimulus_ms']:g} ms, {r['repeats']} copies", title_justify="left")  # fmt: skip
        for name, justify in (("role", "left"), ("baseline Hz", "right"), ("stimulus Hz", "right"),
                              ("response Hz", "right"), ("", "left"), ("latency ms", "right"), ("95 % boot.", "right"),
                              ("1st arrival ms", "right")):  # fmt: skip
            table.add_column(name, justify=justify, no_wrap=True)
        for role, e in rows:
            style = "bold" if _significant(e["response_hz"]) else "dim"
            table.add_row(role, _ci(e["baseline_hz"]), _ci(e["stimulus_hz"]), Text(_ci(e["response_hz"]), style=style),
                          bar(e["response_hz"][0], scale), *_latency(e), _delay(e))  # fmt: skip
        self.console.print(table)
        self.console.print(Text(
            "response = stimulus − baseline rate per copy (bold: 95 % CI excludes 0). Latency: "
            f"{r['latency_rule']}; ? = found in fewer than half of the bootstrap resamples; ! = before the 1st "
            "arrival, the shortest synaptic delay from the driven cells, so not caused by the stimulus.",
            style="dim"))  # fmt: skip

    def _show_teach(self, r: dict[str, Any]) -> None:
        c, proj = r["change"], r["projection"]
        self.console.print(f"teach {r['pattern']} × {r['pairings']} (total {r['total_pairings']}): {r['rule']}")
        self.console.print(f"US: {r['us']}; learning rate η = {r['learning_rate']:g}")
        table = Table(title=f"weight change of the plastic projection ({proj['synapses']} synapses, "
                      f"{proj['weight_before_mv']:.2f} → {proj['weight_after_mv']:.2f} mV summed)",
                      title_justify="left")  # fmt: skip
        for name in ("synapses from", "synapses", "mean Δw mV", "change %"):
            table.add_column(name, justify="left" if name == "synapses from" else "right")
        groups = (("from_pattern_neurons", "pattern's visual cells"), ("from_other_neurons", "other visual cells"),
                  ("all", "all"))  # fmt: skip
        for key, label in groups:
            g = c[key]
            mean = "—" if g["mean_dw_mv"] is None else f"{g['mean_dw_mv']:+.4f}"
            pct = "—" if g["relative_change_pct"] is None else f"{g['relative_change_pct']:+.2f}"
            table.add_row(label, str(g["synapses"]), mean, pct)
        self.console.print(table)
        self.console.print(Text(f"largest |Δw| {c['max_abs_dw_mv']:.4f} mV", style="dim"))

    def _show_test(self, r: dict[str, Any]) -> None:
        rows = r["patterns"]
        scale = max((abs(p["change_hz"][0] or 0.0) for p in rows), default=1.0) or 1.0
        table = Table(title=f"test: {r['role']} response to each pattern, with the naive weights and now (same "
                      f"state and noise), {r['repeats']} copies", title_justify="left")  # fmt: skip
        for name in ("pattern", "taught", "naive Hz", "now Hz", "change Hz", "", "visual now Hz"):
            table.add_column(name, justify="left" if name in ("pattern", "") else "right")
        for p in rows:
            taught = f"{p['taught_pairings']}×" if p["taught_pairings"] else "—"
            table.add_row(p["pattern"], taught, _ci(p["naive_hz"]), _ci(p["now_hz"]), _ci(p["change_hz"]),
                          bar(p["change_hz"][0], scale), _ci(p["visual_now_hz"]))  # fmt: skip
        self.console.print(table)
        style = "bold green" if r["beyond_noise"] else "bold yellow"
        self.console.print(Text(f"change with teaching: taught {_ci(r['taught_change_hz'])} Hz, untaught "
                                f"{_ci(r['untaught_change_hz'])} Hz (the untaught change is generalisation); "
                                f"difference {r['difference_hz']:+.2f} Hz, permutation p = {r['permutation_p']:.3g} "
                                f"({r['n_taught']} vs {r['n_untaught']} presentations)"))  # fmt: skip
        self.console.print(Text(r["verdict"], style=style))

    def _show_memory(self, r: dict[str, Any]) -> None:
        role = r["role"]
        base, stim = r["baseline_hz"][role], r["stimulus_response_hz"][role]
        self.console.print(f"memory {r['pattern']}: shown {r['stimulus_ms']:g} ms, then {r['delay_ms']:g} ms without "
                           f"input. {role} (NMDA roles: {r['nmda_roles']}, τ_NMDA {r['tau_nmda_ms']:g} ms): baseline "
                           f"{_ci(base)} Hz, response during the pattern {_ci(stim)} Hz")  # fmt: skip
        scale = max([abs(b["roles"][role][0] or 0.0) for b in r["bins"]] + [abs(stim[0] or 0.0)]) or 1.0
        table = Table(title=f"rate − baseline per {r['bin_ms']:g} ms bin of the delay, {r['repeats']} copies",
                      title_justify="left")  # fmt: skip
        for name in ("delay ms", f"{role} Hz", "", "above baseline", "visual Hz"):
            table.add_column(name, justify="left" if name in ("", "above baseline") else "right")
        for b in r["bins"]:
            value = b["roles"][role]
            above = "yes" if _significant(value) and value[0] > 0 else ""
            table.add_row(f"{b['start_ms']:g}–{b['stop_ms']:g}", _ci(value), bar(value[0], scale), above,
                          _ci(b["roles"]["visual"]))  # fmt: skip
        self.console.print(table)

    def _status_table(self, r: dict[str, Any]) -> Table:
        rows = sorted(r["roles"].items())
        scale = max((e[0] or 0.0 for _, e in rows), default=1.0) or 1.0
        speed = r.get("speed_x_real_time")
        pace = f"{speed:.2f}× real time" if speed is not None else ""
        table = Table(title=f"spontaneous activity, last {r['window_ms']:g} ms (brain time {r['brain_time_s']:.2f} s; "
                      f"{pace}); {r['repeats']} copies", title_justify="left")  # fmt: skip
        table.add_column("role")
        table.add_column("rate Hz", justify="right")
        table.add_column("")
        for role, value in rows:
            table.add_row(role, _ci(value), bar(value[0], scale))
        table.add_row(Text("all neurons", style="bold"), _ci(r["all_hz"]), bar(r["all_hz"][0], scale))
        return table

    def _show_status(self, r: dict[str, Any]) -> None:
        if r.get("live"):
            self.console.print(Text(f"live view ended: {r['brain_s']:.2f} s of brain time in {r['wall_s']:.2f} s",
                                    style="dim"))  # fmt: skip
            return
        self.console.print(self._status_table(r))
        if r["taught"]:
            self.console.print(Text("taught: " + ", ".join(f"{k} × {v}" for k, v in r["taught"].items()), style="dim"))

    def _show_raster(self, r: dict[str, Any]) -> None:
        self.console.print(f"wrote {r['path']}: raster of copy 1 ({r['raster_neurons']} neurons, E blue, I red) and "
                           f"region × time heatmap ({r['bins_ms']:g} ms bins, colour scale 0–{r['vmax_hz']:.3g} Hz) "
                           f"of: {r['stimulus']}")  # fmt: skip

    def _show_save(self, r: dict[str, Any]) -> None:
        self.console.print(f"saved weights and {_taught(r['taught'])} to {r['path']} ({r['bytes']:,} bytes)")

    def _show_load(self, r: dict[str, Any]) -> None:
        self.console.print(f"loaded weights and {_taught(r['taught'])} from {r['path']}")

    def _show_reset(self, r: dict[str, Any]) -> None:
        self.console.print("reset: weights back to the naive ones, nothing taught, activity restarted")

    def _show_seed(self, r: dict[str, Any]) -> None:
        self.console.print(f"noise seed {r['noise_seed']} (wiring seed {r['wiring_seed']} unchanged): activity "
                           "restarted, taught weights kept")  # fmt: skip

    def _show_quit(self, r: dict[str, Any]) -> None:
        self.console.print("bye")


def _taught(taught: dict[str, int]) -> str:
    if not taught:
        return "nothing taught"
    return "taught " + ", ".join(f"{k} × {v}" for k, v in taught.items())
