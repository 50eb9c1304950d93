"""Save and load model weights with metadata as safetensors: no pickle, clear errors, atomic writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn


def save_checkpoint(model: nn.Module, path: str | Path, metadata: dict) -> Path:
    """Write ``model``'s weights to ``path`` (safetensors) and ``metadata`` beside it as ``<name>.json``.

    The metadata also goes into the safetensors header, as one JSON string under the key ``"ftlib"`` (one key,
    because safetensors writes several keys in a random order). Both files are written atomically, and the same
    weights and metadata always give the same bytes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    header = {"ftlib": json.dumps(metadata, sort_keys=True)}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(state, tmp, metadata=header)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    meta_path = metadata_path(path)
    tmp = meta_path.with_name(f".{meta_path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, meta_path)
    return path


def metadata_path(path: str | Path) -> Path:
    """The JSON metadata file that belongs to a checkpoint."""
    return Path(path).with_suffix(".json")


def read_metadata(path: str | Path) -> dict:
    """The metadata saved beside checkpoint ``path``."""
    meta_path = metadata_path(path)
    if not meta_path.exists():
        raise FileNotFoundError(f"no metadata file {meta_path} for checkpoint {path}")
    return json.loads(meta_path.read_text())


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load the weights in ``path`` into ``model`` (in place), checking every name and shape first."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist; rebuild it with `python -m ftlib pretrain`")
    try:
        state = load_file(path)
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"checkpoint {path} is damaged or not a safetensors file ({error}); "
                         "rebuild it with `python -m ftlib pretrain`") from error
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
             for k in sorted(set(state) & set(expected)) if state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(f"checkpoint {path} does not fit this model: missing {missing}, unexpected {unexpected}, "
                         f"shape mismatches {wrong}")
    device = next(model.parameters()).device
    model.load_state_dict({k: v.to(device) for k, v in state.items()})
    return model


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes, to check that a rebuild is bit-identical."""
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()

