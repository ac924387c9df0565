"""The hardware probe on this machine, and device/dtype/thread choice on made-up machines."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pytest
import torch

from phototag.errors import ConfigError
from phototag.hardware import (
    GPU,
    Hardware,
    apply_threads,
    choose_device,
    describe,
    probe,
    ram_mb,
    usable_cores,
)
from phototag.types import Device, Needs

H100 = GPU(index=0, name="NVIDIA H100 80GB HBM3", total_mb=81_559, free_mb=71_680, bf16=True)
T4 = GPU(index=1, name="Tesla T4", total_mb=15_360, free_mb=2_048, bf16=False)

CPU_BOX = Hardware(cpu_cores=8, ram_total_mb=16_000, ram_available_mb=12_000, torch="2.13.0+cpu")
ONE_GPU = Hardware(
    cpu_cores=16, ram_total_mb=128_000, ram_available_mb=120_000, gpus=(H100,), torch="2.13.0", cuda="12.8"
)
SMALL_GPU = Hardware(
    cpu_cores=4,
    ram_total_mb=32_000,
    ram_available_mb=30_000,
    gpus=(GPU(0, "Tesla T4", 15_360, 2_048),),
    torch="2.13.0",
    cuda="12.8",
)
TWO_GPUS = Hardware(
    cpu_cores=16,
    ram_total_mb=128_000,
    ram_available_mb=120_000,
    gpus=(GPU(0, "Tesla T4", 15_360, 3_000), GPU(1, "NVIDIA A100", 40_960, 30_000, bf16=True)),
    torch="2.13.0",
    cuda="12.8",
)
MAC = Hardware(cpu_cores=10, ram_total_mb=32_000, ram_available_mb=20_000, mps=True, torch="2.13.0")

ANY = Needs(min_ram_mb=1_000, min_vram_mb=4_000)


# -- auto ---------------------------------------------------------------------------------------------------


def test_auto_without_gpu_uses_cpu() -> None:
    d = choose_device(ANY, "auto", CPU_BOX)
    assert (d.kind, d.index, d.dtype, d.threads) == ("cpu", None, "float32", 7)
    assert d.torch_device == "cpu"
    assert d.reason.startswith("auto: no CUDA GPU, no MPS; using cpu")


def test_auto_with_a_gpu_that_fits() -> None:
    d = choose_device(ANY, "auto", ONE_GPU)
    assert (d.kind, d.index, d.dtype, d.threads) == ("cuda", 0, "bfloat16", 2)
    assert d.torch_device == "cuda:0"
    assert d.reason.startswith("auto: cuda:0 NVIDIA H100 80GB HBM3 has 70.0 GB free")


def test_auto_with_too_little_vram_uses_cpu_and_says_why() -> None:
    d = choose_device(ANY, "auto", SMALL_GPU)
    assert d.kind == "cpu" and d.dtype == "float32"
    assert "no GPU has 3.9 GB free (cuda:0 has 2.0 GB)" in d.reason
    assert "using cpu" in d.reason


def test_auto_picks_the_gpu_with_most_free_memory() -> None:
    d = choose_device(Needs(min_vram_mb=1_000), "auto", TWO_GPUS)
    assert (d.kind, d.index) == ("cuda", 1)
    assert "cuda:1 NVIDIA A100 has 29.3 GB free" in d.reason


def test_auto_follows_the_analyzers_device_order() -> None:
    cpu_only = Needs(devices=("cpu",))
    assert choose_device(cpu_only, "auto", ONE_GPU).kind == "cpu"
    mac_and_gpu = Hardware(**{**ONE_GPU.__dict__, "mps": True})
    assert choose_device(Needs(devices=("mps", "cuda", "cpu")), "auto", mac_and_gpu).kind == "mps"
    assert choose_device(Needs(), "auto", mac_and_gpu).kind == "cuda"


def test_auto_on_a_mac_uses_mps() -> None:
    d = choose_device(ANY, "auto", MAC)
    assert (d.kind, d.dtype, d.threads) == ("mps", "float16", 2)
    assert d.reason.startswith("auto: Apple MPS is available")


def test_auto_gpu_only_analyzer_without_gpu_tries_cpu_with_reason() -> None:
    d = choose_device(Needs(devices=("cuda",)), "auto", CPU_BOX)
    assert d.kind == "cpu"
    assert "supports only cuda" in d.reason


# -- explicit preferences -----------------------------------------------------------------------------------


def test_cuda_index_beyond_the_gpus_falls_back(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="phototag.hardware"):
        d = choose_device(ANY, "cuda:1", ONE_GPU)
    assert d.kind == "cpu" and d.dtype == "float32"
    assert d.reason.startswith("cuda:1 requested but only 1 GPU found (cuda:0..cuda:0); using cpu")
    assert "cuda:1 requested but only 1 GPU found" in caplog.text


def test_strict_raises_instead_of_falling_back() -> None:
    with pytest.raises(ConfigError, match="cuda:1 requested but only 1 GPU found") as err:
        choose_device(ANY, "cuda:1", ONE_GPU, strict=True)
    assert err.value.key == "device"
    with pytest.raises(ConfigError, match=re.escape("has only 2.0 GB free and the model needs 3.9 GB")):
        choose_device(ANY, "cuda:0", SMALL_GPU, strict=True)
    with pytest.raises(ConfigError, match="MPS is not available"):
        choose_device(ANY, "mps", CPU_BOX, strict=True)
    # strict changes nothing when the request can be met
    assert choose_device(ANY, "cuda:0", ONE_GPU, strict=True).torch_device == "cuda:0"


def test_explicit_gpu_with_too_little_vram_falls_back() -> None:
    d = choose_device(ANY, "cuda:0", SMALL_GPU)
    assert d.kind == "cpu"
    assert "cuda:0 Tesla T4 has only 2.0 GB free and the model needs 3.9 GB; using cpu" in d.reason


def test_cuda_on_a_cpu_build_of_torch() -> None:
    d = choose_device(ANY, "cuda", CPU_BOX)
    assert d.kind == "cpu"
    assert "cuda requested but torch 2.13.0+cpu is a CPU build; using cpu" in d.reason
    no_torch = Hardware(cpu_cores=2, ram_total_mb=4_000, ram_available_mb=3_000)
    assert "torch is not installed" in choose_device(ANY, "cuda", no_torch).reason


def test_plain_cuda_picks_the_gpu_with_most_free_memory_that_fits() -> None:
    d = choose_device(Needs(min_vram_mb=2_500), "cuda", TWO_GPUS)
    assert d.torch_device == "cuda:1"
    d = choose_device(Needs(min_vram_mb=2_500), "cuda:0", TWO_GPUS)
    assert d.torch_device == "cuda:0" and d.dtype == "float16"  # a T4 has no bfloat16
    assert d.reason.startswith("cuda:0 requested: cuda:0 Tesla T4 has 2.9 GB free")


def test_mps_requested_and_missing() -> None:
    d = choose_device(ANY, "mps", CPU_BOX)
    assert d.kind == "cpu" and "mps requested but MPS is not available here; using cpu" in d.reason
    assert choose_device(ANY, "mps", MAC).kind == "mps"


def test_cpu_only_analyzer_runs_on_cpu_even_when_strict() -> None:
    d = choose_device(Needs(devices=("cpu",)), "cuda:0", ONE_GPU, strict=True)
    assert d.kind == "cpu"
    assert "this analyzer runs only on cpu" in d.reason


def test_cpu_requested_on_a_gpu_machine() -> None:
    d = choose_device(ANY, "cpu", ONE_GPU)
    assert (d.kind, d.dtype, d.threads) == ("cpu", "float32", 15)
    assert d.reason.startswith("cpu requested: cpu with 16 usable cores")


def test_low_ram_is_said_in_the_reason() -> None:
    d = choose_device(Needs(min_ram_mb=14_000), "auto", CPU_BOX)
    assert d.kind == "cpu"
    assert "only 11.7 GB RAM available, 13.7 GB needed" in d.reason


# -- dtype and threads --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hardware", "preference", "requested", "expected", "words"),
    [
        (ONE_GPU, "auto", "auto", "bfloat16", "auto: the GPU supports it"),
        (SMALL_GPU, "cuda:0", "auto", "float32", "auto on cpu"),  # fell back to cpu: too little VRAM
        (TWO_GPUS, "cuda:0", "auto", "float16", "auto on cuda"),
        (MAC, "auto", "auto", "float16", "auto on mps"),
        (CPU_BOX, "auto", "auto", "float32", "auto on cpu"),
        (CPU_BOX, "auto", "float16", "float32", "float16 requested but it is slow or unsupported on cpu"),
        (CPU_BOX, "auto", "bfloat16", "bfloat16", "configured"),
        (ONE_GPU, "auto", "float32", "float32", "configured"),
        (ONE_GPU, "auto", "float16", "float16", "configured"),
        (TWO_GPUS, "cuda:0", "bfloat16", "float16", "Tesla T4 does not support it"),
    ],
)
def test_dtype_rules(hardware: Hardware, preference: str, requested: str, expected: str, words: str) -> None:
    d = choose_device(Needs(min_vram_mb=2_500), preference, hardware, dtype=requested)
    assert d.dtype == expected
    assert words in d.reason


@pytest.mark.parametrize(
    ("cores", "preference", "requested", "expected"),
    [
        (1, "cpu", 0, 1),
        (2, "cpu", 0, 2),
        (4, "cpu", 0, 4),
        (8, "cpu", 0, 7),
        (64, "cpu", 0, 63),
        (16, "cuda", 0, 2),
        (1, "cuda", 0, 1),
        (10, "mps", 0, 2),
        (8, "cpu", 3, 3),
        (2, "cpu", 6, 6),  # respected, with a note
        (16, "cuda", 4, 4),
    ],
)
def test_thread_rules(cores: int, preference: str, requested: int, expected: int) -> None:
    hw = Hardware(cores, 64_000, 60_000, gpus=(H100,), mps=True, torch="2.13.0", cuda="12.8")
    d = choose_device(Needs(), preference, hw, threads=requested)
    assert d.kind == preference
    assert d.threads == expected
    assert f"{expected} " in d.reason
    assert ("more than the 2 usable cores" in d.reason) == (requested > cores)


# -- probe, cgroups, describe, apply ------------------------------------------------------------------------


def test_real_probe_on_this_machine() -> None:
    hw = probe(refresh=True)
    assert 1 <= hw.cpu_cores <= (os.cpu_count() or 1)
    assert hw.ram_total_mb > 0 and 0 < hw.ram_available_mb <= hw.ram_total_mb
    assert hw.torch == torch.__version__
    expected_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert len(hw.gpus) == expected_gpus  # () on the CPU-only build used here
    assert hw.cuda == torch.version.cuda
    for gpu in hw.gpus:
        assert 0 < gpu.free_mb <= gpu.total_mb
    assert probe() is hw  # cached per process
    assert probe(refresh=True) is not hw


def fake_cgroup(tmp_path: Path, proc: str, files: dict[str, str]) -> tuple[Path, Path]:
    root, proc_self = tmp_path / "cgroup", tmp_path / "proc"
    proc_self.mkdir()
    (proc_self / "cgroup").write_text(proc)
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root, proc_self


def test_cgroup_v2_cpu_quota_and_memory_limit(tmp_path: Path) -> None:
    root, proc_self = fake_cgroup(
        tmp_path,
        "0::/system.slice/phototag.service\n",
        {
            "system.slice/phototag.service/cpu.max": "150000 100000\n",  # CPUQuota=150%
            "system.slice/cpu.max": "max 100000\n",
            "system.slice/phototag.service/memory.max": str(2 * 2**30),
            "system.slice/phototag.service/memory.current": str(2**30),
            "system.slice/phototag.service/memory.stat": f"anon 1\ninactive_file {256 * 2**20}\n",
            "system.slice/memory.max": "max\n",
        },
    )
    assert usable_cores(root, proc_self) == min(2, len(os.sched_getaffinity(0)))
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16384000 kB\nMemFree: 1 kB\nMemAvailable:   8192000 kB\n")
    assert ram_mb(meminfo, root, proc_self) == (2048, 1280)  # 2 GiB limit, 1 GiB used less 256 MiB cache


def test_cgroup_parent_slice_limit_applies(tmp_path: Path) -> None:
    root, proc_self = fake_cgroup(
        tmp_path,
        "0::/user.slice/app\n",
        {"user.slice/cpu.max": "100000 100000", "user.slice/memory.max": str(512 * 2**20)},
    )
    assert usable_cores(root, proc_self) == 1
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 16384000 kB\nMemAvailable: 8192000 kB\n")
    assert ram_mb(meminfo, root, proc_self) == (512, 512)


def test_cgroup_v1_and_unlimited(tmp_path: Path) -> None:
    root, proc_self = fake_cgroup(
        tmp_path,
        "4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n0::/\n",
        {
            "cpu/docker/abc/cpu.cfs_quota_us": "-1",
            "cpu/docker/abc/cpu.cfs_period_us": "100000",
            "memory/docker/abc/memory.limit_in_bytes": "9223372036854771712",  # v1's "no limit"
        },
    )
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 16384000 kB\nMemAvailable: 8192000 kB\n")
    assert usable_cores(root, proc_self) == len(os.sched_getaffinity(0))
    assert ram_mb(meminfo, root, proc_self) == (16000, 8000)
    (root / "cpu/docker/abc/cpu.cfs_quota_us").write_text("100000")
    (root / "memory/docker/abc/memory.limit_in_bytes").write_text(str(1024 * 2**20))
    (root / "memory/docker/abc/memory.usage_in_bytes").write_text(str(100 * 2**20))
    assert usable_cores(root, proc_self) == 1
    assert ram_mb(meminfo, root, proc_self) == (1024, 924)


def test_describe_for_doctor() -> None:
    lines = describe(ONE_GPU)
    assert lines[0] == "CPU: 16 usable cores"
    assert lines[1] == "RAM: 117.2 GB available of 125.0 GB"
    assert "torch: 2.13.0 (CUDA 12.8)" in lines
    assert "GPU cuda:0: NVIDIA H100 80GB HBM3, 70.0 GB free of 79.6 GB, bfloat16" in lines
    cpu = describe(CPU_BOX)
    assert "GPU: none found (this torch has no CUDA support)" in cpu
    assert "MPS: not available" in cpu
    assert "torch: not installed (pip install torch)" in describe(Hardware(1, 1_000, 500))


def test_apply_threads_sets_torch_threads() -> None:
    before = torch.get_num_threads()
    try:
        apply_threads(Device("cpu", threads=1))
        assert torch.get_num_threads() == 1
        apply_threads(Device("cpu", threads=2))  # the second call must not fail on the inter-op pool
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
