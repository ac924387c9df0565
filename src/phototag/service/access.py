"""Can the service's user reach a path, write a folder, and write the folders created in it later?

Decided the way the kernel decides (acl(5), "access check algorithm") from a stat result and the POSIX ACL
attributes, for an :class:`Identity` that is not the caller: ``os.access`` only answers for the caller, and root
may do anything. A ``DynamicUser=`` service owns no file that exists before it starts (its uid is allocated at
start), so only the groups ``SupplementaryGroups=`` names, and "others", count for it.

What keeps folders created later writable: a setgid folder (``chmod g+s``) gives new entries its group, and a
default ACL (``setfacl -d -m g:photos:rwX``) gives that group write permission whatever the creating program's
umask. With setgid alone, a folder an importer creates with umask 022 is ``rwxr-sr-x``: group photos, but not
writable for the service.
"""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import stat
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

R, W, X = 4, 2, 1

# tags of a POSIX ACL entry (linux/posix_acl.h)
ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_GROUP, ACL_MASK, ACL_OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
ACCESS_ACL = "system.posix_acl_access"
DEFAULT_ACL = "system.posix_acl_default"
HOME_ROOTS = (Path("/home"), Path("/root"), Path("/run/user"))
"""What ``ProtectHome=`` hides or makes read-only."""


@dataclass(frozen=True)
class AclEntry:
    tag: int
    perm: int
    id: int  # the uid or gid of an ACL_USER or ACL_GROUP entry


def parse_acl(data: bytes) -> tuple[AclEntry, ...]:
    """The entries of a ``system.posix_acl_*`` attribute: a 4-byte version (2), then 8-byte little-endian
    entries of tag, permissions and id. Anything else reads as no ACL."""
    if len(data) < 4 or (len(data) - 4) % 8 or struct.unpack_from("<I", data)[0] != 2:
        return ()
    return tuple(AclEntry(*struct.unpack_from("<HHI", data, offset)) for offset in range(4, len(data), 8))


def _acl(path: Path, name: str) -> tuple[AclEntry, ...]:
    try:
        return parse_acl(os.getxattr(path, name))
    except OSError:  # no ACL, or a file system without them
        return ()


@dataclass(frozen=True)
class Inode:
    """What an access decision needs from one file (symlinks followed)."""

    mode: int
    uid: int
    gid: int
    acl: tuple[AclEntry, ...] = ()
    default_acl: tuple[AclEntry, ...] = ()

    @classmethod
    def of(cls, path: Path) -> Inode:
        st = os.stat(path)
        is_dir = stat.S_ISDIR(st.st_mode)
        return cls(
            st.st_mode,
            st.st_uid,
            st.st_gid,
            _acl(path, ACCESS_ACL),
            _acl(path, DEFAULT_ACL) if is_dir else (),
        )


InodeOf = Callable[[Path], Inode]


@dataclass(frozen=True)
class Identity:
    """Who the service runs as. ``uid`` None: a ``DynamicUser=`` (it owns no existing file)."""

    uid: int | None
    gids: frozenset[int]
    label: str  # for messages: "the service user (DynamicUser, group photos)"


def identity(user: str | None, dynamic: bool, groups: Iterable[str]) -> tuple[Identity, list[str]]:
    """The identity of a unit's ``User=``/``DynamicUser=``/``SupplementaryGroups=``, and the groups that do
    not exist (the unit would fail to start)."""
    uid: int | None = None
    gids: set[int] = set()
    missing = []
    names = list(groups)
    if user and not dynamic:
        try:
            entry = pwd.getpwnam(user)
            uid = entry.pw_uid
            gids.update(os.getgrouplist(user, entry.pw_gid))
        except KeyError:
            missing.append(f"user {user}")
    for name in names:
        try:
            gids.add(int(name) if name.isdigit() else grp.getgrnam(name).gr_gid)
        except KeyError:
            missing.append(name)
    who = "DynamicUser" if dynamic or not user else user
    group_text = f", group{'s' if len(names) > 1 else ''} {' '.join(names)}" if names else ""
    return Identity(uid, frozenset(gids), f"the service user ({who}{group_text})"), missing


