"""Batched ensemble training: K models trained with codes as one computation.

:func:`train_ensemble` runs the paper's Algorithm 1 (training with mnemonic
codes, as :func:`mnemonic_mu.algorithms.train.train_model` does it) for K members at
once: the K parameter sets are stacked along a leading axis and every SGD
step is one vectorised forward/backward over all members
(``torch.func.vmap`` of ``torch.func.grad_and_value`` of
``torch.func.functional_call``) followed by one stacked SGD update.  Typical
use: the original model and its retrain references (one per forget set and
seed) of a sweep.

Each member is ``(codes, TrainConfig)`` and gets exactly the run
``train_model(build_model(name, ..., seed=cfg.seed), dataset, codes, cfg)``
would give alone, up to float rounding, because each member keeps its own
CPU ``torch.Generator().manual_seed(cfg.seed)`` and draws from it the same
numbers in the same order: per epoch ``torch.randperm(n)``, then per batch
the augmentation draws (if the dataset augments) and then the coins of
:func:`mnemonic_mu.algorithms.codes.replace_with_codes` (only when ``t_mix > 0``).
Members may differ in seed, codes, ``exclude_classes`` (so in their number
of samples, steps per epoch and last-batch size), ``t_mix``, ``lr``,
``momentum``, ``weight_decay``, ``cosine`` and ``eval_every``; they must
share the model, ``epochs`` and ``batch_size``.

How the members' different sizes are handled: step ``s`` takes batch ``s``
of every member, padded with masked samples to the largest of them (the
loss is the mean over the member's real samples only); a member whose epoch
has no batch ``s`` (it has fewer samples) keeps its weights and momentum
untouched in that step.

GPU path: the training data, the codes and the stacked weights live on
``device``; the batch order and the coins are drawn on the CPU generators
once per epoch (per step with augmentation, which runs on the CPU side) and
copied to the device asynchronously from pinned memory, and the losses and
validation accuracies are accumulated as device tensors, read back once at
the end.  So nothing inside an epoch waits for the device.

Models with BatchNorm (``resnet18``) are refused with a :class:`ConfigError`:
their running statistics are buffers that every train-mode forward updates,
which this vectorised step does not carry; train them one by one with
:func:`mnemonic_mu.algorithms.train.train_model`.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, vmap
from tqdm.auto import tqdm

from ..errors import ConfigError
from .codes import replace_with_codes
from .dataset import AugmentFn, Dataset, make_augment
from .models import build_model
from .train import TrainConfig, TrainResult, retained_mask

Member = tuple[torch.Tensor, TrainConfig]  # (codes, config) of one ensemble member

# Memory rule of the automatic chunking (see :func:`member_memory_bytes`).
PARAM_COPIES = 6  # weights, momentum, gradient, backward temporaries, partial-step copies of weights and momentum
ACTIVATION_COPIES = 4  # layer outputs, their gradients, autograd's saved tensors, temporaries
CUDA_BUDGET_FRACTION = 0.5  # of the device memory free when the call starts
CPU_BUDGET_FRACTION = 0.25  # of the host memory available when the call starts
FALLBACK_BUDGET_BYTES = 2 * 2**30  # when the free memory cannot be read
EVAL_BATCH = 2048  # validation samples per vectorised forward (as metrics.predict_logits)

VERSION = 1  # bump when a change to this module changes trained weights


# --------------------------------------------------------------------------
# Memory estimate and chunking


def member_memory_bytes(model: nn.Module, input_shape: tuple[int, ...], batch_size: int) -> int:
    """Estimated memory (bytes, fp32) that one more member adds to an ensemble step.

    ``PARAM_COPIES`` copies of the parameters (weights, gradient, momentum and
    the update's temporaries) plus, per sample of a batch, ``ACTIVATION_COPIES``
    copies of every leaf module's output (measured by one forward of a single
    zero input) and two copies of the input (the batch and its code-replaced
    version).  The training data and the validation split are shared by all
    members and not counted here.
    """
    n_params = sum(p.numel() for p in model.parameters())
    act = [0]

    def hook(_module: nn.Module, _inputs: object, output: object) -> None:
        if isinstance(output, torch.Tensor):
            act[0] += output[0].numel()

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), device=device))
        model.train(was_training)
    finally:
        for h in handles:
            h.remove()
    per_sample = ACTIVATION_COPIES * act[0] + 2 * math.prod(input_shape)
    return 4 * (PARAM_COPIES * n_params + int(batch_size) * per_sample)


def memory_budget_bytes(device: torch.device | str) -> int:
    """Memory the ensemble may use: ``CUDA_BUDGET_FRACTION`` of the free CUDA
    memory, or ``CPU_BUDGET_FRACTION`` of the host's available memory
    (``MemAvailable`` in ``/proc/meminfo``); ``FALLBACK_BUDGET_BYTES`` when
    neither can be read."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(CUDA_BUDGET_FRACTION * free)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(CPU_BUDGET_FRACTION * int(line.split()[1]) * 1024)
    except OSError:
        pass
    try:
        return int(CPU_BUDGET_FRACTION * os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return FALLBACK_BUDGET_BYTES


def default_max_members(model_name: str, dataset: Dataset, batch_size: int, device: torch.device | str = "cpu") -> int:
    """How many members one chunk trains at once when ``max_members`` is not given.

    Rule: ``max(1, (budget - data) // per_member)`` with ``budget`` from
    :func:`memory_budget_bytes`, ``data`` the bytes of the train and
    validation inputs placed on the device, and ``per_member`` from
    :func:`member_memory_bytes` for ``model_name`` at ``batch_size``.
    """
    model = build_model(model_name, dataset.input_shape, dataset.num_classes, seed=0)
    per_member = member_memory_bytes(model, dataset.input_shape, batch_size)
    data = 4 * (dataset.x_train.numel() + dataset.x_val.numel())
    return max(1, (memory_budget_bytes(device) - data) // per_member)


# --------------------------------------------------------------------------
# Checks


def _check_model(model_name: str, model: nn.Module) -> None:
    batchnorm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if batchnorm or any(True for _ in model.buffers()):
        raise ConfigError(
            f"model {model_name!r} has BatchNorm running statistics or other buffers (state that "
            "training forwards update), which the batched ensemble step does not carry; train such models "
            "one by one with mnemonic_mu.algorithms.train.train_model"
        )
    if any(isinstance(m, nn.modules.dropout._DropoutNd) for m in model.modules()):
        raise ConfigError(
            f"model {model_name!r} uses dropout, whose random masks the batched ensemble step "
            "cannot draw as train_model does; train it with mnemonic_mu.algorithms.train.train_model"
        )


def _check_members(members: Sequence[Member], dataset: Dataset) -> list[Member]:
    members = list(members)
    if not members:
        raise ConfigError("train_ensemble needs at least one member (codes, TrainConfig); got none")
    code_shape = (dataset.num_classes, *dataset.input_shape)
    for i, member in enumerate(members):
        if not (isinstance(member, (tuple, list)) and len(member) == 2):
            raise ConfigError(f"member {i} must be a pair (codes, TrainConfig), got {type(member).__name__}")
        codes, cfg = member
        if not isinstance(cfg, TrainConfig):
            raise ConfigError(f"member {i}: the second item must be a TrainConfig, got {type(cfg).__name__}")
        if cfg.precision != "fp32" or cfg.channels_last:
            raise ConfigError(
                f"member {i}: the ensemble trains in fp32 with the default memory format; "
                "train bf16 or channels_last models with train_model"
            )
        if not isinstance(codes, torch.Tensor) or tuple(codes.shape) != code_shape:
            shape = tuple(codes.shape) if isinstance(codes, torch.Tensor) else type(codes).__name__
            raise ConfigError(f"member {i}: codes must have shape {code_shape} (one per class), got {shape}")
    first = members[0][1]
    for i, (_codes, cfg) in enumerate(members[1:], start=1):
        for name in ("epochs", "batch_size"):
            if getattr(cfg, name) != getattr(first, name):
                raise ConfigError(
                    f"ensemble members must share {name}: member 0 has {getattr(first, name)}, "
                    f"member {i} has {getattr(cfg, name)}; train members with other {name} in a "
                    "separate train_ensemble call (lr, momentum, weight_decay, t_mix, cosine, seed "
                    "and exclude_classes may differ)"
                )
    return members


# --------------------------------------------------------------------------
# One member's CPU side: generator, sample indices, learning-rate schedule


@dataclass
class _MemberState:
    cfg: TrainConfig
    gen: torch.Generator
    keep: torch.Tensor  # positions in dataset.x_train of the member's training samples
    sched_opt: torch.optim.Optimizer  # a dummy SGD whose lr follows train_model's schedule
    sched: torch.optim.lr_scheduler.LRScheduler | None
    replaced: int = 0
    drawn: int = 0

    @property
    def n(self) -> int:
        return len(self.keep)

    def lr(self) -> float:
        return float(self.sched_opt.param_groups[0]["lr"])

    def end_epoch(self) -> None:
        if self.sched is not None:
            self.sched_opt.step()  # no gradient, so no change: keeps the scheduler's call order as in train_model
            self.sched.step()


def _member_state(cfg: TrainConfig, dataset: Dataset, index: int) -> _MemberState:
    keep = torch.nonzero(retained_mask(dataset.y_train.cpu(), cfg.exclude_classes)).flatten()
    if len(keep) == 0:
        raise ConfigError(f"member {index}: no training samples left after excluding classes {cfg.exclude_classes}")
    # a one-parameter SGD with the member's lr and the same scheduler as train_model:
    # the learning rate of every epoch then equals train_model's to the last bit
    dummy = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([dummy], lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs) if cfg.cosine else None
    return _MemberState(cfg, torch.Generator().manual_seed(int(cfg.seed)), keep, opt, sched)


def _draw_coins(y: torch.Tensor, cfg: TrainConfig, gen: torch.Generator, num_classes: int) -> torch.Tensor:
    """The coins ``replace_with_codes`` draws for a batch with labels ``y``.

    Calls it on a zero-width stand-in for the inputs, so the draws are the
    function's own (same calls, same generator, same order) at no cost.
    """
    stand_in = torch.empty((len(y), 0))
    _, coins = replace_with_codes(stand_in, y, torch.empty((num_classes, 0)), cfg.t_mix, gen)
    return coins


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a CPU tensor to ``device`` without making the host wait (pinned, asynchronous)."""
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


# --------------------------------------------------------------------------
# Training


def train_ensemble(
    model_name: str,
    dataset: Dataset,
    members: Sequence[Member],
    device: torch.device | str = "cpu",
    progress: bool = False,
    max_members: int | None = None,
) -> list[tuple[nn.Module, TrainResult]]:
    """Train every member ``(codes, cfg)`` with Algorithm 1, all members as one computation.

    Member ``k`` comes out as the model that
    ``train_model(build_model(model_name, dataset.input_shape, dataset.num_classes,
    seed=cfg.seed), dataset, codes, cfg, device)`` trains alone, up to float
    rounding (see the module docstring for how the draws are reproduced).
    Members must share ``epochs`` and ``batch_size``; a ``ConfigError`` says
    otherwise, as it does for an empty member list, codes of the wrong shape
    and models with BatchNorm (``resnet18``: use ``train_model``).

    The members are trained in chunks of at most ``max_members``, one chunk
    after the other (the result does not depend on the chunking).  Default:
    :func:`default_max_members`, i.e. as many members as fit into half the
    free CUDA memory (a quarter of the available host memory on the CPU) by
    the estimate of :func:`member_memory_bytes`.

    Returns, in the members' order, ``(model, TrainResult)``: a new module on
    ``device`` in eval mode holding the member's trained weights, and its
    history (``epoch``, ``loss``, ``val_acc`` as ``train_model`` records them,
    honouring the member's ``eval_every``), ``replaced_fraction`` and
    ``n_train``.  ``seconds`` is the wall time of the joint training of the
    member's chunk (the ensemble's time, shared by every member of the chunk,
    not a per-member share).
    """
    device = torch.device(device)
    members = _check_members(members, dataset)
    probe = build_model(model_name, dataset.input_shape, dataset.num_classes, seed=members[0][1].seed)
    _check_model(model_name, probe)
    if max_members is None:
        max_members = default_max_members(model_name, dataset, members[0][1].batch_size, device)
    elif int(max_members) < 1:
        raise ConfigError(f"max_members must be at least 1, got {max_members}")
    max_members = int(max_members)
    states = [_member_state(cfg, dataset, i) for i, (_codes, cfg) in enumerate(members)]

    data = _DeviceData(dataset, device)
    out: list[tuple[nn.Module, TrainResult]] = []
    for start in range(0, len(members), max_members):
        chunk = slice(start, start + max_members)
        out += _train_chunk(model_name, dataset, data, members[chunk], states[chunk], device, progress)
    return out


@dataclass
class _DeviceData:
    """The dataset's tensors the training needs, once per call (shared by all chunks)."""

    x_cpu: torch.Tensor
    y_cpu: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor

    def __init__(self, dataset: Dataset, device: torch.device) -> None:
        self.x_cpu, self.y_cpu = dataset.x_train.cpu(), dataset.y_train.cpu()
        self.x, self.y = self.x_cpu.to(device), self.y_cpu.to(device)
        self.x_val, self.y_val = dataset.x_val.to(device), dataset.y_val.to(device)


def _train_chunk(
    model_name: str,
    dataset: Dataset,
    data: _DeviceData,
    members: list[Member],
    states: list[_MemberState],
    device: torch.device,
    progress: bool,
) -> list[tuple[nn.Module, TrainResult]]:
    """Train one chunk of members jointly (Algorithm 1, vectorised over the members)."""
    k_members = len(members)
    cfg0 = members[0][1]
    epochs, batch = cfg0.epochs, cfg0.batch_size
    shape = tuple(dataset.input_shape)
    models = [build_model(model_name, shape, dataset.num_classes, seed=cfg.seed) for _codes, cfg in members]
    names = [name for name, _ in models[0].named_parameters()]
    params = {name: torch.stack([m.get_parameter(name).detach() for m in models]).to(device) for name in names}
    bufs = {name: torch.zeros_like(p) for name, p in params.items()}
    base = build_model(model_name, shape, dataset.num_classes, seed=cfg0.seed).to(device)
    base.train()

    codes = torch.stack([c.detach().to(torch.float32).cpu() for c, _cfg in members]).to(device)
    use_codes = any(cfg.t_mix > 0 for _c, cfg in members)
    augment = make_augment(dataset)
    members_idx = torch.arange(k_members, device=device)
    any_wd = any(cfg.weight_decay != 0 for _c, cfg in members)

    def member_loss(
        p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, denom: torch.Tensor
    ) -> torch.Tensor:
        logits = functional_call(base, p, (x,))
        return (F.cross_entropy(logits, y, reduction="none") * w).sum() / denom

    step_fn = vmap(grad_and_value(member_loss))
    logits_fn = vmap(lambda p, x: functional_call(base, p, (x,)), in_dims=(0, None))

    steps = [math.ceil(st.n / batch) for st in states]
    n_steps = max(steps)
    losses: list[torch.Tensor] = []
    val: list[torch.Tensor | None] = []
    start = time.perf_counter()
    for epoch in tqdm(range(epochs), disable=not progress, desc="ensemble", leave=False):
        plan = _plan_epoch(states, data.y_cpu, batch, n_steps, augment is None, dataset.num_classes)
        idx = _to_device(plan.idx, device)
        weights = _to_device(plan.weights, device)
        counts = _to_device(plan.counts, device)
        denom = counts.clamp(min=1.0)
        coins = _to_device(plan.coins, device) if plan.coins is not None and use_codes else None
        hyper = _to_device(_epoch_hyper(states), device)  # (3, K): -lr, momentum, weight decay
        rows_dev = {rows: _to_device(torch.tensor(rows), device) for rows in set(plan.rows) if rows is not None}
        total = torch.zeros(k_members, device=device)
        for s in range(n_steps):
            width = plan.widths[s]  # the largest real batch of this step: no all-padding columns
            step_rows = plan.rows[s]
            rows = None if step_rows is None else rows_dev[step_rows]  # members with a batch
            if augment is None:
                xb = yb = None
                coins_s = coins[:, s, :width] if coins is not None else None
            else:
                xb, coins_cpu = _augmented_step(states, data, plan, s, augment, shape, dataset.num_classes)
                xb = _to_device(xb, device)
                coins_s = _to_device(coins_cpu, device) if use_codes else None
            idx_s, w_s, d_s, c_s = idx[:, s, :width], weights[:, s, :width], denom[:, s], counts[:, s]
            p_s, b_s, h_s, codes_s, k_s = params, bufs, hyper, codes, members_idx
            if step_rows is not None and rows is not None:  # only the members that have a batch left compute and move
                idx_s, w_s, d_s, c_s = idx_s[rows], w_s[rows], d_s[rows], c_s[rows]
                p_s = {n: t.index_select(0, rows) for n, t in params.items()}
                b_s = {n: t.index_select(0, rows) for n, t in bufs.items()}
                h_s, codes_s = hyper[:, rows], codes[rows]
                k_s = members_idx[: len(step_rows)]
                xb = None if xb is None else xb[rows]
                coins_s = None if coins_s is None else coins_s[rows]
            yb = data.y[idx_s]
            if xb is None:
                xb = data.x[idx_s]
            if coins_s is not None:  # Algorithm 1: x <- code of its class with probability t_mix
                mask = coins_s.reshape(*coins_s.shape, *([1] * len(shape)))
                xb = torch.where(mask, codes_s[k_s[:, None], yb], xb)
            grads, loss = step_fn(p_s, xb, yb, w_s, d_s)
            _sgd_update(p_s, b_s, grads, h_s[0], h_s[1], h_s[2] if any_wd else None)
            if rows is None:
                total += loss.detach() * c_s
            else:
                for n in params:
                    params[n].index_copy_(0, rows, p_s[n])
                    bufs[n].index_copy_(0, rows, b_s[n])
                total.index_add_(0, rows, loss.detach() * c_s)
        for st in states:
            st.end_epoch()
        losses.append(total)
        due = [_eval_due(st.cfg, epoch) for st in states]
        val.append(_val_accuracy(base, logits_fn, params, data) if any(due) else None)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start

    loss_table = torch.stack(losses).cpu().tolist()  # (epochs, K): the one read-back of the losses
    val_table = [None if v is None else v.cpu().tolist() for v in val]
    out = []
    for k, (model, st) in enumerate(zip(models, states)):
        history: dict[str, list[float]] = {"epoch": [], "loss": [], "val_acc": []}
        for epoch in range(epochs):
            history["epoch"].append(epoch + 1)
            history["loss"].append(float(loss_table[epoch][k]) / st.n)
            accuracies = val_table[epoch]  # None when no member was due this epoch
            member_due = _eval_due(st.cfg, epoch)
            history["val_acc"].append(100.0 * accuracies[k] if member_due and accuracies is not None else float("nan"))
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(params[name][k])
        model.to(device).eval()
        result = TrainResult(
            history=history,
            seconds=seconds,
            replaced_fraction=st.replaced / max(st.drawn, 1),
            n_train=st.n,
        )
        out.append((model, result))
    return out


def _eval_due(cfg: TrainConfig, epoch: int) -> bool:
    """train_model's rule: validation every ``eval_every`` epochs and after the last."""
    return bool(cfg.eval_every) and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs)


@dataclass
class _EpochPlan:
    """One epoch of every member, drawn on the CPU: ``idx[k, s, j]`` is the position in
    ``x_train`` of sample ``j`` of member ``k``'s batch ``s`` (0 for padding), ``weights``
    1 for real samples and 0 for padding, ``counts[k, s]`` the real samples of the batch,
    ``coins`` the code coins (``None`` when they are drawn per step, after augmentation)."""

    idx: torch.Tensor  # (K, S, B) int64
    weights: torch.Tensor  # (K, S, B) float32
    counts: torch.Tensor  # (K, S) float32
    coins: torch.Tensor | None  # (K, S, B) bool
    sizes: list[list[int]]  # real samples of each member's batches (CPU copy of counts)
    widths: list[int]  # the largest real batch at step s (the width the step computes)
    rows: list[tuple[int, ...] | None]  # members with a batch at step s (None: all of them)


def _plan_epoch(
    states: list[_MemberState],
    y_cpu: torch.Tensor,
    batch: int,
    n_steps: int,
    draw_coins: bool,
    num_classes: int,
) -> _EpochPlan:
    k_members = len(states)
    idx = torch.zeros((k_members, n_steps * batch), dtype=torch.int64)
    weights = torch.zeros((k_members, n_steps * batch), dtype=torch.float32)
    coins = torch.zeros((k_members, n_steps * batch), dtype=torch.bool) if draw_coins else None
    sizes = []
    for k, st in enumerate(states):
        perm = torch.randperm(st.n, generator=st.gen)  # train_model: one permutation per epoch
        pos = st.keep[perm]
        idx[k, : st.n] = pos
        weights[k, : st.n] = 1.0
        sizes.append([min(batch, st.n - i) for i in range(0, st.n, batch)] + [0] * (n_steps - math.ceil(st.n / batch)))
        st.drawn += st.n
        if coins is not None and st.cfg.t_mix > 0:  # no augmentation: the batch's only draws are its coins
            for i in range(0, st.n, batch):
                c = _draw_coins(y_cpu[pos[i : i + batch]], st.cfg, st.gen, num_classes)
                coins[k, i : i + len(c)] = c
                st.replaced += int(c.sum())
    counts = torch.tensor(sizes, dtype=torch.float32)
    view = (k_members, n_steps, batch)
    return _EpochPlan(
        idx=idx.view(view),
        weights=weights.view(view),
        counts=counts,
        coins=None if coins is None else coins.view(view),
        sizes=sizes,
        widths=[max(sz[s] for sz in sizes) for s in range(n_steps)],
        rows=[
            None if all(sz[s] > 0 for sz in sizes) else tuple(k for k, sz in enumerate(sizes) if sz[s] > 0)
            for s in range(n_steps)
        ],
    )


def _augmented_step(
    states: list[_MemberState],
    data: _DeviceData,
    plan: _EpochPlan,
    s: int,
    augment: AugmentFn,
    shape: tuple[int, ...],
    num_classes: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch ``s`` of every member with augmentation, on the CPU: per member, the
    augmentation draws and then the coins, from its generator, as train_model does."""
    k_members, width = plan.idx.shape[0], plan.widths[s]
    xb = torch.zeros((k_members, width, *shape), dtype=data.x_cpu.dtype)
    coins = torch.zeros((k_members, width), dtype=torch.bool)
    for k, st in enumerate(states):
        b = plan.sizes[k][s]
        if b == 0:
            continue
        pos = plan.idx[k, s, :b]
        xb[k, :b] = augment(data.x_cpu[pos], st.gen)
        if st.cfg.t_mix > 0:
            c = _draw_coins(data.y_cpu[pos], st.cfg, st.gen, num_classes)
            coins[k, :b] = c
            st.replaced += int(c.sum())
    return xb, coins


def _sgd_update(
    params: dict[str, torch.Tensor],
    bufs: dict[str, torch.Tensor],
    grads: dict[str, torch.Tensor],
    neg_lr: torch.Tensor,
    momentum: torch.Tensor,
    weight_decay: torch.Tensor | None,
) -> None:
    """``torch.optim.SGD``'s step (no dampening, no Nesterov) on stacked parameters, in place.

    Per member ``k``: ``g = grad + wd_k * p``; ``buf = momentum_k * buf + g``
    (the buffer starts at zero, so the first step gives ``buf = g`` as torch
    initialises it, and momentum 0 gives plain SGD); ``p = p - lr_k * buf``.
    The same operations in the same order as torch's single-tensor SGD.
    """
    for name, p in params.items():
        view = (-1,) + (1,) * (p.dim() - 1)
        g = grads[name]
        if weight_decay is not None:
            g.addcmul_(p, weight_decay.view(view))
        buf = bufs[name]
        buf.mul_(momentum.view(view)).add_(g)
        p.addcmul_(buf, neg_lr.view(view))


def _epoch_hyper(states: list[_MemberState]) -> torch.Tensor:
    """``(3, K)``: this epoch's ``-lr`` (after the cosine schedule), ``momentum`` and
    ``weight_decay`` of every member, as float32 like the optimiser applies them."""
    return torch.tensor(
        [[-st.lr() for st in states], [st.cfg.momentum for st in states], [st.cfg.weight_decay for st in states]],
        dtype=torch.float32,
    )


@torch.no_grad()
def _val_accuracy(base: nn.Module, logits_fn, params: dict[str, torch.Tensor], data: _DeviceData) -> torch.Tensor:
    """Validation accuracy of every member as a fraction (a device tensor, not read back),
    computed as metrics.accuracy does: eval mode, batches of EVAL_BATCH, top-1."""
    k_members = next(iter(params.values())).shape[0]
    n = len(data.y_val)
    if n == 0:
        return torch.full((k_members,), float("nan"), device=data.x_val.device)
    correct = torch.zeros(k_members, device=data.x_val.device)
    base.eval()
    for i in range(0, n, EVAL_BATCH):
        pred = logits_fn(params, data.x_val[i : i + EVAL_BATCH]).argmax(-1)
        correct += (pred == data.y_val[i : i + EVAL_BATCH]).sum(1)
    base.train()
    return correct / n


__all__ = [
    "Member",
    "default_max_members",
    "member_memory_bytes",
    "memory_budget_bytes",
    "train_ensemble",
]
