"""Lesson 10's retrieval task: key-value records longer than the base's context, scored by how far back the queried
line lies, for each way of reading past the context, untrained and after a short fine-tune.

The retrieval base (:mod:`ftlib.course.pretrain_retrieval`) retrieves a value from records that fit its 64
characters. Here a record holds :data:`EVAL_LINES` lines (251 characters with its query and answer, inside 256),
and the queried line is drawn so that its distance to the answer falls in one of :data:`BANDS`. A model that reads
only its last 64 characters (the sliding window, :func:`window_accuracy`) cannot see a line further back, so past
64 characters it can only guess: there a longer context can truly win.

A fine-tune (:meth:`LongRetrieval.run`) trains every weight for ``steps`` steps on rows of records that fill the
window (every line queried, in random order) mixed with prose windows; the 64-character arm trains alike on rows of
64 (the same characters per step) and is read through a sliding window. Every run is scored on records of
*validation* keys (to choose its rate on) and of *test* keys (to report), both held out of the base's pretraining
(:func:`ftlib.lm.retrieval.keys`), and on the validation prose past position 64 (perplexity beside retrieval).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from statistics import fmean

import matplotlib.pyplot as plt
import torch
from torch import nn

from ftlib.course.lessons.records import Column, Results, spread
from ftlib.course.lessons.records import table as print_table
from ftlib.lm import context, corpus, retrieval
from ftlib.lm.finetune import finetune
from ftlib.lm.tokenizer import encode
from ftlib.runtime import evaluating
from ftlib.stats import verdict

__all__ = ["BANDS", "EVAL_LINES", "REREAD", "LongRetrieval", "band_name", "by_band", "plot_by_distance",
           "pretraining_curve", "records_by_band", "reread_table", "table", "window_accuracy"]

EVAL_LINES = 35  # 35 lines of 7 characters, the query and the answer: 251 characters, inside 256
BANDS = ((0, 64), (64, 128), (128, 192), (192, 256))  # distance of the queried line's start from the answer
ROW_LINES = (8, 18)  # a fine-tuning row at 256 holds one record of 8-18 lines and all their queries
SHORT_LINES = (2, 8)  # at 64 characters, as in the base's pretraining
# Giraffe's evaluation-time scale: records of 66 lines (468 characters: 66 of the 68 test keys) whose queried line
# lies past the fine-tuned 256 characters, read at 512 with the scale kept and with the scale for 512
REREAD = {"length": 512, "lines": 66, "band": (256, 512)}


def band_name(band: tuple[int, int]) -> str:
    """``"64-128"``: a band of distances, in characters."""
    return f"{band[0]}-{band[1]}"


def records_by_band(split: str, per_band: int, seed: int, lines: int = EVAL_LINES,
                    bands: tuple[tuple[int, int], ...] = BANDS) -> dict[str, list[retrieval.Record]]:
    """``per_band`` seeded records of ``lines`` keys of ``split`` per band, each querying a line whose distance to
    the answer (:attr:`~ftlib.lm.retrieval.Record.distance`) lies in the band (above its low end, up to its high)."""
    rng = random.Random(seed)
    probe = retrieval.random_record(random.Random(0), lines, split=split)
    line_length = len(probe.lines) // lines
    tail = len(probe.prompt) - len(probe.lines)  # the query's key and mark
    distance = {index: (lines - index) * line_length + tail for index in range(lines)}
    chosen = {}
    for band in bands:
        indices = [i for i, d in distance.items() if band[0] < d <= band[1]]
        if not indices:
            raise ValueError(f"band {band_name(band)} holds no line of a {lines}-line record")
        chosen[band_name(band)] = [retrieval.random_record(rng, lines, split=split, query_index=rng.choice(indices))
                                   for _ in range(per_band)]
    return chosen


@torch.no_grad()
def window_accuracy(model: nn.Module, records: list[retrieval.Record], reach: int) -> float:
    """Exact-match retrieval by ``model`` reading only the last ``reach`` characters before each answer character
    (the sliding window: what lies further back is cut off)."""
    device = next(model.parameters()).device
    ids = torch.stack([encode((r.prompt + r.answer)[-(reach + 1):]) for r in records]).to(device)
    digits = retrieval.VALUE_DIGITS
    with evaluating(model):
        right = model(ids[:, :-1])[:, -digits:].argmax(-1) == ids[:, -digits:]
    return right.all(dim=1).float().mean().item()


def by_band(model: nn.Module, records: dict[str, list[retrieval.Record]], reach: int | None = None) -> dict[str, float]:
    """Exact-match retrieval per band: reading the whole record, or through a window of ``reach`` characters."""
    if reach is None:
        return {band: retrieval.retrieval_accuracy(model, group)["exact"] for band, group in records.items()}
    return {band: window_accuracy(model, group, reach) for band, group in records.items()}


@dataclass
class LongRetrieval:
    """Fine-tunes of the retrieval ``base`` at ``length`` characters (or at its own context, the ``"window"`` arm),
    each scored on validation and test records by band and on validation prose past the base's context.

    ``rows`` is how many record rows and prose windows of ``length`` characters make one step (the window arm gets
    ``length / context`` times as many rows of its context: the same characters per step).
    """

    base: nn.Module
    train_text: str
    prose: str  # validation prose, scored past the base's context
    length: int = 256
    steps: int = 40
    rows: dict = field(default_factory=lambda: {"records": 2, "prose": 1})
    per_band: int = 100  # test records per band
    val_per_band: int = 150  # validation records per band (what a rate is chosen on)
    rates: dict = field(default_factory=dict)  # each arm's rate chosen on validation (the retrieval sweep's)
    val_seed: int = 2000
    test_seed: int = 3000

    def __post_init__(self) -> None:
        self.val = records_by_band("val", self.val_per_band, self.val_seed)
        self.test = records_by_band("test", self.per_band, self.test_seed)
        self.beyond = next(iter(records_by_band("test", self.per_band, self.test_seed + 1, REREAD["lines"],
                                                (REREAD["band"],)).values()))

    @property
    def trained(self) -> int:
        return self.base.config.context

    def batches(self, arm: str, seed: int):
        """Endless seeded batches of the arm's rows: records (answers scored) and prose windows."""
        short = arm == "window"
        length = self.trained if short else self.length
        times = self.length // self.trained if short else 1
        lines = SHORT_LINES if short else ROW_LINES
        rng = random.Random(seed)
        windows = corpus.batches(self.train_text, self.rows["prose"] * times, length, seed)
        while True:
            ids, answers = retrieval.record_rows(rng, self.rows["records"] * times, length + 1, rng.randint(*lines))
            x, y = next(windows)
            yield (torch.cat([ids[:, :-1], x]), torch.cat([ids[:, 1:].masked_fill(~answers[:, 1:], -100), y]))

    def reader(self, arm: str) -> nn.Module:
        """The untrained base set up for ``arm``: a method of :data:`ftlib.lm.context.EXTENSIONS` at ``length``,
        or the base itself for ``"window"``."""
        return self.base if arm == "window" else context.scaled(self.base, arm, self.length)

    def scores(self, model: nn.Module, arm: str, val: bool = True, per_band: int | None = None,
               near_window: bool = False) -> dict[str, float]:
        """Validation accuracy (mean over bands: what a rate is chosen on; left out where ``val`` is false), test
        accuracy per band, its mean over every band (``overall``) and past the base's context (``far``), and the
        prose loss past the context (``past``, bpc). ``per_band`` scores only the first so many test records of each
        band (a quicker look). ``near_window`` adds the control ``near_window``: the nearest band's test records read
        through a window of the base's context, as the 64-character model reads them (the same lines in view).

        A long reader is also scored on :data:`REREAD`'s records, whose line lies past :attr:`length` (the first
        ``per_band`` of them): read as it is (``beyond_kept``) and set up for :data:`REREAD`'s length by its method
        (``beyond_rescaled``: Giraffe's evaluation-time scale; the same model for naive and the truncated basis,
        whose positions do not depend on the length)."""
        reach = self.trained if arm == "window" else None
        test = by_band(model, {band: group[:per_band] for band, group in self.test.items()}, reach)
        if arm == "window":
            bits = context.sliding_bits(model, self.prose, self.length)
        else:
            bits = context.position_bits(model, self.prose, self.length)
        far = [acc for band, acc in test.items() if int(band.split("-")[0]) >= self.trained]
        chosen_on = {"val_accuracy": fmean(by_band(model, self.val, reach).values())} if val else {}
        control = {"near_window": window_accuracy(model, next(iter(self.test.values())), self.trained)} \
            if near_window else {}
        return {**chosen_on, **{f"test_{band}": acc for band, acc in test.items()}, "overall": fmean(test.values()),
                "far": fmean(far), "past": bits[self.trained:].mean().item(), **control,
                **({} if arm == "window" else self.reread(model, arm, per_band))}

    def reread(self, model: nn.Module, arm: str, per_band: int | None = None) -> dict[str, float]:
        """Retrieval of a long reader on :data:`REREAD`'s records (the first ``per_band``), as it is and set up by
        its method for :data:`REREAD`'s length (the pretrained context and base are the retrieval base's)."""
        records = self.beyond[:per_band]
        kept = retrieval.retrieval_accuracy(model, records)["exact"]
        if arm in context.LENGTH_FREE:
            return {"beyond_kept": kept, "beyond_rescaled": kept}
        rescaled = context.scaled(model, arm, REREAD["length"], pretrained=self.base.config)
        return {"beyond_kept": kept, "beyond_rescaled": retrieval.retrieval_accuracy(rescaled, records)["exact"]}

    def run(self, arm: str, seed: int, lr: float | None = None, steps: int | None = None, val: bool = True,
            near_window: bool = False) -> dict:
        """Fine-tune the arm's reader for ``steps`` (default :attr:`steps`) at ``lr`` (default: the arm's chosen
        rate, :attr:`rates`) and score it (:meth:`scores`)."""
        steps = self.steps if steps is None else steps
        lr = self.rates[arm] if lr is None else lr
        model, _ = finetune(self.reader(arm), self.batches(arm, seed), "full", steps, lr, seed)
        return {"arm": arm, "seed": seed, "lr": lr, "steps": steps, **self.scores(model, arm, val,
                                                                                   near_window=near_window)}