def allowed(inode: Inode, who: Identity, want: int) -> bool:
    """May ``who`` access the file for ``want`` (an OR of R, W, X)? acl(5)'s algorithm; never root."""
    mode = inode.mode
    if who.uid is not None and who.uid == inode.uid:
        return (mode >> 6) & want == want
    if inode.acl:
        mask = next((e.perm for e in inode.acl if e.tag == ACL_MASK), 7)
        named = [e for e in inode.acl if e.tag == ACL_USER and who.uid is not None and e.id == who.uid]
        if named:
            return named[0].perm & mask & want == want
        groups = [
            e.perm & mask
            for e in inode.acl
            if (e.tag == ACL_GROUP_OBJ and inode.gid in who.gids) or (e.tag == ACL_GROUP and e.id in who.gids)
        ]
        if groups:
            return any(p & want == want for p in groups)
        return mode & want == want
    if inode.gid in who.gids:
        return (mode >> 3) & want == want
    return mode & want == want


def inherits_write(inode: Inode, who: Identity) -> bool:
    """Will entries created in this folder later be writable for ``who``, whatever the creator's umask? Only a
    default ACL entry for one of its groups (or for the folder's group, when setgid passes that group on)
    does that."""
    entries = inode.default_acl
    mask = next((e.perm for e in entries if e.tag == ACL_MASK), 7)
    setgid_group = bool(inode.mode & stat.S_ISGID) and inode.gid in who.gids
    return any(
        e.perm & mask & (W | X) == W | X
        and ((e.tag == ACL_GROUP and e.id in who.gids) or (e.tag == ACL_GROUP_OBJ and setgid_group))
        for e in entries
    )


def describe(inode: Inode) -> str:
    """``drwx------ root:root`` (``+`` when an ACL adds to the mode)."""
    try:
        owner = pwd.getpwuid(inode.uid).pw_name
    except KeyError:
        owner = str(inode.uid)
    try:
        group = grp.getgrgid(inode.gid).gr_name
    except KeyError:
        group = str(inode.gid)
    return f"{stat.filemode(inode.mode)}{'+' if inode.acl else ''} {owner}:{group}"


_VERB = {R: "read", W: "write", X: "run", R | X: "read", W | X: "write in"}


def blocking_parent(
    path: Path,
    who: Identity,
    *,
    hidden_parent: Callable[[Path], bool] = lambda _: False,
    inode_of: InodeOf = Inode.of,
) -> tuple[Path, str] | None:
    """The first folder above ``path`` (as written, then with symlinks resolved) that ``who`` may not enter,
    with the reason; None when it may enter them all.

    ``hidden_parent(p)``: folder ``p`` is not the real one inside the service (``ProtectHome=tmpfs`` puts an
    empty ``rwxr-xr-x`` tmpfs on /home, with the bound folders mounted below it): skip it.
    """
    literal = Path(os.path.abspath(path))
    real = Path(os.path.realpath(path))
    for chain in dict.fromkeys((literal, real)):
        for parent in reversed(chain.parents):
            if hidden_parent(parent):
                continue
            try:
                inode = inode_of(parent)
            except OSError as e:
                return parent, f"{parent}: {e.strerror}"
            if not allowed(inode, who, X):
                return parent, f"{parent} is {describe(inode)}: {who.label} may not enter it"
    return None


def reach_problem(
    path: Path,
    who: Identity,
    want: int,
    *,
    hidden_parent: Callable[[Path], bool] = lambda _: False,
    inode_of: InodeOf = Inode.of,
) -> str | None:
    """Why ``who`` cannot use ``path`` for ``want`` (an OR of R, W, X): search permission on every folder above
    it (:func:`blocking_parent`), then ``want`` on the file itself. None when it can."""
    blocked = blocking_parent(path, who, hidden_parent=hidden_parent, inode_of=inode_of)
    if blocked is not None:
        return blocked[1]
    real = Path(os.path.realpath(path))
    try:
        inode = inode_of(real)
    except OSError as e:
        return f"{real}: {e.strerror}"
    if not allowed(inode, who, want):
        return f"{real} is {describe(inode)}: {who.label} may not {_VERB.get(want, 'use')} it"
    return None


