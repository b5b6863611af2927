"""encephagen-console, driven through ``--script --json`` on small brains: every command, its measured structure,
bad input, and save/load; plus the stimulus encodings, the latency estimator and brain_activity's arguments."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from encephagen_gym.brain import BrainConfig, build_network
from encephagen_gym.scripts import brain_activity, console
from encephagen_gym.scripts.console_lab import onset_latencies
from encephagen_gym.scripts.console_stimuli import image_current, pattern_image, tone_current, touch_current

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
# a small brain and short windows: the structure of every answer, not its size, is what these tests check
SMALL = ["--neurons-per-region", "10", "--repeats", "4", "--rest-ms", "100", "--baseline-ms", "100",
         "--stimulus-ms", "100", "--threads", "1", "--json"]  # fmt: skip


@pytest.fixture(autouse=True)
def _restore_threads(restore_threads):
    """Scripts set torch's and numba's thread counts: give them back after each test."""


def run_console(tmp_path: Path, lines: list[str], *options: str) -> tuple[int, list[dict]]:
    """Run the console on a script; return its exit status and the JSON objects it printed (one per line).
    ``options`` come after the small-brain ones, so they override them."""
    script = tmp_path / "session.txt"
    script.write_text("\n".join(lines) + "\n")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = console.main([*SMALL, *options, "--script", str(script)])
    return status, [json.loads(line) for line in out.getvalue().splitlines()]


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """One scripted session through every command (and some bad ones), run once for the tests below."""
    tmp = tmp_path_factory.mktemp("console")
    lines = [
        "# a comment and a blank line are skipped",
        "",
        "look A",
        "sound 1000",
        "touch left",
        "teach A 3",
        "test",
        "memory A 300",
        "status --once",
        "status --seconds 0.3",
        f"raster {tmp / 'raster.png'} --vmax 40",
        f"save {tmp / 'taught.pt'}",
        "look Z",  # bad pattern: an error line, then the session goes on with what was taught
        "status --once",
        "memory A -5",
        "teach A 0",
        "sound 5",
        "touch nose",
        f"load {tmp / 'missing.pt'}",
        "frobnicate 3",
        "status",  # live status needs a terminal
        "reset",
        f"save {tmp / 'naive.pt'}",
        f"load {tmp / 'taught.pt'}",
        f"save {tmp / 'reloaded.pt'}",
        "seed 5",
        "look 7",
        "help look",
        "quit",
        "look A",  # after quit: not run
    ]
    status, results = run_console(tmp, lines)
    return {"status": status, "results": results, "tmp": tmp}


def _by_command(results: list[dict], command: str) -> list[dict]:
    """The results (not the errors) of one command."""
    return [r for r in results if r["command"] == command and "error" not in r]


def test_every_command_answers_in_order(session):
    commands = [r["command"] for r in session["results"]]
    assert commands[0] == "start"
    expected = ["look", "sound", "touch", "teach", "test", "memory", "status"]
    assert commands[1 : 1 + len(expected)] == expected
    assert commands[-2:] == ["help", "quit"]  # nothing after quit
    assert session["status"] == 1  # some scripted commands failed on purpose
    (help_result,) = _by_command(session["results"], "help")
    assert help_result["text"].startswith("look PATTERN:") and "latency" in help_result["text"]


def test_tab_completion():
    prompt = console.BrainConsole(lab=None, view=console.JsonView())
    assert prompt.completenames("te") == ["teach", "test"]
    assert prompt.complete_touch("l", "touch l", 6, 7) == ["left"]
    assert prompt.complete_look("", "look ", 5, 5)[:6] == ["A", "B", "C", "D", "E", "0"]


def test_look_raises_visual_rates_with_the_shortest_latency(session):
    (look,) = [r for r in _by_command(session["results"], "look") if r.get("pattern") == "A"]
    visual = look["roles"]["visual"]
    mean, half = visual["response_hz"]
    assert mean - half > 0  # visual rate above baseline, beyond the 95 % CI
    assert visual["stimulus_hz"][0] > visual["baseline_hz"][0]
    assert visual["latency_ms"] is not None and visual["latency_ms"] <= 5.0
    assert visual["min_delay_ms"] == 0.0  # driven directly
    others = [e["latency_ms"] for role, e in look["roles"].items() if role != "visual" and e["latency_ms"] is not None]
    assert all(latency >= visual["latency_ms"] for latency in others)
    # visual latency shorter than prefrontal: at 10 neurons per region no rise reaches prefrontal cortex in the
    # window (None); the full-brain test below measures the prefrontal latency itself
    prefrontal = look["roles"]["prefrontal"]["latency_ms"]
    assert prefrontal is None or prefrontal > visual["latency_ms"]
    for entry in look["roles"].values():  # rises earlier than any synaptic path are flagged as not stimulus-locked
        early = entry["latency_ms"] is not None and (
            entry["min_delay_ms"] is None or entry["latency_ms"] < entry["min_delay_ms"]
        )
        assert entry["latency_before_arrival"] == early
    assert look["driven_neurons"] == int(pattern_image("A").sum())  # one visual cell per pixel at 10/region
    assert look["roles"]["prefrontal"]["min_delay_ms"] > look["roles"]["visual"]["min_delay_ms"]


def test_sound_drives_auditory_more_than_visual_and_touch_somatosensory(session):
    (sound,) = _by_command(session["results"], "sound")
    auditory, visual = sound["roles"]["auditory"]["response_hz"], sound["roles"]["visual"]["response_hz"]
    assert auditory[0] - auditory[1] > 0 and auditory[0] > visual[0] + visual[1]
    (touch,) = _by_command(session["results"], "touch")
    best = max(touch["roles"], key=lambda role: touch["roles"][role]["response_hz"][0])
    assert best == "somatosensory"


def test_teach_names_its_rule_and_reports_the_weight_change(session):
    (teach,) = _by_command(session["results"], "teach")
    assert "reward-modulated STDP" in teach["rule"] and "three-factor" in teach["rule"]
    assert teach["pairings"] == 3 and teach["total_pairings"] == 3
    change = teach["change"]
    assert change["all"]["synapses"] == teach["projection"]["synapses"] > 0
    assert (
        change["from_pattern_neurons"]["synapses"] + change["from_other_neurons"]["synapses"]
        == (change["all"]["synapses"])
    )
    assert teach["projection"]["weight_after_mv"] != teach["projection"]["weight_before_mv"]


def test_test_reports_a_permutation_p_value_and_a_plain_verdict(session):
    (test,) = _by_command(session["results"], "test")
    assert 0.0 < test["permutation_p"] <= 1.0
    assert test["taught"] == ["A"] and test["untaught"] == ["B", "C", "D", "E"]
    assert test["n_taught"] == 4 and test["n_untaught"] == 16  # presentations = patterns × copies
    assert test["difference_hz"] == pytest.approx(test["taught_change_hz"][0] - test["untaught_change_hz"][0])
    assert [row["pattern"] for row in test["patterns"]] == ["A", "B", "C", "D", "E"]
    assert test["verdict"].startswith("beyond the noise" if test["beyond_noise"] else "NOT beyond the noise")
    assert (test["permutation_p"] < 0.05) == test["beyond_noise"]


def test_memory_gives_a_curve_of_100_ms_bins(session):
    (memory,) = _by_command(session["results"], "memory")
    assert [(b["start_ms"], b["stop_ms"]) for b in memory["bins"]] == [(0, 100), (100, 200), (200, 300)]
    assert all(len(b["roles"]["prefrontal"]) == 2 for b in memory["bins"])  # mean and CI half-width
    assert memory["role"] == "prefrontal" and "prefrontal" in memory["nmda_roles"]


def test_status_once_and_live(session):
    statuses = _by_command(session["results"], "status")
    once = [s for s in statuses if "live" not in s and "live_window" not in s]
    assert len(once) == 2 and all(s["window_ms"] == 500.0 for s in once)  # the default status window
    assert all(1.0 < once[0]["roles"][role][0] < 40.0 for role in once[0]["roles"])  # spontaneous rates
    assert 1.0 < once[0]["all_hz"][0] < 40.0
    windows = [s["window_ms"] for s in statuses if "live_window" in s]
    assert windows == pytest.approx([250.0, 50.0])  # 0.3 s of brain time in live windows
    (summary,) = [s for s in statuses if s.get("live")]
    assert summary["windows"] == 2 and abs(summary["brain_s"] - 0.3) < 1e-9
    assert once[0]["taught"] == once[1]["taught"] == {"A": 3}  # the bad commands in between lost nothing


def test_bad_input_gives_one_error_and_the_session_goes_on(session):
    errors = [r for r in session["results"] if "error" in r]
    messages = {r["command"]: r["error"] for r in errors}
    assert "unknown pattern 'Z'" in messages["look"]
    assert "DELAY_MS must be positive" in messages["memory"]
    assert "between 1 and" in messages["teach"]
    assert "between 20 and 20000 Hz" in messages["sound"]
    assert "side must be one of" in messages["touch"]
    assert "no such file" in messages["load"]
    assert "unknown command 'frobnicate'" in messages["frobnicate"]
    assert "needs a terminal" in messages["status"]
    assert all("\n" not in r["error"] for r in errors)
    commands = [r["command"] for r in session["results"]]
    assert commands[commands.index("look", 2) + 1] == "status"  # the command after the first error ran


def test_raster_png_and_save_load_round_trip(session):
    tmp = session["tmp"]
    (raster,) = _by_command(session["results"], "raster")
    assert raster["vmax_hz"] == 40.0
    assert (tmp / "raster.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    taught, naive, reloaded = (torch.load(tmp / f"{name}.pt", weights_only=True)
                               for name in ("taught", "naive", "reloaded"))  # fmt: skip
    assert not torch.equal(taught["weights"], naive["weights"])  # teaching changed weights, reset undid it
    assert torch.equal(taught["weights"], reloaded["weights"])  # load restored them exactly
    assert taught["taught"] == reloaded["taught"] == {"A": 3} and naive["taught"] == {}
    assert not list(tmp.glob(".*.tmp"))  # no temporary file left behind


@pytest.mark.parametrize(
    ("option", "value", "differs"), [("--seed", "1", "seed=0"), ("--neurons-per-region", "12", "neurons_per_region=10")]
)
def test_load_refuses_a_file_from_another_brain(session, tmp_path, option, value, differs):
    saved = session["tmp"] / "taught.pt"
    status, results = run_console(tmp_path, [f"load {saved}", "status --once"], option, value)  # the last wins
    (load,) = [r for r in results if r["command"] == "load"]
    assert "refused" in load["error"] and differs in load["error"]
    assert _by_command(results, "status")[0]["taught"] == {}  # nothing was loaded
    assert status == 1


def test_commands_from_stdin_in_rich_view(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("look B\nbogus\nstatus --once\nquit\n"))  # a pipe, not a terminal
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = console.main([a for a in SMALL if a != "--json"])
    text = out.getvalue()
    assert status == 1  # one command failed
    assert "brain> look B" in text and "response Hz" in text and "latency ms" in text and "visual" in text
    assert "error: unknown command 'bogus'" in text
    assert "spontaneous activity" in text and text.rstrip().endswith("bye")


def test_console_runs_as_a_file():
    result = subprocess.run([sys.executable, str(SCRIPTS / "console.py"), "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--script" in result.stdout and "--repeats" in result.stdout


@pytest.mark.slow
def test_signal_reaches_prefrontal_cortex_after_visual_cortex_on_the_full_brain(tmp_path):
    """On the 96×200 brain (the small ones have too few long-range synapses to carry a response) the visual
    response starts within a few ms and the prefrontal one later, not before its first synaptic arrival."""
    status, results = run_console(tmp_path, ["look A"], "--neurons-per-region", "200", "--repeats", "10",
                                  "--rest-ms", "300", "--baseline-ms", "200", "--stimulus-ms", "200")  # fmt: skip
    (look,) = _by_command(results, "look")
    visual, prefrontal = look["roles"]["visual"], look["roles"]["prefrontal"]
    assert status == 0 and visual["latency_ms"] <= 5.0
    assert prefrontal["response_hz"][0] - prefrontal["response_hz"][1] > 0  # prefrontal responds
    assert prefrontal["latency_ms"] is not None and prefrontal["latency_ms"] > visual["latency_ms"]
    assert prefrontal["latency_ms"] >= prefrontal["min_delay_ms"] - 5.0


# ------------------------------------------------------------------------------------------- encodings


@pytest.fixture(scope="module")
def network20():
    network, _ = build_network(BrainConfig(neurons_per_region=20, device="cpu"))
    return network


def test_each_pixel_drives_its_own_visual_cells(network20):
    visual = set(network20.neurons_with_role("visual", excitatory_only=True).tolist())
    owners = []
    for pixel in range(64):
        image = np.zeros((8, 8), dtype=np.float32)
        image.flat[pixel] = 1.0
        current = image_current(network20, image, 12.0)
        driven = set(torch.nonzero(current).squeeze(1).tolist())
        assert driven <= visual and len(driven) == len(visual) // 64  # 128 cells: 2 per pixel
        assert torch.all(current[list(driven)] == 12.0)
        owners.append(driven)
    assert len(set().union(*owners)) == sum(len(o) for o in owners)  # disjoint subsets
    grey = image_current(network20, np.full((8, 8), 0.5, dtype=np.float32), 12.0)
    assert torch.allclose(grey[list(visual)], torch.tensor(6.0))


def test_patterns_are_the_task_prototypes_and_digits():
    from encephagen_gym.envs.pattern_recognition import PatternRecognitionEnv

    prototypes = PatternRecognitionEnv().prototypes
    assert np.array_equal(pattern_image("C"), prototypes[2]) and np.array_equal(pattern_image("a"), prototypes[0])
    digit = pattern_image("7")
    assert digit.shape == (8, 8) and digit.min() >= 0.0 and digit.max() <= 1.0 and len(np.unique(digit)) > 2
    with pytest.raises(ValueError, match="unknown pattern"):
        pattern_image("F")


def test_tones_are_tonotopic_and_touch_is_contralateral(network20):
    low, high = tone_current(network20, 200.0, 12.0), tone_current(network20, 6000.0, 12.0)
    auditory = network20.neurons_with_role("auditory", excitatory_only=True)
    assert set(torch.nonzero(low).squeeze(1).tolist()) <= set(auditory.tolist())
    assert int(torch.argmax(low[auditory[:16]])) < int(torch.argmax(high[auditory[:16]]))  # low tones: low indices
    with pytest.raises(ValueError, match="between 20 and 20000"):
        tone_current(network20, 0.0, 12.0)
    left = torch.nonzero(touch_current(network20, "left", 12.0)).squeeze(1)
    hemispheres = np.asarray(network20.connectome.hemisphere)[network20.neuron_region[left].numpy()]
    assert set(hemispheres) == {"R"}
    both = touch_current(network20, "both", 12.0)
    assert int((both > 0).sum()) == 2 * len(left)


def test_onset_latency_finds_a_step_and_nothing_in_noise():
    rng = np.random.default_rng(0)
    baseline = 8.0 + rng.normal(0.0, 1.0, size=(1, 200))
    evoked = 8.0 + rng.normal(0.0, 1.0, size=(1, 200))
    assert np.isnan(onset_latencies(baseline, evoked, 5)[0])
    evoked[0, 30:] += 4.0  # a rise 30 steps after onset
    assert 25 <= onset_latencies(baseline, evoked, 5)[0] <= 32
    with pytest.raises(ValueError, match="two latency bins"):
        onset_latencies(baseline[:, :6], evoked, 5)


# ------------------------------------------------------------------------------------------- brain_activity


@pytest.mark.parametrize(("argv", "message"), [
    (["--seconds", "0"], "--seconds must be a positive"),
    (["--seconds", "-1"], "--seconds must be a positive"),
    (["--stimulus", "visual", "--stimulus-start", "1.5", "--stimulus-stop", "1.0"], "must be before"),
    (["--stimulus", "visual", "--seconds", "1", "--stimulus-start", "0.5", "--stimulus-stop", "2"], "within the run"),
    (["--vmax", "0"], "--vmax must be a positive"),
    (["--out", "x.jpg"], ".png"),
])  # fmt: skip
def test_brain_activity_rejects_bad_arguments(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        brain_activity.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_console_rejects_bad_options(capsys, tmp_path):
    for argv, message in ((["--repeats", "1"], "--repeats must be >= 2"), (["--stimulus-ms", "0"], "stimulus_ms"),
                          (["--script", str(tmp_path / "none.txt")], "no such file")):  # fmt: skip
        with pytest.raises(SystemExit) as exit_info:
            console.main(argv)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
