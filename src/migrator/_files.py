"""Files written whole or not at all: a reader (``migrator recover``, node_exporter's textfile
collector, a second command sharing an emulator state) never sees half of one, and a symlink
planted at the path is replaced, never written through."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["exists", "is_file", "write_atomically"]

# The temporary file's name is ".<start of the target's name>.<8 random characters>.tmp".
# Only the start is kept so that the name fits wherever the target's does: the target may be
# as long as the folder allows (NAME_MAX, 255 bytes on Linux), and a name built from all of
# it would not fit. 32 bytes still tell a person which file a leftover belonged to.
_KEPT_NAME_BYTES = 32


def write_atomically(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all.

    The text goes into a temporary file created exclusively beside ``path`` (``O_EXCL``, so no
    existing file or link is opened), is flushed to disk, and the file is renamed over
    ``path`` (a rename replaces a link rather than following it). On any failure the
    temporary file is removed and ``path`` keeps what it held.

    Parameters
    ----------
    path
        The file to write; any name its folder accepts.
    text
        The whole content, written as UTF-8.
    """
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{_name_start(path.name)}.", suffix=".tmp", dir=path.parent)
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


def _name_start(name: str) -> str:
    """The longest start of ``name`` whose file-system encoding fits in ``_KEPT_NAME_BYTES``,
    cut between characters (a multi-byte character is kept whole or left out)."""
    kept, size = [], 0
    for character in name:
        size += len(os.fsencode(character))
        if size > _KEPT_NAME_BYTES:
            break
        kept.append(character)
    return "".join(kept)


def is_file(path: str | Path) -> bool:
    """Whether ``path`` is a file; False where its name cannot even be looked up (too long, a
    loop of links), which ``Path.is_file`` raises for instead: nothing usable is there."""
    try:
        return Path(path).is_file()
    except OSError:
        return False


def exists(path: str | Path) -> bool:
    """Whether something is at ``path``; False where its name cannot be looked up (as
    :func:`is_file`)."""
    try:
        return Path(path).exists()
    except OSError:
        return False
