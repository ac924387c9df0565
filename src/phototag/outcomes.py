"""What happened to each path in a run (:class:`Outcome`) and the run's totals (:class:`Summary`).

Plain data, shared by the pipeline that makes outcomes and the front ends that report them (scan's lines and
summary, the daemon's log and retries).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .types import PhotoResult

Status = Literal["tagged", "rewritten", "skipped", "failed", "dry-run"]
"""``rewritten``: only the metadata was written again, from cached results (a writer setting changed, a sidecar
was deleted): no model ran."""


@dataclass(frozen=True)
class Outcome:
    """What happened to one path. ``transient`` failures are worth retrying later (file busy, disk full)."""

    path: Path
    status: Status
    message: str = ""
    transient: bool = False
    result: PhotoResult | None = None


@dataclass
class Summary:
    tagged: int = 0
    rewritten: int = 0
    skipped: int = 0
    failed: int = 0
    dry_run: int = 0
    failures: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, outcome: Outcome) -> None:
        if outcome.status == "tagged":
            self.tagged += 1
        elif outcome.status == "rewritten":
            self.rewritten += 1
        elif outcome.status == "skipped":
            self.skipped += 1
        elif outcome.status == "dry-run":
            self.dry_run += 1
        else:
            self.failed += 1
            self.failures.append(outcome)

    @property
    def total(self) -> int:
        return self.tagged + self.rewritten + self.skipped + self.failed + self.dry_run
