"""Where Numba keeps migrator's compiled kernels: never inside the installed package.

Numba's ``cache=True`` writes next to the source file (``__pycache__`` in site-packages)
unless ``NUMBA_CACHE_DIR`` says otherwise. An installed wheel's folder may be read-only
(container images, system packages) or shared by several users, and a cache there is lost
with every reinstall. So, before the first kernel is decorated (:mod:`._kernels` asks
:func:`numba_cache` for its ``cache=`` flag):

* ``NUMBA_CACHE_DIR`` set: Numba uses it, as it documents; migrator only checks that it can be
  written;
* unset: ``$XDG_CACHE_HOME/migrator/numba``, or ``~/.cache/migrator/numba`` without
  ``XDG_CACHE_HOME`` (the XDG base-directory rule), is created and given to Numba, in
  ``numba.config.CACHE_DIR`` and in ``NUMBA_CACHE_DIR`` (so that Numba's reload of its
  environment and child processes such as Ray workers keep the same folder);
* the folder cannot be written: no caching at all (the kernels compile in each process,
  about a second), logged once, instead of Numba's "no locator available" error at import.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Mapping

__all__ = ["cache_dir", "numba_cache", "user_cache_dir"]

log = logging.getLogger(__name__)

ENV = "NUMBA_CACHE_DIR"


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The folder the kernels are cached in: ``NUMBA_CACHE_DIR``, else the XDG user cache."""
    env = os.environ if environ is None else environ
    if env.get(ENV):
        return Path(env[ENV])
    return user_cache_dir(env) / "numba"


def user_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """migrator's folder in the user's cache: ``$XDG_CACHE_HOME/migrator``, or
    ``~/.cache/migrator`` without ``XDG_CACHE_HOME`` (the XDG base-directory rule)."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".cache")
    return Path(base) / "migrator"


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError:
        return False
    return True


def numba_cache() -> bool:
    """Point Numba's cache at :func:`cache_dir`; whether the kernels may use ``cache=True``."""
    folder = cache_dir()
    if not _writable(folder):
        log.warning("Numba cache folder %s cannot be written: migrator's kernels are compiled "
                    "without caching (set %s to a writable folder)", folder, ENV)
        return False
    if not os.environ.get(ENV):
        os.environ[ENV] = str(folder)
        from numba.core import config  # only after the variable is set, for a first import

        # An earlier import of Numba read the variable unset (its stubs do not list the attribute).
        config.CACHE_DIR = str(folder)  # type: ignore[attr-defined]
    return True
