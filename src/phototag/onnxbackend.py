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
- **int8** (:func:`cached_quantized`): optionally the export quantised with ONNX Runtime's dynamic int8
  quantisation, kept beside the fp32 export with its own gate verdict; it goes through the same gate, and when
  it fails it, the fp32 export (or torch) is used and the reason says why.
- **Providers** (:func:`provider_choice`): the CUDA provider for a CUDA device when this onnxruntime build has
  it, else the CPU, with the reason; ``auto`` keeps a model on torch rather than move it from a GPU to the CPU.

Exporting needs the ``onnx`` package besides ``onnxruntime``; running needs ``onnxruntime`` only.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .errors import ModelUnavailableError
from .types import Device

# numpy is imported where a network runs or is gated: the bundled analyzers import this module for their
# settings' types, and a scan that only reads their fingerprints needs no numpy
if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image

log = logging.getLogger(__name__)

Backend = Literal["auto", "torch", "onnx"]
Quantize = Literal["none", "int8"]
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


def _same_model(model_id: str) -> re.Pattern[str]:
    """The file names of ``model_id``'s exports (any weights, format, int8 or not) and their gate verdicts;
    exact, so that a model whose id starts with another's is never taken for it."""
    return re.compile(rf"{re.escape(model_id)}-[0-9a-f]{{1,16}}-f[^-]+(-int8)?\.(onnx|gate\.json)")


def cached_export(
    model_id: str,
    weights_hash: str,
    build: Callable[[], tuple[torch.nn.Module, torch.Tensor | tuple[torch.Tensor, ...]]],
    outputs: Sequence[str],
    folder: Path | None = None,
    inputs: Sequence[str] = ("x",),
    dynamic: Mapping[str, Mapping[int, str]] | None = None,
) -> Path:
    """The ONNX file of ``model_id`` with these weights, exported now if it is not in ``folder`` yet.

    ``build()`` gives the torch module (its ``forward`` takes ``inputs``, by default one NCHW float32 batch,
    and returns ``outputs``, in order) and an example input (a tensor, or a tuple with one per input). The
    batch dimension of every input and output is dynamic; ``dynamic`` names the inputs' dynamic axes instead
    (a text tower's sequence length too). The file is written under a temporary name and renamed, so a killed
    export leaves nothing half-written; older exports of the same model (other weights or format) are removed.
    Raises :class:`ModelUnavailableError` when the export cannot be made."""
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

    tmp = folder / f".{path.name}.{os.getpid()}.tmp"
    try:
        module, example = build()
        folder.mkdir(parents=True, exist_ok=True)
        names = list(outputs)
        axes: dict[str, Any] = {n: {0: "batch"} for n in [*inputs, *names]}
        axes.update({n: dict(a) for n, a in (dynamic or {}).items()})
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # the exporter's deprecation notices are not the user's business
            torch.onnx.export(
                module.eval(),
                example if isinstance(example, tuple) else (example,),
                str(tmp),
                dynamo=False,
                input_names=list(inputs),
                output_names=names,
                dynamic_axes=axes,
                opset_version=OPSET,
            )
        os.replace(tmp, path)
    except Exception as e:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(e, ModelUnavailableError):
            raise
        raise ModelUnavailableError(
            f"model {model_id!r} could not be exported to ONNX in {folder} ({type(e).__name__}: {e}); "
            "it runs on torch (set its backend: torch to stop trying)"
        ) from e
    same = _same_model(model_id)
    for old in folder.iterdir():
        if same.fullmatch(old.name) and not old.name.startswith(path.stem):
            old.unlink(missing_ok=True)
    log.info("exported %s to ONNX: %s", model_id, path)
    return path


def cached_quantized(export: Path) -> Path:
    """``export`` quantised to int8 (ONNX Runtime's dynamic quantisation: int8 weights, activations quantised
    per batch), made once beside it (``<export>-int8.onnx``) and removed with it when the weights change.

    Only the matrix multiplications are quantised (``MatMul``, ``Gemm``: the bulk of a transformer's work);
    convolutions stay fp32, because ONNX Runtime's CPU provider runs the dynamically quantised ``ConvInteger``
    slower than fp32 and, per tensor, loses the depthwise layers' accuracy. Raises
    :class:`ModelUnavailableError` when it cannot be made."""
    path = export.with_name(f"{export.stem}-int8.onnx")
    if path.is_file():
        return path
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with _quiet_quantizer():
            quantize_dynamic(
                str(export), str(tmp), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"]
            )
        os.replace(tmp, path)
    except Exception as e:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise ModelUnavailableError(
            f"{export.name} could not be quantised to int8 ({type(e).__name__}: {e})"
        ) from e
    log.info("quantised %s to int8: %s", export.name, path)
    return path


