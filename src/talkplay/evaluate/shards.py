"""Evaluation over several processes or machines: each ranks a shard of the targets.

Launched with ``torchrun`` or ``accelerate launch`` (``WORLD_SIZE`` > 1 in the environment),
``talkplay evaluate`` joins the process group (``start``; gloo on CPUs, nccl on GPUs, each
process on its local GPU), every process builds the systems and ranks targets
``rank, rank + world, rank + 2 world, ...`` (``run_sharded``), and the shards are gathered and
put back in target order on every process, so that metrics, bootstrap intervals and prediction
files are those of one process ranking every target (for systems that rank a target the same
wherever it runs). Only the first process prints and writes.
"""

from __future__ import annotations

import os

import torch

from talkplay.evaluate.protocols import Target
from talkplay.evaluate.run import run_system


def start() -> tuple[int, int]:
    """Join the process group when launched by torchrun/accelerate; (rank, world size)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank(), dist.get_world_size()


def world() -> tuple[int, int]:
    """(rank, world size) of the process group, or (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def run_sharded(system, targets: list[Target], **kwargs):
    """``run_system`` on this process's shard of ``targets``, gathered from every process and
    merged back into target order; the same return value as ``run_system`` (seconds: the
    slowest shard's)."""
    rank, size = world()
    if size == 1:
        return run_system(system, targets, **kwargs)
    import torch.distributed as dist

    if rank != 0:
        kwargs["progress"] = None
    part = run_system(system, targets[rank::size], **kwargs)
    parts: list = [None] * size
    dist.all_gather_object(parts, part)
    scored, rankings, infos = [], [], []
    for i in range(len(targets)):
        p = parts[i % size]
        scored.append(p[0][i // size])
        rankings.append(p[1][i // size])
        infos.append(p[2][i // size])
    return scored, rankings, infos, max(p[3] for p in parts)


__all__ = ["run_sharded", "start", "world"]
