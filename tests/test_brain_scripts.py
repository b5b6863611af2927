"""The brain's command-line scripts run end to end on tiny brains (via ``main`` and as files)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from encephagen_gym.scripts import benchmark_agent, benchmark_brain, brain_activity

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture(autouse=True)
def _restore_threads(restore_threads):
    """Scripts set torch's and numba's thread counts: give them back after each test."""


def _table(out: str) -> list[dict[str, str]]:
    """The printed table's rows as {column title: cell}."""
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.strip().startswith("device |"))
    titles = [cell.strip() for cell in lines[header].split("|")]
    rows = [line for line in lines[header + 2 :] if line.strip().startswith(("cpu |", "cuda |"))]
    return [dict(zip(titles, (cell.strip() for cell in row.split("|")), strict=True)) for row in rows]


def test_benchmark_table(capsys):
    argv = ["--sizes", "5", "--batches", "1", "2", "--dts", "1.0", "--sim-ms", "20", "--warmup-ms", "5",
            "--repeats", "1", "--learning", "off"]  # fmt: skip
    assert benchmark_brain.main(argv) == 0
    out = capsys.readouterr().out
    rows = _table(out)
    assert [(row["batch"], row["backend"]) for row in rows] == [
        ("1", "numba"), ("1", "torch"), ("2", "numba"), ("2", "torch")
    ]  # fmt: skip
    assert all(row["neurons"] == "96x5" and float(row["wall s/sim s"]) > 0 for row in rows)
    assert all(row["threads"] == "1" for row in rows if row["backend"] == "torch")  # --threads 1 holds
    assert "syn events/s" in out


def test_benchmark_table_with_learning_on_and_off(capsys):
    argv = ["--sizes", "10", "--batches", "2", "--dts", "1.0", "--sim-ms", "20", "--warmup-ms", "5",
            "--repeats", "2", "--backends", "numba", "--numba-threads", "1"]  # fmt: skip
    assert benchmark_brain.main(argv) == 0
    rows = _table(capsys.readouterr().out)
    assert [row["learning"] for row in rows] == ["off", "eprop"]
    assert all(row["backend"] == "numba" and row["threads"] == "1" for row in rows)
    assert rows[0]["plastic"] == "0" and int(rows[1]["plastic"]) > 0
    assert float(rows[0]["vs off"]) == 1.0 and float(rows[1]["vs off"]) > 1.0
    assert float(rows[0]["trace MB/elem"]) == 0.0 and float(rows[1]["trace MB/elem"]) > 0.0


def _check_table(out: str, first: str) -> list[dict[str, str]]:
    """The rows of a --dt-check / --alif-check table whose first column is titled ``first``."""
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.strip().startswith(first))
    titles = [cell.strip() for cell in lines[header].split("|")]
    return [dict(zip(titles, (cell.strip() for cell in line.split("|")), strict=True)) for line in lines[header + 2 :]
            if "|" in line]  # fmt: skip


def test_benchmark_dt_check_over_seeds(capsys):
    argv = ["--dt-check", "--check-size", "5", "--check-ms", "100", "--check-dts", "0.5", "1.0", "--seeds", "0", "1"]
    assert benchmark_brain.main(argv) == 0
    rows = _check_table(capsys.readouterr().out, "dt ms")
    assert [(row["dt ms"], row["seeds"]) for row in rows] == [("0.5", "2"), ("1", "2")]
    assert rows[0]["vs ref %"] == "0.00" and "±" in rows[1]["vs ref %"] and "±" in rows[0]["rate Hz"]


def test_benchmark_alif_check(capsys):
    argv = ["--alif-check", "--check-size", "10", "--check-ms", "150", "--seeds", "0", "--adaptation-mvs", "5"]
    assert benchmark_brain.main(argv) == 0
    rows = _check_table(capsys.readouterr().out, "beta mV")
    assert [row["beta mV"] for row in rows] == ["0", "5"]
    assert rows[0]["ALIF Hz"] == "n/a" and float(rows[1]["ALIF Hz"]) < float(rows[1]["LIF E in ALIF regions Hz"])


