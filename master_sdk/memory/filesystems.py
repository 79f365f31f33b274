"""Which filesystem a store lives on, from the mount table (``/proc/mounts``).

SQLite's WAL mode keeps its index in shared memory next to the database and relies on
POSIX locks; neither works reliably on a network filesystem (NFS, SMB, sshfs, ...), where
two machines (or even two processes) can corrupt the file. The store refuses such a
location unless the settings explicitly accept the risk (``app.allow_network_store``).

Example:
    >>> table = "server:/export /mnt/shared nfs4 rw,relatime 0 0\\n"
    >>> network_mount("/mnt/shared/runs/master.sqlite3", table).fstype
    'nfs4'
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

MOUNTS_FILE = Path("/proc/mounts")

NETWORK_FILESYSTEMS: frozenset[str] = frozenset(
    {
        "9p",
        "afs",
        "ceph",
        "cifs",
        "coda",
        "davfs",
        "fuse.ceph",
        "fuse.davfs2",
        "fuse.gcsfuse",
        "fuse.glusterfs",
        "fuse.rclone",
        "fuse.s3fs",
        "fuse.sshfs",
        "gfs2",
        "glusterfs",
        "lustre",
        "ncpfs",
        "nfs",
        "nfs4",
        "ocfs2",
        "sshfs",
    }
)
"""Filesystem types (as ``/proc/mounts`` names them) where SQLite's WAL is unsafe."""

# smb, smb2, smb3, smbfs; nfs3 on some systems; any FUSE mount of the same servers
_NETWORK_PREFIXES = ("smb", "nfs", "fuse.smb", "fuse.nfs")
_OCTAL = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True, slots=True)
class Mount:
    """One line of the mount table."""

    device: str
    point: str
    fstype: str

    @property
    def is_network(self) -> bool:
        """True for a filesystem type on which SQLite's WAL is unsafe."""
        kind = self.fstype.lower()
        return kind in NETWORK_FILESYSTEMS or kind.startswith(_NETWORK_PREFIXES)


def parse_mounts(text: str) -> list[Mount]:
    """The entries of a ``/proc/mounts`` text (octal escapes such as ``\\040`` decoded)."""
    mounts: list[Mount] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        device, point, fstype = (_unescape(f) for f in fields[:3])
        mounts.append(Mount(device, point, fstype))
    return mounts


def mount_of(path: str | os.PathLike[str], mounts_text: str) -> Mount | None:
    """The mount holding ``path``: the entry with the longest mount point above it.

    ``path`` should be absolute and resolved; a later entry for the same point wins (it
    is mounted over the earlier one).
    """
    target = PurePosixPath(path)
    best: Mount | None = None
    best_depth = -1
    for mount in parse_mounts(mounts_text):
        point = PurePosixPath(mount.point)
        if (target == point or point in target.parents) and len(point.parts) >= best_depth:
            best, best_depth = mount, len(point.parts)
    return best


def network_mount(path: str | os.PathLike[str], mounts_text: str | None = None) -> Mount | None:
    """The network mount holding ``path``, or None when it is local (or unknown).

    Args:
        path: a file or folder; symbolic links in the part of it that exists are followed
            before the lookup.
        mounts_text: the mount table; default: read ``/proc/mounts`` (absent outside Linux,
            where nothing is detected).
    """
    if mounts_text is None:
        try:
            mounts_text = MOUNTS_FILE.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    mount = mount_of(_resolved(Path(path)), mounts_text)
    return mount if mount is not None and mount.is_network else None


def _resolved(path: Path) -> Path:
    """``path`` with symbolic links resolved as far as it exists (the rest kept as is)."""
    path = path.absolute()
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate.resolve() / path.relative_to(candidate)
    return path


def _unescape(field: str) -> str:
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)
