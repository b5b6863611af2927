"""``encephagen-console``: an interactive prompt for the connectome spiking brain.

Every answer is a measurement: the brain is simulated as ``--repeats`` copies with fresh noise, each response is the
rate in the stimulus window minus the rate in the baseline window before it, per region role, and tables give the
mean over the copies with a 95 % Student-t interval. See ``help`` at the prompt, and
:mod:`encephagen_gym.scripts.console_lab` for the protocols.

Usage::

    encephagen-console                                   # the full tvb96 × 200 brain, prompt "brain> "
    encephagen-console --neurons-per-region 20 --repeats 5
    encephagen-console --script session.txt --json       # one JSON object per result, for tests and notebooks
    printf 'look A\\nsound 440\\n' | encephagen-console --neurons-per-region 10 --json

At the prompt: ``look A``, ``teach A 20``, ``test``, ``memory A 1000``, ``sound 440``, ``touch left``, ``status``
(live, Ctrl-C returns) or ``status --once``, ``raster out.png``, ``save brain.pt``, ``load brain.pt``, ``reset``,
``seed 3``, ``quit``. A bad command prints one line and the prompt goes on; nothing taught is lost.
"""

from __future__ import annotations

import argparse
import cmd
import contextlib
import inspect
import math
import shlex
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from encephagen_gym.brain import BrainConfig
from encephagen_gym.brain.config import set_compute_threads
from encephagen_gym.scripts.console_lab import MAX_PAIRINGS, ConsoleError, Lab, Protocol
from encephagen_gym.scripts.console_stimuli import PATTERN_NAMES, SIDES
from encephagen_gym.scripts.console_views import JsonView, RichView

__all__ = ["BrainConsole", "main"]

LIVE_WINDOW_MS = 250.0
DEFAULT_HISTORY = Path.home() / ".encephagen_console_history"
COMMANDS = ("look", "teach", "test", "memory", "sound", "touch", "status", "raster", "save", "load", "reset",
            "seed", "quit", "exit", "help")  # fmt: skip


def _summary(doc: str | None) -> str:
    """The first line of a command's docstring without its usage part."""
    return inspect.cleandoc(doc or "").splitlines()[0].split(":", 1)[-1].strip()