def under_home(path: Path) -> Path | None:
    """The ``ProtectHome=`` root (/home, /root, /run/user) that ``path`` is at or below, or None."""
    for root in HOME_ROOTS:
        if path == root or root in path.parents:
            return root
    return None


# -- folders ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FolderReport:
    """One photo folder as the service sees it: problems (it will fail), warnings, and the commands that fix
    them."""

    folder: Path
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    fixes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


MAX_SUBFOLDERS = 20_000
"""Subfolders a check looks at (stat and two getxattr each: well under a second on a local disk)."""


def check_folder(
    folder: Path,
    who: Identity,
    group: str,
    *,
    hidden_parent: Callable[[Path], bool] = lambda _: False,
    max_subfolders: int = MAX_SUBFOLDERS,
    inode_of: InodeOf = Inode.of,
) -> FolderReport:
    """Can ``who`` write ``folder`` and its subfolders now, and the subfolders created later?

    Writes need write and search permission on each folder (sidecars are new files; in embed mode the photos
    themselves must be writable too, which this does not check file by file). Hidden subfolders are skipped,
    as the daemon skips them.
    """
    try:
        top = inode_of(folder)
    except OSError as e:
        return FolderReport(folder, problems=(f"{e.strerror}",))
    if not stat.S_ISDIR(top.mode):
        return FolderReport(folder, problems=("not a folder",))
    q, g = shlex.quote(str(folder)), shlex.quote(group)
    problems, warnings, fixes = [], [], []
    blocked = blocking_parent(folder, who, hidden_parent=hidden_parent, inode_of=inode_of)
    if blocked is not None:
        problems.append(blocked[1])
        fixes.append(f"setfacl -m g:{g}:x {shlex.quote(str(blocked[0]))}   # or chmod o+x")
    unwritable, no_acl, seen = [], 0, 0
    for sub in _subfolders(folder, max_subfolders):
        seen += 1
        try:
            inode = inode_of(sub)
        except OSError:
            continue
        if not allowed(inode, who, W | X):
            unwritable.append(sub)
        if not inherits_write(inode, who):
            no_acl += 1
    if not allowed(top, who, W | X):
        problems.append(f"{who.label} may not write in it ({describe(top)})")
    if unwritable:
        examples = ", ".join(str(p.relative_to(folder)) for p in unwritable[:3])
        problems.append(
            f"{len(unwritable)} of {seen} subfolders are not writable for {who.label}, e.g. {examples}"
        )
    if unwritable or not allowed(top, who, W | X):
        fixes.append(f"chgrp -R {g} {q} && chmod -R g+rwX {q}")
    if not top.mode & stat.S_ISGID or top.gid not in who.gids:
        fixes.append(f"find {q} -type d -exec chmod g+s {{}} +")
    later = "folders created in it later (an import, a phone sync)"
    if not inherits_write(top, who):
        if top.mode & stat.S_ISGID and top.gid in who.gids:
            warnings.append(
                f"no default ACL: {later} get group {group} (setgid) but are writable for it only if the "
                "program creating them uses umask 002"
            )
        else:
            problems.append(f"neither setgid nor a default ACL: {later} will not be writable for {who.label}")
    if no_acl:
        warnings.append(
            f"{no_acl} of {seen} subfolders have no default ACL for group {group}: folders created in them "
            "later may not be writable"
        )
    if no_acl or not inherits_write(top, who):
        fixes.append(f"setfacl -R -d -m g:{g}:rwX {q}   # setfacl: apt-get install acl")
    if seen >= max_subfolders:
        warnings.append(f"only the first {max_subfolders} subfolders were checked")
    return FolderReport(folder, tuple(problems), tuple(warnings), tuple(fixes))


def _subfolders(folder: Path, limit: int) -> Iterable[Path]:
    count = 0
    for root, dirs, _ in os.walk(folder):  # symlinked folders are not followed, as the watcher does not
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for d in dirs:
            if count >= limit:
                return
            count += 1
            yield Path(root) / d
