"""`audiotag info`: versions, data and model paths, the status of the VGGish checkpoint, the engine that
runs its CNN and the state of its LiteRT conversion."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

PACKAGES = (
    "audiotag",
    "tensorflow-cpu",
    "tensorflow",
    "tf-slim",
    "ai-edge-litert",
    "numpy",
    "resampy",
    "soundfile",
    "h5py",
    "scikit-learn",
    "matplotlib",
)

STATUS_TEXT = {
    "verified-release": "the released VGGish checkpoint (size and sha256 verified)",
    "synthetic": "SYNTHETIC weights for tests only — not the released model; labels are meaningless",
    "unverified": "a checkpoint that is not the verified release (size or sha256 differ)",
    "missing": "not found — run `audiotag download-models`",
}


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def package_version() -> str:
    """audiotag's version, as installed (pyproject.toml holds the one copy of it)."""
    return _version("audiotag") or "unknown (not installed: run pip install from the clone)"


def lite_conversion_state(checkpoint: Path) -> str:
    """Where the checkpoint's LiteRT conversion is (or will be built) and whether it is ready."""
    from vggish import lite_cache
    from vggish.errors import CheckpointError

    try:
        state = lite_cache.inspect(checkpoint)
    except CheckpointError:
        return "(no checkpoint)"
    except OSError as exc:
        from safeio.oserrors import describe_os_error

        return f"unreadable: {describe_os_error(exc)}"
    if state.usable:
        return f"{state.location.model} (ready{', SYNTHETIC' if state.synthetic else ''})"
    if state.reason == lite_cache.NOT_BUILT:
        return f"{state.location.model} (not built yet: built on first use or by `audiotag download-models`)"
    return f"{state.location.model} (built again on first use: {state.reason})"


def collect_info(explicit_checkpoint: str | os.PathLike[str] | None = None) -> dict[str, object]:
    """Everything `audiotag info` prints, as a dict (no download is attempted)."""
    from audiotag_data import data_dir
    from classifier.pretrained import available_heads, heads_dir
    from safeio.cache import cache_dir
    from vggish.checkpoint import checkpoint_status
    from vggish.download import (
        ENV_CHECKPOINT,
        DownloadError,
        default_checkpoint_path,
        resolve_checkpoint,
    )
    from vggish.engines import auto_engine

    try:
        checkpoint: Path | None = resolve_checkpoint(explicit_checkpoint, download=False, progress=False)
    except DownloadError:
        checkpoint = None
    status = checkpoint_status(checkpoint if checkpoint is not None else default_checkpoint_path())
    heads = [f"{name} ({heads_dir() / name}.npz)" for name in available_heads()]
    engine, why_not_lite = auto_engine()
    return {
        "versions": {name: v for name in PACKAGES if (v := _version(name)) is not None},
        "python": f"{platform.python_version()} ({platform.platform()})",
        "data_dir": str(data_dir()),
        "cache_dir": str(cache_dir()),
        "checkpoint_env": os.environ.get(ENV_CHECKPOINT) or "(not set)",
        "checkpoint": str(checkpoint if checkpoint is not None else default_checkpoint_path()),
        "checkpoint_status": status,
        "vggish_engine": f"{engine} ({why_not_lite})" if why_not_lite else engine,
        "lite_conversion": lite_conversion_state(checkpoint) if checkpoint is not None else "(no checkpoint)",
        "heads": heads,
    }


def format_info(info: dict[str, object]) -> str:
    """Human-readable text of collect_info()."""
    versions: dict[str, str] = info["versions"]  # type: ignore[assignment]
    lines = ["audiotag " + versions.get("audiotag", "?"), f"  python:              {info['python']}"]
    lines += [f"  {name + ':':21s}{version}" for name, version in versions.items() if name != "audiotag"]
    status = str(info["checkpoint_status"])
    lines += [
        f"data dir:              {info['data_dir']}",
        f"cache dir:             {info['cache_dir']}",
        f"AUDIOTAG_VGGISH_CHECKPOINT: {info['checkpoint_env']}",
        f"VGGish checkpoint:     {info['checkpoint']}",
        f"checkpoint status:     {status} — {STATUS_TEXT.get(status, status)}",
        f"VGGish engine (auto):  {info['vggish_engine']}",
        f"LiteRT conversion:     {info['lite_conversion']}",
        f"classifier heads:      {', '.join(info['heads']) or '(none)'}",  # type: ignore[arg-type]
    ]
    return "\n".join(lines) + "\n"
