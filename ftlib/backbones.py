"""Backbones for your own images: the shipped GlyphNet, or torchvision's ResNet-18 with ImageNet weights you have.

Every backbone comes as a model with named top-level blocks (``block1`` ... ``block4``, ``head``, plus ``stem``
for ResNet), so per-block learning rates, freezing and the linear probe work the same on both. Nothing is ever
downloaded: ResNet-18's weights come from a file you name or from your local torch hub cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

from .models import GlyphNet, pooled_features, pretrained_start

__all__ = ["HOW_TO_GET_RESNET", "RESNET18_FILE", "ResNetClassifier", "SPECS", "Spec", "build", "check_weights",
           "read_state_dict", "resnet18_weights", "spec"]

RESNET18_FILE = "resnet18-f37072fd.pth"  # the name torchvision gives ImageNet weights (IMAGENET1K_V1) in its cache
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
HOW_TO_GET_RESNET = (
    "ResNet-18's ImageNet weights are not on this machine, and ftlib never downloads them. On a machine with "
    "internet run\n    python -c \"import torchvision; torchvision.models.resnet18(weights='IMAGENET1K_V1')\"\n"
    f"which saves {RESNET18_FILE} in the torch hub cache (~/.cache/torch/hub/checkpoints/); copy that file here "
    "into the same folder, or pass its path (--weights PATH / weights=PATH)."
)


@dataclass(frozen=True)
class Spec:
    """What a backbone expects as input: colour channels, square image size, and whether ink must be bright."""

    name: str
    channels: int
    size: int
    bright_ink: bool


SPECS = {"glyphnet": Spec("glyphnet", 1, 28, True), "resnet18": Spec("resnet18", 3, 64, False)}


def spec(name: str) -> Spec:
    """The input :class:`Spec` of backbone ``name``."""
    if name not in SPECS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(SPECS)}")
    return SPECS[name]


class ResNetClassifier(nn.Module):
    """torchvision's ResNet-18 regrouped into GlyphNet-style blocks: ``stem``, ``block1`` ... ``block4``, ``head``.

    Inputs are RGB images in [0, 1]; they are normalised with ImageNet's mean and standard deviation inside.
    """

    def __init__(self, resnet: torchvision.models.ResNet, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool)
        self.block1, self.block2, self.block3, self.block4 = resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4
        self.head = nn.Linear(resnet.fc.in_features, num_classes)

    def features(self, x: torch.Tensor, upto: str = "block4") -> torch.Tensor:
        """Pooled features after block ``upto`` (as :meth:`ftlib.models.GlyphNet.features`)."""
        return pooled_features(self, self.stem((x - self.mean) / self.std), upto)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def resnet18_weights(weights: str | Path | None = None) -> Path:
    """The ImageNet weights file to use: ``weights`` if given, else the one in the torch hub cache.

    A ``FileNotFoundError`` explains how to get the file when it is missing (nothing is downloaded).
    """
    path = Path(weights) if weights else Path(torch.hub.get_dir()) / "checkpoints" / RESNET18_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no ResNet-18 weights at {path}. {HOW_TO_GET_RESNET}")
    return path


def _resnet18(weights: str | Path | None, pretrained: bool) -> torchvision.models.ResNet:
    resnet = torchvision.models.resnet18(weights=None)
    if pretrained:
        path = resnet18_weights(weights)
        state = read_state_dict(path)
        try:
            resnet.load_state_dict(state)
        except RuntimeError as error:
            raise ValueError(f"{path} does not hold ResNet-18 weights: {error}") from error
    return resnet


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors in a ``.safetensors`` file or a ``.pth`` state dict, read without running any pickled code.

    Anything else (a damaged or text file, a pickle holding code or other objects, a list) is a ``ValueError``
    that names the file and says what is allowed.
    """
    allowed = "a state dict (names -> tensors) saved by torch.save or safetensors"
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(path)
        except (SafetensorError, OSError, ValueError) as error:
            raise ValueError(f"{path} is not a readable safetensors file ({_first_line(error)}); "
                             f"expected {allowed}") from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises many kinds here (UnpicklingError, RuntimeError, EOFError, ...)
            raise ValueError(f"{path} cannot be read safely as weights ({type(error).__name__}: "
                             f"{_first_line(error)}); expected {allowed}; ftlib never runs pickled code") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise ValueError(f"{path} holds a {type(state).__name__}, not {allowed}")
    return state


def _first_line(error: BaseException) -> str:
    """The first line of an error's message, without advice to turn off safe loading."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return text.split("weights_only")[0].rstrip(" .,(") if "weights_only" in text else text


def check_weights(name: str, pretrained: bool, weights: str | Path | None) -> None:
    """A ``ValueError`` for an unknown backbone, or a weights file where none is read (GlyphNet, or from scratch)."""
    spec(name)
    if weights is not None and (name != "resnet18" or not pretrained):
        raise ValueError(f"weights={str(weights)!r} has no meaning for {name} "
                         f"{'pretrained' if pretrained else 'from scratch'}: only pretrained resnet18 reads a "
                         "weights file; leave it out")


def build(name: str, num_classes: int, seed: int | None, pretrained: bool = True,
          weights: str | Path | None = None) -> nn.Module:
    """Backbone ``name`` with a fresh head for ``num_classes`` classes: pretrained weights, or random ones.

    The head (and, without ``pretrained``, every weight) is drawn from ``seed`` (``None``: torch's current random
    state, for a model whose weights are loaded next). Pretrained weights are read before seeding, so the same
    seed gives the same model every time.
    """
    from .runtime import seed_rngs

    check_weights(name, pretrained, weights)
    if name == "glyphnet":
        if pretrained:
            return pretrained_start(num_classes, seed)
        if seed is not None:
            seed_rngs(seed)
        return GlyphNet(num_classes)
    resnet = _resnet18(weights, pretrained)
    if seed is not None:
        seed_rngs(seed)
    if not pretrained:
        resnet = torchvision.models.resnet18(weights=None)
    return ResNetClassifier(resnet, num_classes)