class _DropPreprocessingAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """The quantiser logs advice for static quantisation on the root logger at every call: not for users."""
    drop = _DropPreprocessingAdvice()
    root = logging.getLogger()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def provider_choice(device: Device, available: Sequence[str] | None = None) -> tuple[list[Any], str]:
    """``(providers, why)``: the ONNX Runtime execution providers for ``device`` and the reason, as the
    hardware probe picks torch devices. The CUDA provider (then the CPU) on a CUDA device when this
    onnxruntime build has it, else the CPU. ``available`` is what the build offers (default: asked from
    onnxruntime; tests pass a list)."""
    if device.kind == "cpu":
        return ["CPUExecutionProvider"], "CPU provider: the device is the CPU"
    if available is None:
        import onnxruntime as ort

        available = ort.get_available_providers()
    if device.kind == "cuda" and "CUDAExecutionProvider" in available:
        index = device.index or 0
        return (
            [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"],
            f"CUDA provider on GPU {index}",
        )
    wanted = "CUDAExecutionProvider" if device.kind == "cuda" else f"provider for {device.kind}"
    return ["CPUExecutionProvider"], (
        f"CPU provider: the device is {device.torch_device} but this onnxruntime has no {wanted} "
        f"(it has {', '.join(available) or 'none'}; for CUDA: pip install onnxruntime-gpu)"
    )


def providers(device: Device, available: Sequence[str] | None = None) -> list[Any]:
    """ONNX Runtime execution providers for ``device`` (:func:`provider_choice` without the reason)."""
    return provider_choice(device, available)[0]


class OrtNetwork:
    """An exported network in an ONNX Runtime session on ``device`` (``device.threads`` intra-op threads);
    ``provider_reason`` says which execution provider runs it and why."""

    def __init__(self, path: Path, device: Device, available: Sequence[str] | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if device.threads > 0:
            options.intra_op_num_threads = device.threads
        chosen, self.provider_reason = provider_choice(device, available)
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=chosen)
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """The outputs for one NCHW float32 batch (the export's one input), in the export's order."""
        import numpy as np

        return list(self.session.run(None, {self.inputs[0]: np.ascontiguousarray(batch, dtype=np.float32)}))

    def run_feeds(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """The outputs for named inputs (a text tower's ``input_ids`` and ``attention_mask``); inputs the
        export does not take are left out."""
        import numpy as np

        return list(
            self.session.run(None, {k: np.ascontiguousarray(v) for k, v in feeds.items() if k in self.inputs})
        )


@dataclass(frozen=True)
class Gate:
    """ONNX Runtime against fp32 torch on the same photos: the share of photos with the same top-1 class and
    the smallest cosine between their embeddings (with ``texts``, a text tower's: the cosine is over that many
    texts' embeddings)."""

    images: int
    top1_agreement: float
    min_cosine: float
    texts: int = 0

    @property
    def passed(self) -> bool:
        return self.images > 0 and self.top1_agreement >= TOP1_MIN and self.min_cosine >= COSINE_MIN

    def describe(self) -> str:
        on = f"{self.images} photos" + (f" and {self.texts} texts" if self.texts else "")
        return (
            f"top-1 agreement {self.top1_agreement:.1%} (needs {TOP1_MIN:.0%}), embedding cosine at least "
            f"{self.min_cosine:.4f} (needs {COSINE_MIN}) on {on}"
        )


def compare(reference: tuple[np.ndarray, np.ndarray], candidate: tuple[np.ndarray, np.ndarray]) -> Gate:
    """:class:`Gate` of ``candidate`` against ``reference``, each ``(features, scores)`` for the same photos
    (one row per photo): cosine of the feature rows, agreement of the scores' argmax."""
    import numpy as np

    ref_f, ref_s = (np.asarray(a, dtype=np.float64) for a in reference)
    got_f, got_s = (np.asarray(a, dtype=np.float64) for a in candidate)
    if ref_f.shape != got_f.shape or ref_s.shape != got_s.shape or len(ref_f) == 0 or len(ref_s) == 0:
        return Gate(0, 0.0, 0.0)
    norms = np.linalg.norm(ref_f, axis=1) * np.linalg.norm(got_f, axis=1)
    cosine = np.sum(ref_f * got_f, axis=1) / np.where(norms > 0, norms, 1.0)
    agree = float(np.mean(ref_s.argmax(axis=1) == got_s.argmax(axis=1)))
    return Gate(len(ref_s), agree, float(cosine.min()))


def cached_gate(export: Path, check: Callable[[], Gate]) -> Gate:
    """The gate verdict of ``export``, kept beside it (``.gate.json``): ``check()`` runs once per export."""
    path = export.with_suffix(".gate.json")
    try:
        doc = json.loads(path.read_text())
        return Gate(
            int(doc["images"]),
            float(doc["top1_agreement"]),
            float(doc["min_cosine"]),
            int(doc.get("texts", 0)),
        )
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
    requested: Backend,
    setting: str,
    open_onnx: Callable[[], tuple[OrtNetwork, Gate]],
    open_int8: Callable[[], tuple[OrtNetwork, Gate]] | None = None,
    device: Device | None = None,
    available: Sequence[str] | None = None,
) -> tuple[OrtNetwork | None, str]:
    """``(network, why)``: the ONNX Runtime network to use, or None for torch, and the reason.

    ``open_onnx()`` exports (or finds) the network and its gate verdict; it raises ModelUnavailableError when
    it cannot. ``open_int8()``, when given (int8 asked for), is tried first the same way; when it cannot be
    made or fails the gate, the fp32 network is used instead and the reason says why. ``requested`` ``onnx``
    turns every reason not to use ONNX Runtime at all into that error, naming ``setting`` (the config key) and
    the fix; ``auto`` falls back to torch and says why, and also stays on torch when ``device`` is a GPU that
    this onnxruntime cannot use (``available``: its providers, see :func:`provider_choice`)."""
    if requested == "torch":
        return None, f"{setting} is torch"
    notes: list[str] = []
    try:
        missing = missing_packages()
        if missing:
            raise ModelUnavailableError(f"onnxruntime is not installed. Install it with: {PIP}")
        if requested == "auto" and device is not None and device.kind != "cpu":
            chosen, why = provider_choice(device, available)
            if chosen == ["CPUExecutionProvider"]:
                raise ModelUnavailableError(
                    f"torch runs on {device.torch_device}, ONNX Runtime would use the {why}"
                )
        if open_int8 is not None:
            try:
                network, gate = open_int8()
                if gate.passed:
                    return network, f"ONNX Runtime int8 ({gate.describe()})"
                notes.append(
                    f"int8 not used, it does not match fp32 torch closely enough ({gate.describe()})"
                )
            except ModelUnavailableError as e:
                notes.append(f"int8 not used: {e}")
        network, gate = open_onnx()
        if not gate.passed:
            raise ModelUnavailableError(
                f"ONNX Runtime does not match fp32 torch closely enough ({gate.describe()})"
            )
    except ModelUnavailableError as e:
        if requested == "onnx":
            raise ModelUnavailableError(
                f"{setting}: onnx cannot be used: {'; '.join([*notes, str(e)])}; or set {setting}: torch"
            ) from e
        return None, "; ".join([*notes, f"ONNX Runtime not used, torch instead: {e}"])
    return network, "; ".join([*notes, f"ONNX Runtime ({gate.describe()})"])


def gate_photos() -> list[Image.Image]:
    """Real photos for the accuracy gate: the sample photos the pip packages carry (:mod:`phototag.samples`),
    each whole, mirrored, centre-cropped and cropped to its left half, as RGB images. Raises
    :class:`ModelUnavailableError` when the packages that carry them are missing."""
    from PIL import Image

    from .samples import sample_sources

    try:
        sources = list(sample_sources().values())
    except ImportError as e:
        raise ModelUnavailableError(f"no sample photos to check ONNX Runtime against torch: {e}") from e
    out = []
    for src in sources:
        with Image.open(src) as im:
            rgb = im.convert("RGB")
        w, h = rgb.size
        out += [
            rgb,
            rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
            rgb.crop((w // 6, h // 6, w - w // 6, h - h // 6)),
            rgb.crop((0, 0, w // 2, h)),
        ]
    return out