def _words(arg: str, usage: str, least: int, most: int) -> list[str]:
    try:
        words = shlex.split(arg)
    except ValueError as err:
        raise ConsoleError(f"{err}; usage: {usage}") from None
    if not least <= len(words) <= most:
        raise ConsoleError(f"usage: {usage}")
    return words


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConsoleError(f"{what} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise ConsoleError(f"{what} must be a finite number, got {text!r}")
    return value


def _integer(text: str, what: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConsoleError(f"{what} must be a whole number, got {text!r}") from None
    if not low <= value <= high:
        raise ConsoleError(f"{what} must be between {low} and {high}, got {value}")
    return value


class BrainConsole(cmd.Cmd):
    """The prompt. Each ``do_*`` method parses its arguments, runs the lab and shows the result; its docstring is
    its ``help``."""

    prompt = "brain> "

    def __init__(self, lab: Lab, view: RichView | JsonView, interactive: bool = False) -> None:
        super().__init__()
        self.lab = lab
        self.view = view
        self.interactive = interactive
        self.failures = 0

    # ------------------------------------------------------------------------------------ machinery

    def onecmd(self, line: str) -> bool:
        """Run one command; a bad one prints a one-line error and returns False (the prompt goes on)."""
        line = line.strip()
        if not line or line.startswith("#"):
            return False
        command = line.split()[0]
        try:
            return bool(super().onecmd(line))
        except ConsoleError as err:
            self.view.error(command, str(err))
        except KeyboardInterrupt:
            self.view.error(command, "interrupted (Ctrl-C); the brain and what it was taught are kept")
        except Exception as err:  # a bug must not end the session or lose what was taught
            self.view.error(command, f"internal error: {type(err).__name__}: {err}")
        self.failures += 1
        return False

    def emptyline(self) -> bool:
        return False  # cmd's default would repeat the last command

    def default(self, line: str) -> bool:
        command = line.split()[0]
        raise ConsoleError(f"unknown command {command!r}; commands: {', '.join(COMMANDS)} (help COMMAND for details)")

    def _run(self, label: str, work, *args: Any) -> dict[str, Any]:
        started = time.perf_counter()
        with self.view.progress(label) as callback:
            self.lab.progress = callback
            try:
                result = work(*args)
            finally:
                self.lab.progress = None
        return {**result, "wall_s": result.get("wall_s", time.perf_counter() - started)}

    def _show(self, label: str, work, *args: Any) -> bool:
        self.view.show(self._run(label, work, *args))
        return False

    def do_help(self, arg: str) -> bool:
        """help [COMMAND]: list the commands, or explain one."""
        words = _words(arg, "help [COMMAND]", 0, 1)
        if words:
            method = getattr(self, f"do_{words[0]}", None)
            if method is None or words[0] == "EOF":
                raise ConsoleError(f"no command {words[0]!r}; commands: {', '.join(COMMANDS)}")
            text = inspect.cleandoc(method.__doc__ or "")
        else:
            docs = [getattr(self, f"do_{name}").__doc__ for name in COMMANDS if name != "exit"]
            lines = [f"  {inspect.cleandoc(doc).split(':')[0]:32s}{_summary(doc)}" for doc in docs]
            text = "commands (help COMMAND for details):\n" + "\n".join(lines)
        if isinstance(self.view, JsonView):
            self.view.show({"command": "help", "topic": words[0] if words else None, "text": text})
        else:
            self.view.console.print(text, highlight=False, markup=False)
        return False

    def _complete(self, options: Iterable[str], text: str) -> list[str]:
        return [option for option in options if option.lower().startswith(text.lower())]

    def _complete_path(self, text: str) -> list[str]:
        base = Path(text).expanduser()
        folder, stem = (base, "") if text.endswith("/") else (base.parent, base.name)
        try:
            entries = sorted(folder.iterdir()) if str(folder) else sorted(Path(".").iterdir())
        except OSError:
            return []
        prefix = text[: len(text) - len(stem)]
        return [prefix + e.name + ("/" if e.is_dir() else "") for e in entries if e.name.startswith(stem)]

    # ------------------------------------------------------------------------------------ commands

    def do_look(self, arg: str) -> bool:
        """look PATTERN: show an 8x8 image to the visual regions; responses and latencies per role.

        A-E are the PatternRecognition task's seeded prototypes, 0-9 scikit-learn digits; each pixel drives its own
        subset of visual excitatory cells. Prints, per region role, the rate in the stimulus window minus the baseline
        window before it (Hz, mean ± 95 % CI over the copies), the onset latency (ms, with a 95 % bootstrap interval)
        and the shortest synaptic delay from the driven cells: how the signal travels through the connectome."""
        (pattern,) = _words(arg, "look PATTERN", 1, 1)
        return self._show(f"look {pattern}", self.lab.look, pattern)

    def complete_look(self, text: str, line: str, begidx: int, endidx: int) -> list[str]:
        return self._complete(PATTERN_NAMES, text)

    def do_teach(self, arg: str) -> bool:
        """teach PATTERN [N]: pair the pattern with a US N times (default 10) under a three-factor rule.

        The US is a current into the amygdala during the pattern's last part; the rule is reward-modulated STDP
        (three-factor rule: STDP tags on the visual -> amygdala synapses, turned into weight changes by a dopamine
        pulse at each US). Prints the weight change of that plastic projection, split into synapses from the
        pattern's cells and from the others."""
        words = _words(arg, "teach PATTERN [N]", 1, 2)
        pairings = _integer(words[1], "N (pairings)", 1, MAX_PAIRINGS) if len(words) == 2 else 10
        return self._show(f"teach {words[0]} × {pairings}", self.lab.teach, words[0], pairings)

    complete_teach = complete_look

    def do_test(self, arg: str) -> bool:
        """test: did teaching change the response to the taught patterns more than to the others?

        Measures the amygdala response to every taught pattern and to the untaught prototypes twice, from the same state
        and noise: with the current weights and with the naive (as built) weights. Says whether the taught patterns'
        change exceeds the untaught ones' beyond the noise (two-sided permutation test over presentations, p < 0.05),
        and plainly when it does not."""
        _words(arg, "test", 0, 0)
        return self._show("test", self.lab.test)

    def do_memory(self, arg: str) -> bool:
        """memory PATTERN [DELAY_MS]: show, remove, and follow the prefrontal rate through the delay.

        Prints the prefrontal (NMDA) rate minus its baseline in every 100 ms bin of the delay (default 1000 ms), mean ±
        95 % CI: persistence as a curve. The visual column shows that the input is gone."""
        words = _words(arg, "memory PATTERN [DELAY_MS]", 1, 2)
        delay = _number(words[1], "DELAY_MS") if len(words) == 2 else 1000.0
        if delay <= 0:
            raise ConsoleError(f"DELAY_MS must be positive, got {delay:g}")
        return self._show(f"memory {words[0]}", self.lab.memory, words[0], delay)

    complete_memory = complete_look

    def do_sound(self, arg: str) -> bool:
        """sound [HZ]: play a tone (default 1000 Hz) to the auditory regions; responses per role.

        HZ from 20 to 20000, into the auditory regions' tonotopic maps (preferred frequencies 125 Hz-8 kHz, 1-octave
        tuning). Prints per-role responses and latencies as look does."""
        words = _words(arg, "sound [HZ]", 0, 1)
        hz = _number(words[0], "HZ") if words else 1000.0
        return self._show(f"sound {hz:g} Hz", self.lab.sound, hz)

    def do_touch(self, arg: str) -> bool:
        """touch [SIDE]: touch the left, right or both (default) sides; responses per role.

        Drives the somatosensory regions of the opposite hemisphere. Prints per-role responses and latencies as look
        does."""
        words = _words(arg, "touch [left|right|both]", 0, 1)
        side = words[0].lower() if words else "both"
        return self._show(f"touch {side}", self.lab.touch, side)

    def complete_touch(self, text: str, line: str, begidx: int, endidx: int) -> list[str]:
        return self._complete(SIDES, text)

    def do_status(self, arg: str) -> bool:
        """status [--once] [--seconds S]: the brain running on its own, rate per role (live).

        Rates in Hz, mean ± 95 % CI over the copies. Live by default: the table updates every 250 ms of brain time,
        paced to real time when the brain runs faster than that; Ctrl-C (or S seconds of brain time) returns to the
        prompt. --once runs the status window once and prints one table."""
        words = _words(arg, "status [--once] [--seconds S]", 0, 3)
        once, seconds = False, None
        while words:
            word = words.pop(0)
            if word == "--once":
                once = True
            elif word == "--seconds" and words:
                seconds = _number(words.pop(0), "--seconds")
                if seconds <= 0:
                    raise ConsoleError(f"--seconds must be positive, got {seconds:g}")
            else:
                raise ConsoleError(f"unknown status option {word!r}; usage: status [--once] [--seconds S]")
        if once:
            return self._show("status", self.lab.status)
        if seconds is None and not self.interactive:
            raise ConsoleError("live status runs until Ctrl-C and needs a terminal: use status --once or "
                               "status --seconds S")  # fmt: skip
        self.view.show(self._status_live(seconds))
        return False

    def _status_live(self, seconds: float | None) -> dict[str, Any]:
        started, brain_ms, windows, slept = time.perf_counter(), 0.0, 0, 0.0
        total_ms = None if seconds is None else seconds * 1000.0
        try:
            with self.view.live() as update:
                while total_ms is None or brain_ms < total_ms - 1e-6:
                    window = LIVE_WINDOW_MS if total_ms is None else min(LIVE_WINDOW_MS, total_ms - brain_ms)
                    result = self.lab.status(window)
                    brain_ms += window
                    windows += 1
                    update({**result, "live_window": windows})
                    ahead = brain_ms / 1000.0 - (time.perf_counter() - started)
                    if ahead > 0:  # faster than real time: wait for the clock
                        time.sleep(ahead)
                        slept += ahead
        except KeyboardInterrupt:
            pass
        return {"command": "status", "live": True, "brain_s": brain_ms / 1000.0, "windows": windows,
                "wall_s": time.perf_counter() - started, "paced_s": slept}  # fmt: skip

    def do_raster(self, arg: str) -> bool:
        """raster [FILE.png] [--vmax HZ]: draw the last stimulus' raster and region x time heatmap.

        Spike raster of copy 1, excitatory cells blue, inhibitory red, stimulus shaded) and region x time heatmap (mean
        of the copies) into FILE.png (default raster.png). --vmax fixes the top of the colour scale so that figures
        compare."""
        words = _words(arg, "raster [FILE.png] [--vmax HZ]", 0, 3)
        path, vmax = "raster.png", None
        while words:
            word = words.pop(0)
            if word == "--vmax" and words:
                vmax = _number(words.pop(0), "--vmax")
                if vmax <= 0:
                    raise ConsoleError(f"--vmax must be a positive number of Hz, got {vmax:g}")
            elif not word.startswith("--"):
                path = word
            else:
                raise ConsoleError(f"unknown raster option {word!r}; usage: raster [FILE.png] [--vmax HZ]")
        return self._show("raster", self.lab.raster, path, vmax)

    def complete_raster(self, text: str, line: str, begidx: int, endidx: int) -> list[str]:
        return self._complete_path(text)

    def do_save(self, arg: str) -> bool:
        """save FILE: write the weights and what was taught to FILE.

        Atomic: written to a temporary file in the same folder, then renamed."""
        (path,) = _words(arg, "save FILE", 1, 1)
        return self._show("save", self.lab.save, path)

    def do_load(self, arg: str) -> bool:
        """load FILE: restore the weights and what was taught from a saved file.

        Only a file saved from this brain (same connectome, size, wiring seed and parameters) is accepted; a file from
        another brain is refused and nothing changes."""
        (path,) = _words(arg, "load FILE", 1, 1)
        return self._show("load", self.lab.load, path)

    complete_save = complete_load = complete_raster

    def do_reset(self, arg: str) -> bool:
        """reset: forget everything taught and restart the activity.

        The weights go back to those of the brain as built."""
        _words(arg, "reset", 0, 0)
        return self._show("reset", self.lab.reset)

    def do_seed(self, arg: str) -> bool:
        """seed N: restart the activity with noise from seed N (what follows repeats exactly).

        The noise is the initial state and the background input. The wiring (--seed) and what was taught stay."""
        (text,) = _words(arg, "seed N", 1, 1)
        return self._show("seed", self.lab.reseed, _integer(text, "N", 0, 2**31 - 2))

    def do_quit(self, arg: str) -> bool:
        """quit: leave the console (also exit, or Ctrl-D)."""
        self.view.show({"command": "quit"})
        return True

    do_exit = do_quit

    def do_EOF(self, arg: str) -> bool:  # noqa: N802 (cmd's name for end of input)
        """Ctrl-D: leave the console."""
        if isinstance(self.view, RichView):
            self.view.console.print()
        return self.do_quit(arg)

    def get_names(self) -> list[str]:
        return [name for name in super().get_names() if name != "do_EOF"]


def run_lines(console: BrainConsole, lines: Iterable[str]) -> None:
    """Run commands from a script or a pipe, echoing each (in the rich view) before its result."""
    for line in lines:
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        console.view.echo(text)
        if console.onecmd(text):
            return


def interact(console: BrainConsole, history: Path | None) -> None:
    """The interactive loop: readline history and tab completion; Ctrl-C at the prompt does not quit."""
    try:
        import readline
    except ImportError:  # e.g. Windows without pyreadline: no history, the prompt still works
        readline = None
    if readline is not None and history is not None:
        with contextlib.suppress(OSError):
            readline.read_history_file(history)
        readline.set_history_length(1000)
    try:
        while True:
            try:
                console.cmdloop()
                return
            except KeyboardInterrupt:
                print("^C (quit or Ctrl-D to leave)")
    finally:
        if readline is not None and history is not None:
            with contextlib.suppress(OSError):
                readline.write_history_file(history)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="encephagen-console",
        description="An interactive prompt for the connectome spiking brain: look, teach, test, memory, sound, "
        "touch, status, raster, save/load. Every answer is a response against its baseline, mean ± 95 %% CI.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--neurons-per-region", type=int, default=200, help="neurons per region (>= 2)")
    add("--connectome", default="tvb96", help="connectome name, e.g. tvb96, tvb76 or tvb96:rewired:3")
    add("--seed", type=int, default=0, help="wiring seed (defines the network) and first noise seed")
    add("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    add("--backend", default="auto", choices=("auto", "torch", "numba"), help="simulator backend")
    add("--repeats", type=int, default=10, help="copies of the brain (fresh noise each) per measurement, >= 2")
    add("--script", type=Path, default=None, help="run the commands in this file (one per line) and exit")
    add("--json", action="store_true", help="print each result as one JSON object per line")
    add(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for torch and numba; more helps on an idle multi-core CPU, but on a busy one numba's "
        "parallel step was measured 2-200x slower with 2 threads than with 1",
    )
    add("--history", type=Path, default=DEFAULT_HISTORY, help="readline history file of the interactive prompt")
    protocol = parser.add_argument_group("protocol (times in ms, currents in mV)")
    defaults = Protocol()
    for name, help_text in (
        ("rest_ms", "quiet time before each presentation, so the last stimulus has died away"),
        ("baseline_ms", "baseline window (no input) before each stimulus"),
        ("stimulus_ms", "stimulus window"),
        ("amplitude_mv", "stimulus current into driven cells (a pixel's value times this)"),
        ("us_amplitude_mv", "US current into the amygdala's excitatory cells (teach)"),
        ("us_ms", "US duration, at the end of the pattern (teach)"),
        ("learning_rate", "learning rate η of reward-modulated STDP (teach)"),
        ("latency_bin_ms", "bin width of the baseline noise estimate for latencies"),
        ("status_ms", "window of status --once"),
    ):
        flag = "--" + name.removesuffix("_mv").replace("_", "-")
        protocol.add_argument(flag, dest=name, type=float, default=getattr(defaults, name), help=help_text)
    args = parser.parse_args(argv)
    if args.script is not None and not args.script.is_file():
        parser.error(f"--script {str(args.script)!r}: no such file")
    if args.repeats < 2:
        parser.error(f"--repeats must be >= 2 (a confidence interval needs two copies), got {args.repeats}")
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    names = ("rest_ms", "baseline_ms", "stimulus_ms", "amplitude_mv", "us_amplitude_mv", "us_ms", "learning_rate",
             "latency_bin_ms", "status_ms")  # fmt: skip
    try:
        args.protocol = Protocol(**{name: getattr(args, name) for name in names})
        args.config = BrainConfig(connectome=args.connectome, neurons_per_region=args.neurons_per_region,
                                  seed=args.seed, device=args.device, backend=args.backend)  # fmt: skip
    except ValueError as err:
        parser.error(str(err))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``encephagen-console``; returns 1 when a scripted command failed, else 0."""
    args = _parse(argv)
    set_compute_threads(args.threads)
    interactive = args.script is None and sys.stdin.isatty()
    view = JsonView() if args.json else RichView(show_progress=interactive)
    started = time.perf_counter()
    try:
        lab = Lab(args.config, args.protocol, repeats=args.repeats)
    except ValueError as err:
        print(f"encephagen-console: error: {err}", file=sys.stderr)
        return 2
    net = lab.network
    view.show({"command": "start", "connectome": args.config.connectome, "neurons": net.n_neurons,
               "neurons_per_region": net.neurons_per_region, "regions": net.n_regions, "synapses": net.n_synapses,
               "dt_ms": args.config.dt_ms, "seed": args.config.seed, "backend": lab.state.backend,
               "device": str(net.device), "repeats": args.repeats, "rule": lab.rule_description(),
               "wall_s": time.perf_counter() - started})  # fmt: skip
    console = BrainConsole(lab, view, interactive=interactive)
    if args.script is not None:
        run_lines(console, args.script.read_text().splitlines())
    elif not interactive:
        run_lines(console, sys.stdin)
    else:
        interact(console, args.history)
        return 0
    return 1 if console.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
