"""A small form to point the recipe at your own folder and backbone: check what it finds, then fine-tune.

Nothing runs until a button is clicked, so the form is safe in headless runs. :func:`check` is the plain call
behind the "check" button (a lesson calls it once so that its printed output is tested), :func:`finetune_chosen`
the one behind "fine-tune": the recipe, which chooses its backbone factor (or the linear probe) on validation.
"""

from __future__ import annotations

import os
from pathlib import Path

import ipywidgets as widgets

from ftlib import backbones, recipe
from ftlib.folder import load_folder
from ftlib.paths import ROOT
from ftlib.recipe import FACTORS
from ftlib.runtime import headless

__all__ = ["check", "finetune_chosen", "picker", "shown_path"]


def shown_path(folder: str | Path) -> str:
    """``folder`` as the form shows it: relative to the current directory when it lies inside the course's checkout
    (so that a stored notebook names no machine's path, and the path still works as typed), else as given."""
    path = Path(folder).expanduser().resolve()
    return os.path.relpath(path) if path.is_relative_to(ROOT.resolve()) else str(folder)


def check(folder: str | Path, backbone: str) -> None:
    """Print what the recipe would use: the folder's classes, counts and skipped files, and the backbone's state."""
    spec = backbones.spec(backbone)
    print(f"backbone {backbone}: {spec.channels} channel(s), {spec.size}x{spec.size} pixels"
          f"{', bright ink on dark' if spec.bright_ink else ''}")
    if backbone == "resnet18":
        try:
            print(f"  ImageNet weights: {backbones.resnet18_weights()}")
        except FileNotFoundError as error:
            print(f"  {error}")
    else:
        print("  weights: the shipped letters checkpoint")
    try:
        print(load_folder(folder, spec.size, spec.channels, spec.bright_ink)[1])
    except (FileNotFoundError, ValueError) as error:
        print(f"folder: {error}")


def finetune_chosen(folder: str | Path, backbone: str, out: str | Path, factors: tuple[float, ...] = FACTORS,
                    **options) -> recipe.RecipeResult:
    """The recipe on ``folder`` with each backbone factor of ``factors``, exported to ``out``: the recipe itself
    chooses, among the linear probe and every factor, the one whose kept weights score best on validation (the
    course's rule, :func:`ftlib.selection.best`), as ``python -m ftlib finetune`` does. ``options`` go to
    :func:`ftlib.recipe.finetune`."""
    return recipe.finetune(folder, backbone, backbone_factor=factors, out=out, **options)


def picker(folder: str | Path, backbone: str = "glyphnet", out: str | Path = "runs/finetune",
           factors: tuple[float, ...] = FACTORS) -> widgets.VBox | None:
    """A folder path box, a backbone menu, and two buttons: "check" (:func:`check`) and "fine-tune"
    (:func:`finetune_chosen`: the recipe at each backbone factor of ``factors``, the one validation prefers, or the
    probe, exported to ``out``, relative to the checkout's root: a lesson runs in notebooks/, where no export belongs).
    Headless (:func:`ftlib.runtime.headless`), no widget is made: one line says what it would
    show."""
    if headless():
        tried = " or ".join(f"{f:g}" for f in factors)
        print(f"[picker] image folder {shown_path(folder)}, backbone {backbone}: buttons 'check' and 'fine-tune' "
              f"(backbone factor {tried}, chosen on validation; exports to {out})")
        return None
    path = widgets.Text(value=shown_path(folder), description="image folder",
                        style={"description_width": "initial"}, layout=widgets.Layout(width="480px"))
    choice = widgets.Dropdown(options=sorted(backbones.SPECS), value=backbone, description="backbone")
    check_button, run_button = widgets.Button(description="check"), widgets.Button(description="fine-tune")
    output = widgets.Output()

    def on_check(_button) -> None:
        output.clear_output()
        with output:
            check(path.value, choice.value)

    def on_run(_button) -> None:
        output.clear_output()
        with output:
            try:
                result = finetune_chosen(path.value, choice.value, ROOT / out, factors, progress=True)
            except (FileNotFoundError, ValueError) as error:
                print(f"error: {error}")
                return
            print("validation accuracy (loss) of each candidate: " + ", ".join(
                f"{c.name} {c.val_accuracy:.1%} ({c.val_loss:.3f})" for c in result.candidates)
                + f" -> {result.chosen}")
            print(result.test)
            print(f"exported to {result.export_path} in {result.seconds:.1f} s")

    check_button.on_click(on_check)
    run_button.on_click(on_run)
    return widgets.VBox([widgets.HBox([path, choice]), widgets.HBox([check_button, run_button]), output])
