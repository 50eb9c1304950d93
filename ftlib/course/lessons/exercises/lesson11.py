"""Lesson 11's exercises: arrange a folder the way the recipe reads it, predict what half the training images cost,
and explain why the test set must not choose the backbone factor."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import EllipsisType

from ftlib import recipe
from ftlib.course import example_images
from ftlib.course.lessons import your_own_images
from ftlib.course.lessons.exercises import (
    Coach,
    Feedback,
    Option,
    Question,
    attempted,
    check_target,
    exercise,
    not_attempted,
    tell,
)
from ftlib.folder import load_folder

__all__ = ["DROP_BANDS", "HINTS", "INBOX_PER_CLASS", "SOLUTIONS", "TEST_CHOOSES", "WRONG_ANSWERS", "arrange_folder",
           "half_the_images", "hint", "make_inbox", "solution", "test_must_not_choose"]

INBOX_PER_CLASS = 3  # images of each example class in the exercise's unsorted inbox


def make_inbox(inbox: str | Path, per_class: int = INBOX_PER_CLASS) -> dict[str, str]:
    """Copy ``per_class`` images of each class of the example folder into one flat folder ``inbox``, named
    ``<class>_<nn>.<suffix>`` (as files exported from a photo tool often are); returns each file's content hash
    -> its class."""
    inbox = Path(inbox)
    inbox.mkdir(parents=True, exist_ok=True)
    truth = {}
    for name in example_images.CLASSES:
        for i, source in enumerate(sorted((example_images.EXAMPLE_DIR / name).iterdir())[:per_class]):
            content = source.read_bytes()
            (inbox / f"{name}_{i:02d}{source.suffix}").write_bytes(content)
            truth[hashlib.sha256(content).hexdigest()] = name
    return truth


@exercise
def arrange_folder(arrange: Callable[[Path, Path], None] | EllipsisType) -> Feedback:
    """*Do*: ``arrange(inbox, root)`` should sort the flat ``inbox`` into ``root/<class name>/`` so that the
    recipe's loader finds every image under its class. The check makes an inbox, runs ``arrange``, loads ``root``
    with :func:`ftlib.folder.load_folder` and prints what the loader found."""
    quantity = "share of the inbox's images the loader finds under their own class"
    if not attempted(arrange):
        return not_attempted("write arrange(inbox, root)")
    if not callable(arrange):
        return tell(False, f"arrange should be a function of (inbox, root), got {arrange!r}.")
    with tempfile.TemporaryDirectory(prefix="ftlib-ex11-") as scratch:
        inbox, root = Path(scratch) / "inbox", Path(scratch) / "my_images"
        truth = make_inbox(inbox)
        try:
            arrange(inbox, root)
            _, report = load_folder(root)
        except Exception as error:  # the learner's code or the loader: either way, say it in one line
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            return check_target(0.0, target=100, quantity=quantity, unit="%", hint=(
                f"the loader (or your function) says: {first}. The recipe reads root/<class name>/<image files>: "
                "one sub-folder per class, named after the class (the part of each file name before '_')."))
        print(report)
        found = [(hashlib.sha256(path.read_bytes()).hexdigest(), path.relative_to(root).parts[0])
                 for path in report.files]
    right = sum(truth.get(digest) == folder for digest, folder in set(found))
    stray = len(found) - len({digest for digest, _ in found} & set(truth))  # a second copy, or not the inbox's
    if stray:
        return check_target(100 * right / len(found), target=100, quantity=quantity, unit="%", hint=(
            f"the loader found {len(found)} images but the inbox holds {len(truth)}: {stray} of them are not the "
            "inbox's files once each (a second copy, or images from elsewhere), and the recipe would train and test "
            "on them. Copy exactly the files of inbox, each into root/<the name before '_'>/."))
    return check_target(100 * right / len(truth), target=100, quantity=quantity, unit="%", hint=(
        f"the classes the loader lists above should be the {len(example_images.CLASSES)} names before the '_' "
        f"({', '.join(example_images.CLASSES)}), each with {INBOX_PER_CLASS} images."))


DROP_BANDS = ((-100.0, 3.0, "almost nothing: under 3 points"),
              (3.0, 20.0, "some, but far less than half the accuracy: 3 to 20 points"),
              (20.0, 45.0, "a large share: 20 to 45 points"),
              (45.0, 100.0, "half the accuracy or more, as with half the labels: 45 points or more"))
"""half_the_images' ranges of points lost, lettered a, b, ... in this order: the learner predicts a range, so that no
number printed above the cell can be copied into a pass (lesson 11 review 2, L3)."""


@exercise
def half_the_images(answer: str | EllipsisType, run: recipe.RecipeResult, steps: int,
                    patience: int = recipe.PATIENCE) -> Feedback:
    """*Predict*: in which of :data:`DROP_BANDS` the points of test accuracy lie that seed 0's fine-tuning loses
    with half its training images per class (the same recipe, split, rates and steps; measured here once a letter
    is written, a few seconds)."""
    letters = tuple("abcdefgh"[:len(DROP_BANDS)])
    if not attempted(answer):
        print("How many points of test accuracy would seed 0's fine-tuning lose with half the training images per "
              "class?\n" + "\n".join(f"  ({letter}) {text}" for letter, (_, _, text) in zip(letters, DROP_BANDS)))
        return not_attempted(f"put the letter of your prediction ({', '.join(letters)})")
    if not isinstance(answer, str) or answer.strip().lower() not in letters:
        return tell(False, f"{answer!r} is not one of the options: answer with one of {', '.join(letters)}, as a "
                           "string (e.g. \"a\").")
    low, high, text = DROP_BANDS[letters.index(answer.strip().lower())]
    most = int(run.splits["train"].labels.bincount().min())
    half, _ = your_own_images.fewer_images(run, most // 2, 0, steps, patience)
    lost = round(100 * (run.test.accuracy - half), 1)  # as printed
    if not low <= lost < high:
        side = "more" if lost >= high else "fewer"
        return tell(False, f"Not quite: with {most // 2} instead of {most} training images per class seed 0 loses "
                           f"{side} points than \"{text}\". Think again about where the accuracy comes from, then "
                           "try another letter.")
    share = "far less than half" if lost < 25 * run.test.accuracy else "a large share of"
    letters_probe, random = run.probe_accuracy, your_own_images.random_probe(run, 0)
    return tell(True, f"Right: measured {lost:.1f} points lost: with {most // 2} images per class seed 0 reaches "
                      f"{half:.1%}, with {most} {run.test.accuracy:.1%}: halving the labels costs {share} the "
                      "accuracy. "
                      "The pretrained features carry much of it before any fine-tuning: a linear probe on the letter "
                      f"features reaches {letters_probe:.1%}, the same probe on a randomly initialised GlyphNet "
                      f"{random:.1%} (both fitted on the same labels); each labelled image refines good features "
                      "rather than building them. The live slider below the seeds shows more of the curve.")


TEST_CHOOSES = Question(
    "Suppose each seed had picked its backbone factor by TEST accuracy instead of its validation score, and we then "
    "reported that test accuracy. What would go wrong?", [
        Option("The reported test accuracy would be biased upwards: the best of several tries", True,
               "Choosing is fitting: whatever set picks the winner scores it too kindly (the winner's curse). "
               "Validation makes the choices so that the test set, read once at the end, stays an honest "
               "estimate."),
        Option("Nothing: the test set is larger, so it would choose better and the score stays honest", False,
               "More images make the choice less noisy; but ask what choosing does to the number you then report "
               "from the same images, and which set would be left untouched to say how well the model does."),
        Option("The model would learn the test images, since choosing trains on them", False,
               "No weight ever sees a test image or its label: the factor is a choice between finished runs. So "
               "what could the choice still touch?"),
        Option("The test accuracy would come out lower, as the test set is noisier", False,
               "The test set is the larger one here, so it is the less noisy of the two: noise would not make "
               "the reported number come out lower."),
    ], seed="lesson11.test_must_not_choose")


@exercise
def test_must_not_choose(answer: str | EllipsisType) -> Feedback:
    """*Explain*: why the test set must not choose the backbone factor (or scratch's rate)."""
    return TEST_CHOOSES.check(answer)


def arrange(inbox, root):
    for file in Path(inbox).iterdir():
        label = file.name.split("_")[0]  # "pound_02.jpg" -> "pound"
        (Path(root) / label).mkdir(parents=True, exist_ok=True)
        (Path(root) / label / file.name).write_bytes(file.read_bytes())


def arrange_copy_example(inbox, root):  # lazy: ignores the inbox and copies the whole example folder
    shutil.copytree(example_images.EXAMPLE_DIR, root)


def arrange_with_a_copy(inbox, root):  # sorted, plus a stray backup folder of every file
    arrange(inbox, root)
    shutil.copytree(inbox, Path(root) / "copy")


def arrange_flat(inbox, root):
    Path(root).mkdir(parents=True, exist_ok=True)
    for file in Path(inbox).iterdir():
        (Path(root) / file.name).write_bytes(file.read_bytes())


HINTS: dict[str, tuple[str, str]] = {
    "arrange_folder": (
        "The recipe reads root/<class name>/<image files>: one sub-folder per class. The class is in each file's "
        "name, before the '_'.",
        "Path(inbox).iterdir() lists the inbox's files, and a str method cuts a name at a character. "
        "Path.mkdir can make missing parent folders too."),
    "half_the_images": (
        "Where does most of the accuracy come from: the labels, or the features they are read with? A linear probe "
        "on the pretrained features and the same probe on random features are fitted on the same labels.",
        "Each labelled image refines features rather than building them. How much of the accuracy would go with "
        "half of the labels?"),
    "test_must_not_choose": (
        "Does choosing between finished runs change any weight? Then what could it harm?",
        "Which number would the choice touch, and could that number still be an honest estimate afterwards?"),
}
SOLUTIONS: dict[str, object] = {"arrange_folder": arrange, "half_the_images": "b",
                                "test_must_not_choose": TEST_CHOOSES.right_letter}
WRONG_ANSWERS: dict[str, list[tuple[object, str]]] = {
    "arrange_folder": [(arrange_flat, "one sub-folder per class"), (arrange_copy_example, "the inbox holds 24"),
                       (arrange_with_a_copy, "the inbox holds 24")],
    "half_the_images": [("a", "loses more points"), ("c", "loses fewer points"), ("d", "loses fewer points")],
    "test_must_not_choose": [(TEST_CHOOSES.letter_of(2), "No weight ever sees a test image")],
}
_COACH = Coach(HINTS, SOLUTIONS)
hint, solution = _COACH.hint, _COACH.solution
