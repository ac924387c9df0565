"""``phototag service install`` and ``uninstall``: a plan first (printable: ``--dry-run``), then the writes.

Install writes three kinds of things and nothing else: the unit (``/etc/systemd/system/phototag.service``, or
``~/.config/systemd/user/phototag.service`` with ``--user``), the config file when none is there yet
(``/etc/phototag/config.yaml``, ``~/.config/phototag/config.yaml``; an existing one is kept, and said so),
and the folders it had to create for them. The unit records what was written in a comment line
(:data:`~.units.MANIFEST`); uninstall removes exactly that: the config only if unchanged since, folders only
if empty. Neither runs systemctl: they print the commands, so nothing starts or stops behind the user's back.

The unit runs *this* phototag (:mod:`.program`); a system install whose service's user could not run it (a
venv under /root, a Python built under a ``drwx------`` home) is refused, with the fix.

Why one module of ~510 lines: install, uninstall and status share the manifest of what install wrote (so
uninstall removes exactly that) and the reachability checks.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import stat
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .. import __version__
from ..config import load_config
from ..errors import ConfigError
from .access import (
    HOME_ROOTS,
    FolderReport,
    Identity,
    blocking_parent,
    check_folder,
    identity,
    under_home,
)
from .locate import ADMIN_UNIT_DIR, user_unit_dir
from .program import InstallRefused, Program, unreachable
from .units import MANIFEST, UNIT_NAME, Scope, UnitSpec, literal, manifest, render

SYSTEM_CONFIG_DIR = Path("/etc/phototag")
PROTECT_HOME_CHOICES = ("auto", "read-only", "tmpfs")


# -- the config file -----------------------------------------------------------------------------------------


def with_keys(text: str, values: Mapping[str, Any]) -> str:
    """``text`` (YAML) with these top-level keys set (a line each, in flow style); comments elsewhere kept."""
    lines = text.splitlines(keepends=True)
    for key, value in values.items():
        new = f"{key}: {json.dumps(value, ensure_ascii=False)}\n"  # JSON is YAML
        start = next((i for i, line in enumerate(lines) if re.match(rf"{re.escape(key)}\s*:", line)), None)
        if start is None:
            lines.insert(0, new)
            continue
        end = start + 1
        while end < len(lines) and re.match(r"[ \t]+\S|-(\s|$)", lines[end]):  # the value's block lines
            end += 1
        lines[start:end] = [new]
    out = "".join(lines)
    parsed = yaml.safe_load(out)
    if not isinstance(parsed, dict) or any(parsed.get(k) != v for k, v in values.items()):
        raise InstallRefused(f"could not set {', '.join(values)} in the config file: edit it by hand")
    return out


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


# -- planning -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """What the user asked for (the CLI's options), and the config the command was run with."""

    scope: Scope
    program: Program
    folders: tuple[Path, ...] = ()  # --folders; empty: the config's
    config_folders: tuple[Path, ...] = ()  # the current config's folders
    source_config: Path | None = None  # the config to copy when none is installed yet
    unit_dir: Path | None = None
    config_dir: Path | None = None
    group: str = "photos"
    extra_args: tuple[str, ...] = ()  # added to ExecStart (the extension point for other service variants)
    protect_home: str = "auto"
    replace_config: bool = False
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


@dataclass(frozen=True)
class InstallPlan:
    scope: Scope
    unit_path: Path
    unit_text: str
    config_path: Path
    config_text: str | None  # None: keep the file that is there
    backup: Path | None  # where the replaced config goes (--replace-config)
    folders: tuple[Path, ...]
    reports: tuple[FolderReport, ...]
    notes: tuple[str, ...]
    next_steps: tuple[str, ...]


def unit_dir_for(scope: Scope, environ: Mapping[str, str]) -> Path:
    return ADMIN_UNIT_DIR if scope == "system" else user_unit_dir(environ)


def config_dir_for(scope: Scope, environ: Mapping[str, str]) -> Path:
    if scope == "system":
        return SYSTEM_CONFIG_DIR
    home = environ.get("HOME") or str(Path.home())
    return Path(environ.get("XDG_CONFIG_HOME") or f"{home}/.config") / "phototag"


def user_state_db(environ: Mapping[str, str]) -> Path:
    """Where a shell's phototag keeps its state DB (config.py's default), so the user service uses it too."""
    home = environ.get("HOME") or str(Path.home())
    return Path(environ.get("XDG_STATE_HOME") or f"{home}/.local/state") / "phototag" / "state.db"


def plan_install(req: Request) -> InstallPlan:
    """Everything install would write and print; raises :class:`InstallRefused` when it must not go ahead."""
    env = req.environ
    unit_path = (req.unit_dir or unit_dir_for(req.scope, env)).absolute() / UNIT_NAME
    config_path = (req.config_dir or config_dir_for(req.scope, env)).absolute() / "config.yaml"
    notes: list[str] = []
    previous = _previous_manifest(unit_path)
    if previous is None and unit_path.exists():
        raise InstallRefused(
            f"{unit_path} exists and was not written by `phototag service install`: move it away (or remove it) "
            "and run install again"
        )
    if previous is not None:
        notes.append(f"replaces {unit_path} (written by an earlier install)")
    if req.unit_dir is None and req.scope == "system" and not _writable_dir(unit_path.parent):
        raise InstallRefused(
            f"writing {unit_path.parent} needs root: sudo {shlex.join(req.program.argv)} service install ..., "
            "or --user for a service of your own"
        )

    # a user service runs as the user: only a system service's user needs checking
    who, missing = identity(None, True, [req.group])
    if req.scope == "system":
        problems = unreachable(req.program, who)
        if problems:
            raise InstallRefused(_unreachable_message(req, problems))
    else:
        missing = []

    state_db = "%S/phototag/state.db" if req.scope == "system" else literal(str(user_state_db(env)))
    service_db = "/var/lib/phototag/state.db" if req.scope == "system" else str(user_state_db(env))
    config_text, backup, folders = _plan_config(req, config_path, previous, service_db, notes)
    real = tuple(dict.fromkeys(Path(os.path.realpath(f)) for f in folders))

    if req.scope == "system":
        paths = _sandbox_paths(real, req, who)
        hidden = _home_hidden if paths["protect_home"] == "tmpfs" else _not_hidden
        reports = tuple(check_folder(f, who, req.group, hidden_parent=hidden) for f in real)
    else:
        paths = {}
        reports = tuple(_own_folder(f) for f in real)
    record: dict[str, Any] = {
        "version": __version__,
        "config": str(config_path),
        "config_written": config_text is not None,
        "created": list(previous.get("created", [])) if previous else [],
    }
    if backup is not None:
        record["config_backup"] = str(backup)
    argv = (*req.program.argv, "watch", "--config", str(config_path), *req.extra_args)
    spec = UnitSpec(
        req.scope,
        argv,
        state_db,
        group=req.group,
        mounts_for=real if req.scope == "system" else (),
        preamble=_preamble(req.scope),
        manifest=record,
        **paths,
    )
    if missing:
        notes.append(f"group {', '.join(missing)} does not exist yet: the service will not start without it")
    steps = _next_steps(req, missing, reports, unit_path, config_path, service_db)
    return InstallPlan(req.scope, unit_path, render(spec), config_path, config_text, backup, folders, reports,
                       tuple(notes), steps)  # fmt: skip


def _writable_dir(path: Path) -> bool:
    while not path.exists() and path != path.parent:
        path = path.parent
    return os.access(path, os.W_OK | os.X_OK)


def _previous_manifest(unit_path: Path) -> dict[str, Any] | None:
    try:
        return manifest(unit_path.read_text(errors="replace"))
    except OSError:
        return None


def _not_hidden(_: Path) -> bool:
    return False


def _home_hidden(p: Path) -> bool:
    return any(p == root or root in p.parents for root in HOME_ROOTS)


def _unreachable_message(req: Request, problems: Sequence[str]) -> str:
    folders = (
        " ".join(f"--folders {shlex.quote(os.path.abspath(f))}" for f in req.folders)
        or "--folders /srv/photos"
    )
    lines = [
        f"the service's user cannot run this phototag ({shlex.join(req.program.argv)}):",
        *[f"  {p}" for p in problems],
        f"A system service runs as a user of its own (DynamicUser=, group {req.group}): phototag, its venv and",
        "its Python must be where others may read them. A venv or clone under /root or under a drwx------ home,",
        "or a Python built there (pyenv), is not. Install phototag under /opt with the system's Python, and",
        "install the service from there:",
        "  apt-get install -y python3-venv git",
        "  git clone https://github.com/phototag/phototag /opt/phototag   # or: cp -a YOUR-CLONE /opt/phototag",
        "  python3 -m venv /opt/phototag/.venv && /opt/phototag/.venv/bin/pip install torch==2.13.0 /opt/phototag",
        f"  /opt/phototag/.venv/bin/phototag service install {folders}",
        "Or run it as a user service, as you: phototag service install --user",
    ]
    return "\n".join(lines)


def _plan_config(
    req: Request, path: Path, previous: Mapping[str, Any] | None, service_db: str, notes: list[str]
) -> tuple[str | None, Path | None, tuple[Path, ...]]:
    """The config text to write (None: keep the file there), the backup path, the folders the service
    watches."""
    asked = tuple(Path(os.path.abspath(f)) for f in req.folders)
    ours = bool(
        previous and previous.get("config_written") and previous.get("config_sha256") == _sha256(path)
    )
    if path.exists() and not (req.replace_config or ours):
        try:
            kept = load_config(path, environ={})
        except (ConfigError, OSError) as e:
            raise InstallRefused(f"the existing config is not usable: {e}") from e
        if asked and set(asked) != set(kept.folders):
            have = ", ".join(map(str, kept.folders)) or "no folders"
            raise InstallRefused(
                f"{path} exists and watches {have}, not {', '.join(map(str, asked))}: edit its folders: and run "
                "install again without --folders, or pass --replace-config (the old file is kept as .bak)"
            )
        if not kept.folders:
            raise InstallRefused(f"{path} exists and sets no folders: add your photo folders to its folders:")
        notes.append(f"kept the existing {path} (not overwritten; --replace-config replaces it)")
        _check_folders(kept.folders)
        return None, None, kept.folders
    folders = asked or tuple(Path(os.path.abspath(f)) for f in req.config_folders)
    if not folders:
        raise InstallRefused(
            "no folders to watch: pass --folders DIR (repeat it for more) or set folders: in the config"
        )
    _check_folders(folders)
    source = req.source_config
    if source is not None and source.exists() and source.resolve() != path.resolve():
        base = source.read_text(encoding="utf-8-sig")
        notes.append(f"config: a copy of {source}, with folders: and state_db: set for the service")
    else:
        from ..configdoc import render_default_config

        base = render_default_config()
        notes.append("config: the documented defaults, with folders: and state_db: set for the service")
    text = with_keys(base, {"folders": [str(f) for f in folders], "state_db": service_db})
    backup = None
    if path.exists() and not ours:
        backup = path.with_name(path.name + ".bak")
        notes.append(f"replaces {path} (--replace-config); the old one is kept as {backup}")
    return text, backup, folders


def _check_folders(folders: Sequence[Path]) -> None:
    for f in folders:
        if not f.is_dir():
            raise InstallRefused(f"photo folder {f}: no such folder (create it, or mount it, first)")


def _sandbox_paths(folders: Sequence[Path], req: Request, who: Identity) -> dict[str, Any]:
    """``ProtectHome=`` and the path lists for a system unit.

    read-only (the default, implied by DynamicUser=): /home, /root, /run/user stay visible, read-only, and
    ``ReadWritePaths=`` makes the photo folders below them writable; the service must be able to enter the
    home folders above them. tmpfs: an empty tmpfs on /home, /root and /run/user, with the photo folders bound
    in (``BindPaths=``): other homes stay hidden and a ``drwx------`` home need not be opened up; chosen by
    auto when a folder below a home cannot be reached otherwise. ``ProtectHome=no`` is not offered:
    DynamicUser= turns it into read-only anyway.
    """
    in_home = [f for f in folders if under_home(f)]
    mode = req.protect_home
    if mode == "auto":
        blocked = [f for f in in_home if blocking_parent(f, who) is not None]
        mode = "tmpfs" if blocked and not any(f in HOME_ROOTS for f in in_home) else "read-only"
    if mode == "read-only":
        return {"protect_home": "read-only", "read_write": tuple(folders)}
    if any(f in HOME_ROOTS for f in in_home):
        raise InstallRefused(
            "--protect-home tmpfs cannot show a whole home root (/home, /root): use read-only"
        )
    hidden_program = tuple(r for r in req.program.roots if under_home(r))
    return {
        "protect_home": "tmpfs",
        "read_write": tuple(f for f in folders if f not in in_home),
        "bind": tuple(in_home),
        "bind_read_only": hidden_program,
    }


def _own_folder(folder: Path) -> FolderReport:
    if os.access(folder, os.W_OK | os.X_OK):
        return FolderReport(folder)
    return FolderReport(folder, problems=("you may not write in it",))


def _preamble(scope: Scope) -> tuple[str, ...]:
    edit = "systemctl edit phototag" if scope == "system" else "systemctl --user edit phototag"
    return (
        f"Written by `phototag service install` (phototag {__version__}). Run it again after moving phototag or",
        "changing the folders; `phototag service uninstall` removes what it wrote (recorded below).",
        f"Local changes go in a drop-in: `{edit}`; to replace ExecStart= there, clear it first with an",
        "empty `ExecStart=` line, then give the new one.",
    )


def _next_steps(
    req: Request,
    missing: Sequence[str],
    reports: Sequence[FolderReport],
    unit_path: Path,
    config_path: Path,
    service_db: str,
) -> tuple[str, ...]:
    steps: list[str] = []
    custom = req.unit_dir is not None
    if req.scope == "system":
        steps += [f"groupadd --system {shlex.quote(g)}" for g in missing]
        for report in reports:
            steps += [fix for fix in report.fixes if fix not in steps]
        if custom:
            steps.append(f"# the unit is in {unit_path.parent}: systemd reads /etc/systemd/system")
        steps += [
            "systemctl daemon-reload",
            "systemctl enable --now phototag",
            "systemctl status phototag              # the STATUS= line: what it is doing",
            "journalctl -u phototag -f              # its log",
            f"phototag status                        # as root: reads {service_db}",
            f"systemctl reload phototag              # after editing {config_path} (new folders: install again)",
        ]
    else:
        if custom:
            steps.append(f"# the unit is in {unit_path.parent}: systemd --user reads ~/.config/systemd/user")
        steps += [
            "systemctl --user daemon-reload",
            "systemctl --user enable --now phototag",
            'loginctl enable-linger "$USER"         # keep it running while you are logged out',
            "journalctl --user -u phototag -f       # its log",
            "phototag status",
            f"systemctl --user reload phototag       # after editing {config_path}",
        ]
    return tuple(steps)


# -- applying -----------------------------------------------------------------------------------------------------


def _make_parents(path: Path) -> list[str]:
    """Create the missing folders above ``path``; returns them, outermost first."""
    missing = []
    parent = path.parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for folder in reversed(missing):
        folder.mkdir(mode=0o755)
    return [str(f) for f in reversed(missing)]


def _write(path: Path, text: str) -> None:
    """Replace ``path`` atomically (rw-r--r--)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def apply_install(plan: InstallPlan) -> list[str]:
    """Write the plan's files; returns what was done, a line each."""
    done: list[str] = []
    record = manifest(plan.unit_text) or {}
    created: list[str] = list(record.get("created", []))
    if plan.config_text is not None:
        created += _make_parents(plan.config_path)
        if plan.backup is not None:
            os.replace(plan.config_path, plan.backup)
            done.append(f"moved the old {plan.config_path} to {plan.backup}")
        _write(plan.config_path, plan.config_text)
        record["config_sha256"] = hashlib.sha256(plan.config_text.encode()).hexdigest()
        done.append(f"wrote {plan.config_path} (folders: {', '.join(map(str, plan.folders))})")
    else:
        done.append(f"kept {plan.config_path} as it is")
    created += _make_parents(plan.unit_path)
    record["created"] = list(dict.fromkeys(created))
    _write(plan.unit_path, _with_manifest(plan.unit_text, record))
    done.append(f"wrote {plan.unit_path}")
    return done


def _with_manifest(unit_text: str, record: Mapping[str, Any]) -> str:
    line = MANIFEST + json.dumps(dict(record), sort_keys=True)
    return "\n".join(line if old.startswith(MANIFEST) else old for old in unit_text.split("\n"))


# -- uninstall ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UninstallPlan:
    remove: tuple[Path, ...]  # files, then folders (deepest first; only removed when empty)
    notes: tuple[str, ...]
    next_steps: tuple[str, ...]


def plan_uninstall(scope: Scope, unit_dir: Path | None = None, environ: Mapping[str, str] | None = None,
                   live: bool = True) -> UninstallPlan:  # fmt: skip
    """What uninstall removes: the unit install wrote, its config if unchanged since, the folders it created
    if empty. Refuses while the service is enabled or running (``live``: ask systemctl too)."""
    env = dict(os.environ if environ is None else environ)
    unit_path = (unit_dir or unit_dir_for(scope, env)).absolute() / UNIT_NAME
    ctl = "systemctl" + (" --user" if scope == "user" else "")
    try:
        record = manifest(unit_path.read_text(errors="replace"))
    except FileNotFoundError:
        raise InstallRefused(f"no {UNIT_NAME} in {unit_path.parent}: nothing to uninstall") from None
    except OSError as e:
        raise InstallRefused(f"{unit_path}: {e.strerror}") from e
    if record is None:
        raise InstallRefused(f"{unit_path} was not written by `phototag service install`: remove it yourself")
    enabled = [p for p in unit_path.parent.glob(f"*.wants/{UNIT_NAME}") if p.is_symlink() or p.exists()]
    if enabled or (live and unit_dir is None and _active(ctl)):
        raise InstallRefused(
            f"phototag is enabled or running: `{ctl} disable --now phototag` first, then uninstall"
        )
    remove: list[Path] = [unit_path]
    notes: list[str] = []
    config = Path(record.get("config", ""))
    if record.get("config_written") and config.is_file() and _sha256(config) == record.get("config_sha256"):
        remove.append(config)
    elif config.is_file():
        notes.append(f"kept {config}: edited since install wrote it, or not written by install")
    if record.get("config_backup") and Path(record["config_backup"]).exists():
        notes.append(f"the config you had before install is {record['config_backup']}")
    remove += sorted((Path(p) for p in record.get("created", [])), key=lambda p: len(p.parts), reverse=True)
    dropins = unit_path.parent / f"{UNIT_NAME}.d"
    if dropins.is_dir():
        notes.append(f"left {dropins} in place: install did not write it")
    if scope == "system":
        notes.append(
            "the state DB (/var/lib/phototag) and the model cache (/var/cache/phototag) stay; "
            "`systemctl clean --what=state --what=cache phototag` before uninstalling removes them"
        )
    steps = (f"{ctl} daemon-reload",) if unit_dir is None else ()
    return UninstallPlan(tuple(remove), tuple(notes), steps)


def _active(ctl: str) -> bool:
    try:
        out = subprocess.run(
            [*ctl.split(), "is-active", UNIT_NAME], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return out.stdout.strip() in ("active", "activating", "reloading", "deactivating")


def apply_uninstall(plan: UninstallPlan) -> list[str]:
    done = []
    for path in plan.remove:
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(st.st_mode):
            try:
                path.rmdir()
                done.append(f"removed the folder {path}")
            except OSError:
                done.append(f"kept the folder {path}: not empty")
        else:
            path.unlink()
            done.append(f"removed {path}")
    return done
