"""device.py: what "auto" means for the device, the precision and the CPU threads, the same for
every command. (Precision "auto" on CPU: tests/test_train.py.)"""
import pytest
import torch

from minibert_ner import device as D
from minibert_ner.device import PrecisionError, native_bf16, resolve_device, resolve_precision, set_threads


class FakeProc:
    """Stands in for device.Path: files under /proc with the given texts, read in turn."""

    def __init__(self, *texts):
        self.texts = list(texts)

    def __call__(self, name):
        return self

    def read_text(self):
        if not self.texts:
            raise OSError("no such file")
        return self.texts.pop(0)


@pytest.mark.parametrize("has_gpu, expected", [(False, "cpu"), (True, "cuda")])
def test_auto_device_is_the_gpu_when_pytorch_sees_one(monkeypatch, has_gpu, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: has_gpu)
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu").type == "cpu"  # asked: kept


@pytest.mark.parametrize("flags, native", [("fpu avx512f avx512_bf16 sse", True), ("fpu amx_bf16 amx_tile", True),
                                           ("fpu avx2 avx512f avx512_vnni", False)])
def test_native_bf16_on_cpu_is_read_from_the_cpu_flags(monkeypatch, flags, native):
    monkeypatch.setattr(D, "Path", FakeProc(f"processor : 0\nflags : {flags}\n"))
    assert native_bf16(torch.device("cpu")) is native


def test_without_proc_cpuinfo_bf16_is_not_assumed(monkeypatch):
    monkeypatch.setattr(D, "Path", FakeProc())  # not Linux: the file cannot be read
    assert native_bf16(torch.device("cpu")) is False


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp16")])
def test_auto_precision_on_a_gpu_is_bf16_where_it_has_it_else_fp16(monkeypatch, native, expected):
    monkeypatch.setattr(D, "native_bf16", lambda device: native)
    assert resolve_precision("auto", torch.device("cuda")) == (expected, D.DTYPES[expected])


def test_fp16_on_cpu_is_refused_with_what_to_use_instead(monkeypatch):
    monkeypatch.setattr(D, "ALLOW_CPU_FP16", False)
    with pytest.raises(PrecisionError, match="bf16 or fp32"):
        resolve_precision("fp16", torch.device("cpu"))
    monkeypatch.setattr(D, "ALLOW_CPU_FP16", True)  # the tests' switch to run the GradScaler path on CPU
    assert resolve_precision("fp16", torch.device("cpu")) == ("fp16", torch.float16)


def stat(idle, total):
    """A /proc/stat first line whose idle + iowait is `idle` of `total` jiffies."""
    busy = total - idle
    return f"cpu  {busy} 0 0 {idle - 1} 1 0 0 0 0 0\ncpu0 ...\n"


@pytest.mark.parametrize("idle_share, cores, expected", [(1.0, 2, 2), (0.5, 2, 1), (0.0, 2, 0), (0.45, 4, 2)])
def test_idle_cores_is_the_idle_share_of_the_cpu_time_times_the_cores(monkeypatch, idle_share, cores, expected):
    monkeypatch.setattr(D, "Path", FakeProc(stat(1000, 10_000), stat(1000 + int(idle_share * 400), 10_400)))
    monkeypatch.setattr(D.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert D.idle_cores(seconds=0) == expected


def test_idle_cores_without_proc_stat_is_unknown(monkeypatch):
    monkeypatch.setattr(D, "Path", FakeProc())
    assert D.idle_cores(seconds=0) is None


@pytest.mark.parametrize("requested, idle, expected", [(3, 0, 3), (0, 2, 2), (0, 0, 1), (0, None, "torch")])
def test_set_threads_takes_the_request_else_the_idle_cores_and_never_zero(monkeypatch, requested, idle, expected):
    before = torch.get_num_threads()
    monkeypatch.setattr(D, "idle_cores", lambda seconds=0.2: idle)
    try:
        expected = before if expected == "torch" else expected  # unknown: PyTorch's own count stays
        assert set_threads(requested) == expected and torch.get_num_threads() == expected
    finally:
        torch.set_num_threads(before)
