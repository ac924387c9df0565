"""Run a bundled torch network with ONNX Runtime: exported once, kept, and checked against torch before use.

Why: on a CPU, ONNX Runtime runs these small convolutional networks about twice as fast as eager torch at the
same thread count on a quiet machine, and many times faster on a busy one, where torch's threads suffer from
a neighbour (``bench/pipeline_bench.py`` prints both).

- **Export once** (:func:`cached_export`): the network is exported with torch's exporter at first use into
  the cache folder (:func:`cache_dir`), under a name keyed by the weights file's hash and :data:`EXPORT_FORMAT`.
  Later runs load the file; new weights (another hash) export again and remove the model's older exports.
- **Accuracy gate** (:func:`compare`): before a network is used through ONNX Runtime, its outputs on real
  photos are compared with fp32 torch: top-1 agreement at least :data:`TOP1_MIN` and embedding cosine at least
  :data:`COSINE_MIN`, else the model stays on torch. The verdict is kept beside the export
  (:func:`cached_gate`), so it is computed once per export.
- **Backend choice** (:func:`choose`): ``torch``, ``onnx`` (an error with the reason when it cannot be used) or
  ``auto`` (ONNX Runtime when it can be used and passes the gate, else torch, with the reason logged).

Exporting needs the ``onnx`` package besides ``onnxruntime``; running needs ``onnxruntime`` only.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .errors import ModelUnavailableError
from .types import Device

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

Backend = Literal["auto", "torch", "onnx"]
EXPORT_FORMAT = "1"
"""Part of every export's name: change it when the export itself changes (opset, outputs), to export again."""
OPSET = 17
TOP1_MIN = 0.99
COSINE_MIN = 0.99
PIP = "pip install onnx onnxruntime"


def cache_dir() -> Path:
    """Where exports are kept: ``$PHOTOTAG_ONNX_CACHE``, else ``$XDG_CACHE_HOME/phototag/onnx`` (default
    ``~/.cache/phototag/onnx``), next to the Hugging Face model cache."""
    own = os.environ.get("PHOTOTAG_ONNX_CACHE")
    if own:
        return Path(own)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "phototag" / "onnx"


def missing_packages(names: Sequence[str] = ("onnxruntime",)) -> list[str]:
    """The Python packages among ``names`` that cannot be imported (checked without importing them)."""
    out = []
    for name in names:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            out.append(name)
    return out


def export_name(model_id: str, weights_hash: str) -> str:
    """The export's file name: the model, the weights' hash and the export format."""
    return f"{model_id}-{weights_hash[:16]}-f{EXPORT_FORMAT}.onnx"


def cached_export(
    model_id: str,
    weights_hash: str,
    build: Callable[[], tuple[torch.nn.Module, torch.Tensor]],
    outputs: Sequence[str],
    folder: Path | None = None,
) -> Path:
    """The ONNX file of ``model_id`` with these weights, exported now if it is not in ``folder`` yet.

    ``build()`` gives the torch module (its ``forward`` takes one NCHW float32 batch and returns ``outputs``,
    in order) and an example input; the batch dimension is dynamic. The file is written under a temporary
    name and renamed, so a killed export leaves nothing half-written; older exports of the same model (other
    weights or format) are removed. Raises :class:`ModelUnavailableError` when the export cannot be made."""
    folder = folder or cache_dir()
    path = folder / export_name(model_id, weights_hash)
    if path.is_file():
        return path
    missing = missing_packages(("onnx", "onnxruntime"))
    if missing:
        raise ModelUnavailableError(
            f"model {model_id!r} cannot be exported to ONNX: the package(s) {', '.join(missing)} are not "
            f"installed. Install them with: {PIP}"
        )
    import warnings

    import torch

    module, example = build()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{path.name}.{os.getpid()}.tmp"
        names = list(outputs)
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # the exporter's deprecation notices are not the user's business
            torch.onnx.export(
                module.eval(),
                (example,),
                str(tmp),
                dynamo=False,
                input_names=["x"],
                output_names=names,
                dynamic_axes={n: {0: "batch"} for n in ["x", *names]},
                opset_version=OPSET,
            )
        os.replace(tmp, path)
    except Exception as e:
        raise ModelUnavailableError(
            f"model {model_id!r} could not be exported to ONNX in {folder} ({type(e).__name__}: {e}); "
            "it runs on torch (set its backend: torch to stop trying)"
        ) from e
    for old in folder.glob(f"{model_id}-*.onnx"):
        if old != path:
            old.unlink(missing_ok=True)
            old.with_suffix(".gate.json").unlink(missing_ok=True)
    log.info("exported %s to ONNX: %s", model_id, path)
    return path


