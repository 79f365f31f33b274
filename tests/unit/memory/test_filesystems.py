"""Detecting a store on a network filesystem from the mount table."""

from __future__ import annotations

from pathlib import Path

import pytest

import master_sdk as ms
from master_sdk.memory import filesystems
from master_sdk.memory.filesystems import mount_of, network_mount, parse_mounts
from master_sdk.memory.sqlite import SQLiteStore

MOUNTS = (Path(__file__).parents[2] / "fixtures" / "mounts" / "proc_mounts.txt").read_text()


def test_the_mount_table_is_parsed_with_escaped_spaces_decoded() -> None:
    """Each line gives device, mount point and type; ``\\040`` in a path is a space."""
    mounts = parse_mounts(MOUNTS)
    assert len(mounts) == 15
    sshfs = next(m for m in mounts if m.fstype == "fuse.sshfs")
    assert sshfs.point == "/mnt/remote data"
    assert sshfs.device == "ana@build:/srv/data"


@pytest.mark.parametrize(
    ("path", "point", "fstype"),
    [
        ("/home/ana/project/storage/master.sqlite3", "/home", "nfs4"),
        ("/home/ana/local/storage/master.sqlite3", "/home/ana/local", "ext4"),
        ("/mnt/team/runs.sqlite3", "/mnt/team", "cifs"),
        ("/mnt/remote data/x.sqlite3", "/mnt/remote data", "fuse.sshfs"),
        ("/mnt/remote/x.sqlite3", "/", "ext4"),
        ("/var/tmp/x.sqlite3", "/", "ext4"),
        ("/home", "/home", "nfs4"),
    ],
)
def test_a_path_belongs_to_the_deepest_mount_above_it(path: str, point: str, fstype: str) -> None:
    """The longest mount point that is a whole-component prefix of the path wins."""
    mount = mount_of(path, MOUNTS)
    assert mount is not None
    assert (mount.point, mount.fstype) == (point, fstype)


@pytest.mark.parametrize(
    ("path", "network"),
    [
        ("/home/ana/project/master.sqlite3", "nfs4"),
        ("/mnt/team/master.sqlite3", "cifs"),
        ("/mnt/old/master.sqlite3", "smb3"),
        ("/mnt/remote data/master.sqlite3", "fuse.sshfs"),
        ("/mnt/c/Users/ana/master.sqlite3", "9p"),
        ("/mnt/ceph/master.sqlite3", "ceph"),
        ("/mnt/nfs3/master.sqlite3", "nfs"),
        ("/home/ana/local/master.sqlite3", None),
        ("/mnt/usb/master.sqlite3", None),
        ("/run/master.sqlite3", None),
        ("/var/lib/docker/overlay2/abc/merged/app/master.sqlite3", None),
    ],
)
def test_network_filesystems_are_told_apart_from_local_ones(path: str, network: str | None) -> None:
    """NFS, SMB/CIFS, sshfs, 9p and Ceph are network mounts; ext4, tmpfs, exfat, overlay
    are not."""
    mount = network_mount(path, MOUNTS)
    assert (mount.fstype if mount else None) == network


def test_without_a_mount_table_nothing_is_detected(tmp_path: Path) -> None:
    """Where /proc/mounts does not exist (macOS, Windows) the check finds nothing."""
    assert network_mount(tmp_path, "") is None


def _table_with(tmp_path: Path, fstype: str) -> Path:
    table = tmp_path / "mounts"
    point = str(tmp_path.resolve()).replace(" ", "\\040")
    table.write_text(f"/dev/vda / ext4 rw 0 0\nserver:/x {point} {fstype} rw 0 0\n")
    return table


def test_a_store_on_a_network_filesystem_is_refused_naming_path_and_type(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening a store whose folder is on NFS raises StoreError naming the file, the
    filesystem and the setting that would allow it; no file is created."""
    monkeypatch.setattr(filesystems, "MOUNTS_FILE", _table_with(tmp_path, "nfs4"))
    store = tmp_path / "runs" / "master.sqlite3"
    with pytest.raises(ms.StoreError) as caught:
        SQLiteStore(store)
    message = str(caught.value)
    assert str(store) in message
    assert "nfs4" in message and "allow_network_store" in message
    assert not store.exists()


def test_allow_network_store_opens_it_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``app.allow_network_store: true`` (here through MASTER_ALLOW_NETWORK_STORE) opens
    such a store, warning that WAL is unsafe there."""
    monkeypatch.setattr(filesystems, "MOUNTS_FILE", _table_with(tmp_path, "cifs"))
    root = tmp_path / "project"
    (root / "configs").mkdir(parents=True)
    with pytest.raises(ms.StoreError, match="cifs"):
        ms.Workbench.open(root)
    monkeypatch.setenv("MASTER_ALLOW_NETWORK_STORE", "true")
    with pytest.warns(UserWarning, match="network filesystem"):
        wb = ms.Workbench.open(root)
    assert wb.store_info()["journal_mode"] == "wal"
    wb.close()
