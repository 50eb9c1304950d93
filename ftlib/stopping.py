"""What ``fit`` records (:class:`History`), and the early-stopping rule that reads it, in ``fit`` or on a replay."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .checks import check_positive

__all__ = ["EarlyStopping", "History", "MONITORS", "stopping_point"]


@dataclass
class History:
    """What ``fit`` measured: the training loss and rate at every step, and evaluations every few steps.

    ``loss`` is the mean training loss of each step's batch (cross-entropy in nats by default: divide by
    ``math.log(2)`` for a language model's bits per character). ``eval_step`` lists the evaluated steps;
    ``eval_*`` hold the scores on ``eval_data`` and ``val_*`` those on ``val_data`` at those steps, and
    ``evals[step]`` what ``fit``'s ``evaluate(model)`` returned at each of them. With early stopping,
    ``best_step`` is the evaluated step with the best monitored score and ``stopped_step`` the step where the rule
    stopped training; after an interrupt, ``interrupted`` is true and ``stopped_step`` is the last step recorded.
    ``stopped_step`` is None when every step ran. ``seconds`` is the wall-clock time of the training steps,
    evaluations not counted.
    """

    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    eval_step: list[int] = field(default_factory=list)
    eval_loss: list[float] = field(default_factory=list)
    eval_accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    evals: dict[int, dict] = field(default_factory=dict)
    best_step: int | None = None
    stopped_step: int | None = None
    interrupted: bool = False
    seconds: float = 0.0

    @property
    def final_accuracy(self) -> float:
        """The last evaluation's accuracy (NaN when ``fit`` had no evaluation data)."""
        return self.eval_accuracy[-1] if self.eval_accuracy else float("nan")


MONITORS = {"val_loss": "min", "val_accuracy": "max"}  # what early stopping can watch, and which way is better


@dataclass(frozen=True)
class EarlyStopping:
    """Stop training once the monitored validation score has not improved for ``patience`` evaluations.

    An evaluation improves on the best so far only if it is better by more than ``min_delta``. ``mode`` is
    ``"min"`` or ``"max"``; ``"auto"`` takes it from ``monitor`` (lower loss, higher accuracy). With
    ``restore_best``, the model ends with the weights it had at the best evaluation (an exact copy).
    """

    monitor: str = "val_loss"
    patience: int = 3
    min_delta: float = 0.0
    mode: str = "auto"
    restore_best: bool = True

    def __post_init__(self) -> None:
        if self.monitor not in MONITORS:
            raise ValueError(f"monitor={self.monitor!r} is not allowed: choose one of {sorted(MONITORS)}")
        if self.mode not in ("auto", "min", "max"):
            raise ValueError(f"mode={self.mode!r} is not allowed: choose 'auto', 'min' or 'max'")
        _check_rule(self.patience, self.min_delta)

    @property
    def direction(self) -> str:
        """``"min"`` or ``"max"``: which way the monitored score gets better."""
        return MONITORS[self.monitor] if self.mode == "auto" else self.mode

    def check(self, scores: Sequence[float]) -> tuple[int, int | None]:
        """:func:`stopping_point` with this rule's settings, on the scores recorded so far."""
        return stopping_point(scores, self.patience, self.min_delta, self.direction)


def _check_rule(patience: int, min_delta: float) -> None:
    check_positive("patience", patience, integer=True)
    if isinstance(min_delta, bool) or not isinstance(min_delta, (int, float)) or min_delta < 0:
        raise ValueError(f"min_delta={min_delta!r} is not allowed: it must be a number >= 0")


def stopping_point(scores: Sequence[float], patience: int, min_delta: float = 0.0,
                   mode: str = "min") -> tuple[int, int | None]:
    """The early-stopping rule on a curve of validation scores (one per evaluation): ``(best, stop)`` indices.

    Walks the curve in order: a score is a new best if it beats the best so far by more than ``min_delta``
    (lower for ``mode="min"``, higher for ``"max"``); training stops at the first evaluation that comes
    ``patience`` evaluations after the best (``stop`` is None if that never happens). The curve is read only
    up to the stop, so ``fit`` (which applies the rule after every evaluation) and a replay of its recorded
    curve agree.
    """
    _check_rule(patience, min_delta)
    if mode not in ("min", "max"):
        raise ValueError(f"mode={mode!r} is not allowed: choose 'min' or 'max'")
    if len(scores) == 0:
        raise ValueError("scores is empty: the rule needs at least one evaluation")
    sign = 1 if mode == "min" else -1
    best = 0
    for i, score in enumerate(scores):
        if sign * score < sign * scores[best] - min_delta:
            best = i
        if i - best >= patience:
            return best, i
    return best, None