def providers(device: Device) -> list[Any]:
    """ONNX Runtime execution providers for ``device``: CUDA (then the CPU) on a CUDA device when this
    onnxruntime build has it, else the CPU."""
    import onnxruntime as ort

    if device.kind == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OrtNetwork:
    """An exported network in an ONNX Runtime session on ``device`` (``device.threads`` intra-op threads)."""

    def __init__(self, path: Path, device: Device) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if device.threads > 0:
            options.intra_op_num_threads = device.threads
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=providers(device))
        self.outputs = [o.name for o in self.session.get_outputs()]

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """The outputs for one NCHW float32 batch, in the export's order."""
        return list(self.session.run(None, {"x": np.ascontiguousarray(batch, dtype=np.float32)}))


@dataclass(frozen=True)
class Gate:
    """ONNX Runtime against fp32 torch on the same photos: the share of photos with the same top-1 class and
    the smallest cosine between their embeddings."""

    images: int
    top1_agreement: float
    min_cosine: float

    @property
    def passed(self) -> bool:
        return self.images > 0 and self.top1_agreement >= TOP1_MIN and self.min_cosine >= COSINE_MIN

    def describe(self) -> str:
        return (
            f"top-1 agreement {self.top1_agreement:.1%} (needs {TOP1_MIN:.0%}), embedding cosine at least "
            f"{self.min_cosine:.4f} (needs {COSINE_MIN}) on {self.images} photos"
        )


def compare(reference: tuple[np.ndarray, np.ndarray], candidate: tuple[np.ndarray, np.ndarray]) -> Gate:
    """:class:`Gate` of ``candidate`` against ``reference``, each ``(features, scores)`` for the same photos
    (one row per photo): cosine of the feature rows, agreement of the scores' argmax."""
    ref_f, ref_s = (np.asarray(a, dtype=np.float64) for a in reference)
    got_f, got_s = (np.asarray(a, dtype=np.float64) for a in candidate)
    if ref_f.shape != got_f.shape or ref_s.shape != got_s.shape or len(ref_f) == 0:
        return Gate(0, 0.0, 0.0)
    norms = np.linalg.norm(ref_f, axis=1) * np.linalg.norm(got_f, axis=1)
    cosine = np.sum(ref_f * got_f, axis=1) / np.where(norms > 0, norms, 1.0)
    agree = float(np.mean(ref_s.argmax(axis=1) == got_s.argmax(axis=1)))
    return Gate(len(ref_f), agree, float(cosine.min()))


def cached_gate(export: Path, check: Callable[[], Gate]) -> Gate:
    """The gate verdict of ``export``, kept beside it (``.gate.json``): ``check()`` runs once per export."""
    path = export.with_suffix(".gate.json")
    try:
        doc = json.loads(path.read_text())
        return Gate(int(doc["images"]), float(doc["top1_agreement"]), float(doc["min_cosine"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    gate = check()
    try:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(gate)))
        os.replace(tmp, path)
    except OSError as e:  # read-only cache: checked again next time
        log.warning("could not keep the ONNX accuracy check in %s: %s", path, e)
    return gate


def choose(
    requested: Backend, setting: str, open_onnx: Callable[[], tuple[OrtNetwork, Gate]]
) -> tuple[OrtNetwork | None, str]:
    """``(network, why)``: the ONNX Runtime network to use, or None for torch, and the reason.

    ``open_onnx()`` exports (or finds) the network and its gate verdict; it raises ModelUnavailableError when
    it cannot. ``requested`` ``onnx`` turns every reason not to use ONNX Runtime into that error, naming
    ``setting`` (the config key) and the fix; ``auto`` falls back to torch and says why."""
    if requested == "torch":
        return None, f"{setting} is torch"
    try:
        missing = missing_packages()
        if missing:
            raise ModelUnavailableError(f"onnxruntime is not installed. Install it with: {PIP}")
        network, gate = open_onnx()
        if not gate.passed:
            raise ModelUnavailableError(
                f"ONNX Runtime does not match fp32 torch closely enough ({gate.describe()})"
            )
    except ModelUnavailableError as e:
        if requested == "onnx":
            raise ModelUnavailableError(
                f"{setting}: onnx cannot be used: {e}; or set {setting}: torch"
            ) from e
        return None, f"ONNX Runtime not used, torch instead: {e}"
    return network, f"ONNX Runtime ({gate.describe()})"
