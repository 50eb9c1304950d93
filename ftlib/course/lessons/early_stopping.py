"""Lesson 06's drivers: fine-tune long on noisily labelled digits, then replay stopping rules on the recorded curves."""

from __future__ import annotations

import functools
from collections.abc import Iterable

import matplotlib.pyplot as plt

from ftlib import data, stats
from ftlib.checks import check_positive
from ftlib.course.lessons import plots
from ftlib.course.lessons.experiments import Results, Trained, run
from ftlib.course.lessons.workers import independent
from ftlib.evaluation import evaluate
from ftlib.stopping import MONITORS, EarlyStopping, History, stopping_point

__all__ = ["BATCH_SIZE", "FORWARDS_PER_STEP", "LIVE_NOISES", "METHOD", "ORACLE", "POLICIES", "SCHEDULE",
           "across_rates", "arm", "by_rate", "clean_control", "clean_controls", "compare_monitors", "curve",
           "describe_choice", "describe_control", "describe_curve", "describe_saving", "early_stop", "equivalence",
           "evaluation_cost", "gap_closed", "gaps_closed", "live_noise", "long_run", "monitor_verdicts",
           "noisy_split", "onecycle_rate", "overfitting", "plot_curves", "plot_labels", "plot_tradeoff", "policies",
           "policy_run", "rate", "rate_choice", "replay", "rescue_kept", "run_policies", "scores_line", "tradeoff",
           "validation_sizes"]

METHOD = "fine-tune"  # the pretrained GlyphNet with a new head (its rate comes from the tuning table)
BATCH_SIZE = 32  # fixed on purpose: 150 steps of 32 digits are 24 passes over the 200 training digits
SCHEDULE = "constant"  # fixed on purpose: a stop cuts the budget at a step nobody knows in advance
POLICIES = ("train to the end", "early stopping")  # the stopping policies a project can run (the oracle cannot)
ORACLE = "oracle (peeks at test)"
FORWARDS_PER_STEP = 3  # rule of thumb: a training step (forward and backward) costs about 3 forward passes of its batch


def noisy_split(n_labelled: int, noise: float, val_fraction: float,
                seed: int) -> tuple[data.ImageSet, data.ImageSet, data.ImageSet]:
    """``n_labelled`` digits per class with a share ``noise`` of wrong labels: (all of them, training, validation)."""
    labelled = data.flip_labels(data.few_shot("mnist", n_labelled, seed), noise, seed)
    return labelled, *data.split_validation(labelled, val_fraction, seed)


def long_run(seed: int, n_labelled: int, noise: float, val_fraction: float, steps: int, eval_every: int, lr: float,
             watch_test: bool = True, early_stopping: EarlyStopping | None = None, batch_size: int = BATCH_SIZE,
             schedule: str = SCHEDULE) -> Trained:
    """Fine-tune on a noisy split at rate ``lr`` (constant, batch 32, unless told otherwise), evaluating every
    ``eval_every`` steps.

    The history records the validation scores and, with ``watch_test``, the clean test accuracy at every evaluation
    (recorded, never used to choose).
    """
    _, train_set, val_set = noisy_split(n_labelled, noise, val_fraction, seed)
    test = data.test_set("mnist") if watch_test else None
    return run(METHOD, train_set, seed, steps, lr=lr, batch_size=batch_size, schedule=schedule, val_data=val_set,
               eval_data=test, eval_every=eval_every, early_stopping=early_stopping)


@functools.lru_cache(maxsize=64)
def curve(seed: int, n_labelled: int, noise: float, val_fraction: float, steps: int, eval_every: int, lr: float,
          schedule: str = SCHEDULE) -> History:
    """The recorded curve of a full :func:`long_run` (test watched), kept for the process: the policies replayed on
    one run share it (the replay stops where ``fit`` with the same rule stops, as lesson 06 checks live)."""
    return long_run(seed, n_labelled, noise, val_fraction, steps, eval_every, lr, schedule=schedule).history


