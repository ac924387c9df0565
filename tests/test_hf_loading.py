"""Finding and loading transformers models: local folders, the real HF cache layout, offline mode, and one
clear error for every way a model can be missing or damaged. Models are tiny random ones built from
configs."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from phototag.errors import ModelUnavailableError
from phototag.hf.loading import (
    LazySource,
    ModelSource,
    hf_cache_dir,
    is_offline,
    load_config,
    load_model,
    load_processor,
    model_info,
    processor_input_size,
    release_model,
    resolve_model,
    torch_dtype,
)
from phototag.models import shared_pool
from phototag.types import Device, ModelInfo
from tiny_models import build_tiny_vit_classifier

CPU = Device("cpu")


@pytest.fixture(scope="session")
def tiny_clip(tiny_model: Callable[[str], Path]) -> Path:
    return tiny_model("clip")


@pytest.fixture(scope="session")
def tiny_vit(tiny_model: Callable[[str], Path]) -> Path:
    return tiny_model("vit")


@pytest.fixture
def clip_copy(tiny_clip: Path, tmp_path: Path) -> Path:
    """A private copy to damage."""
    return Path(shutil.copytree(tiny_clip, tmp_path / "clip"))


@pytest.fixture
def hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HF_HOME, so that no real cache on this machine can answer."""
    home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    return home


def put_in_hf_cache(folder: Path, hf_home: Path, repo_id: str, commit: str = "a" * 40) -> Path:
    """Lay ``folder`` out exactly as huggingface_hub caches a download: blobs, a snapshot, refs/main."""
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for f in folder.iterdir():
        blob = repo / "blobs" / f"{abs(hash(f.name)):x}"
        shutil.copyfile(f, blob)
        (snapshot / f.name).symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snapshot


# -- local folders -------------------------------------------------------------------------------------------


def test_local_folder_resolves_with_a_revision_that_follows_the_weights(clip_copy: Path) -> None:
    source = resolve_model(str(clip_copy))
    assert source.path == clip_copy.resolve()
    assert source.id == str(clip_copy)
    assert source.revision.startswith("local-")
    assert resolve_model(str(clip_copy)).revision == source.revision  # stable
    weights = clip_copy / "model.safetensors"
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000_000))
    assert resolve_model(str(clip_copy)).revision != source.revision  # new weights -> new revision
    assert model_info(source) == ModelInfo(str(clip_copy), source.revision)


def test_missing_folder_is_one_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such-model"
    with pytest.raises(ModelUnavailableError) as e:
        resolve_model(str(missing))
    assert str(missing) in str(e.value)
    assert "does not exist" in str(e.value)


def test_folder_without_config_names_the_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelUnavailableError, match=r"no config\.json") as e:
        resolve_model(str(tmp_path / "empty"))
    assert str(tmp_path / "empty") in str(e.value)


def test_config_without_weights_names_the_folder(clip_copy: Path) -> None:
    (clip_copy / "model.safetensors").unlink()
    with pytest.raises(ModelUnavailableError, match="no weights") as e:
        resolve_model(str(clip_copy))
    assert str(clip_copy) in str(e.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not readable JSON"),
        (json.dumps({"hidden_size": 3}), "no model_type"),
        ("[1, 2]", "no model_type"),
    ],
)
def test_garbage_config_names_the_file(clip_copy: Path, content: str, message: str) -> None:
    (clip_copy / "config.json").write_text(content)
    with pytest.raises(ModelUnavailableError, match=message) as e:
        resolve_model(str(clip_copy))
    assert str(clip_copy / "config.json") in str(e.value)


def test_damaged_weights_fail_at_load_with_the_folder_named(clip_copy: Path) -> None:
    from transformers import AutoModel

    (clip_copy / "model.safetensors").write_bytes(b"\x00garbage" * 100)
    source = resolve_model(str(clip_copy))  # looks complete from the outside
    loads = shared_pool().loads
    with pytest.raises(ModelUnavailableError) as e:
        load_model(source, AutoModel, CPU)
    assert str(clip_copy) in str(e.value) and "AutoModel" in str(e.value)
    assert shared_pool().loads == loads  # nothing half-loaded was kept


def test_wrong_model_class_is_a_clear_error(tiny_clip: Path) -> None:
    from transformers import AutoModelForCausalLM

    with pytest.raises(ModelUnavailableError, match="cannot be loaded as AutoModelForCausalLM"):
        load_model(resolve_model(str(tiny_clip)), AutoModelForCausalLM, CPU)


def test_missing_processor_is_a_clear_error(clip_copy: Path) -> None:
    from transformers import AutoImageProcessor

    (clip_copy / "preprocessor_config.json").unlink()
    with pytest.raises(ModelUnavailableError, match="AutoImageProcessor") as e:
        load_processor(resolve_model(str(clip_copy)), AutoImageProcessor)
    assert "preprocessor_config.json" in str(e.value)


# -- hub ids and the cache -----------------------------------------------------------------------------------


def test_hf_home_and_hub_cache_are_read_at_call_time(tmp_path: Path) -> None:
    assert hf_cache_dir({"HF_HOME": str(tmp_path)}) == tmp_path / "hub"
    assert hf_cache_dir({"HF_HOME": str(tmp_path), "HF_HUB_CACHE": str(tmp_path / "c")}) == tmp_path / "c"
    assert hf_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "huggingface" / "hub"
    assert is_offline({"HF_HUB_OFFLINE": "1"}) and is_offline({"TRANSFORMERS_OFFLINE": "true"})
    assert not is_offline({"HF_HUB_OFFLINE": "0"}) and not is_offline({})


