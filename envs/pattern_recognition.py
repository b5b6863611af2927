"""Encephagen-PatternRecognition-v0: classify a noisy, jittered 8×8 image and report the class after a go cue."""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from encephagen_gym.envs.checks import check_integer, check_number
from encephagen_gym.envs.stimuli import RETINA_SIZE, binary_prototypes, digits_split, flip_pixels, shifted_copies
from encephagen_gym.envs.trial_env import MAX_IMAGES, ChoiceTrialEnv, Duration, Trial, validate_duration

DATASETS = ("prototypes", "digits")


class PatternRecognitionEnv(ChoiceTrialEnv):
    """Visual categorisation with a delayed report.

    ## Description
    Each trial shows an image of one of ``n_classes`` classes on an 8×8 retina while a fixation cue is on.
    When the cue goes off (decision period) the agent reports the class. With ``dataset="prototypes"``
    (default) each class is one random binary prototype (fixed by ``task_seed``) and each trial shows it
    shifted by up to ``jitter`` pixels with each pixel flipped with probability ``flip_prob``. With
    ``dataset="digits"`` the images are scikit-learn's bundled 8×8 handwritten digits (classes 0 to
    ``n_classes``−1), with a fixed stratified train/test split (``split``; 25 % test, fixed by ``task_seed``;
    the splits never share an image), and the same jitter and flip noise.

    | period | duration (ms, default) | retina | cue |
    |---|---|---|---|
    | ``fixation`` | 100 | blank | 1 |
    | ``stimulus`` | 300 | image | 1 |
    | ``decision`` | 100 | blank | 0 |

    ## Action Space
    ``Discrete(n_classes + 1)``: 0 = no choice (fixate), ``k`` = class ``k − 1``.

    ## Observation Space
    ``Box(0, 1, (65,), float32)``: ``vision`` = 0:64 (retina, row-major), ``cue`` = 64 (fixation cue).

    ## Rewards
    ``reward = correct + abort``: in the decision period the first choice ends the trial with ``correct`` = 1
    if right and 0 if wrong; a choice before the decision period aborts the trial with ``abort`` =
    ``abort_penalty`` (−0.1). No choice in the decision period ends the trial with 0.

    ## Starting State and Episode End
    The class of each trial is uniform over ``n_classes``. An episode is ``trials_per_episode`` trials and
    terminates after the last (a step after that raises ``RuntimeError`` until ``reset``).

    ## Info
    ``period``, ``trial``, ``gt`` (the correct action, class + 1), ``new_trial``, ``reward_terms``; at trial end
    ``trial_outcome`` (``correct``, ``wrong``, ``abort``, ``no_response``; with ``label``); at episode end
    ``metrics``: ``accuracy`` (correct / trials), ``abort_rate``, ``no_response_rate``,
    ``mean_reward_per_trial``.

    ## Arguments
    | argument | default | accepted | meaning |
    |---|---|---|---|
    | ``n_classes`` | 5 | 2–1000 (``"digits"``: 2–10) | number of classes |
    | ``dataset`` | ``"prototypes"`` | ``"prototypes"``, ``"digits"`` | random prototypes or scikit-learn's digits |
    | ``split`` | ``"train"`` | ``"train"``, ``"test"`` | digits split (ignored for prototypes) |
    | ``flip_prob`` | 0.05 | [0, 0.5] | probability of flipping each pixel per trial |
    | ``jitter`` | 1 | 0–3 | largest shift of the image (pixels, each axis) |
    | ``fixation_ms`` | 100 | ms in [0, 60000], a number or a (low, high) range | fixation period |
    | ``stimulus_ms`` | 300 | as ``fixation_ms``, at least one step | image presentation |
    | ``decision_ms`` | 100 | as ``fixation_ms``, at least one step | decision period |
    | ``abort_penalty`` | −0.1 | [−100, 0] | reward of a choice before the decision period |
    | ``step_ms`` | 10 | (0, 1000] | duration of an env step (ms); ``env.dt`` is the same in seconds |
    | ``trials_per_episode`` | 20 | ≥ 1 | trials per episode (block) |
    | ``task_seed`` | 0 | integer ≥ 0 | which prototypes / which digits split |
    | ``render_mode`` | None | None or ``"rgb_array"`` | labelled picture of the step (see ``render``) |

    ## Version History
    * v0: initial version.
    """

    def __init__(
        self,
        *,
        n_classes: int = 5,
        dataset: str = "prototypes",
        split: str = "train",
        flip_prob: float = 0.05,
        jitter: int = 1,
        fixation_ms: Duration = 100.0,
        stimulus_ms: Duration = 300.0,
        decision_ms: Duration = 100.0,
        abort_penalty: float = -0.1,
        step_ms: float = 10.0,
        trials_per_episode: int = 20,
        task_seed: int = 0,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(
            observation_layout={"vision": RETINA_SIZE, "cue": 1},
            abort_penalty=abort_penalty,
            step_ms=step_ms,
            trials_per_episode=trials_per_episode,
            render_mode=render_mode,
        )
        n_classes = check_integer("n_classes", n_classes, low=2, high=MAX_IMAGES)
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; choose one of {DATASETS}")
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        flip_prob = check_number("flip_prob", flip_prob, low=0.0, high=0.5)
        jitter = check_integer("jitter (pixels)", jitter, low=0, high=3)
        self.periods: tuple[tuple[str, Duration], ...] = tuple(
            (name, validate_duration(name, d))
            for name, d in (("fixation", fixation_ms), ("stimulus", stimulus_ms), ("decision", decision_ms))
        )
        self._min_steps("stimulus", self.periods[1][1])
        self._min_steps("decision", self.periods[2][1])

        self.n_classes = n_classes
        self.dataset = dataset
        self.split = split
        self.flip_prob = flip_prob
        self.jitter = jitter
        self.task_seed = check_integer("task_seed", task_seed, low=0)
        if dataset == "prototypes":
            self.prototypes = binary_prototypes(self.n_classes, self.task_seed)
            self.images, self.labels = self.prototypes, np.arange(self.n_classes)
        else:
            self.images, self.labels = digits_split(split, self.n_classes, self.task_seed)
        self._views = shifted_copies(self.images, self.jitter).reshape(len(self.images), -1, RETINA_SIZE)
        self._by_class = [np.flatnonzero(self.labels == c) for c in range(self.n_classes)]
        self.action_space = spaces.Discrete(self.n_classes + 1)

    def action_meaning(self, action: int) -> str:
        """``"fixate"`` (0) or ``"class k"`` (action ``k + 1``)."""
        return "fixate" if action == 0 else f"class {action - 1}"

    def _sample_trial(self, index: int) -> Trial:
        label = int(self.np_random.integers(self.n_classes))
        members = self._by_class[label]
        views = self._views[members[self.np_random.integers(len(members))]]  # every jittered view of the image
        image = flip_pixels(views[self.np_random.integers(len(views))], self.np_random, self.flip_prob)
        names, starts = self._layout_periods(self.periods)
        obs = self._new_observations(starts)
        trial = Trial(label + 1, names, starts, obs, extras={"label": label})
        obs[trial.period_slice("stimulus"), self.observation_layout["vision"]] = image
        obs[: trial.period_slice("decision").start, self.observation_layout["cue"]] = 1.0
        return trial

    def make_reference_policy(self) -> PatternRecognitionReference:
        """The scripted reference: shift-invariant nearest-neighbour template matching."""
        return PatternRecognitionReference(self)


class PatternRecognitionReference:
    """Hand-made classifier: nearest neighbour over every ±``jitter`` shift of the class templates.

    Templates are the prototypes, or the digits *train* split (so it is evaluated honestly on ``split="test"``).
    It remembers the image seen while the cue is on and answers on the first step of the decision period.
    """

    def __init__(self, env: PatternRecognitionEnv) -> None:
        self.env = env
        if env.dataset == "digits" and env.split == "test":
            images, labels = digits_split("train", env.n_classes, env.task_seed)
        else:
            images, labels = env.images, env.labels
        views = shifted_copies(images, env.jitter)
        self._templates = views.reshape(-1, RETINA_SIZE)
        self._template_labels = np.repeat(labels, views.shape[1])
        self.reset()

    def reset(self) -> None:
        self._image: np.ndarray | None = None

    def __call__(self, obs: np.ndarray) -> int:
        layout = self.env.observation_layout
        image = obs[layout["vision"]]
        if image.any():
            self._image = image.copy()
        if obs[layout["cue"]][0] > 0.5 or self._image is None:
            return 0
        distances = np.abs(self._templates - self._image).sum(axis=1)
        label = int(self._template_labels[np.argmin(distances)])
        self._image = None
        return label + 1