def test_agent_benchmark_breaks_brain_and_rule_down_part_by_part(capsys):
    """``--breakdown``: ms per decision of each part of brain + rule, every rule's three calls among them, and a
    total that is their sum (a tiny brain, one short window)."""
    argv = ["--sizes", "10", "--batches", "1", "--seconds", "0.05", "--repeats", "1", "--breakdown"]
    assert benchmark_agent.main(argv) == 0
    out = capsys.readouterr().out
    assert "| 96×10 | 1 |" in out
    rows = {}
    for line in out[out.index("part by part") :].splitlines():
        cells = [cell.strip() for cell in line.split("|")[1:-1]]
        if len(cells) == 2 and cells[0] not in ("part", "---"):
            rows[cells[0]] = float(cells[1])
    for part in ("brain step", "readout filter", "readout", "TD error", "action and features", "RewardEProp.step",
                 "RewardEProp.apply", "RewardEProp.record_decision", "RewardEProp eligibility ē",
                 "ReadoutActorCritic.apply"):  # fmt: skip
        assert rows[part] > 0, part
    total = rows.pop("total")
    assert total == pytest.approx(sum(rows.values()), abs=0.002 * len(rows))  # printed to 3 decimals
    plastic = {line.split("|")[4].strip() for line in out.splitlines() if line.startswith("| 96×10 | 1 | exact |")}
    argv = ["--sizes", "10", "--batches", "1", "--seconds", "0.05", "--repeats", "1", "--eligibility", "midpoint",
            "--brain", "pathways=[]"]  # fmt: skip
    assert benchmark_agent.main(argv) == 0
    out = capsys.readouterr().out
    assert "brain {'pathways': []}" in out
    (row,) = [line.split("|")[4].strip() for line in out.splitlines() if line.startswith("| 96×10 | 1 | midpoint |")]
    assert plastic and row not in plastic  # the default plastic pairs of a brain without pathways


def test_brain_activity_writes_png_and_role_table(tmp_path, capsys):
    out = tmp_path / "sub" / "activity.png"
    argv = ["--seconds", "0.4", "--neurons-per-region", "5", "--stimulus", "visual",
            "--stimulus-start", "0.1", "--stimulus-stop", "0.3", "--out", str(out)]  # fmt: skip
    assert brain_activity.main(argv) == 0
    assert out.exists() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    table = {line.split()[0]: line.split()[1:] for line in printed.splitlines() if line and line.split()[0]}
    assert "prefrontal" in table and "visual" in table and "all" in table
    outside, during = float(table["visual"][5]), float(table["visual"][6])
    assert during > 2 * outside  # the stimulated role responds
    # E and I apart: the stimulus drives the visual E cells only, and the all-neuron rate is their 4:1 mixture
    # (5 neurons per region: 4 E, 1 I; the binned rate covers the whole run here, 0.4 s in 20 ms bins)
    for role in ("visual", "prefrontal", "all"):
        rate, excitatory, inhibitory = (float(value) for value in table[role][1:4])
        assert rate == pytest.approx((4 * excitatory + inhibitory) / 5, abs=0.02)
    assert float(table["visual"][2]) > float(table["prefrontal"][2])


def test_brain_activity_simulates_the_agents_brain(tmp_path, capsys):
    """``--agent-brain`` adds the routing pathways (strong ones here) that drive the action regions harder than in
    the plain brain; ``--brain`` sets BrainConfig fields and refuses unknown ones."""
    rates = {}
    for name, extra in (("plain", []), ("agent", ["--agent-brain", "--brain", "pathway_j_mv=2.0"])):
        argv = ["--seconds", "1", "--neurons-per-region", "10", *extra, "--out", str(tmp_path / f"{name}.png")]
        assert brain_activity.main(argv) == 0
        printed = capsys.readouterr().out
        assert ("the agent's brain" in printed) == (name == "agent")
        rows = {line.split()[0]: line.split()[1:] for line in printed.splitlines() if line.strip()}
        rates[name] = float(rows["premotor"][1])
    assert rates["agent"] > 1.3 * rates["plain"]
    with pytest.raises(SystemExit, match="bad brain option"):
        brain_activity.main(["--brain", "bogus=1", "--seconds", "0.1", "--out", str(tmp_path / "x.png")])
    with pytest.raises(SystemExit, match="given both"):
        brain_activity.main(["--brain", "seed=3", "--seconds", "0.1", "--out", str(tmp_path / "x.png")])


def test_brain_activity_rejects_unknown_role(tmp_path):
    with pytest.raises(SystemExit, match="unknown role"):
        brain_activity.main(["--neurons-per-region", "5", "--stimulus", "cerebellum", "--out", str(tmp_path / "x.png")])


@pytest.mark.parametrize("script", ["benchmark_brain.py", "brain_activity.py"])
def test_scripts_run_as_files(script):
    result = subprocess.run([sys.executable, str(SCRIPTS / script), "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "usage" in result.stdout


@pytest.mark.parametrize(
    ("script", "argv", "message"),
    [
        ("plasticity_experiments", ["--only", "bogus"], "invalid choice"),
        ("plasticity_experiments", ["--threads", "0"], "integer >= 1"),
        ("agent_experiments", ["bandit", "--timesteps", "0"], "integer >= 1"),
        ("agent_experiments", ["bandit", "--conditions", "nothing"], "invalid choice"),
        ("benchmark_agent", ["--seconds", "-1"], "number > 0"),
        ("benchmark_agent", ["--batches", "0"], "integer >= 1"),
    ],
)
def test_learning_scripts_refuse_bad_arguments(script, argv, message, capsys):
    module = importlib.import_module(f"encephagen_gym.scripts.{script}")
    with pytest.raises(SystemExit) as exit_info:
        module.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