@independent
def policy_run(policy: str, seed: int, lr: float, n_labelled: int = 25, noise: float = 0.3, val_fraction: float = 0.2,
               max_steps: int = 150, eval_every: int = 10, patience: int = 5, min_delta: float = 0.0,
               schedule: str = SCHEDULE, record_test: bool = True) -> dict:
    """The tuning table's driver: one stopping ``policy`` (of :data:`POLICIES`) on a long run at rate ``lr``.

    Returns the weights the policy keeps, scored on the clean test set (``accuracy``) and on the noisy validation
    set carved from the labelled digits (``val_accuracy``, ``val_loss``: what a project can choose the rate on),
    the ``steps`` trained (of ``max_steps``), the ``best_step`` kept and the run's ``history``. ``patience`` and
    ``min_delta`` are those of early stopping (unused by training to the end). Early stopping is replayed on the
    run's recorded :func:`curve` (test watched at every evaluation, for the lesson's oracle and plots); training to
    the end only needs its last weights scored on test, once. Without ``record_test``, early stopping runs inside
    ``fit`` instead (it stops where the replay stops, as lesson 06 checks live) and only the weights it restores are
    scored on test: half the cost, no test curve (no oracle).
    """
    if policy == "early stopping" and not record_test:
        rule = EarlyStopping("val_loss", patience=patience, min_delta=min_delta)
        trained = long_run(seed, n_labelled, noise, val_fraction, max_steps, eval_every, lr, watch_test=False,
                           early_stopping=rule, schedule=schedule)
        history = trained.history
        at = history.eval_step.index(history.best_step)
        return {"steps": history.stopped_step or max_steps, "best_step": history.best_step,
                "accuracy": evaluate(trained.model, data.test_set("mnist")).accuracy,
                "val_accuracy": history.val_accuracy[at], "val_loss": history.val_loss[at], "history": history}
    if policy == "train to the end":
        trained = long_run(seed, n_labelled, noise, val_fraction, max_steps, eval_every, lr, watch_test=False,
                           schedule=schedule)
        history = trained.history
        return {**replay(history, policy), "accuracy": evaluate(trained.model, data.test_set("mnist")).accuracy,
                "history": history}
    history = curve(seed, n_labelled, noise, val_fraction, max_steps, eval_every, lr, schedule)
    return {**replay(history, policy, patience, min_delta), "history": history}


def early_stop(history: History, patience: int, min_delta: float, monitor: str = "val_loss") -> dict:
    """The rule replayed on a recorded curve: steps trained, test accuracy of the restored step, and that step."""
    best, stop = stopping_point(getattr(history, monitor), patience, min_delta, MONITORS[monitor])
    stop_step = history.eval_step[stop] if stop is not None else len(history.step)
    return {"steps": stop_step, "accuracy": history.eval_accuracy[best], "best_step": history.eval_step[best]}


def replay(history: History, policy: str, patience: int = 5, min_delta: float = 0.0) -> dict:
    """What ``policy`` (of :data:`POLICIES`, or :data:`ORACLE`) keeps of a recorded run: the ``steps`` trained, the
    ``best_step`` whose weights it keeps, their clean test ``accuracy`` and their noisy ``val_accuracy`` and
    ``val_loss``."""
    if policy == "early stopping":
        kept = early_stop(history, patience, min_delta)
    elif policy == "train to the end":
        kept = {"steps": len(history.step), "accuracy": history.final_accuracy, "best_step": history.eval_step[-1]}
    elif policy == ORACLE:
        best = max(range(len(history.eval_step)), key=lambda i: history.eval_accuracy[i])  # the bound reads test
        kept = {"steps": history.eval_step[best], "accuracy": history.eval_accuracy[best],
                "best_step": history.eval_step[best]}
    else:
        raise ValueError(f"policy {policy!r} is not a stopping policy: choose from {', '.join(POLICIES)} or {ORACLE}")
    at = history.eval_step.index(kept["best_step"])
    return {**kept, "val_accuracy": history.val_accuracy[at], "val_loss": history.val_loss[at]}


def arm(policy: str, schedule: str = SCHEDULE, patience: int = 5) -> str:
    """The tuning table's key of a stopping ``policy`` under ``schedule`` (early stopping tuned at ``patience``)."""
    name = policy if policy == "train to the end" else f"{policy}, patience {patience}"
    return f"06 {name}" + ("" if schedule == SCHEDULE else ", one-cycle")


def rate(policy: str = "early stopping", schedule: str = SCHEDULE) -> float:
    """The constant (or peak) rate chosen on validation for ``policy`` in the shipped tuning table."""
    from ftlib.course.lessons import tuning

    return tuning.load().options(arm(policy, schedule))["lr"]


