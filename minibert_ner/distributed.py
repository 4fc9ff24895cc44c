"""Several processes (torchrun): the few lines that make train.py data-parallel.

    torchrun --nproc_per_node 4 -m minibert_ner.train --train en=eng.train ...

PyTorch's DistributedDataParallel does the work: every process holds the whole model, takes a
share of each global batch, and gradients are all-reduced during backward. What is here is
the bookkeeping around it: who am I (rank), how many are we (world), which device is mine, and
agreeing on decisions every process must take together. Alone (no torchrun, no process group)
every function answers as the single process 0 of 1, so train.py has one code path.

Left out: model/tensor parallelism, elastic restarts. Paper: not in the paper (one GPU suffices
for mBERT at batch 32); it only makes the same recipe faster.
"""
import os

import torch
import torch.distributed as dist

from .device import resolve_device


def setup_distributed(device_name="auto"):
    """-> (rank, world_size, device). torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; alone it is (0, 1)."""
    cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, resolve_device(device_name)
    if not dist.is_initialized():  # NCCL between GPUs, gloo between CPU processes
        dist.init_process_group("nccl" if cuda else "gloo")
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    return dist.get_rank(), dist.get_world_size(), device


def rank_and_world():
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def all_finite(loss):
    """Is the loss finite in every process? (They must agree, or one would skip an all-reduce.)"""
    ok = torch.isfinite(loss.detach()).float()
    if dist.is_initialized():
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok.item())


def sum_over_processes(value):
    """A Python number summed over every process (itself when alone)."""
    if not dist.is_initialized():
        return value
    t = torch.tensor(float(value))
    dist.all_reduce(t)
    return t.item()


def gather_dicts(part):
    """Merge one dict per process into one dict, in every process."""
    if not dist.is_initialized():
        return part
    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, part)
    return {k: v for p in parts for k, v in p.items()}


def barrier():
    """Wait until every process gets here."""
    if dist.is_initialized():
        dist.barrier()


def shutdown():
    if dist.is_initialized():
        dist.destroy_process_group()
