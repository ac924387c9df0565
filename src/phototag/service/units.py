"""phototag's systemd units: rendered from a :class:`UnitSpec`, and read back (drop-ins included).

The files in the repository's ``systemd/`` folder are :func:`example` renderings (a test keeps them equal), so
the unit ``phototag service install`` writes and the one a packager copies are the same text.

Quoting (systemd.syntax(7), systemd.service(5)): in ``ExecStart=`` a word with whitespace or quotes is double-
quoted with C escapes, ``$`` is written ``$$`` (no variable expansion) and ``%`` is ``%%`` (no specifier); the
path lists (``ReadWritePaths=``, ``BindPaths=``) take the same quoting and specifiers, and ``BindPaths=`` uses
``:`` between source and destination, so a ``:`` in a path is ``\\:``.

Why one module of ~420 lines: rendering a unit and reading one back (drop-ins, specifiers, ExecStart words)
must agree line for line; kept together so that a change to one is seen next to the other.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

Scope = Literal["system", "user"]
UNIT_NAME = "phototag.service"
MANIFEST = "# phototag-install: "
"""Prefix of the comment line where install records what it wrote (a JSON object), for uninstall."""


@dataclass(frozen=True)
class UnitSpec:
    """What varies between installs; everything else (lifecycle, hardening) is the same for all.

    ``argv`` is the whole command line (``... watch --config FILE``); options added to it (a future HTTP
    variant's, say) need no change here. ``state_db`` is the value of ``PHOTOTAG_STATE_DB`` as written in the
    unit (specifiers allowed: pass a plain path through :func:`literal`).
    """

    scope: Scope
    argv: tuple[str, ...]
    state_db: str
    group: str = "photos"
    read_write: tuple[Path, ...] = ()
    bind: tuple[Path, ...] = ()
    bind_read_only: tuple[Path, ...] = ()
    protect_home: str = "read-only"
    mounts_for: tuple[Path, ...] = ()
    preamble: tuple[str, ...] = ()
    manifest: Mapping[str, Any] | None = None


# -- quoting ------------------------------------------------------------------------------------------------------


def literal(text: str) -> str:
    """``text`` with ``%`` escaped, for a setting that expands specifiers."""
    return text.replace("%", "%%")


def _quote_word(word: str, dollar: bool = True, colon: bool = False) -> str:
    word = literal(word)
    if dollar:
        word = word.replace("$", "$$")
    if "\n" in word or "\r" in word:
        raise ValueError(f"{word!r}: a line break cannot be written in a unit file")
    if word and not re.search(r"[\s\"'\\;]", word):
        return word.replace(":", "\\:") if colon else word
    escaped = word.replace("\\", "\\\\").replace('"', '\\"')  # inside quotes ":" is no separator
    return f'"{escaped}"'


def exec_line(argv: Sequence[str]) -> str:
    """``ExecStart=`` value for ``argv``: each word quoted so that systemd passes it unchanged."""
    return " ".join(_quote_word(w) for w in argv)


def path_value(path: Path, bind: bool = False) -> str:
    """A path for ``ReadWritePaths=`` (or, ``bind``, ``BindPaths=``, where ``:`` separates source and
    destination)."""
    return _quote_word(str(path), dollar=False, colon=bind)


# -- rendering ----------------------------------------------------------------------------------------------------

_LIFECYCLE = """\
Type=notify
NotifyAccess=main
ExecStart={exec_start}
ExecReload=/bin/kill -HUP $MAINPID
# A crash, a non-zero exit and a missed watchdog ping (a hung model or exiftool) all restart the service;
# what was in flight is redone one photo at a time.
Restart=on-failure
RestartSec=10s
# exit 2 is a configuration or usage error: restarting would not fix it
RestartPreventExitStatus=2
WatchdogSec=120s
# The start-up scan of a large tree runs before READY=1.
TimeoutStartSec=10min
# SIGTERM to phototag only: it finishes (or puts back) the batch in progress within watch.drain_timeout (20 s)
# and closes its exiftool; then anything left in the cgroup is killed.
KillMode=mixed
TimeoutStopSec=40s
"""

_SYSTEM_WHO = """
# Who: a transient user in group "{group}" (it must exist), which must be able to write the photo folders
# (sidecars, or the photos themselves in embed mode), and the folders created in them later:
#   chgrp -R {group} DIR && chmod -R g+rwX DIR && find DIR -type d -exec chmod g+s {{}} +
#   setfacl -R -d -m g:{group}:rwX DIR        (`phototag doctor` checks this)
DynamicUser=yes
SupplementaryGroups={group}
UMask=0002

# Where: the state DB (queue, results, embeddings) in /var/lib/phototag, models in /var/cache/phototag.
StateDirectory=phototag
CacheDirectory=phototag
ConfigurationDirectory=phototag
Environment=PHOTOTAG_STATE_DB={state_db}
Environment=HF_HOME=%C/phototag/huggingface
Environment=TORCH_HOME=%C/phototag/torch
Environment=XDG_CACHE_HOME=%C/phototag
Environment=PYTHONUNBUFFERED=1
# Offline models only (no hub downloads at run time):
#Environment=HF_HUB_OFFLINE=1

# Hardening. The photo folders are the only writable paths besides the state and cache directories.
ProtectSystem=strict
"""

_PROTECT_HOME = {
    "read-only": "# /home, /root and /run/user read-only; the photo folders below them writable (ReadWritePaths=).",
    "tmpfs": "# An empty /home, /root and /run/user, with only the photo folders (BindPaths=) and phototag's own\n"
    "# files (BindReadOnlyPaths=) mounted in: the other users' homes stay hidden, and a home folder that others\n"
    "# may not enter (drwx------) need not be opened up.",
}

_SYSTEM_HARDENING = """\
PrivateTmp=yes
NoNewPrivileges=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
CapabilityBoundingSet=
# NOT MemoryDenyWriteExecute=yes: PyTorch's oneDNN generates code at run time and crashes under it.
# NOT PrivateDevices=yes when a GPU is used: it hides /dev/nvidia* (fine on CPU-only machines).

# A background job: yield to interactive work.
Nice=10
IOSchedulingClass=idle
CPUWeight=50

SyslogIdentifier=phototag

[Install]
WantedBy=multi-user.target
"""

_USER_REST = """
# The state DB where `phototag status` run from a shell looks for it. Not %S: that is ~/.config for user units
# before systemd 254 (Debian 12 has 252) and ~/.local/state after. Models stay in the usual
# ~/.cache/huggingface (shared with other tools); to keep phototag's apart: Environment=HF_HOME=%C/phototag.
Environment=PHOTOTAG_STATE_DB={state_db}
Environment=PYTHONUNBUFFERED=1

# Hardening that works without privileges. ProtectSystem=strict / PrivateTmp=yes also work in user units
# where unprivileged user namespaces are enabled; add them if `systemctl --user start` still succeeds.
NoNewPrivileges=yes
LockPersonality=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
# NOT MemoryDenyWriteExecute=yes: it breaks PyTorch (oneDNN).

Nice=10
IOSchedulingClass=idle
CPUWeight=50
SyslogIdentifier=phototag

[Install]
WantedBy=default.target
"""


def render(spec: UnitSpec) -> str:
    """The unit file's text."""
    lines = [f"# {line}".rstrip() for line in spec.preamble]
    if spec.manifest is not None:
        lines.append(MANIFEST + json.dumps(dict(spec.manifest), sort_keys=True))
    if lines:
        lines.append("")
    user = spec.scope == "user"
    what = "tag new photos with keywords, captions and regions" + (" (user service)" if user else "")
    lines += [
        "[Unit]",
        f"Description=phototag: {what}",
        "Documentation=https://github.com/phototag/phototag#running-as-a-service",
    ]
    if not user:
        lines += [
            "After=local-fs.target network-online.target",
            "Wants=network-online.target",
            "# The photo folders' mounts (network shares: set watch.polling or watch.poll_folders in the config).",
        ]
        mounts = [f"RequiresMountsFor={path_value(p)}" for p in spec.mounts_for]
        lines += mounts or ["#RequiresMountsFor=/srv/photos"]
    lines += ["", "[Service]"]
    text = "\n".join(lines) + "\n" + _LIFECYCLE.format(exec_start=exec_line(spec.argv))
    if user:
        return text + _USER_REST.format(state_db=spec.state_db)
    text += _SYSTEM_WHO.format(group=spec.group, state_db=spec.state_db)
    text += _PROTECT_HOME[spec.protect_home] + "\n" + f"ProtectHome={spec.protect_home}\n"
    text += "".join(f"ReadWritePaths={path_value(p)}\n" for p in spec.read_write)
    text += "".join(f"BindPaths={path_value(p, bind=True)}\n" for p in spec.bind)
    text += "".join(f"BindReadOnlyPaths={path_value(p, bind=True)}\n" for p in spec.bind_read_only)
    return text + _SYSTEM_HARDENING


EXAMPLE_PREAMBLE = {
    "system": (
        "phototag as a system service: watches the folders in /etc/phototag/config.yaml and tags what arrives.",
        "",
        "Prefer `phototag service install` (see the README): it writes this unit with the paths of your install",
        "(ExecStart=, ReadWritePaths=, ProtectHome=) and puts the config in place. This copy, rendered from the",
        "same template, is for packagers and for reading; installed by hand, it needs phototag in",
        "/opt/phototag/.venv (python3 -m venv /opt/phototag/.venv && /opt/phototag/.venv/bin/pip install phototag)",
        "and your photo folders in ReadWritePaths=.",
    ),
    "user": (
        "phototag as a user service: watches the folders in ~/.config/phototag/config.yaml (e.g. ~/Pictures).",
        "",
        "Prefer `phototag service install --user` (see the README): it writes this unit with the paths of your",
        "install. This copy, rendered from the same template, assumes phototag is ~/.local/bin/phototag (pipx).",
    ),
}


def example(scope: Scope) -> str:
    """The unit shipped in ``systemd/``: phototag in /opt/phototag/.venv (system) or ~/.local/bin (user)."""
    if scope == "system":
        spec = UnitSpec(
            "system",
            ("/opt/phototag/.venv/bin/phototag", "watch", "--config", "/etc/phototag/config.yaml"),
            "%S/phototag/state.db",
            read_write=(Path("/srv/photos"),),
            preamble=EXAMPLE_PREAMBLE["system"],
        )
        return render(spec)
    spec = UnitSpec("user", ("%h/.local/bin/phototag", "watch"), "%h/.local/state/phototag/state.db",
                    preamble=EXAMPLE_PREAMBLE["user"])  # fmt: skip
    return render(spec).replace("%%h/", "%h/")  # the example's ExecStart uses the specifier on purpose


# -- reading ------------------------------------------------------------------------------------------------------


def read_settings(text: str) -> list[tuple[str, str, str]]:
    """``(section, key, value)`` for every assignment, in order (comments skipped, ``\\`` continuations
    joined)."""
    out = []
    section = ""
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip() if pending else raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        if sep:
            out.append((section, key.strip(), value.strip()))
    return out


_RESETTABLE = {"ExecStart", "Environment", "ReadWritePaths", "BindPaths", "BindReadOnlyPaths",
               "SupplementaryGroups", "RequiresMountsFor"}  # fmt: skip


def merged_settings(unit: Path, dropin_dirs: Sequence[Path] = ()) -> dict[str, list[str]]:
    """``key -> values`` of the unit and its drop-ins (``*.conf`` in ``<dir>/<unit>.d/``, by file name, later
    wins): lists add up, an empty assignment clears a list (``ExecStart=`` before a new one), other keys
    take the last value."""
    texts = [unit.read_text(errors="replace")]
    confs: dict[str, Path] = {}
    for folder in (unit.parent, *dropin_dirs):
        d = folder / f"{unit.name}.d"
        if d.is_dir():
            for conf in d.glob("*.conf"):
                confs.setdefault(conf.name, conf)
    texts += [confs[name].read_text(errors="replace") for name in sorted(confs)]
    out: dict[str, list[str]] = {}
    for text in texts:
        for _, key, value in read_settings(text):
            if key in _RESETTABLE:
                if value == "":
                    out[key] = []
                else:
                    out.setdefault(key, []).append(value)
            else:
                out[key] = [value]
    return out


def manifest(unit_text: str) -> dict[str, Any] | None:
    """What ``phototag service install`` recorded in the unit, or None (not written by it)."""
    for line in unit_text.splitlines():
        if line.startswith(MANIFEST):
            try:
                doc = json.loads(line[len(MANIFEST) :])
            except ValueError:
                return None
            return doc if isinstance(doc, dict) else None
    return None


def words(value: str, separators: str = "") -> list[list[str]]:
    """A systemd word list: words split at whitespace, each word split into parts at ``separators`` (``:`` for
    ``BindPaths=``); quotes group, a backslash makes the next character literal (systemd.syntax(7))."""
    out: list[list[str]] = []
    parts: list[str] = []
    current: list[str] = []
    quote = ""
    in_word = False
    chars = iter(value)
    for c in chars:
        if c == "\\":
            current.append(next(chars, ""))
            in_word = True
        elif quote:
            if c == quote:
                quote = ""
            else:
                current.append(c)
        elif c in " \t\n":
            if in_word:
                out.append([*parts, "".join(current)])
                parts, current, in_word = [], [], False
        elif c in "\"'":
            quote, in_word = c, True
        elif c in separators:
            parts.append("".join(current))
            current, in_word = [], True
        else:
            current.append(c)
            in_word = True
    if in_word:
        out.append([*parts, "".join(current)])
    return out


def split_words(value: str) -> list[str]:
    """A systemd word list as strings."""
    return ["".join(w) for w in words(value)]


def environment(values: Sequence[str]) -> dict[str, str]:
    """``Environment=`` lines -> variables (a later assignment wins)."""
    env: dict[str, str] = {}
    for value in values:
        for word in split_words(value):
            name, sep, val = word.partition("=")
            if sep:
                env[name] = val
    return env


def exec_argv(value: str) -> list[str]:
    """An ``ExecStart=`` value -> argv (prefixes such as ``-`` or ``+`` dropped, ``$$`` unescaped; specifiers
    are left for :func:`expand`)."""
    value = value.lstrip("@-:+!|")
    return [w.replace("$$", "$") for w in split_words(value)]


def expand(value: str, scope: Scope, environ: Mapping[str, str] | None = None) -> str:
    """Expand the specifiers phototag's units use (``%S %C %E %h %t %%``) as the manager of ``scope`` would."""
    environ = os.environ if environ is None else environ
    home = environ.get("HOME") or str(Path.home())
    if scope == "system":
        table = {"S": "/var/lib", "C": "/var/cache", "E": "/etc", "L": "/var/log", "t": "/run", "h": "/root"}
    else:
        config = environ.get("XDG_CONFIG_HOME") or f"{home}/.config"
        state = environ.get("XDG_STATE_HOME") or f"{home}/.local/state"
        table = {
            "E": config,
            "C": environ.get("XDG_CACHE_HOME") or f"{home}/.cache",
            # %S is $XDG_CONFIG_HOME for user managers before systemd 254, $XDG_STATE_HOME from 254
            "S": state if systemd_version() >= 254 else config,
            "L": (state if systemd_version() >= 254 else config) + "/log",
            "t": environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}",
            "h": home,
        }
    table["%"] = "%"
    return re.sub(r"%(.)", lambda m: table.get(m.group(1), m.group(0)), value)


@cache
def systemd_version() -> int:
    """The installed systemd's version (``systemctl --version``); 0 when there is none."""
    try:
        out = subprocess.run(["systemctl", "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    m = re.match(r"systemd (\d+)", out)
    return int(m.group(1)) if m else 0