def run_policies(table, seeds: Iterable[int], schedule: str = SCHEDULE, **settings) -> Results:
    """Each policy of :data:`POLICIES` at its rate chosen in the tuning ``table``, on ``seeds``, plus the oracle on
    early stopping's own runs: per seed and policy, ``accuracy`` (test), ``val_accuracy``, ``val_loss``, ``steps``,
    ``best_step``, ``lr`` and ``label``. Early stopping runs now, recording its whole curve (``history``, which the
    oracle replays); training to the end is read back from the table where it made the run. ``settings`` are the
    lesson's (n_labelled, noise, ..., max_steps, patience, min_delta), each passed to the arms that fix it."""
    from ftlib.course.lessons import tuning

    seeds = list(seeds)
    records = Results()
    for policy in POLICIES:
        key = arm(policy, schedule)
        fixed = table.arm(key).fixed
        records += tuning.run_chosen(key, seeds, table, live=policy == "early stopping",
                                     **{k: v for k, v in settings.items() if k in fixed})
    stopped = records.where(policy="early stopping")
    return Results([*records, *({**r, "policy": ORACLE, "label": ORACLE, **replay(r["history"], ORACLE)}
                                for r in stopped)])


def across_rates(known: Results, rates: Iterable[float], seeds: Iterable[int], table=None, **settings) -> Results:
    """Each policy of :data:`POLICIES` at each of ``rates`` on ``seeds``, scored on test (measured, never chosen on):
    ``policy``, ``lr``, ``seed``, ``accuracy``, ``steps``, ``best_step``, ``val_accuracy``, ``val_loss``.

    Runs in ``known`` (records with ``policy``, ``lr``, ``seed``) are reused, and an early-stopping record whose
    ``history`` is a whole recorded curve also gives the run to the end at its rate (its last step); then the runs
    the tuning ``table`` stored at the constant rate's grid points, where the lesson's ``settings`` are the table's;
    the rest are run without a test curve (:func:`policy_run`, ``record_test=False``), sharing the cores.
    ``settings`` are the lesson's (n_labelled, noise, ..., max_steps, patience, min_delta)."""
    from ftlib.course.lessons.workers import run_calls

    rates, seeds = list(rates), list(seeds)
    have = {(r["policy"], r["lr"], r["seed"]): r for r in known if r["policy"] in POLICIES}
    for r in known.where(policy="early stopping"):  # a whole recorded curve: its last step is the run to the end
        history = r.get("history")
        if history is not None and history.eval_accuracy and len(history.step) == settings.get("max_steps"):
            have.setdefault(("train to the end", r["lr"], r["seed"]), replay(history, "train to the end"))
    for policy in POLICIES if table is not None else ():
        fixed = table.arm(arm(policy)).fixed
        if all(settings[k] == v for k, v in fixed.items() if k in settings):
            for r in table.results(arm(policy)):
                if "accuracy" in r:
                    have.setdefault((policy, r["lr"], r["seed"]), r)
    wanted = [(policy, lr, seed) for policy in POLICIES for lr in rates for seed in seeds]
    missing = [key for key in wanted if key not in have]
    ran = run_calls([(policy_run, {"policy": policy, "lr": lr, "seed": seed, **settings, "record_test": False})
                     for policy, lr, seed in missing])
    have.update(zip(missing, ran))
    kept = ("accuracy", "steps", "best_step", "val_accuracy", "val_loss")
    return Results({"policy": policy, "lr": lr, "seed": seed, **{k: have[policy, lr, seed][k] for k in kept}}
                   for policy, lr, seed in wanted)


def equivalence(differences: list[float], margin: float) -> tuple[float, float, str]:
    """:func:`ftlib.stats.interval` of per-seed differences and a word for it: "equivalent within ±margin" where the
    whole 95% interval lies inside ±``margin``; otherwise :func:`ftlib.stats.verdict`'s word, with "not resolved"
    saying that the interval is too wide to call it either a difference or a tie."""
    mean, half, word = stats.verdict(differences, "early stopping better", "training to the end better")
    if abs(mean) + half < margin:
        return mean, half, f"equivalent within ±{100 * margin:g} points"
    if word == "not resolved at this scale":
        word = f"no difference resolved, and too wide to call a tie within ±{100 * margin:g} points"
    return mean, half, word


