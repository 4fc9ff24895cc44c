"""Where the work runs: the device, the precision it computes well, its CPU threads.

Every command (train, predict, pretrain, bench) sets itself up through these few functions, so
"auto" means the same thing everywhere:
  resolve_device     "auto" -> cuda when PyTorch sees a GPU, else cpu
  resolve_precision  "auto" -> bf16 where the device computes it natively (a GPU that has it;
                     AVX512-BF16 or AMX on a CPU), else fp16 on a GPU and fp32 on a CPU
  set_threads        0 -> the cores that are idle right now, measured: PyTorch's default (one
                     thread per core) waits at every operation for a thread the kernel has
                     descheduled when another process holds a core (README, Performance)

Left out: choosing among several GPUs (torchrun's LOCAL_RANK does that: distributed.py), NUMA.
"""
import os
import time
from pathlib import Path

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# tests set this to run the fp16 + GradScaler path on CPU (torch's CPU fp16 autocast): it is otherwise
# only taken on CUDA, and no GPU may be at hand to test it
ALLOW_CPU_FP16 = os.environ.get("MINIBERT_ALLOW_CPU_FP16") == "1"


class PrecisionError(ValueError):
    """A precision the device cannot use; the message says which to use instead."""


def resolve_device(name="auto"):
    """'auto' -> cuda if PyTorch sees a GPU, else cpu; anything else as torch.device reads it."""
    return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)


def native_bf16(device):
    """Does the device compute bf16 natively (a GPU that has it; AVX512-BF16 or AMX on a CPU)?"""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:  # not Linux: say no, and fp32 it is
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision, device):
    """-> (name, dtype). 'auto' -> bf16 where the device computes it natively, else fp16 on CUDA and
    fp32 on CPU. On CPUs with bf16 matmuls the choice was measured: the fine-tuning bench gave bf16
    the same test F1 as fp32 within the seed spread, over 3 seeds (README, Performance)."""
    p = precision
    if p == "auto":
        p = "bf16" if native_bf16(device) else "fp16" if device.type == "cuda" else "fp32"
    if p == "fp16" and device.type != "cuda" and not ALLOW_CPU_FP16:
        raise PrecisionError("fp16 needs CUDA (and a GradScaler); on CPU use --precision bf16 or fp32")
    return p, DTYPES[p]


def idle_cores(seconds=0.2):
    """How many cores are idle right now: the idle share of /proc/stat's CPU time over a short
    window, times the cores this process may use (None where /proc/stat is not there)."""
    def idle_and_total():
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return fields[3] + fields[4], sum(fields)  # idle + iowait, all
    try:
        idle0, total0 = idle_and_total()
        time.sleep(seconds)
        idle1, total1 = idle_and_total()
    except (OSError, ValueError, IndexError):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return round(cores * (idle1 - idle0) / max(1, total1 - total0))


def set_threads(requested=0):
    """torch's CPU threads: `requested`, or for 0 the cores idle right now (at least one). Returns
    the number set. Measured on this project's 2-core machines: with another CPU-bound process
    running, two threads took the demo ~7x longer than one (README, Performance)."""
    if not requested:
        idle = idle_cores()  # 0 on a machine whose every core is busy: then one thread, not one per core
        requested = max(1, torch.get_num_threads() if idle is None else idle)
    torch.set_num_threads(requested)
    return requested
