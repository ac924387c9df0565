"""The one shared hardware probe, and the pure choice of device, dtype and threads for a model.

:func:`probe` looks at the machine once per process (CPU cores this process may use, RAM, CUDA GPUs with their
free memory, Apple MPS, the torch build) and never fails: without torch or a GPU it reports none.
:func:`choose_device` takes the probe's result as an argument, so it is tested with made-up machines.

Why one module of ~470 lines: the probe (cores, cgroups, RAM, CUDA, MPS) and the pure device choice read the
same Hardware record; the choice is pure and tested apart, the probe is the only I/O.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from .errors import ConfigError
from .types import Device, Needs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GPU:
    """A CUDA device as torch numbers it (after ``CUDA_VISIBLE_DEVICES``).

    ``bf16``: the GPU computes in bfloat16 natively (compute capability >= 8.0)."""

    index: int
    name: str
    total_mb: int
    free_mb: int
    bf16: bool = False


@dataclass(frozen=True)
class Hardware:
    """What this process may use. ``cpu_cores`` counts usable cores (affinity and cgroup CPU quota);
    RAM figures respect a cgroup memory limit (systemd ``MemoryMax=``, containers)."""

    cpu_cores: int
    ram_total_mb: int
    ram_available_mb: int
    gpus: tuple[GPU, ...] = ()
    mps: bool = False
    torch: str | None = None
    """torch version, or None when torch is not installed."""
    cuda: str | None = None
    """CUDA (or ROCm ``hip ...``) version torch was built with, or None for a CPU build."""


# -- probing -------------------------------------------------------------------------------------------------

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF = Path("/proc/self")

_lock = threading.Lock()
_cached: Hardware | None = None


def probe(refresh: bool = False) -> Hardware:
    """The hardware, probed once per process; ``refresh=True`` probes again (free GPU memory and available RAM
    change as models load). Never raises: a part that cannot be probed is reported as absent."""
    global _cached
    with _lock:
        if _cached is None or refresh:
            _cached = _probe()
        return _cached


def _probe() -> Hardware:
    total, available = ram_mb()
    gpus, mps, torch_version, cuda = _probe_torch()
    return Hardware(
        cpu_cores=usable_cores(),
        ram_total_mb=total,
        ram_available_mb=available,
        gpus=gpus,
        mps=mps,
        torch=torch_version,
        cuda=cuda,
    )


def usable_cores(cgroup_root: Path = CGROUP_ROOT, proc_self: Path = PROC_SELF) -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota (docker ``--cpus``,
    systemd ``CPUQuota=``), which affinity does not show."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS has no affinity API
        cores = os.cpu_count() or 1
    quota = _cgroup_cpu_quota(cgroup_root, proc_self)
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def ram_mb(
    meminfo: Path = Path("/proc/meminfo"), cgroup_root: Path = CGROUP_ROOT, proc_self: Path = PROC_SELF
) -> tuple[int, int]:
    """``(total, available)`` RAM in MB, capped by a cgroup memory limit (systemd ``MemoryMax=``, docker
    ``--memory``)."""
    total = available = 0
    try:
        fields = {}
        for line in meminfo.read_text().splitlines():
            key, _, rest = line.partition(":")
            fields[key] = int(rest.split()[0]) // 1024  # kB -> MB
        total = fields.get("MemTotal", 0)
        available = fields.get("MemAvailable", fields.get("MemFree", 0))
    except (OSError, ValueError, IndexError):
        try:
            page = os.sysconf("SC_PAGE_SIZE")
            total = os.sysconf("SC_PHYS_PAGES") * page // 2**20
            available = os.sysconf("SC_AVPHYS_PAGES") * page // 2**20
        except (ValueError, OSError, AttributeError):  # macOS lacks SC_AVPHYS_PAGES
            available = total
    limit = _cgroup_memory(cgroup_root, proc_self)
    if limit is not None:
        limit_mb, free_mb = limit
        total = min(total, limit_mb) if total else limit_mb
        available = min(available, free_mb) if available else free_mb
    return total, available


# cgroup files: (v2, v1). v1 keeps each controller in its own hierarchy (/sys/fs/cgroup/<controller>/...).
_UNLIMITED = 2**60  # cgroup v1 writes "no limit" as a huge page-aligned number


def _cgroup_dirs(cgroup_root: Path, proc_self: Path, controller: str) -> list[tuple[Path, int]]:
    """``(directory, version)`` for this process's cgroup and every parent up to the root, for cgroup v2 and
    for the v1 hierarchy of ``controller``; a limit on a parent (a systemd slice) applies too."""
    try:
        lines = (proc_self / "cgroup").read_text().splitlines()
    except OSError:
        return []
    found: list[tuple[Path, int]] = []
    for line in lines:
        hid, _, rest = line.partition(":")
        controllers, _, rel = rest.partition(":")
        if hid == "0" and not controllers:
            version, base = 2, cgroup_root
        elif controller in controllers.split(","):
            version, base = 1, cgroup_root / controller
        else:
            continue
        here = base / rel.lstrip("/")
        found += [(d, version) for d in (here, *here.parents) if d == base or base in d.parents]
    return found


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _cgroup_cpu_quota(cgroup_root: Path, proc_self: Path) -> float | None:
    """The tightest CPU quota, in cores, of this cgroup and its parents; None without one."""
    quotas = []
    for d, version in _cgroup_dirs(cgroup_root, proc_self, "cpu"):
        if version == 2:
            quota, _, period = (_read(d / "cpu.max") or "max").partition(" ")
        else:
            quota, period = _read(d / "cpu.cfs_quota_us") or "-1", _read(d / "cpu.cfs_period_us") or ""
        if quota.isdigit() and period.isdigit() and int(period) > 0:
            quotas.append(int(quota) / int(period))
    return min(quotas) if quotas else None


def _cgroup_memory(cgroup_root: Path, proc_self: Path) -> tuple[int, int] | None:
    """``(limit, free)`` in MB for the tightest memory limit of this cgroup and its parents; None without one.
    Free is the limit minus usage, not counting inactive page cache (the kernel reclaims it first)."""
    best: tuple[int, int] | None = None
    for d, version in _cgroup_dirs(cgroup_root, proc_self, "memory"):
        names = ("memory.max", "memory.current", "inactive_file")
        if version == 1:
            names = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
        raw = _read(d / names[0])
        if raw is None or not raw.isdigit() or int(raw) >= _UNLIMITED:
            continue
        used = int(_read(d / names[1]) or 0)
        for line in (_read(d / "memory.stat") or "").splitlines():
            key, _, value = line.partition(" ")
            if key == names[2] and value.isdigit():
                used = max(0, used - int(value))
        limit_mb, free_mb = int(raw) // 2**20, max(0, int(raw) - used) // 2**20
        if best is None or free_mb < best[1]:
            best = (limit_mb, free_mb)
    return best


def _probe_torch() -> tuple[tuple[GPU, ...], bool, str | None, str | None]:
    try:
        import torch
    except ImportError:
        return (), False, None, None
    version = str(torch.__version__)
    cuda = torch.version.cuda or (f"hip {torch.version.hip}" if getattr(torch.version, "hip", None) else None)
    gpus: list[GPU] = []
    try:
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception as e:  # a broken driver must not stop phototag from running on the CPU
        log.warning("CUDA is present but unusable (%s); using the CPU", e)
        count = 0
    for i in range(count):
        try:
            gpus.append(_probe_gpu(torch, i))
        except Exception as e:
            log.warning("cannot query cuda:%d (%s); leaving it out", i, e)
    try:
        mps = bool(torch.backends.mps.is_available())
    except Exception:
        mps = False
    return tuple(gpus), mps, version, cuda


def _probe_gpu(torch: Any, i: int) -> GPU:
    props = torch.cuda.get_device_properties(i)
    # mem_get_info counts what other processes hold too; it creates a CUDA context on the device (the worker
    # needs one anyway to run a model there)
    free, total = torch.cuda.mem_get_info(i)
    return GPU(
        index=i,
        name=str(props.name),
        total_mb=int(total) // 2**20,
        free_mb=int(free) // 2**20,
        bf16=int(props.major) >= 8,
    )


# -- choosing ------------------------------------------------------------------------------------------------


def choose_device(
    needs: Needs,
    preference: str,
    hardware: Hardware,
    dtype: str = "auto",
    threads: int = 0,
    strict: bool = False,
) -> Device:
    """Where a model with ``needs`` runs, given the configured ``preference`` and the probed ``hardware``.

    ``preference`` (already validated by ``config.check_device``):

    - ``auto``: the first kind in ``needs.devices`` that is available: for ``cuda`` the GPU with the most free
      memory that has ``needs.min_vram_mb`` free; for ``mps`` Apple's GPU; else the CPU.
    - ``cuda`` (the GPU with the most free memory), ``cuda:N``, ``mps``, ``cpu``: that device. If the
      hardware cannot satisfy it (no such GPU, too little free VRAM, no MPS) the model falls back to the CPU
      with the reason logged and in ``Device.reason``; with ``strict=True`` a :class:`ConfigError` is raised
      instead. An analyzer that cannot run on the requested kind (not in ``needs.devices``) runs on the CPU
      even when strict: that is the plugin's limit, not a missing device.

    ``dtype``: ``auto`` picks bfloat16 on CUDA GPUs that support it (compute capability >= 8.0), else
    float16 on CUDA and MPS, float32 on the CPU. An explicit dtype is kept where it works; float16 on the CPU
    becomes float32 (slow or unsupported there), bfloat16 on a GPU without it becomes float16.

    ``threads`` (torch intra-op threads): a positive value is used as given. ``0`` picks from the usable
    cores: on the CPU all of them on machines with up to 4 cores, one fewer above that (decoding, exiftool
    and the watcher need a core); on a GPU or MPS 2 (or 1 on a single core), since the CPU only feeds the
    device. A busy neighbour can make multi-threaded torch much slower: set ``threads`` to override.

    ``needs.min_ram_mb`` above the available RAM does not change the choice but is said in the reason.
    """
    pref = (preference or "auto").strip().lower()
    kind, _, index = pref.partition(":")
    notes: list[str] = []

    if kind == "auto":
        picked, reason = _auto(needs, hardware)
    else:
        picked, problem = _explicit(kind, index, needs, hardware)
        if picked is not None:
            reason = f"{pref} requested: {_describe_pick(picked, hardware)}"
        elif problem.plugin_limit:  # the analyzer's limit, not a missing device: fall back even if strict
            reason = f"{pref} requested but {problem.text}; using cpu"
            log.info("%s", reason)
        else:
            if strict:
                raise ConfigError(
                    f"{pref} requested but {problem.text}; set device to auto or cpu, or free the device",
                    key="device",
                )
            reason = f"{pref} requested but {problem.text}; using cpu"
            log.warning("%s", reason)
    chosen_kind, chosen_index = picked if picked is not None else ("cpu", None)

    gpu = _gpu(hardware, chosen_index) if chosen_kind == "cuda" else None
    final_dtype, dtype_note = _choose_dtype(chosen_kind, gpu, dtype)
    notes.append(dtype_note)
    n_threads, thread_note = _choose_threads(chosen_kind, hardware.cpu_cores, threads)
    notes.append(thread_note)
    if hardware.ram_available_mb and needs.min_ram_mb > hardware.ram_available_mb:
        ram_note = f"only {_mb(hardware.ram_available_mb)} RAM available, {_mb(needs.min_ram_mb)} needed"
        notes.append(ram_note)
        log.warning("%s", ram_note)
    return Device(
        kind=chosen_kind,  # type: ignore[arg-type]
        index=chosen_index,
        dtype=final_dtype,
        threads=n_threads,
        reason="; ".join([reason, *notes]),
    )


_Pick = tuple[str, int | None]


class _Problem(NamedTuple):
    text: str = ""
    plugin_limit: bool = False
    """True when the analyzer cannot run on the requested kind (a plugin's limit, not missing hardware)."""


def _auto(needs: Needs, hw: Hardware) -> tuple[_Pick | None, str]:
    skipped: list[str] = []
    for kind in needs.devices:
        if kind == "cuda":
            if not hw.gpus:
                skipped.append("no CUDA GPU")
                continue
            fit = [g for g in hw.gpus if g.free_mb >= needs.min_vram_mb]
            if fit:
                best = max(fit, key=lambda g: (g.free_mb, -g.index))
                return ("cuda", best.index), f"auto: {_describe_pick(('cuda', best.index), hw)}"
            most = max(hw.gpus, key=lambda g: g.free_mb)
            skipped.append(
                f"no GPU has {_mb(needs.min_vram_mb)} free (cuda:{most.index} has {_mb(most.free_mb)})"
            )
        elif kind == "mps":
            if hw.mps:
                return ("mps", None), "auto: Apple MPS is available"
            skipped.append("no MPS")
        elif kind == "cpu":
            why = ", ".join(skipped) or "cpu preferred"
            return ("cpu", None), f"auto: {why}; using cpu"
    why = ", ".join(skipped)
    return None, f"auto: {why}; the analyzer supports only {', '.join(needs.devices)}; trying cpu"


def _explicit(kind: str, index: str, needs: Needs, hw: Hardware) -> tuple[_Pick | None, _Problem]:
    """The requested device, or None and why it cannot be used."""
    if kind == "cpu":
        return ("cpu", None), _Problem()
    if kind not in needs.devices:
        return None, _Problem(f"this analyzer runs only on {', '.join(needs.devices)}", plugin_limit=True)
    if kind == "mps":
        return (("mps", None), _Problem()) if hw.mps else (None, _Problem("MPS is not available here"))
    if kind != "cuda":
        return None, _Problem(f"{kind!r} is not a device kind (auto, cpu, cuda, cuda:N, mps)")
    if not hw.gpus:
        if hw.torch is None:
            return None, _Problem("torch is not installed")
        build = f"torch {hw.torch} is a CPU build" if not hw.cuda else "no CUDA GPU was found"
        return None, _Problem(build)
    if index:
        gpu = _gpu(hw, int(index))
        if gpu is None:
            n = len(hw.gpus)
            return None, _Problem(f"only {n} GPU{'s' if n != 1 else ''} found (cuda:0..cuda:{n - 1})")
        candidates = [gpu]
    else:
        candidates = sorted(hw.gpus, key=lambda g: (-g.free_mb, g.index))
    for gpu in candidates:
        if gpu.free_mb >= needs.min_vram_mb:
            return ("cuda", gpu.index), _Problem()
    gpu = candidates[0]
    return None, _Problem(
        f"cuda:{gpu.index} {gpu.name} has only {_mb(gpu.free_mb)} free and the model needs "
        f"{_mb(needs.min_vram_mb)}"
    )


def _describe_pick(pick: _Pick, hw: Hardware) -> str:
    kind, index = pick
    if kind == "cuda":
        gpu = _gpu(hw, index)
        assert gpu is not None
        return f"cuda:{gpu.index} {gpu.name} has {_mb(gpu.free_mb)} free"
    if kind == "mps":
        return "Apple MPS"
    return f"cpu with {hw.cpu_cores} usable core{'s' if hw.cpu_cores != 1 else ''}"


def _gpu(hw: Hardware, index: int | None) -> GPU | None:
    return next((g for g in hw.gpus if g.index == index), None)


def _choose_dtype(kind: str, gpu: GPU | None, requested: str) -> tuple[str, str]:
    """``(dtype, words)``."""
    if requested == "auto":
        if kind == "cuda" and gpu is not None and gpu.bf16:
            return "bfloat16", "bfloat16 (auto: the GPU supports it)"
        if kind in ("cuda", "mps"):
            return "float16", f"float16 (auto on {kind})"
        return "float32", "float32 (auto on cpu)"
    if kind == "cpu" and requested == "float16":
        return "float32", "float16 requested but it is slow or unsupported on cpu; using float32"
    if kind == "cuda" and requested == "bfloat16" and gpu is not None and not gpu.bf16:
        return "float16", f"bfloat16 requested but {gpu.name} does not support it; using float16"
    return requested, f"{requested} (configured)"


def _choose_threads(kind: str, cores: int, requested: int) -> tuple[int, str]:
    cores = max(1, cores)
    if requested > 0:
        over = f" (more than the {cores} usable cores)" if requested > cores else ""
        return requested, f"{requested} thread{'s' if requested != 1 else ''} (configured){over}"
    if kind == "cpu":
        n = cores if cores <= 4 else cores - 1
        return n, f"{n} thread{'s' if n != 1 else ''} of {cores} cores"
    n = min(2, cores)
    return n, f"{n} CPU thread{'s' if n != 1 else ''} to feed the {kind} device"


def _mb(mb: int) -> str:
    return f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb} MB"


