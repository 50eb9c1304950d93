"""Save and load model weights with metadata as safetensors: no pickle, clear errors, atomic writes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

__all__ = ["file_digest", "load_weights", "metadata_path", "read_metadata", "save_checkpoint"]


def save_checkpoint(model: nn.Module, path: str | Path, metadata: dict, beside: dict[str, str] | None = None) -> Path:
    """Write ``model``'s weights to ``path`` (safetensors) and ``metadata`` beside it as ``<name>.json``, and each
    text of ``beside`` (file name -> text, e.g. reports on the model) into the same folder, in the same save.

    The metadata also goes into the safetensors header, as one JSON string under the key ``"ftlib"`` (one key,
    because safetensors writes several keys in a random order). The same weights and metadata always give the
    same bytes. The save is all or nothing: both files are written aside first (a full disk is a ``ValueError``
    and leaves the old files as they were), then both are put in place under a lock on the folder (another save
    into it waits), with SIGINT and SIGTERM held back until both are in place, and the old weights are put back
    if the second step fails. The files of ``beside`` are written aside with the pair and put in place right after
    it, under the same lock and held signals (each is the old file or the whole new one). No temporary file stays
    behind.
    """
    path = Path(path)
    header = {"ftlib": _dumps(metadata, path)}
    meta_path = metadata_path(path)
    others = {_beside_path(path, meta_path, name): text for name, text in (beside or {}).items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    temporary = {p: _aside(p, "tmp") for p in (path, meta_path, *others)}
    try:
        try:
            save_file(state, temporary[path], metadata=header)
            os.chmod(temporary[path], 0o644)
            _write_synced(temporary[meta_path], json.dumps(metadata, indent=2, sort_keys=True) + "\n")
            for other, text in others.items():
                _write_synced(temporary[other], text)
        except (OSError, SafetensorError) as error:
            why = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            raise ValueError(f"cannot write {path}: {why}; nothing was written and any "
                             "earlier export there is as it was") from None
        try:
            with _folder_lock(path.parent), _signals_held():
                _replace_both(temporary, path, meta_path)
                _replace_others(temporary, others, path)
        except OSError as error:
            raise ValueError(f"cannot put {path} in place: {error.strerror or error}; any earlier export there "
                             "is as it was") from None
    finally:
        for tmp in temporary.values():
            tmp.unlink(missing_ok=True)
    return path


def _replace_others(temporary: dict[Path, Path], others: dict[Path, str], path: Path) -> None:
    """Move each file written beside the checkpoint ``path`` into place (after the checkpoint itself)."""
    for other in others:
        try:
            os.replace(temporary[other], other)
        except OSError as error:
            raise ValueError(f"{path} was saved, but {other} could not be put beside it ({error.strerror or error}); "
                             "save again") from None


def _beside_path(path: Path, meta_path: Path, name: str) -> Path:
    """``name`` in the folder of ``path``: a plain file name other than the checkpoint's two, else a ``ValueError``."""
    other = path.parent / name
    if not name or Path(name).name != name or name in (".", "..") or other in (path, meta_path):
        raise ValueError(f"beside file name {name!r} is not allowed: give a plain file name other than "
                         f"{path.name} and {meta_path.name}")
    if other.exists() and not other.is_file():
        raise ValueError(f"cannot write {other}: it is a folder or a special file; nothing was written")
    return other


def _aside(path: Path, kind: str) -> Path:
    """A hidden name beside ``path`` for this process and thread (``.<name>.<pid>-<thread>.<kind>``)."""
    return path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.{kind}")


