"""Results recovered from a photo's JSON sidecar, so that a lost or rebuilt state DB costs no model time.

The sidecar (``photo.jpg.phototag.json``, :mod:`phototag.plugins.sidecar`) records the photo's content hash
and, per analyzer, its fingerprint and full result (:func:`phototag.serialize.result_to_dict`). A run is
trusted only when both still match: the bytes are the ones it was computed from, and the analyzer's model and
settings are the current ones. Never recovered: embed runs (the sidecar holds only the vector's size, the
vector lives in the state DB) and runs that ended in an error (those are retried).

Reading is best-effort by design: a sidecar is the user's file and may be anything. Whatever cannot be read or
trusted gives no runs (logged at debug level), and the analyzers simply run again.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .plugins.sidecar import sidecar_path
from .serialize import SCHEMA_VERSION, run_from_dict
from .types import AnalyzerRun

log = logging.getLogger(__name__)

_MAX_BYTES = 64 * 1024 * 1024  # a sidecar is a few KB; do not read a huge file someone named like one


class _Untrusted(ValueError):
    """The sidecar cannot be used; the message says why (for the debug log)."""


def runs_from_sidecar(
    path: Path, content_hash: str, fingerprints: Mapping[str, str]
) -> dict[str, AnalyzerRun]:
    """The runs recorded in the JSON sidecar of the photo at ``path`` that are still valid, by analyzer name.

    Valid: the sidecar's content hash is ``content_hash``, and the run's fingerprint is
    ``fingerprints[analyzer]`` (analyzers not in ``fingerprints`` are ignored). Embed runs and failed runs are
    never returned. A missing, unreadable or malformed sidecar, or one of another schema version, gives ``{}``.
    """
    sidecar = sidecar_path(path)
    try:
        doc = _load(sidecar)
        runs = _valid_runs(doc, content_hash, fingerprints)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
        log.debug("%s: not recovering results from it: %s", sidecar, e)
        return {}
    if runs:
        log.debug("%s: recovered %s without running them", sidecar, ", ".join(sorted(runs)))
    return runs


def _load(sidecar: Path) -> dict[str, Any]:
    with sidecar.open("rb") as f:
        data = f.read(_MAX_BYTES + 1)
    if len(data) > _MAX_BYTES:
        raise _Untrusted(f"larger than {_MAX_BYTES} bytes")
    doc = json.loads(data)
    if not isinstance(doc, dict) or doc.get("schema") != "phototag/result":
        raise _Untrusted("not a phototag result")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise _Untrusted(
            f"schema version {doc.get('schema_version')!r}, this phototag reads {SCHEMA_VERSION}"
        )
    return doc


def _valid_runs(
    doc: dict[str, Any], content_hash: str, fingerprints: Mapping[str, str]
) -> dict[str, AnalyzerRun]:
    if doc.get("content_hash") != content_hash:
        raise _Untrusted("written for other bytes (content hash differs)")
    analyzers = doc.get("analyzers")
    if not isinstance(analyzers, dict):
        raise _Untrusted("no analyzers")
    runs: dict[str, AnalyzerRun] = {}
    for name, entry in analyzers.items():
        if not isinstance(entry, dict):
            raise _Untrusted(f"analyzer {name!r} is not an object")
        if name not in fingerprints or entry.get("fingerprint") != fingerprints[name]:
            continue  # not configured now, or another model or settings: it runs again
        if entry.get("error") is not None or entry.get("task") == "embed" or "embedding" in entry:
            continue
        run = run_from_dict(entry)
        _check(run, name)
        runs[name] = run
    return runs


def _check(run: AnalyzerRun, name: str) -> None:
    """``run_from_dict`` trusts its input; a hand-edited sidecar must not put wrong types into the pipeline."""
    a = run.analysis
    if run.analyzer != name or not isinstance(run.task, str) or not run.task or a is None:
        raise _Untrusted(f"analyzer {name!r}: inconsistent entry")
    texts = [t.name for t in a.tags] + [p for t in a.tags for p in t.path] + [r.label for r in a.regions]
    texts += [x.question for x in a.answers] + [x.text for x in a.answers]
    texts += [t for x in a.answers for t in (x.name, x.xmp) if t is not None]
    scores = [x.score for x in a.answers if x.score is not None]
    if not all(math.isfinite(s) for s in scores):
        raise _Untrusted(f"analyzer {name!r}: an answer's score is not a number")
    if a.caption is not None:
        texts.append(a.caption)
    if not all(isinstance(t, str) for t in texts) or not isinstance(run.model.id, str):
        raise _Untrusted(f"analyzer {name!r}: a text field is not a string")
    if any(r.kind not in ("face", "object") for r in a.regions):
        raise _Untrusted(f"analyzer {name!r}: unknown region kind")
