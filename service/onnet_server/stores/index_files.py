"""Base files: the index's base on disk, in the layout every process maps as it is.

One file holds one base (core/index/base.py): a magic string, the length of a JSON header,
the header (each array's name, dtype, shape and offset; the base's seed and contested
claims; the registry it came from and the change-feed position it includes), then the
arrays, each at a 64-byte boundary. Mapping it read-only gives numpy arrays over the
file's pages: every process of a host shares one copy in the page cache, none can write to
it (a crashed worker cannot corrupt it), and a new host that copies the newest file starts
serving from it at once, catching up from the change feed from its position.

A file is written under a temporary name, flushed, then renamed: a reader never sees a
half-written base. ``current`` in the directory names the newest published file (replaced
the same way); older files are removed once a newer one is published (a process that still
maps one keeps its pages until it lets go).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import mmap
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from onnet_server.core.index import BaseIndex

__all__ = ["BaseFile", "BuilderLock", "current_base", "publish_base", "read_base", "write_base"]

_MAGIC = b"ONNETIX2"  # 2: entry directories, 16-bit id ends; older files are rebuilt
_ALIGN = 64
_CURRENT = "current"
_SUFFIX = ".base"


@dataclass(frozen=True)
class BaseFile:
    """A base mapped from its file, with what the file says about it."""

    path: Path
    base: BaseIndex
    meta: Mapping[str, Any]
    """``registry`` (the prefix and data-set marker it belongs to), ``positions`` (the last
    change-feed sequence number per group it includes), ``built_at`` (unix seconds)."""
    extra: Mapping[str, npt.NDArray[Any]]
    """Arrays the store keeps beside the base (its blocklists), as written."""


def write_base(
    directory: Path,
    base: BaseIndex,
    meta: Mapping[str, Any],
    extra: Mapping[str, npt.NDArray[Any]] | None = None,
) -> Path:
    """Write ``base`` (and ``extra`` arrays) to a new file in ``directory``; returns its path.

    The file is not yet published (``publish_base``).
    """
    private_directory(directory)
    arrays = dict(base.arrays)
    arrays.update({f"extra:{name}": array for name, array in (extra or {}).items()})
    header_arrays: list[dict[str, Any]] = []
    offsets: list[int] = []
    offset = 0
    for name, array in arrays.items():
        header_arrays.append(
            {"name": name, "dtype": array.dtype.str, "shape": list(array.shape), "offset": offset}
        )
        offsets.append(offset)
        offset += -(-array.nbytes // _ALIGN) * _ALIGN
    header = json.dumps(
        {
            "meta": dict(meta),
            "seed": base.seed,
            "contested": [
                [user, fingerprint.hex(), version, discoverable, entry.hex()]
                for user, fingerprint, version, discoverable, entry in base.contested
            ],
            "arrays": header_arrays,
        }
    ).encode("ascii")
    start = -(-(len(_MAGIC) + 8 + len(header)) // _ALIGN) * _ALIGN
    name = f"{int(meta.get('built_at', 0)):012d}-{secrets.token_hex(4)}{_SUFFIX}"
    final = directory / name
    temporary = directory / f".{name}.tmp"
    # It holds fingerprints and sealed entries, the registry's data: private from its first
    # byte (a mode set after the writing would leave it readable meanwhile).
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(_MAGIC + len(header).to_bytes(8, "little") + header)
        file.write(bytes(start - file.tell()))
        for at, array in zip(offsets, arrays.values(), strict=True):
            file.seek(start + at)
            file.write(np.ascontiguousarray(array).tobytes())
        file.truncate(start + offset)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, final)
    return final


def read_base(path: Path) -> BaseFile:
    """Map the base in ``path`` (read-only); ValueError if it is not a base file."""
    with open(path, "rb") as file:
        # Populated at once: every page is in the page tables before the first lookup (no
        # page fault on the hot path), and the process's memory figures count them all.
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        mapped = mmap.mmap(file.fileno(), 0, flags=flags, prot=mmap.PROT_READ)
    if mapped[: len(_MAGIC)] != _MAGIC:
        raise ValueError(f"{path} is not an onnet base file")
    length = int.from_bytes(mapped[len(_MAGIC) : len(_MAGIC) + 8], "little")
    header = json.loads(mapped[len(_MAGIC) + 8 : len(_MAGIC) + 8 + length])
    start = -(-(len(_MAGIC) + 8 + length) // _ALIGN) * _ALIGN
    arrays: dict[str, npt.NDArray[Any]] = {}
    for entry in header["arrays"]:
        dtype = np.dtype(entry["dtype"])
        shape = tuple(entry["shape"])
        count = int(np.prod(shape)) if shape else 1
        array = np.frombuffer(mapped, dtype=dtype, count=count, offset=start + entry["offset"])
        arrays[entry["name"]] = array.reshape(shape)
    contested = [
        (user, bytes.fromhex(fingerprint), version, discoverable, bytes.fromhex(entry))
        for user, fingerprint, version, discoverable, entry in header["contested"]
    ]
    extra = {name[6:]: arrays.pop(name) for name in list(arrays) if name.startswith("extra:")}
    base = BaseIndex(arrays, header["seed"], contested)
    return BaseFile(path, base, header["meta"], extra)


def private_directory(directory: Path) -> None:
    """Make ``directory`` (and its parents) if missing, readable by this user only.

    A directory that exists keeps its mode: whoever made it chose who may read it.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)


def publish_base(directory: Path, path: Path) -> None:
    """Make ``path`` the directory's current base; remove the bases it replaces."""
    pointer = directory / f".{_CURRENT}.{secrets.token_hex(4)}.tmp"
    pointer.write_text(path.name + "\n", encoding="ascii")
    os.replace(pointer, directory / _CURRENT)
    for old in directory.glob(f"*{_SUFFIX}"):
        if old.name != path.name:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()


def current_base(directory: Path) -> Path | None:
    """The directory's current base file, if one is published (and still there)."""
    try:
        name = (directory / _CURRENT).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    path = directory / name
    return path if name.endswith(_SUFFIX) and path.exists() else None


class BuilderLock:
    """Who builds and publishes bases for the host: the holder of an exclusive file lock.

    The kernel releases the lock when its holder dies, however it dies, so another process
    of the host can take over at its next try.
    """

    def __init__(self, directory: Path) -> None:
        """A lock on ``directory``'s lock file (not taken yet)."""
        private_directory(directory)
        self._path = directory / "builder.lock"
        self._descriptor: int | None = None

    @property
    def held(self) -> bool:
        """Whether this process holds the lock."""
        return self._descriptor is not None

    def try_take(self) -> bool:
        """Take the lock if nobody holds it; True when this process holds it (now or before)."""
        if self._descriptor is not None:
            return True
        descriptor = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            return False
        self._descriptor = descriptor
        return True

    def release(self) -> None:
        """Let another process build."""
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None