def table(records: Results | list[dict], names: dict[str, str]) -> str:
    """One line per arm: exact-match retrieval (%) on the test records by band of distances, its mean over every band
    and past the base's context, and the prose loss past it (bpc); a mean ± std over the seeds where an arm has more
    than one record."""
    records = Results(records)
    several = any(len(records.where(arm=arm)) > 1 for arm in records.unique("arm"))

    def column(header: str, metric: str, scale: float, digits: int) -> Column:
        if several:
            return Column(header, metric, scale=scale, digits=digits, width=12 if scale == 100 else 14)
        return Column(header, cell=lambda rows: f"{scale * rows.mean(metric):.{digits}f}", width=9)

    columns = [column(band_name(b), f"test_{band_name(b)}", 100, 0) for b in BANDS]
    columns += [column("all", "overall", 100, 0), column("past 64", "far", 100, 0), column("prose", "past", 1, 2)]
    return print_table(records, "arm", columns, names=names, title="% right, by distance in characters")


def pretraining_curve(metadata: dict) -> str:
    """The retrieval base's pretraining curve from its metadata, a line per evaluation: held-out exact match on
    records of 2, 4 and 8 lines, and the validation prose's bits per character."""
    sizes = sorted(int(k.split("_")[1]) for k in next(iter(metadata["curve"].values())) if k.startswith("exact_"))
    lines = [f"{'step':>10}  " + " / ".join(f"{n} lines" for n in sizes) + "   prose"]
    for step, scores in sorted(metadata["curve"].items(), key=lambda item: int(item[0])):
        lines.append(f"{int(step):>10}  " + " / ".join(f"{100 * scores[f'exact_{n}_lines']:>6.1f}%" for n in sizes)
                     + f"   {scores['val_bpc']:.2f} bpc")
    return "\n".join(lines)


