"""The env scripts refuse bad arguments with argparse's exit status 2 and a message naming the option, and
record_video plays in real time."""

from __future__ import annotations

import re

import gymnasium as gym
import numpy as np
import pytest
from PIL import Image

from encephagen_gym.scripts import benchmark_envs, calibrate_bodies, record_video, score_references
from encephagen_gym.stats import format_mean_ci, mean_ci


def _usage_error(main, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_score_references_refuses_zero_episodes(capsys) -> None:
    err = _usage_error(score_references.main, ["--episodes", "0"], capsys)
    assert "--episodes" in err and "must be an integer >= 2" in err
    err = _usage_error(score_references.main, ["--ids", "Encephagen-Nothing-v0"], capsys)
    assert "unknown env id" in err and "Encephagen-Conditioning-v0" in err


def test_benchmark_envs_refuses_zero_steps(capsys) -> None:
    err = _usage_error(benchmark_envs.main, ["--steps", "0"], capsys)
    assert "--steps" in err and "must be an integer >= 1" in err


def test_calibrate_bodies_refuses_one_episode(capsys) -> None:
    err = _usage_error(calibrate_bodies.main, ["worm", "--episodes", "1"], capsys)
    assert "--episodes" in err and "must be an integer >= 2" in err


def test_record_video_refuses_unknown_formats_and_bad_env_options(capsys) -> None:
    err = _usage_error(record_video.main, ["Encephagen-Conditioning-v0", "--out", "x.avi"], capsys)
    assert "'.avi'" in err and ".gif, .mp4" in err
    err = _usage_error(record_video.main, ["Encephagen-WormCrawl-v0", "--kwarg", "n_segments=abc"], capsys)
    assert "n_segments" in err and "must be an integer" in err and "Traceback" not in err
    err = _usage_error(record_video.main, ["Encephagen-WormCrawl-v0", "--kwarg", "legs=4"], capsys)
    assert "legs" in err


def test_score_references_prints_student_t_intervals(capsys) -> None:
    env_id = "Encephagen-Conditioning-v0"
    score_references.main(["--episodes", "2", "--ids", env_id])
    out = capsys.readouterr().out
    assert "nan" not in out.lower()
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in out.splitlines() if "|" in line}
    for policy in ("reference", "random", "zero"):
        assert re.fullmatch(r"-?\d+\.\d\d( ± \d+\.\d\d)?", rows[policy]), rows[policy]
    assert rows["zero"] == "0.00"  # zero action earns 0 in every episode: no "-0.00 ± 0.00"
    env = gym.make(env_id)  # the random row again, by hand: its CI is the t-interval (2 episodes: t = 12.7)
    returns = []
    for episode in range(2):
        env.action_space.seed(episode)
        returns.append(score_references.run_episode(env, lambda obs: env.action_space.sample(), 10_000 + episode)[0])
    assert returns[0] != returns[1] and rows["random"] == format_mean_ci(*mean_ci(returns))
    assert mean_ci(returns)[1] > 6 * np.std(returns, ddof=1) / np.sqrt(2)  # far wider than 1.96 · SE


@pytest.mark.parametrize(
    ("dt_s", "gif", "every", "shown_ms"),
    [(0.010, True, 2, 20.0), (0.008, True, 5, 40.0), (0.020, True, 1, 20.0), (0.008, False, 3, 24.0)],
)
def test_record_video_chooses_a_real_time_stride(dt_s: float, gif: bool, every: int, shown_ms: float) -> None:
    chosen = record_video.choose_every(dt_s, 1.0, gif=gif)
    assert chosen == every
    assert record_video.frame_duration_ms(dt_s, chosen, 1.0, gif=gif) == pytest.approx(shown_ms)
    assert 1000.0 * dt_s * chosen == pytest.approx(shown_ms)  # env time per frame = time shown: real time


def test_record_video_writes_a_real_time_gif(tmp_path, capsys) -> None:
    out = tmp_path / "conditioning.gif"
    record_video.main(["Encephagen-Conditioning-v0", "--out", str(out), "--steps", "40"])
    printed = capsys.readouterr().out
    assert "plays at 1.00× real time" in printed and "one per 2 step(s) of 10 ms" in printed
    with Image.open(out) as gif:
        assert gif.n_frames > 10
        gif.seek(3)
        assert gif.info["duration"] == 20  # ms per frame = 2 steps of 10 ms
    assert [p.name for p in tmp_path.iterdir()] == ["conditioning.gif"]  # no temporary file left behind
