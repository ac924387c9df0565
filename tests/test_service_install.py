"""`phototag service install/uninstall/status`, the service's state DB found from a shell, and `doctor` on the
service's folders.

Real files, real modes and ACLs, the real CLI (in-process); units are written with --unit-dir/--config-dir into
temporary folders and found through $SYSTEMD_UNIT_PATH, as systemctl would. A real start under systemd is not
possible here (no systemd as PID 1); `systemd-analyze verify` checks what systemd would load.

Permissions are decided for the service's user, not the test's (root may do anything): folders that the service
must reach are made under a world-enterable /tmp folder, since pytest's tmp_path lies below a drwx------ one.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from phototag.cli import main
from phototag.config import WatchSettings
from phototag.daemon.queue import WorkQueue
from phototag.service.access import (
    ACL_GROUP,
    ACL_GROUP_OBJ,
    ACL_MASK,
    ACL_OTHER,
    ACL_USER_OBJ,
    AclEntry,
    Identity,
    Inode,
    R,
    W,
    X,
    allowed,
    check_folder,
    inherits_write,
    reach_problem,
)
from phototag.service.doctor import service_folder_lines
from phototag.service.install import with_keys
from phototag.service.locate import find_installed, read_unit, system_unit_dirs
from phototag.service.units import UNIT_NAME, manifest
from test_systemd_units import _verify

ROOT = Path(__file__).resolve().parents[1]
IS_ROOT = os.geteuid() == 0


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """A shell with no phototag state, no user config, and its own (empty) system unit folder."""
    for name in list(os.environ):
        if name.startswith("PHOTOTAG_") and name not in ("PHOTOTAG_PLUGINS", "PHOTOTAG_BLOCK"):
            monkeypatch.delenv(name)
    for name in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    units = tmp_path / "units"
    units.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SYSTEMD_UNIT_PATH", str(units))
    return SimpleNamespace(home=home, units=units, etc=tmp_path / "etc-phototag", tmp=tmp_path)


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]):
    """``run(*args)`` -> (exit code, stdout, stderr) of the real entry point."""

    def go(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return go


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A folder anyone may enter (rwxr-xr-x, under /tmp)."""
    path = Path(tempfile.mkdtemp(prefix="phototag-service-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def group() -> str:
    """An existing group that a test may give folders to: not root's (as root), else the user's own."""
    if not IS_ROOT:
        return grp.getgrgid(os.getgid()).gr_name
    for name in ("users", "staff", "nogroup"):
        try:
            grp.getgrnam(name)
            return name
        except KeyError:
            continue
    pytest.skip("no group to give folders to")


def photo_folder(parent: Path, group: str, *, shared: bool) -> Path:
    """A photo folder with a subfolder; ``shared``: group-writable, setgid, and with a default ACL."""
    folder = parent / "photos"
    (folder / "2024").mkdir(parents=True)
    for p in (folder, folder / "2024"):
        shutil.chown(p, group=group)
        p.chmod(0o2775 if shared else 0o755)
    if shared:
        if shutil.which("setfacl") is None:
            pytest.skip("setfacl is not installed (apt-get install acl)")
        subprocess.run(["setfacl", "-R", "-d", "-m", f"g:{group}:rwX", str(folder)], check=True)
    return folder


def install_system(run, env: SimpleNamespace, folder: Path, group: str, *more: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    return run("service", "install", "--unit-dir", str(env.units), "--config-dir", str(env.etc),
               "--executable", "/bin/true", "--group", group, "--folders", str(folder), *more)  # fmt: skip


# -- who may do what: the kernel's rules, for a user who is not us ------------------------------------------------

DYNAMIC = Identity(None, frozenset({100}), "the service")


def test_permission_rules_follow_the_kernel() -> None:
    owner_only = Inode(stat.S_IFDIR | 0o700, 0, 0)
    assert not allowed(owner_only, DYNAMIC, X)
    group_rw = Inode(stat.S_IFDIR | 0o770, 0, 100)
    assert allowed(group_rw, DYNAMIC, W | X)
    # the owner class decides for the owner, even when the group may do more
    assert not allowed(Inode(stat.S_IFDIR | 0o070, 7, 100), Identity(7, frozenset({100}), "u"), W)
    # a DynamicUser owns nothing: uid None never matches
    assert not allowed(Inode(stat.S_IFDIR | 0o700, 0, 0), Identity(None, frozenset(), "d"), R)
    # others
    assert allowed(Inode(stat.S_IFDIR | 0o755, 0, 0), DYNAMIC, R | X)
    # an ACL entry for the group, limited by the mask
    acl = (AclEntry(ACL_USER_OBJ, 7, 0), AclEntry(ACL_GROUP_OBJ, 5, 0), AclEntry(ACL_GROUP, 7, 100),
           AclEntry(ACL_MASK, 5, 0), AclEntry(ACL_OTHER, 5, 0))  # fmt: skip
    assert not allowed(Inode(stat.S_IFDIR | 0o755, 0, 0, acl), DYNAMIC, W)
    widened = tuple(AclEntry(e.tag, 7, e.id) if e.tag == ACL_MASK else e for e in acl)
    assert allowed(Inode(stat.S_IFDIR | 0o775, 0, 0, widened), DYNAMIC, W | X)


def test_setgid_alone_does_not_keep_new_folders_writable() -> None:
    """New folders get the group from setgid, but write permission only from a default ACL."""
    setgid = Inode(stat.S_IFDIR | 0o2775, 0, 100)
    assert not inherits_write(setgid, DYNAMIC)
    default = (AclEntry(ACL_USER_OBJ, 7, 0), AclEntry(ACL_GROUP_OBJ, 5, 0), AclEntry(ACL_GROUP, 7, 100),
               AclEntry(ACL_MASK, 7, 0), AclEntry(ACL_OTHER, 5, 0))  # fmt: skip
    assert inherits_write(Inode(stat.S_IFDIR | 0o755, 0, 0, default_acl=default), DYNAMIC)
    masked = tuple(AclEntry(e.tag, 5, e.id) if e.tag == ACL_MASK else e for e in default)
    assert not inherits_write(Inode(stat.S_IFDIR | 0o755, 0, 0, default_acl=masked), DYNAMIC)


@pytest.mark.skipif(shutil.which("setfacl") is None, reason="setfacl is not installed (apt-get install acl)")
def test_acls_are_read_as_setfacl_wrote_them(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    subprocess.run(["setfacl", "-m", "g:100:rwx", "-d", "-m", "g:100:rwX", str(folder)], check=True)
    subprocess.run(["setfacl", "-m", "m::rx", str(folder)], check=True)
    inode = Inode.of(folder)
    assert AclEntry(ACL_GROUP, 7, 100) in inode.acl and AclEntry(ACL_MASK, 5, 0xFFFFFFFF) in inode.acl
    assert not allowed(inode, DYNAMIC, W) and allowed(inode, DYNAMIC, R | X)  # the mask wins
    assert inherits_write(inode, DYNAMIC)


def test_a_closed_folder_on_the_way_is_named(open_dir: Path) -> None:
    closed = open_dir / "root-like"
    python = closed / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("")
    python.chmod(0o755)
    closed.chmod(0o700)
    link = open_dir / "python"
    link.symlink_to(python)  # a venv's python is a symlink to the real one
    for path in (python, link):
        why = reach_problem(path, DYNAMIC, X)
        assert why is not None and f"{closed} is drwx------" in why and "may not enter it" in why
    closed.chmod(0o755)
    assert reach_problem(link, DYNAMIC, X) is None


# -- install --------------------------------------------------------------------------------------------------------


def test_install_refuses_a_phototag_the_service_cannot_reach(run, env, open_dir: Path, group: str) -> None:  # type: ignore[no-untyped-def]
    """The issue's case: a venv whose Python lives under a drwx------ home (here: the shebang's interpreter)."""
    closed = open_dir / "home"
    (closed / "bin").mkdir(parents=True)
    python = closed / "bin" / "python3"
    python.symlink_to(sys.executable)
    script = open_dir / "phototag"
    script.write_text(f"#!{python}\n")
    script.chmod(0o755)
    closed.chmod(0o700)
    folder = photo_folder(open_dir, group, shared=False)
    code, _, err = run("service", "install", "--unit-dir", str(env.units), "--config-dir", str(env.etc),
                       "--executable", str(script), "--group", group, "--folders", str(folder))  # fmt: skip
    assert code == 2
    assert f"{closed} is drwx------" in err and "may not enter it" in err
    assert "python3 -m venv /opt/phototag/.venv" in err and f"--folders {folder}" in err
    assert not (env.units / UNIT_NAME).exists() and not env.etc.exists()


def test_system_install_writes_unit_and_config_and_says_what_next(
    run, env, open_dir: Path, group: str
) -> None:  # type: ignore[no-untyped-def]
    folder = photo_folder(open_dir, group, shared=True)
    code, out, err = install_system(run, env, folder, group)
    assert code == 0, err
    unit = (env.units / UNIT_NAME).read_text()
    config = env.etc / "config.yaml"
    assert f"ExecStart=/bin/true watch --config {config}\n" in unit
    assert f"ReadWritePaths={folder}\n" in unit and "ProtectHome=read-only\n" in unit
    assert f"SupplementaryGroups={group}\n" in unit and f"RequiresMountsFor={folder}\n" in unit
    text = config.read_text()
    assert f'folders: ["{folder}"]' in text and 'state_db: "/var/lib/phototag/state.db"' in text
    assert "# Glob patterns" in text  # the documented defaults, comments kept
    assert f"wrote {config}" in out and f"wrote {env.units / UNIT_NAME}" in out
    assert f"folder {folder}: OK" in out
    lines = out.splitlines()
    assert lines.index("  systemctl daemon-reload") < lines.index("  systemctl enable --now phototag")
    assert any(line.startswith("  journalctl -u phototag -f") for line in lines)
    _verify_clean(env.units / UNIT_NAME, user=False, tmp=env.tmp)


def test_user_install_runs_this_phototag_and_shares_the_shells_state_db(run, env) -> None:  # type: ignore[no-untyped-def]
    pictures = env.home / "Pictures"
    pictures.mkdir()
    code, out, err = run("service", "install", "--user", "--folders", str(pictures))
    assert code == 0, err
    unit_path = env.home / ".config" / "systemd" / "user" / UNIT_NAME
    service = read_unit(unit_path, "user")
    assert service.argv[0] in (sys.executable, str(Path(sys.executable).parent / "phototag"))
    assert service.argv[-3:] == ["watch", "--config", str(env.home / ".config" / "phototag" / "config.yaml")]
    assert (
        service.state_db == env.home / ".local" / "state" / "phototag" / "state.db"
    )  # = the shell's default
    assert "systemctl --user enable --now phototag" in out and "loginctl enable-linger" in out
    _verify_clean(unit_path, user=True, tmp=env.tmp)


def test_dry_run_prints_the_unit_and_writes_nothing(run, env, open_dir: Path, group: str) -> None:  # type: ignore[no-untyped-def]
    folder = photo_folder(open_dir, group, shared=False)
    code, out, err = install_system(run, env, folder, group, "--dry-run", "--arg", "--some-future-option")
    assert code == 0, err
    assert out.startswith("# Written by `phototag service install`") and "[Service]" in out
    assert "watch --config" in out and out.rstrip().endswith("WantedBy=multi-user.target")
    assert "--some-future-option" in re.search(r"^ExecStart=.*$", out, re.M).group(0)  # type: ignore[union-attr]
    assert f"# would write {env.units / UNIT_NAME}" in err
    # the folder is not writable for the group: said, with the commands that fix it
    assert f"# folder {folder}: PROBLEM" in err and f"chgrp -R {group} {folder}" in err
    assert f"setfacl -R -d -m g:{group}:rwX {folder}" in err
    assert not (env.units / UNIT_NAME).exists() and not env.etc.exists()


def test_an_existing_config_is_kept_unless_replaced(run, env, open_dir: Path, group: str) -> None:  # type: ignore[no-untyped-def]
    folder = photo_folder(open_dir, group, shared=False)
    env.etc.mkdir()
    config = env.etc / "config.yaml"
    config.write_text(f"# mine\nfolders: [{folder}]\n")
    code, out, err = install_system(run, env, folder, group)
    assert code == 0, err
    assert config.read_text() == f"# mine\nfolders: [{folder}]\n" and f"kept the existing {config}" in out
    other = open_dir / "other"
    other.mkdir()
    code, _, err = install_system(run, env, other, group)
    assert code == 2 and f"{config} exists and watches {folder}" in err and "--replace-config" in err
    code, out, err = install_system(run, env, other, group, "--replace-config")
    assert code == 0, err
    assert (env.etc / "config.yaml.bak").read_text() == f"# mine\nfolders: [{folder}]\n"
    assert (
        str(other) in config.read_text()
        and f"ReadWritePaths={other}\n" in (env.units / UNIT_NAME).read_text()
    )


def test_install_does_not_overwrite_a_unit_it_did_not_write(run, env, open_dir: Path, group: str) -> None:  # type: ignore[no-untyped-def]
    folder = photo_folder(open_dir, group, shared=False)
    (env.units / UNIT_NAME).write_text("[Service]\nExecStart=/bin/true\n")
    code, _, err = install_system(run, env, folder, group)
    assert code == 2 and "was not written by `phototag service install`" in err
    assert (env.units / UNIT_NAME).read_text() == "[Service]\nExecStart=/bin/true\n"


def test_uninstall_removes_only_what_install_wrote(run, env, open_dir: Path, group: str) -> None:  # type: ignore[no-untyped-def]
    folder = photo_folder(open_dir, group, shared=False)
    units = env.tmp / "new-units"
    code, _, err = run("service", "install", "--unit-dir", str(units), "--config-dir", str(env.etc),
                       "--executable", "/bin/true", "--group", group, "--folders", str(folder))  # fmt: skip
    assert code == 0, err
    assert manifest((units / UNIT_NAME).read_text())["created"] == [str(env.etc), str(units)]  # type: ignore[index]
    # enabled: refused
    (units / "multi-user.target.wants").mkdir()
    (units / "multi-user.target.wants" / UNIT_NAME).symlink_to(units / UNIT_NAME)
    code, _, err = run("service", "uninstall", "--unit-dir", str(units))
    assert code == 2 and "systemctl disable --now phototag" in err
    shutil.rmtree(units / "multi-user.target.wants")
    # an edited config and someone's drop-in stay
    (env.etc / "config.yaml").write_text((env.etc / "config.yaml").read_text() + "# my edit\n")
    (units / f"{UNIT_NAME}.d").mkdir()
    code, out, err = run("service", "uninstall", "--unit-dir", str(units))
    assert code == 0, err
    assert not (units / UNIT_NAME).exists() and (env.etc / "config.yaml").exists()
    assert f"kept {env.etc / 'config.yaml'}" in out and f"left {units / (UNIT_NAME + '.d')} in place" in out
    assert f"kept the folder {env.etc}: not empty" in out
    # unchanged: everything goes, the folders install created included
    shutil.rmtree(units)
    shutil.rmtree(env.etc)
    code, _, err = run("service", "install", "--unit-dir", str(units), "--config-dir", str(env.etc),
                       "--executable", "/bin/true", "--group", group, "--folders", str(folder))  # fmt: skip
    assert code == 0, err
    code, out, err = run("service", "uninstall", "--unit-dir", str(units))
    assert code == 0, err
    assert not env.etc.exists() and not units.exists(), out
    code, _, err = run("service", "uninstall", "--unit-dir", str(units))
    assert code == 2 and "nothing to uninstall" in err


@pytest.fixture
def home_dir() -> Iterator[Path]:
    """A folder under /home (what ProtectHome= is about), removed afterwards."""
    if not IS_ROOT or not Path("/home").is_dir():
        pytest.skip("needs root and /home")
    path = Path(tempfile.mkdtemp(prefix="phototag-test-", dir="/home"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_photos_under_a_closed_home_get_a_tmpfs_home_with_the_folder_bound_in(
    run, env, home_dir: Path, group: str
) -> None:  # type: ignore[no-untyped-def]
    folder = photo_folder(home_dir, group, shared=False)
    home_dir.chmod(0o700)  # Debian 12's default for new homes
    code, out, err = install_system(run, env, folder, group, "--dry-run")
    assert code == 0, err
    assert "ProtectHome=tmpfs\n" in out and f"BindPaths={folder}\n" in out and "ReadWritePaths=" not in out
    assert f"{home_dir} is drwx------" not in err  # the tmpfs makes the folders above it enterable
    home_dir.chmod(0o755)
    code, out, err = install_system(run, env, folder, group, "--dry-run")
    assert code == 0, err
    assert "ProtectHome=read-only\n" in out and f"ReadWritePaths={folder}\n" in out and "BindPaths" not in out
    code, out, _ = install_system(run, env, folder, group, "--dry-run", "--protect-home", "tmpfs")
    assert "ProtectHome=tmpfs\n" in out and f"BindPaths={folder}\n" in out


# -- the service's state DB, from a shell -------------------------------------------------------------------------


def test_status_and_retry_read_the_installed_services_state_db(run, env, open_dir: Path, group: str) -> None:  # type: ignore[no-untyped-def]
    """The issue's case: `phototag status` from a shell read ~/.local/state, not the service's database."""
    folder = photo_folder(open_dir, group, shared=False)
    assert install_system(run, env, folder, group)[0] == 0
    code, out, _ = run("status")
    assert code == 0
    assert out.splitlines()[0] == "state DB: /var/lib/phototag/state.db (the installed system service's)"
    # the unit's drop-ins count, as systemd applies them
    db = env.tmp / "service-state" / "state.db"
    (env.units / f"{UNIT_NAME}.d").mkdir()
    (env.units / f"{UNIT_NAME}.d" / "state.conf").write_text(
        f"[Service]\nEnvironment=PHOTOTAG_STATE_DB={db}\n"
    )
    db.parent.mkdir()
    with WorkQueue(db) as queue:
        queue.fail(folder / "broken.jpg", "cannot decode it")
    code, out, _ = run("status")
    assert code == 0
    assert out.splitlines()[0] == f"state DB: {db} (the installed system service's)"
    assert "failed: 1" in out and "broken.jpg" in out and "has never run" in out
    code, out, _ = run("status", "--json")
    assert json.loads(out)["database"] == {"path": str(db), "chosen": "the installed system service's"}
    code, out, _ = run("retry")
    assert code == 0 and out.splitlines() == [
        f"state DB: {db} (the installed system service's)",
        "queued 1 failed photo again; `phototag watch` processes them",
    ]
    # saying otherwise wins
    mine = env.tmp / "mine.db"
    code, out, _ = run("--set", f"state_db={mine}", "status")
    assert out.splitlines()[0] == f"state DB: {mine} (set at --set)"
    code, out, _ = run("service", "status")
    assert code == 0
    assert (
        f"unit: {env.units / UNIT_NAME} (system service)" in out and "runs: /bin/true watch --config" in out
    )
    assert f"state DB: {db} (the installed system service's)" in out and "queue: 1 waiting" in out
    if not Path("/run/systemd/system").is_dir():
        assert "systemd is not running here" in out


def test_without_a_service_status_says_it_reads_the_default(run, env) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run("status")
    state = env.home / ".local" / "state" / "phototag" / "state.db"
    assert code == 0 and out.splitlines() == [
        f"state DB: {state} (the default)",
        f"no state database at {state}: neither `phototag watch` nor `scan` has run yet",
    ]
    code, out, _ = run("service", "status")
    assert code == 1 and "no phototag service is installed" in out


def test_a_packaged_unit_that_never_ran_redirects_no_one(
    env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    vendor = tmp_path / "lib-systemd"
    vendor.mkdir()
    state = tmp_path / "var-lib-phototag"
    (vendor / UNIT_NAME).write_text(
        f"[Service]\nExecStart=/bin/true watch\nEnvironment=PHOTOTAG_STATE_DB={state}/s.db\n"
    )
    monkeypatch.setenv("SYSTEMD_UNIT_PATH", f"{env.units}:{vendor}")
    monkeypatch.setattr("phototag.service.locate.ADMIN_UNIT_DIR", tmp_path / "etc-systemd-system")
    assert find_installed() is not None  # $SYSTEMD_UNIT_PATH entries are the admin's
    monkeypatch.setenv("SYSTEMD_UNIT_PATH", f"{env.units}:")
    monkeypatch.setattr("phototag.service.locate.SYSTEM_UNIT_DIRS", (vendor,))
    assert system_unit_dirs() == [env.units, vendor]
    assert find_installed() is None  # a distribution's unit whose service never ran
    state.mkdir()
    found = find_installed()
    assert found is not None and found.state_db == state / "s.db"


def test_a_unit_is_read_back_as_systemd_would(tmp_path: Path) -> None:
    unit = tmp_path / UNIT_NAME
    unit.write_text(
        "[Service]\nExecStart=/opt/p/bin/phototag watch --config /etc/phototag/config.yaml\n"
        "Environment=PHOTOTAG_STATE_DB=%S/phototag/state.db PYTHONUNBUFFERED=1\n"
        'ProtectHome=tmpfs\nBindPaths="/home/ann/my photos" /home/ann/a\\:b:/mnt/x:rbind\n'
        "ReadWritePaths=-/srv/50%%\nSupplementaryGroups=media\nDynamicUser=yes\n"
    )
    (tmp_path / f"{UNIT_NAME}.d").mkdir()
    (tmp_path / f"{UNIT_NAME}.d" / "exec.conf").write_text(
        '[Service]\nExecStart=\nExecStart=-"/opt/my venv/bin/python" -m phototag watch -c /srv/c.yaml --x=$$HOME\n'
    )
    service = read_unit(unit, "system", {"HOME": "/root"})
    assert service.argv == [
        "/opt/my venv/bin/python",
        "-m",
        "phototag",
        "watch",
        "-c",
        "/srv/c.yaml",
        "--x=$HOME",
    ]
    assert service.config == Path("/srv/c.yaml") and service.state_db == Path("/var/lib/phototag/state.db")
    assert service.folders == [Path("/srv/50%"), Path("/home/ann/my photos"), Path("/home/ann/a:b")]
    assert service.group == "media" and service.hidden_parent()(Path("/home/ann"))
    who, missing = service.identity()
    assert who.uid is None and (missing == ["media"] or who.gids)


def test_with_keys_sets_top_level_keys_and_keeps_the_rest() -> None:
    text = "# top\nfolders:\n  - /a\n  - /b\n# next\nexclude: []\nwatch:\n  polling: true\n"
    out = with_keys(text, {"folders": ["/c d"], "state_db": "/var/lib/phototag/state.db"})
    assert out == (
        'state_db: "/var/lib/phototag/state.db"\n# top\nfolders: ["/c d"]\n# next\nexclude: []\n'
        "watch:\n  polling: true\n"
    )
    out = with_keys("folders:\n- /a\n- /b\nexclude: []\n", {"folders": []})
    assert out == "folders: []\nexclude: []\n"


# -- doctor ---------------------------------------------------------------------------------------------------------


def test_doctor_reports_folders_the_service_cannot_write(run, env, open_dir: Path, group: str) -> None:  # type: ignore[no-untyped-def]
    folder = photo_folder(open_dir, group, shared=False)
    assert install_system(run, env, folder, group)[0] == 0
    code, out, _ = run("doctor", "--no-load")
    assert code == 1
    assert (
        f"service folder {folder}: PROBLEM" in out
        and f"may not write in it (drwxr-xr-x {pwd.getpwuid(os.getuid()).pw_name}:{group})" in out
    )
    assert "1 of 1 subfolders are not writable" in out and f"fix: chgrp -R {group} {folder}" in out
    if shutil.which("setfacl") is None:
        pytest.skip("setfacl is not installed (apt-get install acl)")
    # fixed as the README says: group-writable, setgid, default ACL
    subprocess.run(["chmod", "-R", "g+rwX", str(folder)], check=True)
    subprocess.run(["find", str(folder), "-type", "d", "-exec", "chmod", "g+s", "{}", "+"], check=True)
    subprocess.run(["setfacl", "-R", "-d", "-m", f"g:{group}:rwX", str(folder)], check=True)
    lines = service_folder_lines()
    assert all(ok for ok, _ in lines), lines
    assert (
        True,
        f"service folder {folder}: writable for the service, and folders created in it too",
    ) in lines
    # a folder created later by a program with umask 022 (an import): writable thanks to the default ACL
    old = os.umask(0o022)
    try:
        (folder / "2025" / "import").mkdir(parents=True)
    finally:
        os.umask(old)
    assert all(ok for ok, _ in service_folder_lines())
    # without the default ACL it would not be
    subprocess.run(["setfacl", "-R", "-b", str(folder)], check=True)
    subprocess.run(["chmod", "-R", "g-w", str(folder / "2025")], check=True)
    lines = service_folder_lines()
    assert (False, f"service folder {folder}: PROBLEM (the service will fail to write there)") in lines
    text = "\n".join(line for _, line in lines)
    assert "subfolders are not writable" in text and "no default ACL" in text


def test_doctor_says_when_a_configured_folder_is_outside_the_units_writable_paths(
    run, env, open_dir: Path, group: str
) -> None:  # type: ignore[no-untyped-def]
    folder = photo_folder(open_dir, group, shared=False)
    assert install_system(run, env, folder, group)[0] == 0
    added = open_dir / "added-later"
    added.mkdir()
    config = env.etc / "config.yaml"
    config.write_text(
        config.read_text().replace(f'folders: ["{folder}"]', f'folders: ["{folder}", "{added}"]')
    )
    lines = service_folder_lines()
    assert (False, f"service folder {added}: NOT WRITABLE inside the service (not in the unit's "
                   "ReadWritePaths=): run `phototag service install` again") in lines  # fmt: skip


def test_check_folder_names_the_parent_the_service_cannot_enter(open_dir: Path, group: str) -> None:
    closed = open_dir / "private"
    folder = photo_folder(closed, group, shared=True)
    closed.chmod(0o750)
    who = Identity(None, frozenset({grp.getgrnam(group).gr_gid}), "the service")
    report = check_folder(folder, who, group)
    assert not report.ok and any(f"{closed} is drwxr-x---" in p for p in report.problems)
    assert f"setfacl -m g:{group}:x {closed}   # or chmod o+x" in report.fixes


@pytest.mark.skipif(not IS_ROOT, reason="only root opens another user's database")
def test_root_gives_sqlite_side_files_back_to_the_databases_owner(tmp_path: Path) -> None:
    """A root `phototag retry` on the service's database must not leave -wal/-shm files the service cannot
    write."""
    from phototag.daemon.commands import _hand_back

    db = tmp_path / "state.db"
    db.write_bytes(b"")
    os.chown(db, 65534, 65534)
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"state.db{suffix}").write_bytes(b"")
    _hand_back(db)
    assert {(p.stat().st_uid, p.stat().st_gid) for p in tmp_path.iterdir()} == {(65534, 65534)}


# -- README ---------------------------------------------------------------------------------------------------------


def test_readme_watch_settings_table_matches_the_defaults() -> None:
    section = (ROOT / "README.md").read_text().split("## Running as a service", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (`watch\.[^|]+) \| ([^|]+) \|", section, re.M)
    seen = set()
    defaults = WatchSettings()
    for keys, values in rows:
        for key, value in zip(re.findall(r"`watch\.(\w+)`", keys), values.split(" / "), strict=True):
            seen.add(key)
            want = getattr(defaults, key)
            value = value.strip()
            if isinstance(want, bool):
                assert value == ("on" if want else "off"), key
            elif isinstance(want, tuple):
                assert value == "[]" and want == (), key
            else:
                assert float(value) == want, key
    assert seen == set(WatchSettings.model_fields), "every watch.* setting in the table, and no other"


def _verify_clean(unit: Path, user: bool, tmp: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        return
    output = _verify(unit, tmp, user).strip()  # test_systemd_units' systemd-analyze verify
    if "Failed to initialize manager" in output or "Failed to lookup" in output:
        return
    assert output == "", output
