"""Optional features and the pip extras that bring them: one import, or one line that says what to install.

    pillow_heif = require("pillow_heif", "heic", "HEIC photos")
    # not installed -> MissingExtra: HEIC photos need the heic extra: pip install 'phototag[heic]'

The extras themselves are declared in pyproject.toml (``heic``, ``raw``, ``siglip``, ``samples``, and ``all``
for every one of them); tests/test_packaging.py checks that every import is declared where it belongs.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import PhototagError


class MissingExtra(PhototagError):
    """An optional feature was used without the extra that provides it (or that extra is broken)."""

    def __init__(self, message: str, module: str, extra: str) -> None:
        self.module = module
        self.extra = extra
        super().__init__(message)


def install_command(extra: str) -> str:
    """The pip command that adds ``extra`` to an installed phototag."""
    return f"pip install 'phototag[{extra}]'"


def hint(extra: str, feature: str) -> str:
    """One line: ``feature`` needs ``extra`` and the command that installs it."""
    return f"{feature} need the {extra} extra: {install_command(extra)}"


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import and return ``module``, which the pip extra ``extra`` provides for ``feature``.

    Raises :class:`MissingExtra` (a :class:`~phototag.errors.PhototagError`) with one line naming the extra when
    the module is not installed, and one that says to reinstall it when it is installed but fails to import
    (a missing shared library, a broken install): the message never suggests installing what is there.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is None or (module != e.name and not module.startswith(f"{e.name}.")):
            raise _broken(module, extra, feature, e) from e  # it is there; something it imports is not
        raise MissingExtra(hint(extra, feature), module, extra) from None
    except ImportError as e:
        raise _broken(module, extra, feature, e) from e


def _broken(module: str, extra: str, feature: str, e: ImportError) -> MissingExtra:
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return MissingExtra(
        f"{feature} need the {extra} extra, which is installed but does not import ({module}: {reason}); "
        f"reinstall it: pip install --force-reinstall 'phototag[{extra}]'",
        module,
        extra,
    )
