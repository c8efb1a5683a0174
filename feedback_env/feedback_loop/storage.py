"""Atomic files of arrays plus JSON metadata (``.npz``), for the loop's history and state.

Writing goes to a temporary file in the target's folder, is flushed to disk, and then replaces the
target with :func:`os.replace` (atomic on POSIX and Windows): a crash mid-write leaves the previous
file intact. Reading checks everything (zip CRCs, the format tag, required keys, a SHA-256 of the
arrays) before returning, so a damaged file raises one :class:`LoopFileError` and nothing half-read
is ever used. No pickles: ``allow_pickle=False`` throughout.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from feedback_env.errors import FeedbackEnvError

FORMAT = "feedback_env.feedback_loop/1"
_META = "__meta__"


class LoopFileError(FeedbackEnvError):
    """A feedback-loop file that cannot be read: missing, truncated, corrupted or of another format."""


def _digest(arrays: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(key.encode())
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _create_temporary(target: Path) -> tuple[int, str]:
    """A new, uniquely named file beside ``target``, opened for writing: ``(fd, path)``.

    Created with mode 0o666 so that the umask applies as for :func:`open` (``tempfile.mkstemp`` always
    gives 0o600, which :func:`os.replace` would keep)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), str(tmp)
        except FileExistsError:
            continue
    raise FileExistsError(f"{target.parent}: no free temporary name for {target.name}")


def write_atomic(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Path:
    """Write ``arrays`` and JSON-serializable ``meta`` to ``path`` atomically; returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if _META in arrays:
        raise ValueError(f"array name {_META!r} is reserved")
    payload = {k: np.asarray(v) for k, v in arrays.items()}
    header = {"format": FORMAT, "sha256": _digest(payload), "meta": meta}
    fd, tmp = _create_temporary(target)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **payload, **{_META: np.array(json.dumps(header))})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def read_checked(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a file written by :func:`write_atomic`: ``(arrays, meta)``. Raises :class:`LoopFileError`."""
    source = Path(path)
    if not source.is_file():
        raise LoopFileError(f"{source}: no such file")
    try:
        with open(source, "rb") as f, np.load(f, allow_pickle=False) as data:  # f: closed even when np.load fails
            arrays = {k: data[k] for k in data.files}  # reads every member: zip CRCs are checked here
    except Exception as exc:
        # zipfile and numpy's header parser raise many types on damaged bytes (BadZipFile, EOFError,
        # ValueError, NotImplementedError for an unknown compression method, RuntimeError for an
        # "encrypted" member, tokenize.TokenError or SyntaxError for a broken .npy header, ...)
        raise LoopFileError(f"{source}: damaged or not a feedback-loop file ({type(exc).__name__}: {exc})") from exc
    if _META not in arrays:
        raise LoopFileError(f"{source}: not a feedback-loop file (no metadata record)")
    try:
        header = json.loads(str(arrays.pop(_META)))
    except json.JSONDecodeError as exc:
        raise LoopFileError(f"{source}: damaged metadata ({exc})") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        found = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise LoopFileError(f"{source}: format {found!r}, expected {FORMAT!r}")
    if header.get("sha256") != _digest(arrays):
        raise LoopFileError(f"{source}: checksum mismatch: the arrays were altered after writing")
    return arrays, header.get("meta", {})
