"""Find the installed phototag service, and the state DB a command run from a shell should read.

A shell's ``phototag status`` would read ``~/.local/state/phototag/state.db``; the system service writes
``/var/lib/phototag/state.db``. So when the user did not choose (no ``--config``, ``$PHOTOTAG_CONFIG``,
``$PHOTOTAG_STATE_DB`` or ``--set state_db=``) and a phototag unit is installed, commands read the database the
unit gives the service (its ``PHOTOTAG_STATE_DB``, drop-ins included), and say so.

Where units are looked for: the user's ``$XDG_CONFIG_HOME/systemd/user`` first (a user service is the one the
user set up), then the system unit path (``$SYSTEMD_UNIT_PATH`` when set, as systemd itself does; a trailing
``:`` adds the defaults). A system unit outside ``/etc/systemd/system`` (a distribution package's) counts only
once its service has run (its state folder exists), so an unused packaged unit does not redirect anyone.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config
from .access import HOME_ROOTS, Identity, identity
from .units import UNIT_NAME, Scope, environment, exec_argv, expand, manifest, merged_settings, words

SYSTEM_UNIT_DIRS = (
    Path("/etc/systemd/system"),
    Path("/run/systemd/system"),
    Path("/usr/local/lib/systemd/system"),
    Path("/lib/systemd/system"),
    Path("/usr/lib/systemd/system"),
)
ADMIN_UNIT_DIR = SYSTEM_UNIT_DIRS[0]


def system_unit_dirs(environ: Mapping[str, str] | None = None) -> list[Path]:
    """The system manager's unit search path (``$SYSTEMD_UNIT_PATH`` honoured)."""
    environ = os.environ if environ is None else environ
    value = environ.get("SYSTEMD_UNIT_PATH")
    if not value:
        return list(SYSTEM_UNIT_DIRS)
    dirs = [Path(p) for p in value.split(":") if p]
    return dirs + list(SYSTEM_UNIT_DIRS) if value.endswith(":") else dirs


def user_unit_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where a user's own units go: ``$XDG_CONFIG_HOME/systemd/user``."""
    environ = os.environ if environ is None else environ
    home = environ.get("HOME") or str(Path.home())
    return Path(environ.get("XDG_CONFIG_HOME") or f"{home}/.config") / "systemd" / "user"


@dataclass(frozen=True)
class InstalledService:
    """An installed ``phototag.service`` as its manager would run it (unit and drop-ins merged)."""

    scope: Scope
    unit: Path
    settings: Mapping[str, Sequence[str]]
    environ: Mapping[str, str] = field(repr=False)
    manifest: Mapping[str, Any] | None = None

    def _expand(self, value: str) -> str:
        return expand(value, self.scope, self.environ)

    @property
    def argv(self) -> list[str]:
        values = self.settings.get("ExecStart") or [""]
        return [self._expand(w) for w in exec_argv(values[-1])]

    @property
    def config(self) -> Path | None:
        """The config file the service reads (``--config``/``-c`` in ``ExecStart=``), or None (its default)."""
        argv = self.argv
        for i, word in enumerate(argv):
            if word in ("--config", "-c") and i + 1 < len(argv):
                return Path(argv[i + 1])
            if word.startswith("--config="):
                return Path(word.split("=", 1)[1])
        return None

    @property
    def state_db(self) -> Path | None:
        """The service's state DB (``PHOTOTAG_STATE_DB``), or None when the unit does not set it."""
        env = environment(self.settings.get("Environment", []))
        value = env.get("PHOTOTAG_STATE_DB")
        return Path(self._expand(value)) if value else None

    @property
    def folders(self) -> list[Path]:
        """The paths the service may write besides its own directories (``ReadWritePaths=``, ``BindPaths=``)."""
        out = []
        for key in ("ReadWritePaths", "BindPaths"):
            separators = ":" if key == "BindPaths" else ""  # SOURCE[:DEST[:OPTIONS]]
            for value in self.settings.get(key, []):
                for parts in words(value, separators):
                    out.append(Path(self._expand(parts[0].lstrip("-+"))))
        return out

    @property
    def group(self) -> str:
        groups = [g for v in self.settings.get("SupplementaryGroups", []) for g in v.split()]
        return groups[0] if groups else "photos"

    def identity(self) -> tuple[Identity, list[str]]:
        """Who the service runs as, and the groups (or user) it names that do not exist."""
        if self.scope == "user":
            me = Identity(os.getuid(), frozenset([os.getgid(), *os.getgroups()]), "you (the user service)")
            return me, []
        user = (self.settings.get("User") or [""])[-1] or None
        dynamic = (self.settings.get("DynamicUser") or ["no"])[-1].lower() in ("yes", "true", "1", "on")
        groups = [g for v in self.settings.get("SupplementaryGroups", []) for g in v.split()]
        groups += [g for g in (self.settings.get("Group") or [])[-1:] if g]
        return identity(user, dynamic, groups)

    def hidden_parent(self) -> Callable[[Path], bool]:
        """Folders that ``ProtectHome=tmpfs`` replaces by an empty, enterable tmpfs inside the service."""
        tmpfs = (self.settings.get("ProtectHome") or [""])[-1] == "tmpfs"
        return lambda p: tmpfs and any(p == root or root in p.parents for root in HOME_ROOTS)

    def systemctl(self) -> list[str]:
        return ["systemctl"] + (["--user"] if self.scope == "user" else [])

    def journalctl(self) -> list[str]:
        return ["journalctl"] + (["--user"] if self.scope == "user" else [])

    @property
    def describe(self) -> str:
        return f"{self.unit} ({self.scope} service)"


