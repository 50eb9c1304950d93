"""The devices a device-taking test runs on: the CPU always, and each accelerator this machine has
(torchvision's ``cpu_and_cuda()`` pattern). Here, without a GPU, the list is the CPU alone."""

from __future__ import annotations

import pytest
import torch

__all__ = ["available_devices", "on_each_device"]


def available_devices() -> list[str]:
    """``"cpu"``, then ``"cuda"`` and ``"mps"`` where torch can use them."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    return devices


on_each_device = pytest.mark.parametrize("device", available_devices())
