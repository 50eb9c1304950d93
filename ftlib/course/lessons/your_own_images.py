"""Lesson 11's drivers: the recipe fine-tuned (backbone factor chosen on validation, from a fresh head and LP-FT)
and from scratch (its rate chosen on validation alike) over seeds, how each arm was set, a probe on random
features, paired comparisons on the test images, early stopping replayed with less patience, exports checked
against the models, and the live slider's rerun of one seed's fine-tuning on fewer training images per class."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import torch

from ftlib import augment, backbones, distributed, export, recipe
from ftlib.course.lessons import experiments, records
from ftlib.course.lessons.experiments import Results, run_grid
from ftlib.data import ImageSet
from ftlib.evaluation import evaluate
from ftlib.lr import RangeTest
from ftlib.probe import linear_probe
from ftlib.runtime import model_device
from ftlib.stopping import EarlyStopping, History, stopping_point
from ftlib.transfer import adapt_batchnorm

__all__ = ["FACTORS", "LIVE_STEPS", "compare_runs", "export_agreement", "fewer_images", "how_set", "kept",
           "live_values", "paired", "parameter_count", "random_probe", "range_test_of", "replay_patience", "scored",
           "show_fewer_images"]

FACTORS = recipe.FACTORS  # each trained arm's grid of rate multiples, chosen on validation (the cautious one first)
LIVE_STEPS = 100  # fine-tuning steps of a live rerun (the lesson's runs take up to 200): about 2 s on 2 cores
kept = recipe.kept  # the validation loss and accuracy of the weights early stopping kept


def scored(run: recipe.RecipeResult) -> dict:
    """A record of one recipe run for :func:`~records.choose`: the kept weights' validation loss and accuracy, and
    the run itself."""
    val_loss, val_accuracy = kept(run.history)
    return {"val_loss": val_loss, "val_accuracy": val_accuracy, "run": run}


def compare_runs(folder: str | Path, backbone: str, seeds: int, factors: tuple[float, ...] = FACTORS,
                 **options) -> tuple[dict, Results, Results]:
    """The recipe on ``folder`` for seeds 0 .. ``seeds - 1``: fine-tuned, LP-FT, and from scratch.

    Both trained arms choose their knob in each seed, from the same grid ``factors``, on the kept weights'
    validation scores by the course's one rule (:func:`~records.choose`: validation accuracy, ties to the lower
    validation loss; the test set is not looked at): fine-tuning its backbone factor (one call of the recipe per
    seed tries every factor after one range test; its fine-tuned candidates are this arm's tries), scratch the
    multiple of its range test's rate that every block trains at (it has no pretrained blocks to spare; its other
    multiples reuse the rate). LP-FT tries every factor too, at fine-tuning's rate, and chooses alike. Returns the
    runs by
    ``(method, seed)`` (and the recipe's own run by ``("recipe", seed)``: its ``chosen`` is what it exports,
    chosen among the probe and every factor), their test accuracies (with the linear-probe baseline as a method),
    and the validation
    scores of every setting tried (by ``method``, ``seed`` and ``factor``). ``options`` go to
    :func:`ftlib.recipe.finetune` (not ``lr``: the range tests set it).
    """
    if "lr" in options:
        raise ValueError("compare_runs sets every rate from the range tests: leave out lr=")
    recipes, scratch = {}, {}  # seed -> the recipe's run over every factor; (seed, multiple) -> a scratch run

    def scratch_run(seed: int, multiple: float) -> recipe.RecipeResult:
        if (seed, 1.0) not in scratch:  # the range test's own rate, which the other multiples scale
            scratch[seed, 1.0] = recipe.finetune(folder, backbone, seed=seed, pretrained=False, **options)
        if (seed, multiple) not in scratch:
            rate = multiple * scratch[seed, 1.0].lr["head"]
            scratch[seed, multiple] = recipe.finetune(folder, backbone, seed=seed, pretrained=False, lr=rate,
                                                      **options)
        return scratch[seed, multiple]

    def try_setting(method: str, seed: int, factor: float) -> dict:
        if method == "scratch":
            return scored(scratch_run(seed, factor))
        if seed not in recipes:
            recipes[seed] = recipe.finetune(folder, backbone, seed=seed, backbone_factor=factors, **options)
        return scored(recipes[seed].arm(f"fine-tune x{factor:g}"))

    choices = run_grid(try_setting, method=["fine-tune", "scratch"], seed=range(seeds), factor=factors)
    chosen = {(method, seed): records.choose(choices, "factor", seed=seed, method=method)
              for method in ("fine-tune", "scratch") for seed in range(seeds)}

    def method_run(seed: int, method: str, data: str) -> dict:
        tuned = "scratch" if method == "scratch" else "fine-tune"
        run = choices.where(method=tuned, seed=seed, factor=chosen[tuned, seed])[0]["run"]
        if method == "linear probe":  # the recipe's own baseline, fitted in the seed's recipe run
            return {"accuracy": run.probe_accuracy}
        factor = chosen[tuned, seed]
        if method == "LP-FT":  # tuned alike: every factor, at fine-tuning's rate, chosen by the same rule
            lp_ft = recipe.finetune(folder, backbone, seed=seed, backbone_factor=factors, lp_ft=True,
                                    lr=run.lr["head"], **options)
            tries = run_grid(lambda factor: scored(lp_ft.arm(f"LP-FT x{factor:g}")), factor=factors)
            factor = records.choose(tries, "factor")
            run = lp_ft.arm(f"LP-FT x{factor:g}")
        return {"accuracy": run.test.accuracy, "val_accuracy": kept(run.history)[1],
                "val_loss": kept(run.history)[0], "factor": factor, "run": run}

    results = run_grid(method_run, seed=range(seeds), method=["fine-tune", "LP-FT", "scratch", "linear probe"],
                       data=["example"])
    runs = {(r["method"], r["seed"]): r["run"] for r in results if "run" in r}
    runs.update({("recipe", seed): run for seed, run in recipes.items()})
    return runs, results, choices


# how each arm's setting was made, for :func:`how_set`
_GRIDS = {"fine-tune": "backbone factor {grid} (x the head's range-test rate)",
          "scratch": "every block at {grid} x its range-test rate",
          "LP-FT": "backbone factor {grid} (x fine-tune's head rate), its own choice",
          "linear probe": "nothing: weight decay 1e-3 fixed (the baseline)"}


def how_set(results: Results, choices: Results) -> str:
    """How each arm of :func:`compare_runs` was set: the setting each seed chose, the chosen runs' validation
    accuracy (mean ± std over seeds) and the grid it was chosen from; then, per trained arm and seed, the validation
    loss (accuracy) of the kept weights at every grid point."""
    grid = " ".join(f"{f:g}" for f in choices.unique("factor"))

    def validation(chosen: Results) -> str:
        if not all("val_accuracy" in r for r in chosen):
            return "-"
        return records.spread(chosen.mean("val_accuracy"), chosen.std("val_accuracy"))

    def per_seed(arm: Results) -> str:
        return " ".join(f"x{r['factor']:g}" for r in arm) if all("factor" in r for r in arm) else "-"

    longest = max(len(per_seed(results.where(method=m))) for m in results.unique("method"))
    columns = [records.Column("chosen per seed", cell=per_seed, align="<", width=max(18, longest + 2)),
               records.Column("validation %", cell=validation),
               records.Column("   chosen from", cell=lambda rs: "   " + _GRIDS[rs[0]["method"]].format(grid=grid),
                              align="<", width=1)]
    lines = [records.table(results, "method", columns, lead=16, title="arm")]
    for method in choices.unique("method"):
        for seed in choices.unique("seed"):
            tried = ", ".join(f"x{r['factor']:g} {r['val_loss']:.3f} ({r['val_accuracy']:.1%})"
                              for r in choices.where(method=method, seed=seed))
            best = records.choose(choices, "factor", seed=seed, method=method)
            lines.append(f"  {method}, seed {seed}: {tried} -> x{best:g}")
    return "\n".join(lines)


def parameter_count(backbone: str, classes: int) -> int:
    """How many parameters ``backbone`` has with a head for ``classes`` classes (built from random weights: no
    weights file is needed)."""
    return sum(p.numel() for p in backbones.build(backbone, classes, 0, pretrained=False).parameters())


def range_test_of(choices: Results, method: str, seed: int) -> RangeTest:
    """The range test that set the rates of ``method``'s runs in ``seed`` (every run of the arm and seed shares it;
    scratch's runs at other multiples reuse it)."""
    return next(r["run"].range_test for r in choices.where(method=method, seed=seed) if r["run"].range_test)