def _write_synced(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _replace_both(temporary: dict[Path, Path], path: Path, meta_path: Path) -> None:
    """Move the weights, then the metadata, into place; if the metadata cannot be moved, put the old weights
    back (or remove the new ones where there were none), so the two files never disagree."""
    backup = _aside(path, "old")
    had_old = path.is_file()
    if had_old:
        os.link(path, backup)
    try:
        os.replace(temporary[path], path)
        try:
            os.replace(temporary[meta_path], meta_path)
        except BaseException:
            if had_old:
                os.replace(backup, path)
            else:
                path.unlink(missing_ok=True)
            raise
    finally:
        backup.unlink(missing_ok=True)


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder`` (flock on the folder itself, no lock file) for two saves into it at once."""
    if fcntl is None:  # Windows: no flock
        yield
        return
    handle = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # releases the lock


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM that arrive inside the block are delivered after it (Python runs signal handlers in the
    main thread only, so in another thread a signal cannot interrupt the block anyway)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    before = {signum: signal.signal(signum, lambda signum, frame: arrived.append(signum)) for signum in held}
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(arrived):
            signal.raise_signal(signum)


def _dumps(metadata: dict, path: Path) -> str:
    """``metadata`` as compact JSON; a ``ValueError`` naming ``path`` if it holds NaN or infinity."""
    try:
        return json.dumps(metadata, sort_keys=True, allow_nan=False)
    except ValueError as error:
        raise ValueError(f"metadata for {path} holds a non-finite number ({error}); nothing was written") from None


def metadata_path(path: str | Path) -> Path:
    """The JSON metadata file that belongs to a checkpoint (a readable copy of the safetensors header's)."""
    return Path(path).with_suffix(".json")


def _check_file(path: Path) -> None:
    """A ``FileNotFoundError`` or ``ValueError`` naming ``path`` unless it is a regular file (never opens a FIFO)."""
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist{_how_to_get(path)}")
    if not path.is_file():
        raise ValueError(f"checkpoint {path} is not a regular file (a directory, FIFO or device); "
                         "give the path of a .safetensors file")


def _how_to_get(path: Path) -> str:
    """Advice that fits the file: only the shipped checkpoints are rebuilt by ``python -m ftlib pretrain``."""
    from .paths import SHIPPED_DIRS

    shipped = path.resolve().parent in {d.resolve() for d in SHIPPED_DIRS}
    return "; rebuild it with `python -m ftlib pretrain` (see the README)" if shipped else ""


def _header(path: Path) -> dict:
    """The ``"ftlib"`` metadata stored in the safetensors header of ``path`` (the source of truth)."""
    _check_file(path)
    try:
        with safe_open(path, "pt") as handle:
            header = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"checkpoint {path} is damaged or not a safetensors file ({error}){_how_to_get(path)}") \
            from None
    if "ftlib" not in header:
        raise ValueError(f"checkpoint {path} has no ftlib metadata in its header: it was not written by ftlib")
    try:
        metadata = json.loads(header["ftlib"])
    except ValueError:
        raise ValueError(f"checkpoint {path} has damaged ftlib metadata in its header") from None
    if not isinstance(metadata, dict):
        raise ValueError(f"checkpoint {path} has damaged ftlib metadata in its header (a JSON "
                         f"{type(metadata).__name__}, not an object)")
    return metadata


def read_metadata(path: str | Path) -> dict:
    """The metadata of checkpoint ``path``, from its safetensors header.

    The ``.json`` file beside it is a readable copy: if it exists it must agree, else a ``ValueError`` names
    both files (e.g. an edited copy, or a save interrupted between the two files).
    """
    path = Path(path)
    metadata = _header(path)
    meta_path = metadata_path(path)
    if meta_path.exists():
        try:
            copy = json.loads(meta_path.read_text()) if meta_path.is_file() else None
        except (ValueError, UnicodeDecodeError):
            copy = None
        if copy != metadata:
            raise ValueError(f"{meta_path} does not agree with the metadata in {path} (edited, or a save was "
                             f"interrupted): delete {meta_path.name} to use the model's own, or export again")
    return metadata


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load the weights in ``path`` into ``model`` (in place), checking every name and shape first."""
    path = Path(path)
    _check_file(path)
    try:
        state = load_file(path)
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"checkpoint {path} is damaged or not a safetensors file ({error}){_how_to_get(path)}") \
            from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
             for k in sorted(set(state) & set(expected)) if state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(f"checkpoint {path} does not fit this model: missing {missing}, unexpected {unexpected}, "
                         f"shape mismatches {wrong}")
    kinds = [f"{k}: file {state[k].dtype} vs model {expected[k].dtype}" for k in sorted(state)
             if state[k].is_floating_point() != expected[k].is_floating_point()
             or (not state[k].is_floating_point() and state[k].dtype != expected[k].dtype)]
    if kinds:  # e.g. a header that calls float weights I32: load_state_dict would cast them silently
        raise ValueError(f"checkpoint {path} stores its tensors in the wrong type ({kinds[0]}"
                         f"{f' and {len(kinds) - 1} more' if len(kinds) > 1 else ''}): it is damaged")
    device = next(model.parameters()).device
    model.load_state_dict({k: v.to(device) for k, v in state.items()})
    return model


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes, to check that a rebuild is bit-identical."""
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()

