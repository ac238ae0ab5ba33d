"""Files written whole or not at all: a reader (``migrator recover``, node_exporter's textfile
collector, a second command sharing an emulator state) never sees half of one, and a symlink
planted at the path is replaced, never written through."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["write_atomically"]


def write_atomically(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path``: into a temporary file created exclusively beside it (so no
    existing file or link is opened), flushed to disk, then renamed over ``path`` (a rename
    replaces a link rather than following it)."""
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