def random_probe(run: recipe.RecipeResult, seed: int) -> float:
    """Test accuracy of the recipe's linear probe (AdaBN included) on a *randomly initialised* backbone, on the
    same split as ``run``: what the letters' features add over features that learnt nothing."""
    train, test = run.splits["train"], run.splits["test"]
    model = backbones.build(run.backbone, train.num_classes, seed, pretrained=False)
    return evaluate(linear_probe(adapt_batchnorm(model, train.images), train), test).accuracy


@torch.no_grad()
def paired(first: torch.nn.Module, second: torch.nn.Module, test: ImageSet) -> tuple[int, int]:
    """On the same test images: how many ``first`` gets right and ``second`` wrong, and the other way round (the
    discordant counts that :func:`ftlib.stats.mcnemar_exact` tests)."""
    right = []
    for model in (first, second):
        model.eval()
        right.append(model(test.images).argmax(1) == test.labels)
    return int((right[0] & ~right[1]).sum()), int((right[1] & ~right[0]).sum())


def replay_patience(history: History, patience: int) -> tuple[int, float]:
    """Early stopping with ``patience`` replayed on a recorded validation-loss curve (the same run up to the stop):
    the step it stops at and the validation loss of the weights it would keep."""
    best, stop = stopping_point(history.val_loss, patience)
    end = history.eval_step[stop] if stop is not None else len(history.step)
    return end, history.val_loss[best]


