"""Lesson 08's drivers: LoRA adapters on GlyphNet beside fair controls, their cost, merging and switching.

Every method of the lesson is named by a string (:data:`PROBE`, :data:`HEAD`, ``"LoRA r=<rank>"``,
:data:`PARTIAL`, :data:`FULL`) and trained by :func:`train_method`. :func:`method_run` is the tuning table's driver
(``_lesson08`` in :mod:`~ftlib.course.lessons.tuning` gives each trained method its own rate, chosen on
validation); :func:`chosen_model` trains one arm again at its chosen rate and keeps the model (the merge and the
adapter switch need one); :func:`print_costs` measures what each method trains, its time per step and its file.
:func:`rank_live` (the live slider) trains LoRA at one rank.
"""

from __future__ import annotations

import time
from pathlib import Path

import matplotlib.pyplot as plt
import safetensors.torch
import torch
from torch import nn

from ftlib import checkpoint, data, freeze, lora, transfer
from ftlib.course.lessons import experiments
from ftlib.course.lessons.experiments import Results, Trained, run
from ftlib.course.lessons.workers import independent
from ftlib.evaluation import evaluate
from ftlib.freeze import count_parameters
from ftlib.models import BLOCKS
from ftlib.runtime import model_device
from ftlib.stats import interval, verdict

__all__ = ["FULL", "HEAD", "LIVE_RANKS", "MATCH_POINTS", "METHOD", "PARTIAL", "PROBE", "TIMED_RUNS", "TIMED_STEPS",
           "chosen_model", "compare_targets", "lora_name",
           "merge_round_trip", "method_model", "method_run", "plot_accuracy_vs_parameters", "print_costs",
           "rank_live", "show_rank", "switch_adapters", "timed_model", "train_lora", "train_method"]

METHOD = "fine-tune"  # the pretrained GlyphNet with a new head; every method below starts from it
PROBE = "linear probe"  # the head alone, fitted exactly by L-BFGS on frozen features (ftlib.probe)
HEAD = "head only (fit)"  # the head alone, trained by fit like LoRA: same steps, batches and optimizer
PARTIAL = "fine-tune blocks 3-4"  # the blocks that carry adapters (and the head) trained in full
FULL = "fine-tune"  # every weight trains
LIVE_RANKS = (1, 2, 4, 8, 16)  # the live slider's ranks
LIVE_TEST_PER_CLASS = 50  # the live slider scores on 500 test gratings: a fraction of a second
TIMED_STEPS = 10  # training steps per timed run of a method in the cost table
TIMED_RUNS = 3  # timed runs per method: the cost table keeps the fastest (load only ever adds time)
MATCH_POINTS = 1.0  # "LoRA matches full fine-tuning" is shown only if the 95% interval of the gap is inside ± this
UNRESOLVED = "unresolved: inside the seeds' spread"


def lora_name(rank: int) -> str:
    """The lesson's name of LoRA at ``rank``: ``"LoRA r=<rank>"``."""
    return f"LoRA r={rank}"


def _prepare(method: str, blocks: list[str], alpha: float):
    """The ``prepare`` step of :func:`run` for ``method``: what to freeze, where to put adapters."""
    if method.startswith("LoRA r="):
        rank = int(method.removeprefix("LoRA r="))
        return lambda model: lora.add_lora(model, blocks, rank, alpha) and None
    frozen = {HEAD: [b for b in BLOCKS if b != "head"], PARTIAL: [b for b in BLOCKS if b not in blocks and b != "head"],
              FULL: []}
    if method not in frozen:
        raise ValueError(f"unknown method {method!r}: choose {PROBE!r}, {HEAD!r}, 'LoRA r=<rank>', {PARTIAL!r} "
                         f"or {FULL!r}")
    return lambda model: freeze.freeze(model, frozen[method]) and None if frozen[method] else None


def train_method(method: str, train_set: data.ImageSet, seed: int, *, lr: float | None, steps: int,
                 blocks: list[str], alpha: float) -> Trained:
    """Train ``method`` from the pretrained GlyphNet with a new head on ``train_set`` (``lr`` unused by the probe)."""
    if method == PROBE:
        return run(PROBE, train_set, seed)
    return run(METHOD, train_set, seed, steps, lr=lr, prepare=_prepare(method, blocks, alpha))


