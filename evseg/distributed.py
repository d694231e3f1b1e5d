"""Data-parallel training over several processes, one per GPU (torchrun; gloo on the CPU, NCCL on GPUs).

A training rule that asks for more than one GPU (``resources.<rule>.gpu``) is started through torchrun
(evseg.stage), and every process runs the same loop (evseg.adapt.trainer.run_steps). The aim is that N
processes compute what ONE process computes with the same global batch, so that a config means the same on
one GPU and on eight:

- every process builds the whole batch of a step (a function of seed and step) and keeps its rows;
- gradients are averaged over the processes before each optimizer step, so every process holds the same
  weights (the same seed gives the same initial weights, too);
- quantities the methods compute over the whole batch use the whole batch: BatchNorm statistics
  (``sync_batch_norm``), DACS's confidence weight, ClassMix's candidate classes, pixel counts that divide a
  loss, the SPA class prior and UniMatch's OHEM threshold;
- random draws made per batch (ClassMix, DACS's strong augmentation) come from a generator shared by the
  processes, drawn for the whole batch.

What stays per process: element-wise dropout and drop-path masks (each process draws its own), so a run with
dropout is statistically, not bitwise, the same as one process. Building the whole batch in every process
costs N times the data loading of one process, which the loader workers hide behind the GPU step.

Outside torchrun (``WORLD_SIZE`` unset) every helper is the identity and nothing is communicated.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def rows(self, batch_size: int) -> slice:
        """This process's rows of a batch of ``batch_size`` (the global batch)."""
        if batch_size % self.size:
            raise ValueError(f"the batch of {batch_size} does not split into {self.size} processes: set the "
                             f"rule's batch_size to a multiple of its GPU count (resources.<rule>.gpu)")
        local = batch_size // self.size
        return slice(self.rank * local, (self.rank + 1) * local)


def shared_draws(generator: torch.Generator | None) -> None:
    """Draws for the whole batch need a generator every process seeds alike (``step_generator``)."""
    if generator is None and world().size > 1:
        raise ValueError("with several processes, per-batch random draws need the step's shared generator "
                         "(evseg.distributed.step_generator); torch's global RNG differs between processes")


def world() -> World:
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def start_from_environment() -> World:
    """Join the process group that torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK); a no-op without it.

    With a GPU per process, process ``LOCAL_RANK`` uses GPU ``LOCAL_RANK`` (so ``device: auto`` or ``cuda``
    is that GPU) and CUDA tensors travel by NCCL, CPU tensors by gloo; without, everything goes by gloo."""
    size = int(os.environ.get("WORLD_SIZE", 1))
    if size <= 1 or dist.is_initialized():
        return world()
    # every process of the node decides alike (the same devices are visible to all of them)
    gpu_each = torch.cuda.is_available() and torch.cuda.device_count() >= int(os.environ["LOCAL_WORLD_SIZE"])
    if gpu_each:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    # a long timeout: the other processes wait in a collective while the first one writes a checkpoint
    dist.init_process_group("cpu:gloo,cuda:nccl" if gpu_each else "gloo", timeout=timedelta(hours=1))
    w = world()
    if not w.is_main:
        logging.getLogger().setLevel(logging.WARNING)  # one log: rank 0 reports, the others only warn
    log.info("data-parallel training: %d processes (%s)", w.size, dist.get_backend())
    return w


def stop() -> None:
    """Leave the process group once every process got here (one leaving while another still writes its
    outputs can abort the other's gloo connections)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def local_rows(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """This process's rows of every tensor of a batch (all share the batch size along dim 0)."""
    w = world()
    if w.size == 1:
        return batch
    return {key: value[w.rows(value.shape[0])] for key, value in batch.items()}


def average_gradients(model: nn.Module) -> None:
    """Replace every gradient by its mean over the processes (one flat all-reduce)."""
    w = world()
    if w.size == 1:
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= w.size
    offset = 0
    for g in grads:
        g.copy_(flat[offset: offset + g.numel()].view_as(g))
        offset += g.numel()


def mean_over_processes(value: Tensor) -> Tensor:
    """The mean of ``value`` over the processes (no gradient): a mean over equal shards is the batch mean."""
    if world().size == 1:
        return value
    value = value.detach().clone()
    dist.all_reduce(value)
    return value / world().size


