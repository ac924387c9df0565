"""The phototag a service runs, and whether the service's user can run it.

The running phototag is its interpreter as started (``sys.executable``, not resolved: a venv's ``python`` is a
symlink to the base interpreter, and resolving it would lose the venv) with ``-m phototag``, or the console
script beside it. A system service's user (``DynamicUser=``) must be able to enter every folder on the way to
that interpreter, its standard library, the venv and the package: a venv under /root or a drwx------ home, or a
Python built there (pyenv), is not reachable for it.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from ..errors import PhototagError
from .access import Identity, R, X, reach_problem


class InstallRefused(PhototagError):
    """Install or uninstall would not work, or would remove what it did not write: nothing was changed."""


@dataclass(frozen=True)
class Program:
    """The command that runs phototag, what the service's user must be able to use for it, and the folders
    that hold it (bound read-only into the service when ``ProtectHome=tmpfs`` hides them)."""

    argv: tuple[str, ...]
    needs: tuple[tuple[Path, int], ...]
    roots: tuple[Path, ...]


def _shebang(path: Path) -> str | None:
    try:
        with path.open("rb") as f:
            first = f.readline(4096)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode(errors="replace").split()
    return words[0] if words else None


def this_program() -> Program:
    """The running phototag: the console script beside ``sys.executable`` when it runs with that venv's
    interpreter, else ``sys.executable -m phototag``."""
    import phototag

    exe = Path(sys.executable)
    script = exe.parent / "phototag"
    needs: list[tuple[Path, int]] = [(exe, X)]
    shebang = _shebang(script)
    if shebang and Path(shebang).parent == exe.parent and os.access(script, os.X_OK):  # this venv's script
        argv: tuple[str, ...] = (str(script),)
        needs.append((script, R | X))
    else:
        argv = (str(exe), "-m", "phototag")
    package = Path(phototag.__file__).resolve().parent
    paths = sysconfig.get_paths()
    needs += [(package / "__init__.py", R), (Path(paths["stdlib"]) / "os.py", R)]
    needs += [(Path(paths[k]), R | X) for k in ("purelib", "platlib") if Path(paths[k]).is_dir()]
    if sys.prefix != sys.base_prefix:
        needs.append((Path(sys.prefix) / "pyvenv.cfg", R))
    roots = tuple(dict.fromkeys((Path(sys.prefix), Path(sys.base_prefix).resolve(), package.parent)))
    return Program(argv, tuple(needs), roots)


def program_at(path: Path) -> Program:
    """``--executable PATH``: a phototag console script (or wrapper) to run instead of this one."""
    path = Path(os.path.abspath(path))
    if not path.is_file() or not os.access(path, os.X_OK):
        raise InstallRefused(f"--executable {path}: not an executable file")
    needs: list[tuple[Path, int]] = [(path, R | X)]
    roots = [path.parent]
    interpreter = _shebang(path)
    if interpreter and interpreter != "/usr/bin/env":
        needs.append((Path(interpreter), X))
        roots.append(Path(interpreter).parent)
    return Program((str(path),), tuple(needs), tuple(dict.fromkeys(roots)))


def unreachable(program: Program, who: Identity) -> list[str]:
    """Why the service's user cannot run ``program`` (empty: it can), a line per path."""
    problems: list[str] = []
    for path, want in program.needs:
        why = reach_problem(path, who, want)
        if why is None:
            continue
        real = os.path.realpath(path)
        line = f"{path}{f' (-> {real})' if real != str(path) else ''}: {why}"
        if why not in {p.split(": ", 1)[-1] for p in problems}:
            problems.append(line)
    return problems