def export_agreement(models: list[torch.nn.Module], images: ImageSet, files: list[Path], backbone: str,
                     folder: str | Path) -> tuple[list[int], list[float]]:
    """Export each model to ``folder/seed<i>/``, predict ``files`` from the export, and compare with the model.

    Returns, per model, how many files the reloaded export labels as the in-memory model does, and the largest
    difference between their probabilities.
    """
    agree, gaps = [], []
    for seed, model in enumerate(models):
        model.eval()
        path = export.save(model, f"{folder}/seed{seed}/model.safetensors", backbone, images.classes)
        predictions = export.predict(path, files)
        with torch.no_grad():
            in_memory = torch.softmax(model(images.images.to(model_device(model))), 1).cpu()
        agree.append(sum(p.label == images.classes[i] for p, i in zip(predictions, in_memory.argmax(1).tolist())))
        gaps.append((torch.tensor([p.probability for p in predictions]) - in_memory.max(1).values).abs().max().item())
    return agree, gaps


def fewer_images(run: recipe.RecipeResult, per_class: int, seed: int, steps: int,
                 patience: int = recipe.PATIENCE) -> tuple[float, History]:
    """Fine-tune ``run``'s backbone again, as the recipe did with ``seed``, on only the first ``per_class``
    training images of each class of its split: same validation and test images, the rates its range test found,
    the recipe's AdaBN, augmentation, cosine schedule and early stopping, for up to ``steps`` steps. Returns the
    test accuracy and the history. With every training image and the run's ``steps`` it repeats the run exactly.
    """
    train = run.splits["train"]
    most = int(torch.bincount(train.labels).min())
    if isinstance(per_class, bool) or not isinstance(per_class, int) or not 1 <= per_class <= most:
        raise ValueError(f"per_class={per_class!r} is not allowed: the split trains on {most} images per class, "
                         f"so choose an integer from 1 to {most}")
    rows = torch.cat([torch.nonzero(train.labels == c).flatten()[:per_class] for c in range(train.num_classes)])
    subset = ImageSet(train.images[rows], train.labels[rows], train.classes, train.name)
    def prepare(model: torch.nn.Module) -> dict:  # the recipe's AdaBN, then its per-block AdamW
        if run.pretrained:
            adapt_batchnorm(model, subset.images)
        return {"optimizer": distributed.block_adamw(model, run.lr)}

    trained = experiments.run("fine-tune", subset, seed, steps,
                              model=backbones.build(run.backbone, train.num_classes, seed, run.pretrained),
                              prepare=prepare, lr=run.lr["head"], batch_size=32, schedule=recipe.SCHEDULE,
                              augment=augment.standard(), val_data=run.splits["val"], eval_every=10,
                              early_stopping=EarlyStopping(patience=patience))
    return evaluate(trained.model, run.splits["test"]).accuracy, trained.history


def live_values(run: recipe.RecipeResult) -> list[int]:
    """The live slider's choices of training images per class: 1, 2, 3, and a quarter, half, three quarters and
    all of what ``run``'s split trains on (1, 2, 3, 6, 9, 12 for the example folder)."""
    most = int(torch.bincount(run.splits["train"].labels).min())
    return sorted({v for v in (1, 2, 3, most // 4, most // 2, 3 * most // 4, most) if 1 <= v <= most})


def show_fewer_images(run: recipe.RecipeResult, per_class: int, seed: int = 0, steps: int = LIVE_STEPS) -> None:
    """The live slider's run: :func:`fewer_images` for real, its test accuracy beside the full run's, and its
    validation curve (a new small plot each time)."""
    accuracy, h = fewer_images(run, per_class, seed, steps)
    test = run.splits["test"]
    images = "image" if per_class == 1 else "images"
    print(f"{per_class} training {images} per class: test accuracy {accuracy:.1%} on {len(test)} images "
          f"(seed {seed}, up to {steps} steps, kept the weights of step {h.best_step})")
    print(f"the lesson's run of seed {seed} (all {int(torch.bincount(run.splits['train'].labels).min())} per "
          f"class, its full step budget): {run.test.accuracy:.1%}; chance {1 / test.num_classes:.1%}")
    fig, ax = plt.subplots(figsize=(5, 2.6))
    ax.plot(h.eval_step, [100 * a for a in h.val_accuracy], marker=".")
    ax.plot(h.best_step, 100 * h.val_accuracy[h.eval_step.index(h.best_step)], "o", ms=9)
    ax.set(xlabel="step", ylabel="validation accuracy (%)", title=f"{per_class} training images per class, live")
    ax.grid(alpha=0.3)
    plt.show()
