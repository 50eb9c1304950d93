"""A small form to point the recipe at your own folder and backbone: check what it finds, then fine-tune.

Nothing runs until a button is clicked, so the form is safe in headless runs. :func:`check` is the plain call
behind the "check" button (a lesson calls it once so that its printed output is tested).
"""

from __future__ import annotations

from pathlib import Path

import ipywidgets as widgets

from ftlib import backbones, recipe
from ftlib.folder import load_folder
from ftlib.paths import ROOT
from ftlib.runtime import headless

__all__ = ["check", "picker"]


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


def picker(folder: str | Path, backbone: str = "glyphnet", out: str | Path = "runs/finetune") -> widgets.VBox | None:
    """A folder path box, a backbone menu, and two buttons: "check" (:func:`check`) and "fine-tune" (the recipe,
    exporting to ``out``, relative to the checkout's root: a lesson runs in notebooks/, where no export belongs).
    Headless (:func:`ftlib.runtime.headless`), no widget is made: one line says what it would
    show."""
    if headless():
        print(f"[picker] image folder {folder}, backbone {backbone}: buttons 'check' and 'fine-tune' "
              f"(exports to {out})")
        return None
    path = widgets.Text(value=str(folder), description="image folder", style={"description_width": "initial"},
                        layout=widgets.Layout(width="480px"))
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
                result = recipe.finetune(path.value, choice.value, out=ROOT / out, progress=True)
            except (FileNotFoundError, ValueError) as error:
                print(f"error: {error}")
                return
            print(result.test)
            print(f"exported to {result.export_path} in {result.seconds:.1f} s")

    check_button.on_click(on_check)
    run_button.on_click(on_run)
    return widgets.VBox([widgets.HBox([path, choice]), widgets.HBox([check_button, run_button]), output])
