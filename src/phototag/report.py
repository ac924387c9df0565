"""One human line per processed photo, shared by ``scan``'s output and the daemon's log.

A photo is named by its path relative to the current folder when it lies below it, else by its absolute path
(the daemon: always absolute), so two ``cat.jpg`` in different folders never look alike. :class:`RunReport`
is ``scan``'s per-run view: an analyzer error that many photos share (a model that is not available) is given
in full once, and each photo's line then only names the analyzer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import display


def shown_path(path: Path, full_path: bool = False, cwd: Path | None = None) -> str:
    """``path`` as output shows it: relative to ``cwd`` (default: the current folder) when below it, else
    absolute; ``full_path``: always absolute. Printable (odd bytes as ``\\xNN``)."""
    path = Path(path)
    try:
        absolute = path.absolute()
        here = cwd if cwd is not None else Path.cwd()
    except OSError:  # the current folder was deleted
        return display(path)
    if not full_path and absolute.is_relative_to(here):
        return display(absolute.relative_to(here))
    return display(absolute)


def describe_outcome(
    outcome: Any, full_path: bool = False, cwd: Path | None = None, message: str | None = None
) -> str:
    """One human line per photo: keywords with scores, objects, faces, caption, and why it failed (``message``
    instead of the outcome's own, e.g. a shortened one). Always printable (a file name that is not UTF-8 shows
    its odd bytes as ``\\xNN``)."""
    name = shown_path(outcome.path, full_path, cwd)
    why = own_message(outcome) if message is None else message
    return display(_describe(outcome, name, why))


def own_message(outcome: Any) -> str:
    """The outcome's message without the photo's path in front (the line already names the photo)."""
    return str(outcome.message).removeprefix(f"{display(outcome.path)}: ")


def is_failure(outcome: Any) -> bool:
    """Failed, or a dry run that found errors (a real run would have failed)."""
    return bool(outcome.status == "failed" or (outcome.status == "dry-run" and outcome.message))


def _describe(outcome: Any, name: str, why: str) -> str:
    if outcome.status == "skipped":
        return f"{name}: skipped ({why})"
    result = getattr(outcome, "result", None)  # the daemon's processors may report outcomes without results
    if result is None:
        return f"{name}: FAILED: {why}" if is_failure(outcome) else f"{name}: {outcome.status}"
    best: dict[str, float] = {}
    for _, tag in result.tags:
        best[tag.name] = max(best.get(tag.name, 0.0), tag.score)
    parts = [
        ", ".join(f"{k} {v:.2f}" for k, v in sorted(best.items(), key=lambda kv: -kv[1])) or "no keywords"
    ]
    objects = [r for _, r in result.regions if r.kind == "object"]
    # a named face (people recognition) repeats a detected one: count the detected, list the names
    faces = [r for _, r in result.regions if r.kind == "face" and not r.name]
    names = list(dict.fromkeys(r.name for _, r in result.regions if r.kind == "face" and r.name))
    if objects:
        parts.append("objects: " + ", ".join(f"{r.label} {r.score:.2f}" for r in objects))
    if faces:
        parts.append(f"faces: {len(faces)}" + (f" ({', '.join(names)})" if names else ""))
    if result.caption:
        parts.append(f"caption: {result.caption!r}")
    line = f"{name}: " + " | ".join(parts)
    if is_failure(outcome):
        line += f"  [FAILED: {why}]"
    return line


class RunReport:
    """``scan``'s lines for one run. An analyzer error is the same text for every photo of a run (a model that
    did not load) or of a batch; :meth:`line` gives it in full the first time (as a notice for stderr) and
    each photo's line names the analyzer only. ``said(text)``: whether the log already showed ``text`` on
    stderr (then it is not repeated)."""

    def __init__(self, cwd: Path | None = None, said: Callable[[str], bool] = lambda _: False) -> None:
        self.cwd = cwd
        self.said = said
        self._given: set[str] = set()

    def line(self, outcome: Any) -> tuple[list[str], str]:
        """``(notices, line)``: full messages not given yet (for stderr), and the photo's line."""
        notices: list[str] = []
        line = describe_outcome(outcome, cwd=self.cwd, message=self.message(outcome, notices))
        return notices, line

    def failure(self, outcome: Any) -> str:
        """``PATH: why`` for the list of failures after the summary (shortened like the photo's line)."""
        return f"{shown_path(outcome.path, cwd=self.cwd)}: {display(self.message(outcome, []))}"

    def message(self, outcome: Any, notices: list[str]) -> str:
        """The outcome's message, each analyzer error in it shortened to ``analyzer NAME unavailable (see
        above)``; an error seen for the first time is appended to ``notices``."""
        result = getattr(outcome, "result", None)
        runs = [r for r in (result.runs if result is not None else ()) if r.error]
        if not runs or outcome.message != "; ".join(r.error for r in runs):
            return own_message(outcome)  # not (only) analyzer errors: a write or file error, said in full
        short = []
        for run in runs:
            if run.error not in self._given:
                self._given.add(run.error)
                if not self.said(run.error):
                    notices.append(run.error)
            what = "failed" if run.error.startswith(f"analyzer {run.analyzer} failed") else "unavailable"
            short.append(f"analyzer {run.analyzer} {what} (see above)")
        return "; ".join(short)