# -- applying and describing ---------------------------------------------------------------------------------

_interop_done = False


def apply_threads(device: Device) -> None:
    """Set torch's intra-op thread count for ``device`` (process-wide: the last call wins). The inter-op pool
    can be sized only once per process, before any parallel work; that is done on the first call only."""
    global _interop_done
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(max(1, device.threads))
    with _lock:
        if _interop_done:
            return
        _interop_done = True
        try:
            # phototag runs no inter-op parallel graphs; a small pool avoids idle threads per core
            torch.set_num_interop_threads(max(1, min(device.threads, 2)))
        except RuntimeError as e:  # parallel work already started (another library set it first)
            log.debug("torch inter-op threads left as they are: %s", e)


def describe(hardware: Hardware) -> list[str]:
    """Human-readable lines for ``phototag doctor``."""
    hw = hardware
    core_s = "s" if hw.cpu_cores != 1 else ""
    lines = [
        f"CPU: {hw.cpu_cores} usable core{core_s}",
        f"RAM: {_mb(hw.ram_available_mb)} available of {_mb(hw.ram_total_mb)}",
    ]
    if hw.torch is None:
        lines.append("torch: not installed (pip install torch)")
    else:
        lines.append(f"torch: {hw.torch} ({'CUDA ' + hw.cuda if hw.cuda else 'CPU build, no CUDA'})")
    for g in hw.gpus:
        bf16 = ", bfloat16" if g.bf16 else ""
        lines.append(f"GPU cuda:{g.index}: {g.name}, {_mb(g.free_mb)} free of {_mb(g.total_mb)}{bf16}")
    if not hw.gpus:
        no_cuda = " (this torch has no CUDA support)" if hw.torch and not hw.cuda else ""
        lines.append(f"GPU: none found{no_cuda}")
    lines.append(f"MPS: {'available' if hw.mps else 'not available'}")
    return lines