def reread_table(records: Results | list[dict], names: dict[str, str]) -> str:
    """One line per long reader: exact-match retrieval (%) on the records whose line lies past the fine-tuned
    length, read at :data:`REREAD`'s length with the fine-tuned scale kept and with the scale for that length
    (Giraffe's evaluation-time scale), mean ± std over the seeds; and the rescaled minus the kept, seed by seed (mean
    ± 95% interval over the seeds and its verdict; where the method's positions do not depend on the length, the two
    readings are one model)."""
    records = Results(r for r in Results(records) if "beyond_kept" in r)

    def change(rows: Results) -> str:
        differences = [r["beyond_rescaled"] - r["beyond_kept"] for r in rows]
        if rows.unique("arm")[0] in context.LENGTH_FREE:
            return "the same model"
        mean, half, word = verdict(differences, "higher", "lower", "not resolved")
        return f"{spread(mean, half, digits=0, sign='+')} points ({word})"

    low = REREAD["band"][0]
    columns = [Column("scale kept", "beyond_kept", digits=0), Column(f"scale for {REREAD['length']}", "beyond_rescaled",
                                                                      digits=0),
               Column("rescaled minus kept", cell=change, width=32)]
    return print_table(records, "arm", columns, names=names,
                       title=f"% right, line past {low} back, read at {REREAD['length']}")


def plot_by_distance(panels: dict[str, Results | list[dict]], names: dict[str, str]) -> None:
    """One panel per entry of ``panels`` (its title: its records), % of test records right against the distance of
    the queried line (the middle of each band), one line per arm (mean ± std over the seeds where there are
    several), with the trained context marked: in one row, or two where there are more than three panels."""
    bands = [band_name(b) for b in BANDS]
    middles = [(low + high) / 2 for low, high in BANDS]
    columns = len(panels) if len(panels) <= 3 else math.ceil(len(panels) / 2)
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5 * columns + 2, 3.8 * rows), sharey=True, squeeze=False)
    for ax, (title, records) in zip(axes.flat, panels.items()):
        records = Results(records)
        for i, (arm, name) in enumerate(names.items()):
            rows = records.where(arm=arm)
            if not rows:
                continue
            means = [100 * rows.mean(f"test_{band}") for band in bands]
            stds = [100 * rows.std(f"test_{band}") if len(rows) > 1 else 0.0 for band in bands]
            ax.errorbar(middles, means, yerr=stds, marker="o", capsize=3, label=name, color=f"C{i}")
        ax.axvline(BANDS[0][1], color="black", linestyle="--", linewidth=1, label="trained context (64)")
        ax.set(xlabel="distance of the queried line (characters)", title=title, xticks=middles, xticklabels=bands)
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set(ylabel="% of test records right", ylim=(-3, 103))
    axes[0][-1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    plt.show()
