"""One human line per processed photo, shared by ``scan``'s output and the daemon's log."""

from __future__ import annotations

from typing import Any

from .errors import display


def describe_outcome(outcome: Any, full_path: bool = False) -> str:
    """One human line per photo: keywords with scores, objects, faces, caption. Always printable (a file
    name that is not UTF-8 shows its odd bytes as ``\\xNN``)."""
    return display(_describe(outcome, full_path))


def _describe(outcome: Any, full_path: bool) -> str:
    name = display(outcome.path if full_path else outcome.path.name)
    if outcome.status == "skipped":
        return f"{name}: skipped ({outcome.message})"
    result = getattr(outcome, "result", None)  # the daemon's processors may report outcomes without results
    if result is None:
        return (
            f"{name}: {outcome.status}"
            if outcome.status != "failed"
            else f"{name}: FAILED: {outcome.message}"
        )
    best: dict[str, float] = {}
    for _, tag in result.tags:
        best[tag.name] = max(best.get(tag.name, 0.0), tag.score)
    parts = [
        ", ".join(f"{k} {v:.2f}" for k, v in sorted(best.items(), key=lambda kv: -kv[1])) or "no keywords"
    ]
    objects = [r for _, r in result.regions if r.kind == "object"]
    faces = [r for _, r in result.regions if r.kind == "face"]
    if objects:
        parts.append("objects: " + ", ".join(f"{r.label} {r.score:.2f}" for r in objects))
    if faces:
        parts.append(f"faces: {len(faces)}")
    if result.caption:
        parts.append(f"caption: {result.caption!r}")
    line = f"{name}: " + " | ".join(parts)
    if outcome.status == "failed":
        line += f"  [FAILED: {outcome.message}]"
    return line