def method_model(method: str, target: str, n: int, seed: int, *, steps: int, blocks: list[str], alpha: float,
                 lr: float | None = None, n_val: int = 0) -> tuple[nn.Module, dict]:
    """Train ``method`` on ``n`` labels per class of ``target`` (split ``seed``) at rate ``lr``; the trained model and
    its record: the test ``accuracy``, the ``seconds`` and ``cpu_seconds`` of the run, the trainable parameters in
    the backbone (``trainable_backbone``: adapters or fine-tuned blocks) and in the head (``trainable_head``), and,
    with ``n_val > 0``, ``val_accuracy`` and ``val_loss`` on ``n_val`` more labels per class held out."""
    train_set, val_set = experiments.split(target, n, n_val, seed)
    cpu_start = time.process_time()
    trained = train_method(method, train_set, seed, lr=lr, steps=steps, blocks=blocks, alpha=alpha)
    cpu_seconds = time.process_time() - cpu_start
    backbone, head = _split_count(trained.model)
    return trained.model, {"accuracy": evaluate(trained.model, data.test_set(target)).accuracy,
                           "seconds": trained.seconds, "cpu_seconds": cpu_seconds, "trainable_backbone": backbone,
                           "trainable_head": head, "trainable": backbone + head,
                           **experiments.validation_scores(trained.model, val_set)}


@independent
def method_run(method: str, target: str, n: int, seed: int, *, steps: int, blocks: list[str], alpha: float,
               lr: float | None = None, n_val: int = 0) -> dict:
    """The tuning table's driver: :func:`method_model`'s record, without the model."""
    return method_model(method, target, n, seed, steps=steps, blocks=blocks, alpha=alpha, lr=lr, n_val=n_val)[1]


def chosen_model(table, key: str, seed: int = 0, **changes) -> tuple[nn.Module, Results]:
    """Arm ``key`` of the tuning ``table`` trained now at its chosen rate on ``seed`` (``changes``: the lesson's
    settings, e.g. ``n=20``), scored on test and on the table's validation labels: the model, and its record in a
    :class:`Results` (with the arm's settings and ``seed``) that :meth:`~ftlib.course.lessons.tuning.Table.recheck`
    compares with the stored run."""
    from ftlib.course.lessons.tuning import N_VAL

    arm = table.arm(key)
    settings = {**arm.fixed, **changes, **table.options(key)}
    model, record = method_model(**settings, seed=seed, n_val=N_VAL)
    changed = {k: v for k, v in changes.items() if v != arm.fixed[k]}
    label = arm.name + "".join(f" ({k} {v}, tuned at {arm.fixed[k]})" for k, v in changed.items())
    return model, Results([{**settings, "seed": seed, **record, "label": label}])


def _split_count(model: nn.Module) -> tuple[int, int]:
    """Trainable parameters outside the head (adapters, or fine-tuned blocks) and in the head."""
    head = count_parameters(model.head, trainable_only=True)
    return count_parameters(model, trainable_only=True) - head, head


def train_lora(target: str, n: int, rank: int, seed: int, *, lr: float, **settings) -> nn.Module:
    """The pretrained GlyphNet with a new head and rank-``rank`` adapters, trained on ``n`` labels per class."""
    return train_method(lora_name(rank), data.few_shot(target, n, seed), seed, lr=lr, **settings).model


def _stored_bytes(model: nn.Module, method: str, folder: Path) -> int:
    """Bytes on disk of what one task needs beside the shared pretrained backbone."""
    path = folder / f"{method}.safetensors".replace(" ", "_")
    if method.startswith("LoRA"):
        return lora.save_adapter(model, path).stat().st_size
    if method == FULL:
        return checkpoint.save_checkpoint(model, path, {}).stat().st_size
    trained = {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k.split(".")[0] in trained}
    safetensors.torch.save_file(state, str(path))
    return path.stat().st_size


def timed_model(method: str, *, blocks: list[str], alpha: float, lr: float | None, steps: int = TIMED_STEPS,
                runs: int = TIMED_RUNS, target: str = "gratings", n: int = 20, seed: int = 0
                ) -> tuple[nn.Module, float]:
    """``method`` trained ``steps`` steps on ``n`` labels per class of ``target``, ``runs`` times, after one untimed
    step (it pays the one-off costs): the model, and the processor seconds per step of the fastest run (this
    process, all its threads; for the probe, the seconds of its whole exact fit). Other work on the machine only ever
    adds time, so the fastest of a few short runs is the steadiest estimate (as :mod:`timeit` advises)."""
    if runs < 1:
        raise ValueError(f"runs={runs!r} is not allowed: time at least one run")
    train_set = data.few_shot(target, n, seed)
    train_method(method, train_set, seed, lr=lr, steps=1, blocks=blocks, alpha=alpha)
    seconds = []
    for _ in range(runs):
        start = time.process_time()
        model = train_method(method, train_set, seed, lr=lr, steps=steps, blocks=blocks, alpha=alpha).model
        seconds.append((time.process_time() - start) / (1 if method == PROBE else steps))
    return model, min(seconds)


