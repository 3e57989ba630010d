"""Files written whole: beside their place, then renamed into it, so a reader (or a crash) never
meets half a file or half a folder. The standard library only: the server and the command line
use it without the training stack."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path


def write_with(path: Path, write: Callable[[Path], object], suffix: str = ".tmp") -> Path:
    """``write(tmp)`` writes a file beside ``path`` (``suffix`` keeps an extension a writer
    needs, e.g. ``.tmp.png``), which is then renamed over ``path``."""
    path = Path(path)
    tmp = path.with_name(path.name + suffix)
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text(path: Path, text: str) -> Path:
    return write_with(path, lambda tmp: tmp.write_text(text))


def write_json(path: Path, data: dict, indent: int | None = 1) -> Path:
    return write_text(path, json.dumps(data, indent=indent))


def replace_folder(folder: Path, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` fills a folder beside ``folder``, which then replaces ``folder``; nothing
    is left beside it when ``write`` fails."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def cache_folder(folder: Path, write: Callable[[Path], object]) -> Path:
    """``folder`` of a cache, filled by ``write(tmp)`` unless it exists. Runs in parallel may
    fill the same folder: the first rename wins and the others use its folder, so every run
    reads the same files."""
    folder = Path(folder)
    if folder.exists():
        return folder
    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write(tmp)
        tmp.rename(folder)
    except OSError:
        if not folder.exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def artifact_hashes(root: Path, folders: tuple[str, ...]) -> dict[str, str]:
    """sha256 of every file under the named folders of ``root``, keyed by relative path."""
    return {str(p.relative_to(root)): sha256(p)
            for name in folders for p in sorted((root / name).rglob("*")) if p.is_file()}


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
