"""Peak memory of a piece of work, on a GPU or on the CPU, with one interface.

On CUDA the caching allocator counts every tensor (``torch.cuda.max_memory_allocated``). On the CPU there is no such
counter, so we read the operating system's: the peak resident set size of the process (``VmHWM`` in
``/proc/self/status``), which Linux lets a process reset by writing 5 to ``/proc/self/clear_refs``. It includes
everything the process holds (weights, Python, the allocator's slack), which is what a user with a fixed amount of
RAM cares about. Elsewhere (macOS, Windows) the CPU peak is unavailable and reported as None.
"""

from __future__ import annotations

from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kb(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_memory(device: torch.device | str = "cpu") -> bool:
    """Start a new peak measurement; False if this platform cannot."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def peak_memory_bytes(device: torch.device | str = "cpu") -> int | None:
    """Peak since the last reset: allocated tensor bytes on CUDA, resident set size on the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    kb = _status_kb("VmHWM")
    return None if kb is None else kb * 1024


def current_memory_bytes(device: torch.device | str = "cpu") -> int | None:
    """Memory in use now, in the same terms as :func:`peak_memory_bytes`."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    kb = _status_kb("VmRSS")
    return None if kb is None else kb * 1024
