"""``phototag doctor``'s lines about an installed system service: can its user write the photo folders, now and
the subfolders created later, and may the unit write them at all (``ReadWritePaths=``/``BindPaths=``)?

The shell user's own access (``os.access``) is doctor's business; a system service runs as another user
(``DynamicUser=`` in group photos), so its access is worked out from modes and ACLs (:mod:`.access`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ..config import load_config
from ..errors import ConfigError
from .access import check_folder
from .locate import InstalledService, find_installed


def service_folder_lines(environ: Mapping[str, str] | None = None) -> list[tuple[bool, str]]:
    """``(ok, line)`` for the installed system service and each folder it watches (one ``ok`` False per problem
    found; the lines below a folder explain it); empty when there is none."""
    service = find_installed("system", environ)
    if service is None:
        return []
    who, missing = service.identity()
    out = [(True, f"service {service.describe}: runs as {who.label}")]
    out += [
        (False, f"service: {m} does not exist, so it cannot start: groupadd --system {m}") for m in missing
    ]
    folders, error = _watched(service)
    if error:
        out.append((False, f"service config {service.config}: {error}"))
    allowed = [Path(os.path.realpath(p)) for p in service.folders]
    for folder in folders:
        real = Path(os.path.realpath(folder))
        if not any(real == a or a in real.parents for a in allowed):
            out.append((False, f"service folder {folder}: NOT WRITABLE inside the service (not in the unit's "
                               "ReadWritePaths=): run `phototag service install` again"))  # fmt: skip
            continue
        report = check_folder(real, who, service.group, hidden_parent=service.hidden_parent())
        if report.ok and not report.warnings:
            out.append(
                (True, f"service folder {folder}: writable for the service, and folders created in it too")
            )
            continue
        verdict = (
            "PROBLEM (the service will fail to write there)" if not report.ok else "writable, but see below"
        )
        out.append((report.ok, f"service folder {folder}: {verdict}"))
        out += [(True, f"  {p}") for p in report.problems]
        out += [(True, f"  warning: {w}") for w in report.warnings]
        out += [(True, f"  fix: {fix}") for fix in report.fixes]
    return out


def _watched(service: InstalledService) -> tuple[list[Path], str | None]:
    """The folders the service's config lists (its unit's writable paths when the config cannot be read)."""
    if service.config is not None:
        try:
            return list(load_config(service.config, environ={}).folders), None
        except (ConfigError, OSError) as e:
            return list(service.folders), str(e)
    return list(service.folders), None