def test_offline_hub_id_not_cached_is_one_clear_error(hf_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError) as e:
        resolve_model("openai/clip-vit-base-patch32")
    text = str(e.value)
    assert "'openai/clip-vit-base-patch32'" in text
    assert str(hf_home / "hub") in text  # where it looked
    assert "HF_HUB_OFFLINE is set" in text
    for how in (
        "network",
        "HF_HOME",
        "huggingface-cli download openai/clip-vit-base-patch32",
        "local folder",
    ):
        assert how in text
    assert "Traceback" not in text


def test_download_attempt_fails_with_the_same_clear_error(
    hf_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No hub here: the attempt fails fast; with a hub this id does not exist. Either way, one clear error."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "5")
    with pytest.raises(ModelUnavailableError) as e:
        resolve_model("phototag-tests/no-such-model-7f3a")
    text = str(e.value)
    assert "'phototag-tests/no-such-model-7f3a' is not available here" in text
    assert str(hf_home / "hub") in text and "the hub:" in text
    assert "huggingface-cli download phototag-tests/no-such-model-7f3a" in text


def test_hub_id_found_in_the_cache_offline(
    tiny_clip: Path, hf_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = put_in_hf_cache(tiny_clip, hf_home, "tiny-org/tiny-clip", commit)
    source = resolve_model("tiny-org/tiny-clip")
    assert source == ModelSource("tiny-org/tiny-clip", snapshot, commit)
    assert load_config(source).model_type == "clip"


def test_incomplete_cache_entry_offline_is_a_clear_error(
    tiny_clip: Path, hf_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copyfile(tiny_clip / "config.json", partial / "config.json")  # an interrupted download
    put_in_hf_cache(partial, hf_home, "tiny-org/partial")
    with pytest.raises(ModelUnavailableError, match="no weights") as e:
        resolve_model("tiny-org/partial")
    assert "tiny-org/partial" in str(e.value)


def test_lazy_source_remembers_a_failure_then_retries(tmp_path: Path) -> None:
    now = [0.0]
    folder = tmp_path / "later"
    lazy = LazySource(str(folder), retry_after=60, clock=lambda: now[0])
    assert lazy.peek() is None
    assert lazy.revision_or_unresolved == "unresolved"
    loading = LazySource(str(folder), retry_after=60, clock=lambda: now[0])
    with pytest.raises(ModelUnavailableError):
        loading.get()
    build_tiny_vit_classifier(folder)
    now[0] = 30.0
    assert lazy.peek() is None  # still the remembered miss: no lookup per file
    with pytest.raises(ModelUnavailableError):  # the same for loading
        loading.get()
    now[0] = 61.0
    assert loading.get().path == folder.resolve()
    found = lazy.peek()
    assert found is not None and found.path == folder.resolve()
    assert lazy.revision_or_unresolved.startswith("local-")


def test_fingerprint_and_model_info_never_download(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """peek() (what fingerprint() and model_info() use) looks only at folders and the cache, even when the hub
    may be used: a daemon's start-up and `doctor --no-load` stay offline and fast."""
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    calls: list[dict[str, object]] = []
    real = huggingface_hub.snapshot_download

    def recording(*args: object, **kwargs: object) -> str:
        calls.append(kwargs)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(huggingface_hub, "snapshot_download", recording)
    lazy = LazySource("tiny-org/not-cached-anywhere")
    assert lazy.peek() is None
    assert lazy.revision_or_unresolved == "unresolved"
    assert calls and all(c.get("local_files_only") is True for c in calls)


# -- loading and sharing -------------------------------------------------------------------------------------


def test_one_load_per_model_device_and_dtype(tiny_clip: Path) -> None:
    from transformers import AutoModel

    shared_pool().clear()
    source = resolve_model(str(tiny_clip))
    loads = shared_pool().loads
    first = load_model(source, AutoModel, CPU)
    second = load_model(source, AutoModel, Device("cpu", dtype="float32", threads=2))
    assert first is second and shared_pool().loads == loads + 1
    assert not first.training and next(first.parameters()).dtype == torch.float32
    half = load_model(source, AutoModel, Device("cpu", dtype="bfloat16"))
    assert half is not first and next(half.parameters()).dtype == torch.bfloat16
    assert shared_pool().loads == loads + 2
    for device in (CPU, CPU, Device("cpu", dtype="bfloat16")):
        release_model(source, AutoModel, device)
    assert all(e.users == 0 for e in shared_pool()._entries.values())


def test_processor_and_config_are_cached(tiny_vit: Path) -> None:
    from transformers import AutoImageProcessor

    source = resolve_model(str(tiny_vit))
    assert load_processor(source, AutoImageProcessor) is load_processor(source, AutoImageProcessor)
    assert load_config(source) is load_config(source)
    assert load_config(source).id2label[2] == "espresso"
    assert processor_input_size(source) == 32
    assert processor_input_size(None, 224) == 224


def test_dtype_choice() -> None:
    assert torch_dtype(Device("cpu", dtype="auto")) == torch.float32
    assert torch_dtype(Device("cuda", 0, dtype="auto")) == torch.float16
    assert torch_dtype(Device("cuda", 0, dtype="bfloat16")) == torch.bfloat16
    assert torch_dtype(Device("cpu", dtype="float16")) == torch.float16
    with pytest.raises(ValueError, match="unknown dtype"):
        torch_dtype(Device("cpu", dtype="int3"))