def print_costs(methods: dict[str, tuple[str, list[str], float | None]], full_count: int, folder: Path, *,
                alpha: float) -> dict[str, float]:
    """Per method (``{row name: (method, blocks, rate)}``): trainable parameters in the backbone and in the head,
    their share of full fine-tuning's, the processor seconds per training step (:func:`timed_model`), and the
    file each task needs beside the shared backbone. Returns each row's seconds per step."""
    print(f"CPU per step: processor seconds per training step, the fastest of {TIMED_RUNS} runs of {TIMED_STEPS} steps "
          "of each method after one untimed step (the machine's load can only add to it)")
    print(f"{'method':<28}{'backbone':>10}{'head':>8}{'of full FT':>12}{'CPU per step':>14}{'file per task':>15}")
    per_step = {}
    for row, (method, blocks, lr) in methods.items():
        model, per_step[row] = timed_model(method, blocks=blocks, alpha=alpha, lr=lr)
        backbone, head = _split_count(model)
        timing = "(exact fit)" if method == PROBE else f"{per_step[row]:.3f} s"
        print(f"{row:<28}{backbone:>10,}{head:>8,}{(backbone + head) / full_count:>12.1%}{timing:>14}"
              f"{_stored_bytes(model, method, folder) // 1024:>12} KB")
    return per_step