def per_process_denominator(count: Tensor) -> Tensor:
    """For a loss ``sum / count`` over the whole batch: each process divides its own sum by this, so that the
    mean over processes (gradient averaging) is the whole batch's sum over the whole batch's count."""
    # clamp: the single-process guard (a count of 0 divides by 1) applied to the whole batch's count
    return mean_over_processes(count.float()).clamp(min=1.0 / world().size)


def gather_rows(value: Tensor) -> Tensor:
    """The whole batch: every process's ``value`` concatenated along dim 0 in rank order (no gradient)."""
    w = world()
    if w.size == 1:
        return value
    parts = [torch.empty_like(value) for _ in range(w.size)]  # the processes' rows have the same shape
    dist.all_gather(parts, value.contiguous())
    return torch.cat(parts)


def classes_present(labels: Tensor) -> Tensor:
    """``torch.unique`` of the labels of the whole batch (sorted)."""
    if world().size == 1:
        return torch.unique(labels)
    present = torch.zeros(256, device=labels.device)
    present[torch.unique(labels).long()] = 1
    dist.all_reduce(present, op=dist.ReduceOp.MAX)
    return present.nonzero()[:, 0].to(labels.dtype)


def seed_of(*keys: int) -> int:
    """A 63-bit seed from integers (numpy's SeedSequence: different key lists give independent streams)."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def step_generator(seed: int, step: int) -> torch.Generator:
    """A CPU generator that every process seeds alike, for the random draws made per batch."""
    return torch.Generator().manual_seed(seed_of(seed, step))


def seed_process_rng(seed: int, step: int) -> None:
    """Under data parallelism, torch's global RNG (dropout, drop-path) is seeded per (seed, step, process):
    the processes draw different masks, and a resumed run draws the same masks as an uninterrupted one."""
    w = world()
    if w.size > 1:
        torch.manual_seed(seed_of(seed, step, w.rank, 1))


def barrier() -> None:
    if world().size > 1:
        dist.barrier()


# --------------------------------------------------------------------------------------------------------
# BatchNorm over the whole batch


class _SumOverProcesses(torch.autograd.Function):
    """All-reduce (sum) that gradients pass through: the gradient of a sum over processes, with respect to one
    process's part, is the sum of every process's upstream gradient."""

    @staticmethod
    def forward(ctx, value: Tensor) -> Tensor:
        value = value.clone()
        dist.all_reduce(value)
        return value

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class WholeBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics cover the rows of every process (torch's SyncBatchNorm runs
    on GPUs only; this one also on the CPU, for the tests). Identical to BatchNorm2d in one process."""

    def forward(self, x: Tensor) -> Tensor:
        w = world()
        if not self.training or w.size == 1:
            return super().forward(x)
        # two passes (mean, then the squared deviations) as accurate as BatchNorm2d's own kernel; the
        # all-reduces are differentiable, so each process's gradient reaches the statistics of the others
        x32 = x.float()
        count = torch.tensor([x.shape[0] * x.shape[2] * x.shape[3]], dtype=torch.float32, device=x.device)
        sums = _SumOverProcesses.apply(torch.cat([x32.sum(dim=(0, 2, 3)), count]))
        n = sums[-1]
        mean = sums[:-1] / n
        centred = x32 - mean[None, :, None, None]
        var = _SumOverProcesses.apply((centred ** 2).sum(dim=(0, 2, 3))) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - momentum).add_(momentum * mean.detach())
                self.running_var.mul_(1 - momentum).add_(momentum * var.detach() * n / (n - 1).clamp(min=1))
        y = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y.to(x.dtype)


def sync_batch_norm(model: nn.Module) -> nn.Module:
    """Make every BatchNorm2d of ``model`` a WholeBatchNorm2d in place (same parameters and buffers, so an
    optimizer built before keeps working). Other batch norms would keep per-process statistics: refused."""
    for name, module in model.named_modules():
        if type(module) is nn.BatchNorm2d:
            module.__class__ = WholeBatchNorm2d
        elif isinstance(module, nn.modules.batchnorm._BatchNorm) and type(module) is not WholeBatchNorm2d:
            raise ValueError(f"data-parallel training normalises BatchNorm2d over the whole batch, but {name} is a "
                             f"{type(module).__name__}: train this backbone on one GPU (resources.<rule>.gpu: 1)")
    return model

