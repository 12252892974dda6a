"""Several processes, one result: the ranks that ``torchrun`` starts (``--nproc-per-node N``, and
``--nnodes``/``--rdzv-endpoint`` for several machines) split the work and rank 0 writes.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous variables; this module only reads
them. The process group uses NCCL when each rank has a GPU and gloo otherwise.
"""

from __future__ import annotations

import torch

from engine.errors import UserError
from engine.runtime.ranks import Ranks


def rank_device(ranks: Ranks, device: torch.device) -> torch.device:
    """Each rank on a machine takes its own GPU (LOCAL_RANK); CPU ranks share the CPU."""
    if device.type == "cuda" and ranks.world > 1:
        if ranks.local_rank >= torch.cuda.device_count():
            raise UserError(
                f"rank {ranks.rank} needs GPU {ranks.local_rank} but this machine has "
                f"{torch.cuda.device_count()}: start at most that many processes per node"
            )
        return torch.device("cuda", ranks.local_rank)
    return device


def start(ranks: Ranks, device: torch.device) -> None:
    """Join the process group (once per process)."""
    import torch.distributed as dist

    if ranks.world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


def stop(ranks: Ranks) -> None:
    import torch.distributed as dist

    if ranks.world > 1 and dist.is_initialized():
        dist.destroy_process_group()


def sum_all(tensor: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """Element-wise sum over ranks, in place (exact for integers, and for floats where every
    element is non-zero on at most one rank)."""
    if ranks.world > 1:
        import torch.distributed as dist

        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def gather_all(tensor: torch.Tensor, ranks: Ranks) -> list[torch.Tensor]:
    """Every rank's copy of a same-shaped tensor, in rank order."""
    if ranks.world == 1:
        return [tensor]
    import torch.distributed as dist

    parts = [torch.empty_like(tensor) for _ in range(ranks.world)]
    dist.all_gather(parts, tensor.contiguous())
    return parts


def barrier(ranks: Ranks) -> None:
    if ranks.world > 1:
        import torch.distributed as dist

        dist.barrier()


def send_bytes(payload: bytes, destination: int, device: torch.device) -> None:
    """Point to point: a length, then the bytes (tensors on the rank's device, as NCCL needs)."""
    import torch.distributed as dist

    dist.send(torch.tensor([len(payload)], dtype=torch.int64, device=device), destination)
    dist.send(torch.frombuffer(bytearray(payload), dtype=torch.uint8).to(device), destination)


def receive_bytes(source: int, device: torch.device) -> bytes:
    import torch.distributed as dist

    length = torch.zeros(1, dtype=torch.int64, device=device)
    dist.recv(length, source)
    data = torch.empty(int(length.item()), dtype=torch.uint8, device=device)
    dist.recv(data, source)
    return data.cpu().numpy().tobytes()