def read_unit(unit: Path, scope: Scope, environ: Mapping[str, str] | None = None) -> InstalledService:
    environ = dict(os.environ if environ is None else environ)
    dropins = system_unit_dirs(environ) if scope == "system" else []
    settings = merged_settings(unit, [d for d in dropins if d != unit.parent])
    return InstalledService(scope, unit, settings, environ, manifest(unit.read_text(errors="replace")))


def find_installed(
    scope: Scope | None = None, environ: Mapping[str, str] | None = None, unit_dir: Path | None = None
) -> InstalledService | None:
    """The installed phototag unit (``scope`` None: the user's, else the system's), or None.

    ``unit_dir`` looks only there (``--unit-dir``)."""
    environ = os.environ if environ is None else environ
    scopes: list[Scope] = [scope] if scope else ["user", "system"]
    for s in scopes:
        if unit_dir is not None:
            dirs, admin = [unit_dir], [unit_dir]
        elif s == "user":
            dirs = admin = [user_unit_dir(environ)]
        else:
            dirs = system_unit_dirs(environ)
            admin = [ADMIN_UNIT_DIR, *[Path(p) for p in environ.get("SYSTEMD_UNIT_PATH", "").split(":") if p]]
        for d in dirs:
            unit = d / UNIT_NAME
            try:
                if not unit.is_file():
                    continue
                found = read_unit(unit, s, environ)
            except OSError:
                continue
            if d in admin or (found.state_db is not None and os.path.lexists(found.state_db.parent)):
                return found
    return None


@dataclass(frozen=True)
class StateChoice:
    """The state DB a shell command reads, and why that one (printed as ``state DB: PATH (WHY)``)."""

    path: Path
    why: str
    service: InstalledService | None = None

    def line(self) -> str:
        return f"state DB: {self.path} ({self.why})"


def user_chose_state_db(
    config_path: Path | None, overrides: Sequence[str], environ: Mapping[str, str]
) -> bool:
    """Did the user say which config or state DB to use (``--config``, ``$PHOTOTAG_CONFIG``,
    ``$PHOTOTAG_STATE_DB``, ``--set state_db=...``)?"""
    if config_path is not None or environ.get("PHOTOTAG_CONFIG") or environ.get("PHOTOTAG_STATE_DB"):
        return True
    return any(item.partition("=")[0].strip() == "state_db" for item in overrides)


def choose_state_db(
    config: Config,
    config_path: Path | None,
    overrides: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> StateChoice:
    """The installed service's state DB, unless the user chose one (:func:`user_chose_state_db`); else the
    config's. ``config`` is what the command loaded; ``config_path``/``overrides`` are the global options."""
    environ = os.environ if environ is None else environ
    if not user_chose_state_db(config_path, overrides, environ):
        service = find_installed(environ=environ)
        if service is not None and service.state_db is not None:
            return StateChoice(service.state_db, f"the installed {service.scope} service's", service)
    if "state_db" in config.origins or "state_db" in config.lines:
        return StateChoice(config.state_db, f"set at {config.where('state_db')}")
    return StateChoice(config.state_db, "the default")
