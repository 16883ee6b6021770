"""The per-user cache directory shared by every package (the VGGish checkpoint, compiled heads)."""

from __future__ import annotations

import os
from pathlib import Path

ENV_HOME = "AUDIOTAG_HOME"


def cache_dir(*, create: bool = False) -> Path:
    """The cache directory: $AUDIOTAG_HOME, else $XDG_CACHE_HOME/audiotag, else ~/.cache/audiotag.

    A relative $XDG_CACHE_HOME is ignored, as the XDG spec requires. With `create=True` the directory is
    made if missing (writers of the cache create it themselves).
    """
    home = os.environ.get(ENV_HOME)
    if home:
        path = Path(home).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
        path = base / "audiotag"
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path