def evaluation_cost(steps: int, eval_every: int, val_size: int, batch_size: int = BATCH_SIZE) -> float:
    """What the validation evaluations of a run of ``steps`` cost, in training-step equivalents: one evaluation
    every ``eval_every`` steps, each a forward pass over the ``val_size`` validation images, against a training step
    of ``batch_size`` images counted as :data:`FORWARDS_PER_STEP` forward passes of its batch."""
    for name, value in (("steps", steps), ("eval_every", eval_every), ("val_size", val_size),
                        ("batch_size", batch_size)):
        check_positive(name, value, integer=True)
    return (steps // eval_every) * val_size / (FORWARDS_PER_STEP * batch_size)


def describe_saving(stopped: list[int], max_steps: int, eval_every: int, val_sizes: list[int],
                    batch_size: int = BATCH_SIZE) -> str:
    """Per seed, the steps early stopping saved of ``max_steps`` (it trained ``stopped``), what its evaluations on
    that seed's validation images (``val_sizes``, one per seed) cost in training-step equivalents
    (:func:`evaluation_cost`), and that cost as a share of the steps saved ("none saved" where it ran to the end)."""
    if len(val_sizes) != len(stopped):
        raise ValueError(f"val_sizes={val_sizes!r} is not allowed: give one validation size per seed "
                         f"({len(stopped)} stopped runs)")
    saved = [max_steps - s for s in stopped]
    if any(s < 0 for s in saved):
        raise ValueError(f"stopped={stopped!r} is not allowed: no run trains more than max_steps={max_steps}")
    costs = [evaluation_cost(s, eval_every, size, batch_size) for s, size in zip(stopped, val_sizes)]
    shares = (f"{c / s:.0%}" if s else "none saved" for s, c in zip(saved, costs))
    evaluations = ", ".join(str(s // eval_every) for s in stopped)
    return (f"steps saved {', '.join(map(str, saved))} of {max_steps}; its {evaluations} evaluations of the "
            f"{', '.join(map(str, val_sizes))} validation digits cost {', '.join(f'{c:.1f}' for c in costs)} "
            f"training steps' worth (as a share of the steps saved: {', '.join(shares)})")


def validation_sizes(seeds: Iterable[int], n_labelled: int, noise: float, val_fraction: float) -> list[int]:
    """How many validation digits :func:`noisy_split` carves on each of ``seeds`` (the split is per class of the
    noisy labels, so the size moves by a digit or two from seed to seed)."""
    return [len(noisy_split(n_labelled, noise, val_fraction, seed)[2]) for seed in seeds]


def rate_choice(table, rates: Iterable[float], policy: str = "early stopping") -> Results:
    """How the course's rule saw ``policy``'s ``rates`` in the tuning ``table`` (constant rate): per rate, the mean
    over the table's seeds of the stored validation accuracy (``val_accuracy``) and loss (``val_loss``), the
    validation digits it got ``right`` of the ``total`` (each seed's accuracy times its validation size, summed) and
    whether the table ``chosen`` it."""
    key = arm(policy)
    fixed, seeds = table.arm(key).fixed, table.settings["seeds"]
    sizes = dict(zip(seeds, validation_sizes(seeds, fixed["n_labelled"], fixed["noise"], fixed["val_fraction"])))
    rows = []
    for lr in rates:
        runs = table.records(key, lr=lr)
        if not runs:
            raise ValueError(f"rate {lr!r} is not in the table's grid for {key}: choose from "
                             f"{', '.join(f'{r:g}' for r in table.arm(key).grid['lr'])}")
        rows.append({"lr": lr, "val_accuracy": runs.mean("val_accuracy"), "val_loss": runs.mean("val_loss"),
                     "right": sum(round(r["val_accuracy"] * sizes[r["seed"]]) for r in runs),
                     "total": sum(sizes[r["seed"]] for r in runs), "chosen": table.chosen(key)["lr"] == lr})
    return Results(rows)


def describe_choice(choice: Results) -> list[str]:
    """Lines for :func:`rate_choice`: each rate's mean validation accuracy (to 4 decimals of a %), digits right and
    mean validation loss, then, against each other rate, the chosen rate's margin in mean validation accuracy, the
    digits right at both, and which rate the lower mean validation loss would pick."""
    lines = [f"lr {r['lr']:g}: mean validation accuracy {100 * r['val_accuracy']:.4f}%, {r['right']} of "
             f"{r['total']} validation digits right; mean validation loss {r['val_loss']:.4f}"
             + ("  <- chosen" if r["chosen"] else "") for r in choice]
    won = choice.where(chosen=True)
    if not won:
        return lines
    won = won[0]
    for other in choice.where(chosen=False):
        right = (f"the same {won['right']} of {won['total']} digits right at both" if won["right"] == other["right"]
                 else f"{won['right']} against {other['right']} of {won['total']} digits right")
        lower = won if won["val_loss"] < other["val_loss"] else other
        lines.append(f"lr {won['lr']:g} won over {other['lr']:g} by "
                     f"{100 * (won['val_accuracy'] - other['val_accuracy']):+.4f} points of mean validation accuracy "
                     f"({right}); the lower mean validation loss would pick {lower['lr']:g}")
    return lines


def rescue_kept(share: float) -> str:
    """``share`` (the tuned-alike margin over the same-run rescue) in words, to follow "keeps": "none (below zero)"
    where early stopping is behind on average, never a negative share, else the share in %."""
    return "none (below zero)" if share < 0 else f"{share:.0%}"


def by_rate(table, schedule: str = SCHEDULE) -> Results:
    """Each policy's stored validation records over the tuning ``table``'s grid of rates (``policy``, ``lr``,
    ``seed``, ``val_accuracy``, ``val_loss``): how much each policy's validation score depends on its rate."""
    return Results({"policy": policy, **r} for policy in POLICIES for r in table.results(arm(policy, schedule)))


def overfitting(histories: list[History]) -> Results:
    """Per seed, how a recorded long run overfits: the step of its lowest validation loss (``low_step``) and how
    much higher the loss ends (``loss_rise``); the step of its peak test accuracy (``peak_step``) and how much lower
    the accuracy ends (``accuracy_drop``, a fraction); and how many steps apart the two are (``gap``)."""
    rows = []
    for seed, h in enumerate(histories):
        low = min(range(len(h.val_loss)), key=lambda i: h.val_loss[i])
        peak = max(range(len(h.eval_accuracy)), key=lambda i: h.eval_accuracy[i])  # measured, never chosen on
        rows.append({"seed": seed, "low_step": h.eval_step[low], "loss_rise": h.val_loss[-1] - h.val_loss[low],
                     "peak_step": h.eval_step[peak], "accuracy_drop": h.eval_accuracy[peak] - h.eval_accuracy[-1],
                     "gap": abs(h.eval_step[peak] - h.eval_step[low])})
    return Results(rows)


def policies(histories: list[History], patience: int, min_delta: float) -> Results:
    """Per seed: training to the end, early stopping on the validation loss, and the oracle that peeks at test,
    replayed on the same recorded runs."""
    return Results({"policy": policy, "seed": seed, **replay(history, policy, patience, min_delta)}
                   for seed, history in enumerate(histories) for policy in (*POLICIES, ORACLE))


def tradeoff(histories: list[History], patiences: list[int]) -> Results:
    """Every patience on every seed's curve, watching each score in ``MONITORS`` (min_delta 0)."""
    return Results({"patience": p, "seed": s, "on": m, **early_stop(h, p, 0.0, m)}
                   for m in MONITORS for p in patiences for s, h in enumerate(histories))


def plot_curves(history: History, marks: dict[str, tuple[int, str]] | None = None, title: str = "") -> None:
    """Training and validation loss (left), clean test accuracy (right), vertical ``marks`` (label: step, colour)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    plots.plot_history({"training loss (running mean)": history}, ax=left)
    left.plot(history.eval_step, history.val_loss, "o-", ms=3, label="validation loss (noisy labels)")
    right.plot(history.eval_step, [100 * a for a in history.eval_accuracy], "o-", ms=3, color="C2")
    for label, (step, color) in (marks or {}).items():
        for ax in (left, right):
            ax.axvline(step, color=color, ls="--", lw=1, label=label)
    left.set(ylabel="loss", title="training and validation loss")
    left.legend(fontsize=8)
    right.set(xlabel="step", ylabel="test accuracy (%)", title="test accuracy (clean labels)")
    right.grid(alpha=0.3)
    if marks:
        right.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()  # the figure's title above the panels' own
    plt.show()


def plot_tradeoff(results: Results, compared: Results, patiences: list[int], lr: float,
                  tuned: Results | None = None) -> None:
    """Test accuracy against steps trained for each patience and watched score, beside the end and the oracle of the
    same runs (at rate ``lr``, named in the legend) and, from ``tuned`` (records with ``policy`` and ``lr``), training
    to the end at its own rate. No rule scores above the oracle in any seed (the oracle
    keeps each run's best evaluated step), so a point on the oracle's line matched it in every seed.

    The patience labels of the first watched score sit above its points, those of the second below, so that they
    do not overlap where the two curves meet.
    """
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for monitor, offset, align in zip(MONITORS, [(0, 6), (0, -12)], ["bottom", "top"]):
        xs = [results.mean("steps", patience=p, on=monitor) for p in patiences]
        ys = [100 * results.mean(patience=p, on=monitor) for p in patiences]
        line, = ax.plot(xs, ys, "o-", label=f"early stopping on {monitor}")
        for p, x, y in zip(patiences, xs, ys):
            ax.annotate(str(p), (x, y), textcoords="offset points", xytext=offset, fontsize=8, ha="center",
                        va=align, color=line.get_color())
    for policy, color, style, what in (("train to the end", "C3", "--", "mean of the last steps"),
                                       (ORACLE, "C2", ":", "mean of each seed's best test step")):
        ax.axhline(100 * compared.mean(policy=policy), color=color, ls=style, label=f"{policy}, same runs: {what}",
                   zorder=3 if policy == ORACLE else 1.5)  # the oracle on top: points can sit on its line
    if tuned is not None:
        own = tuned.where(policy="train to the end")
        ax.axhline(100 * own.mean(), color="C4", ls="-.", label=f"train to the end at its own rate ({own[0]['lr']:g})")
    ax.set(xlabel="steps trained (mean over seeds)", ylabel="test accuracy (%)",
           title=f"The price of patience at lr {lr:g} (numbers: patience in evaluations)")
    ax.margins(x=0.08)
    low, high = ax.get_ylim()
    ax.set_ylim(min(low, high - 10) - 1, high + 1)  # at least 10 points tall: one test digit is 0.04 points
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    plt.show()


def describe_curve(history: History) -> str:
    """What one recorded long run did: training loss, lowest validation loss, and the test accuracy's peak and end."""
    low = min(range(len(history.val_loss)), key=lambda i: history.val_loss[i])
    peak = max(range(len(history.eval_accuracy)), key=lambda i: history.eval_accuracy[i])
    head, tail = history.loss[:10], history.loss[-10:]
    return (f"training loss (mean of 10 steps) {sum(head) / len(head):.2f} at the start, {sum(tail) / len(tail):.2f} "
            f"at the end; validation loss lowest at step {history.eval_step[low]} ({history.val_loss[low]:.2f}), "
            f"{history.val_loss[-1]:.2f} at the end; test accuracy peaks at step {history.eval_step[peak]} "
            f"({history.eval_accuracy[peak]:.1%}) and ends at {history.eval_accuracy[-1]:.1%}")


def onecycle_rate(step: int, steps: int) -> float:
    """The share of its peak rate that ``fit``'s default one-cycle schedule over ``steps`` gives at ``step``."""
    import torch

    from ftlib.schedules import make_schedule

    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    schedule = make_schedule("onecycle", optimizer, steps)
    for _ in range(step - 1):
        optimizer.step()
        schedule.step()
    return optimizer.param_groups[0]["lr"]


def compare_monitors(results: Results, compared: Results) -> list[str]:
    """Lines that say, per watched score and patience, in how many seeds the rule restores a step as good on test as
    the oracle's, and, per patience, the per-seed difference between the two watched scores' test accuracies with its
    95% interval: at which patiences (if any) these seeds resolve one watched score as better."""
    oracle = {r["seed"]: r["accuracy"] for r in compared.where(policy=ORACLE)}
    patiences = results.unique("patience")
    lines = []
    for monitor in MONITORS:
        hits = [sum(r["accuracy"] >= oracle[r["seed"]] for r in results.where(patience=p, on=monitor))
                for p in patiences]
        means = [results.mean(patience=p, on=monitor) for p in patiences]
        lines.append(f"watching {monitor}: as good as the oracle in " + ", ".join(
            f"{h}/{len(oracle)}" for h in hits) + f" seeds at patience {', '.join(map(str, patiences))}; "
            f"mean test accuracy {min(means):.1%} to {max(means):.1%} over these patiences")
    verdicts = monitor_verdicts(results)
    resolved = [f"{p} ({word})" for p, (_, _, word) in verdicts.items() if word.endswith("higher")]
    ahead = sum(round(m, 9) > 0 for m, _, _ in verdicts.values())
    lines.append(f"on these {len(results.unique('seed'))} seeds, test accuracy watching val_accuracy minus watching "
                 "val_loss, by patience (mean ± 95% interval): "
                 + ", ".join(f"{p}: {100 * m:+.1f} ± {100 * h:.1f}" for p, (m, h, _) in verdicts.items())
                 + f" points; val_accuracy ahead on average at {ahead} of {len(verdicts)} patiences; a difference "
                 f"resolved at patience {', '.join(resolved) if resolved else 'none'}")
    return lines


def monitor_verdicts(results: Results) -> dict[int, tuple[float, float, str]]:
    """Per patience of :func:`tradeoff`'s ``results``, :func:`ftlib.stats.verdict` of the per-seed test accuracy
    watching the validation accuracy minus watching the validation loss: (mean, 95% half-width, word), the word
    "val_accuracy higher", "val_loss higher" or not resolved."""
    seeds = results.unique("seed")
    return {p: stats.verdict([results.values(patience=p, on="val_accuracy", seed=s)[0]
                              - results.values(patience=p, on="val_loss", seed=s)[0] for s in seeds],
                             "val_accuracy higher", "val_loss higher") for p in results.unique("patience")}


def gaps_closed(compared: Results) -> list[float]:
    """Per seed, the share of the gap between training to the end and the oracle that early stopping closes (NaN
    where the oracle does not beat training to the end: there is no gap to close)."""
    end, stop, oracle = (compared.values(policy=p) for p in ("train to the end", "early stopping", ORACLE))
    return [(s - e) / (o - e) if o > e else float("nan") for e, s, o in zip(end, stop, oracle)]


def gap_closed(compared: Results) -> str:
    """How much of the gap between training to the end and the oracle early stopping closes (means over seeds)."""
    end, stop, oracle = (compared.mean(policy=p) for p in ("train to the end", "early stopping", ORACLE))
    return (f"early stopping closes {(stop - end) / (oracle - end):.0%} of the gap between training to the end "
            f"({end:.1%}) and the oracle ({oracle:.1%}), without looking at the test set")


def plot_labels(labelled: data.ImageSet, true_labels, per_class: int = 2, columns: int = 10,
                title: str = "") -> None:
    """``per_class`` digits of each true class of ``labelled``, titled with the label as given: a wrong one in red,
    with the true class beside it (``true_labels``: the labels before any were flipped)."""
    if per_class < 1:
        raise ValueError(f"per_class={per_class!r} is not allowed: show at least 1 digit per class")
    rows = [i for c in range(labelled.num_classes) for i in (true_labels == c).nonzero().flatten()[:per_class].tolist()]
    lines = -(-len(rows) // columns)
    fig, axes = plt.subplots(lines, columns, figsize=(columns * 1.1, 1.3 * lines), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, rows):
        given, true = int(labelled.labels[i]), int(true_labels[i])
        ax.imshow(labelled.images[i, 0].cpu(), cmap="gray", vmin=0, vmax=1)
        wrong = given != true
        ax.set_title(f"{labelled.classes[given]}" + (f" (is {labelled.classes[true]})" if wrong else ""), fontsize=9,
                     color="red" if wrong else "black")
    fig.suptitle(title)
    fig.tight_layout()
    plt.show()


def scores_line(history: History, monitor: str = "val_accuracy") -> str:
    """A recorded run's ``monitor`` (of :data:`ftlib.stopping.MONITORS`) at every evaluation, as one line (accuracies
    in %, losses to 3 decimals)."""
    if monitor not in MONITORS:
        raise ValueError(f"monitor {monitor!r} is not a watched score: choose from {', '.join(MONITORS)}")
    shown = (f"{100 * v:.0f}" if monitor.endswith("accuracy") else f"{v:.3f}" for v in getattr(history, monitor))
    return ", ".join(f"step {s}: {v}" for s, v in zip(history.eval_step, shown))


@independent
def clean_control(seed: int, n_labelled: int, val_fraction: float, steps: int, eval_every: int, lr: float,
                  patience: int, min_delta: float) -> dict:
    """The clean-label control: the same long run as the lesson's (``seed``, rate ``lr``) with no wrong labels.

    Returns its ``history`` (validation only), the step of its lowest validation loss (``low_step``), where early
    stopping (``patience``, ``min_delta``, on the validation loss) would stop (``stop_step``, None if it does not
    stop) and the clean test ``accuracy`` of its last step."""
    trained = long_run(seed, n_labelled, 0.0, val_fraction, steps, eval_every, lr, watch_test=False)
    low_step, stop_step = _turn(trained.history, patience, min_delta)
    return {"history": trained.history, "low_step": low_step, "stop_step": stop_step,
            "accuracy": evaluate(trained.model, data.test_set("mnist")).accuracy}


def clean_controls(seeds: Iterable[int], **settings) -> list[dict]:
    """:func:`clean_control` on every seed of ``seeds`` (``settings``: its other arguments), the runs sharing the
    cores; in seed order."""
    from ftlib.course.lessons.workers import run_calls

    return run_calls([(clean_control, {"seed": seed, **settings}) for seed in seeds])


def describe_control(control: dict, noisy: History, noise: float, patience: int) -> list[str]:
    """Lines comparing the clean-label ``control`` (:func:`clean_control`) with the ``noisy`` recorded run of the same
    seed and rate (a share ``noise`` of wrong labels; min_delta 0, as the control's): where each validation loss is
    lowest, whether early stopping (``patience``) stops, and the test accuracy of the last step."""
    lines = []
    for name, history, low_step, stop, end in (
            ("no wrong labels", control["history"], control["low_step"], control["stop_step"], control["accuracy"]),
            (f"{noise:.0%} wrong labels", noisy, *_turn(noisy, patience, 0.0), noisy.final_accuracy)):
        low = history.eval_step.index(low_step)
        turn = ("still falling at the last evaluation" if low == len(history.eval_step) - 1 else
                f"{history.val_loss[-1] - history.val_loss[low]:+.2f} by the last evaluation")
        stops = f"stops at step {stop}" if stop is not None else "does not stop"
        lines.append(f"{name}: validation loss lowest at step {low_step} ({history.val_loss[low]:.2f}), {turn}; "
                     f"early stopping (patience {patience}) {stops}; test accuracy of the last step {end:.1%}")
    return lines


def _turn(history: History, patience: int, min_delta: float) -> tuple[int, int | None]:
    """The step of a recorded run's lowest validation loss, and the step where early stopping (``patience``,
    ``min_delta``, on the validation loss) stops it (None where it does not stop)."""
    low = min(range(len(history.val_loss)), key=lambda i: history.val_loss[i])
    _, stop = stopping_point(history.val_loss, patience, min_delta, MONITORS["val_loss"])
    return history.eval_step[low], history.eval_step[stop] if stop is not None else None


LIVE_NOISES = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]  # the live slider's shares of wrong labels


def live_noise(noise: float, steps: int = 100, patience: int = 5, seed: int = 0) -> None:
    """The live slider's run: fine-tune seed 0 for ``steps`` steps with a share ``noise`` of wrong labels, for real
    (at early stopping's rate chosen in the tuning table), replay early stopping (``patience``, validation loss) on
    its curve, and plot it; the test accuracy is measured on every 5th clean test digit (500) to keep a move near
    2 s."""
    _, train_set, val_set = noisy_split(25, noise, 0.2, seed)
    test = data.test_set("mnist")
    some = data.ImageSet(test.images[::5], test.labels[::5], test.classes, "mnist test (1 in 5)")
    history = run(METHOD, train_set, seed, steps, lr=rate(), batch_size=BATCH_SIZE, schedule=SCHEDULE,
                  val_data=val_set, eval_data=some, eval_every=10).history
    stop = early_stop(history, patience, 0.0)
    low = history.eval_step[min(range(len(history.val_loss)), key=lambda i: history.val_loss[i])]
    stopped = f"stops at step {stop['steps']}" if stop["steps"] < steps else f"does not stop before step {steps}"
    print(f"noise = {noise}")
    print(f"seed {seed}, {steps} steps: validation loss lowest at step {low}; early stopping (patience {patience}) "
          f"{stopped} and restores step {stop['best_step']}: {stop['accuracy']:.1%} on 500 clean test digits, "
          f"against {history.eval_accuracy[-1]:.1%} at step {steps}")
    plot_curves(history, {f"restored (step {stop['best_step']})": (stop["best_step"], "C3")},
                title=f"Seed {seed}, {noise:.0%} wrong labels, trained live")