def plot_accuracy_vs_parameters(results: Results, probe: str = PROBE) -> None:
    """Left: test accuracy against trainable parameters (log scale). Right: each seed's gain over the probe."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    methods = results.unique("method")
    drawn: list[float] = []
    for i, method in enumerate(methods):
        rows = results.where(method=method)
        x, mean, std = rows.values("trainable")[0], 100 * rows.mean(), 100 * rows.std()
        x *= 1.12 ** sum(x == other for other in drawn)  # nudged right where another method trains as many
        drawn.append(rows.values("trainable")[0])
        left.errorbar([x], [mean], [std], marker="o", capsize=3, color=f"C{i}", label=method)
        gains = [100 * g for g in results.differences("method", method, probe)]
        right.plot([i] * len(gains), gains, "o", color=f"C{i}", alpha=0.7)
        right.plot([i - 0.25, i + 0.25], [sum(gains) / len(gains)] * 2, color=f"C{i}")
    left.set(xscale="log", xlabel="trainable parameters (log scale; equal counts nudged apart)",
             ylabel="test accuracy (%)", title="accuracy against trainable parameters (mean ± std)")
    left.legend(fontsize=8)
    right.axhline(0, color="gray", linewidth=1)
    right.set_xticks(range(len(methods)), [m.replace(" (", "\n(").replace(" blocks", "\nblocks") for m in methods],
                     fontsize=8)
    right.set(ylabel="points over the linear probe", title="each seed's gain over the probe (dots), mean (line)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    plt.show()


def compare_targets(results: dict[str, Results], name: str, probe: str = PROBE, full: str = FULL) -> dict:
    """Per target (``{target: Results}``), seed by seed: full fine-tuning minus the probe (the headroom), ``name``
    minus the probe and ``name`` minus full fine-tuning, each with its mean, 95% interval and verdict; the share of
    the headroom ``name`` recovers (its mean gain over the probe over full fine-tuning's); and whether a match with
    full fine-tuning is shown (the interval inside ± :data:`MATCH_POINTS`). Prints every line and returns
    ``{"differences": {(target, first, second): [...]}, "verdicts": {...: (mean, half, word)}, "shares": {target:
    share}, "match_shown": {target: bool}}``."""
    from ftlib.course import points

    pairs = ((full, probe), (name, probe), (name, full))
    differences = {(t, a, b): rows.differences("method", a, b) for t, rows in results.items() for a, b in pairs}
    verdicts = {key: verdict(d, f"{key[1]} ahead", f"{key[2]} ahead", UNRESOLVED) for key, d in differences.items()}
    for (t, a, b), d in differences.items():
        mean, half, word = verdicts[t, a, b]
        print(f"{t:<9} {a} minus {b}: {points(d)}; mean {100 * mean:+.1f} ± {100 * half:.1f} points (95% "
              f"interval): {word}")
    shares = {t: verdicts[t, name, probe][0] / headroom if (headroom := verdicts[t, full, probe][0]) > 0 else None
              for t in results}  # None: full fine-tuning not ahead of the probe on average, no gap to share
    print(f"share of the probe-to-full gap that {name} recovers (its mean gain over the probe over full "
          "fine-tuning's): " + ", ".join(f"{t} {'no gap' if share is None else f'{share:.0%}'}"
                                         for t, share in shares.items()))
    match_shown = {}
    for t in results:
        mean, half = interval(differences[t, name, full])
        match_shown[t] = -MATCH_POINTS / 100 <= mean - half and mean + half <= MATCH_POINTS / 100
        print(f"{t:<9} {name} minus {full}: 95% interval from {100 * (mean - half):+.1f} points to "
              f"{100 * (mean + half):+.1f} points; a match (interval inside ±{MATCH_POINTS:g} point): "
              f"{'shown' if match_shown[t] else 'not shown'}")
    return {"differences": differences, "verdicts": verdicts, "shares": shares, "match_shown": match_shown}


@torch.no_grad()
def merge_round_trip(model: nn.Module, images: torch.Tensor) -> dict:
    """Merge the adapters, unmerge them again, and say what changed: the logits, the predictions, the weights."""
    base_weights = {name: p.clone() for name, p in model.named_parameters() if name.endswith("base.weight")}
    images = images.to(model_device(model))
    unmerged = model(images)
    lora.merge(model)
    merged = model(images)
    lora.unmerge(model)
    restored = max((p - base_weights[name]).abs().max().item() for name, p in model.named_parameters()
                   if name in base_weights)
    return {"logits agree": torch.allclose(merged, unmerged, atol=1e-4, rtol=0),
            "same predictions": int((merged.argmax(1) == unmerged.argmax(1)).sum()), "restored": restored}


def switch_adapters(shared: nn.Module, files: dict[str, Path], trained: dict[str, tuple[nn.Module, data.ImageSet]],
                    order: tuple[str, ...]) -> list[bool]:
    """Load each task's adapter file into ``shared`` in ``order``; per switch, whether it scores as its own model."""
    matches = []
    for task in order:
        lora.load_adapter(shared, files[task])
        model, test = trained[task]
        accuracy = evaluate(shared, test).accuracy
        matches.append(accuracy == evaluate(model, test).accuracy)
        print(f"{task:>8} adapter ({files[task].stat().st_size // 1024} KB) loaded: {shared.num_classes} classes, "
              f"{accuracy:.1%} on its test set, same as the model it was trained in: {matches[-1]}")
    return matches


def show_rank(results: Results, rank: int, *, full_count: int) -> None:
    """LoRA at ``rank`` beside every control: a line of numbers, and bars on a zoomed axis with each seed's dot."""
    name = lora_name(rank)
    row = results.where(method=name)[0]
    print(f"rank = {rank}: {row['trainable_backbone']:,} adapter + {row['trainable_head']:,} head parameters "
          f"({row['trainable'] / full_count:.1%} of full fine-tuning's); test accuracy "
          + ", ".join(f"{m} {results.mean(method=m):.1%}" for m in results.unique("method")
                      if not m.startswith("LoRA") or m == name))
    shown = [m for m in results.unique("method") if not m.startswith("LoRA") or m == name]
    fig, ax = plt.subplots(figsize=(9, 3.5))
    for i, method in enumerate(shown):
        values = [100 * v for v in results.values(method=method)]
        ax.bar(i, sum(values) / len(values), color="C1" if method == name else "C0", alpha=0.6)
        ax.plot([i] * len(values), values, "k.", alpha=0.7)
    low = min(100 * v for m in shown for v in results.values(method=m))
    high = max(100 * v for m in shown for v in results.values(method=m))
    ax.set_ylim(low - 4, high + 2)
    ax.set_xticks(range(len(shown)), [m.replace(" (", "\n(").replace(" blocks", "\nblocks") for m in shown],
                  fontsize=8)
    ax.set(ylabel="test accuracy (%)", title=f"{name} beside the controls (bars: mean; dots: seeds; zoomed axis)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    plt.show()


def rank_live(rank: int, *, lr: float, steps: int, blocks: list[str], alpha: float, target: str = "gratings",
              n: int = 20, seed: int = 0) -> None:
    """The live slider: LoRA at ``rank`` trained for real on ``n`` labels per class of ``target`` (split ``seed``),
    scored on 50 test images per class; prints its trainable parameters and its accuracy."""
    trained = train_method(lora_name(rank), data.few_shot(target, n, seed), seed, lr=lr, steps=steps, blocks=blocks,
                           alpha=alpha)
    test = transfer.subset(data.test_set(target), LIVE_TEST_PER_CLASS)
    backbone, head = _split_count(trained.model)
    print(f"rank = {rank}: {backbone:,} adapter + {head:,} head parameters trained on {n} {target} per class "
          f"(seed {seed}, {steps} steps at {lr:g}) in {trained.seconds:.1f} s")
    print(f"test accuracy {evaluate(trained.model, test).accuracy:.1%} on {len(test):,} test images")
