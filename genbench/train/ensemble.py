"""Many runs trained as one: seeds of one architecture as a vectorised ensemble.

``train_ensemble`` trains M runs that share a model class, its hyperparameters, the data set
and the training config (seeds aside) in one process: the M members' parameters are stacked
``[M, ...]`` and one ``torch.func.vmap`` of ``functional_call`` over the model's
``training_losses`` computes the M losses with batched matmuls; one optimizer steps the
stacked parameters (Adam is elementwise, so one Adam over ``[M, ...]`` is M Adams).

Each member is the run ``train()`` would make, step for step: a ``genbench.train.run.Run`` of its
own, begun, ended and checkpointed as the loop's, on the loop's cadence (``genbench.train.cadence``:
the same losses checks, epoch ends and checkpoints, the schedule applied by the same
``ScheduledRates``); only how a step is taken and where the state lives differ:

- its batch: ``Run.batch``, its own config's (seed, epoch) permutation, drawn after the
  global generators are seeded with (seed, step) exactly as the loop seeds them;
- its noise: the model's ``torch.randn_like`` calls are answered, under a
  ``TorchFunctionMode``, from tensors drawn *outside* vmap from that member's seeded
  generator, in the order the model asks for them (the shapes come from one dry run on the
  ``meta`` device per batch shape). vmap's ``randomness="different"`` would give each member
  noise, but not its single run's noise; any other random op inside the loss stays an error
  (vmap's default ``randomness="error"``), so such a model is refused by ``ensemble_applies``;
- its checkpoint: written by its ``Run`` from the member's own module and optimizer (synced
  from the stacked state), so it is the single-run format, resumes alone with ``train()`` and
  scores with ``genbench score``; ``Run.begin`` resumes it as it resumes a single run. Members
  at different steps are brought level by ``train()`` first.

Numbers: a member's losses and parameters equal its single run's to float rounding, not
bit for bit: batched matmuls (vmap's ``bmm``) and ``mm`` sum in different orders
(tests/train/test_ensemble.py states the tolerance). A NaN fails that member only: at the cadence's
checks its ``TrainingDiverged`` is its result, it is dropped from the stack, its last
checkpoint stays the one before the NaN, and the others train on.

Out of scope (``ensemble_applies`` says why, train those one by one): several optimizers
(GANs), callbacks beyond the learning curve (early stopping, sample grids), buffers,
non-elementwise optimizers, data-dependent control flow or other randomness in the loss,
``torchrun``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.overrides import TorchFunctionMode

from genbench.core.distributed import rank_and_world
from genbench.core.errors import GenbenchError, TrainingDiverged
from genbench.core.protocols import Trainable
from genbench.data.base import ImageDataset
from genbench.train import checkpoint as ckpt
from genbench.train.cadence import progress_bar
from genbench.train.callbacks import watches_samples
from genbench.train.config import TrainConfig, TrainResult
from genbench.train.loop import train
from genbench.train.run import Run, set_progress
from genbench.train.schedule import ScheduledRates

#: optimizers whose update of a parameter is elementwise (one over [M, ...] = M of them)
ELEMENTWISE_OPTIMIZERS = (torch.optim.Adam, torch.optim.AdamW)


@dataclass(frozen=True)
class Verdict:
    """Whether the runs can train as one ensemble; ``reason`` says why not. Truthy when they can."""

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


class _Losses(nn.Module):
    """The model's training losses as a forward pass (what ``functional_call`` calls)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> list[Tensor]:
        return [loss for _, loss in self.model.training_losses(x)]


class _Noise(TorchFunctionMode):
    """Answers ``torch.randn_like`` from ``replay`` in order, or records the shapes asked for."""

    def __init__(self, replay: list[Tensor] | None = None):
        super().__init__()
        self.replay, self.shapes = replay, []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.randn_like:
            like = args[0]
            if kwargs or len(args) > 1:
                raise GenbenchError("randn_like with arguments is not vectorised")
            if self.replay is None:
                self.shapes.append((tuple(like.shape), like.dtype))
                return torch.zeros_like(like)
            if not self.replay:
                raise GenbenchError("the loss asked for more noise than its dry run")
            noise = self.replay.pop(0)
            if noise.shape != like.shape:
                raise GenbenchError(f"noise of shape {tuple(noise.shape)} asked as {tuple(like.shape)}")
            return noise
        return func(*args, **kwargs)


class _Stack:
    """The active members' parameters stacked ``[M, ...]``, their optimizer, the vmapped loss."""

    def __init__(self, template: nn.Module, params: dict[str, Tensor], optimizer_type, defaults: dict):
        self.template, self.wrapper = template, _Losses(template)
        self.params = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
        self.opt = optimizer_type(list(self.params.values()), **defaults)
        self.shapes: dict[tuple, list] = {}
        self._loss = vmap(self._member_loss)

    def _member_loss(self, params, x, noise):
        with _Noise(list(noise)):
            return functional_call(self.wrapper, {f"model.{k}": v for k, v in params.items()}, (x,))[0]

    def noise_shapes(self, x_shape: tuple[int, ...]) -> list:
        """The shapes (and dtypes) of the model's ``randn_like`` calls for a batch of ``x_shape``."""
        if x_shape not in self.shapes:
            self.shapes[x_shape] = dry_run(self.wrapper, self.params, x_shape)
        return self.shapes[x_shape]

    def step(self, x: Tensor, noise: list[Tensor]) -> Tensor:
        """One update of every member on its batch ``x[i]`` and noise: their losses, detached."""
        losses = self._loss(self.params, x, noise)
        self.opt.zero_grad(set_to_none=True)
        losses.sum().backward()
        self.opt.step()
        return losses.detach()

    def state_of(self, i: int) -> dict[int, dict[str, Any]]:
        """Member i's optimizer state, per parameter index (the single-run layout)."""
        out = {}
        for j, p in enumerate(self.params.values()):
            if p in self.opt.state:
                out[j] = {k: _pick(v, i, p) for k, v in self.opt.state[p].items()}
        return out

    def keep(self, rows: list[int]) -> None:
        """Drop every member not in ``rows`` (indices into the stack)."""
        old, lr = list(self.params.values()), [g["lr"] for g in self.opt.param_groups]
        index = torch.tensor(rows, device=old[0].device)
        self.params = {k: v.detach()[index].clone().requires_grad_() for k, v in self.params.items()}
        opt = type(self.opt)(list(self.params.values()), **self.opt.defaults)
        for p_old, p_new in zip(old, self.params.values(), strict=True):
            if p_old in self.opt.state:
                opt.state[p_new] = {k: v[index].clone() if _per_member(v, p_old) else v.clone()
                                    for k, v in self.opt.state[p_old].items()}
        for group, rate in zip(opt.param_groups, lr, strict=True):
            group["lr"] = rate
        self.opt = opt


def _per_member(value, p: Tensor) -> bool:
    return isinstance(value, Tensor) and value.shape == p.shape


def _pick(value, i: int, p: Tensor):
    if _per_member(value, p):
        return value[i].clone()
    return value.clone() if isinstance(value, Tensor) else value


def dry_run(wrapper: nn.Module, params: dict[str, Tensor], x_shape: tuple[int, ...],
            members: int = 2) -> list:
    """Run the vmapped loss on the ``meta`` device: the noise it asks for, or the error it raises."""
    meta = {f"model.{k}": torch.empty((members, *v.shape[1:]), dtype=v.dtype, device="meta")
            for k, v in params.items()}
    x = torch.empty((members, *x_shape), device="meta")
    recorders = []

    def loss(p, xm):
        mode = _Noise()
        recorders.append(mode)
        with mode:
            out = functional_call(wrapper, p, (xm,))
        if len(out) != 1:
            raise GenbenchError(f"training_losses yields {len(out)} losses, not one")
        return out[0]

    vmap(loss)(meta, x)
    return recorders[-1].shapes


def ensemble_applies(models: Sequence[nn.Module], dataset: ImageDataset,
                     configs: Sequence[TrainConfig]) -> Verdict:
    """Whether these runs can train as one ensemble (else train them one by one, and why)."""
    if not models or len(models) != len(configs):
        return Verdict(False, "needs one config per model, at least one model")
    if rank_and_world()[1] > 1:
        return Verdict(False, "under torchrun each run trains alone")
    first = models[0]
    if not isinstance(first, Trainable):
        return Verdict(False, f"{type(first).__name__} is not trained by gradient")
    shapes = {k: v.shape for k, v in first.state_dict().items()}
    for model in models[1:]:
        if type(model) is not type(first) or getattr(model, "config", None) != getattr(first, "config", None):
            return Verdict(False, "the models differ in class or hyperparameters")
        if {k: v.shape for k, v in model.state_dict().items()} != shapes:
            return Verdict(False, "the models differ in architecture")
    base = replace(configs[0], seed=0)
    if any(replace(c, seed=0) != base for c in configs):
        return Verdict(False, "the training configs differ in more than the seed")
    opts = first.configure_optimizers(base.lr)
    if len(opts) != 1:
        return Verdict(False, f"{len(opts)} optimizers (alternating updates)")
    opt = next(iter(opts.values()))
    if type(opt) not in ELEMENTWISE_OPTIMIZERS or len(opt.param_groups) != 1:
        return Verdict(False, f"{type(opt).__name__} with {len(opt.param_groups)} groups is not "
                              "one elementwise optimizer")
    if [id(p) for p in opt.param_groups[0]["params"]] != [id(p) for p in first.parameters()]:
        return Verdict(False, "the optimizer does not step exactly the model's parameters")
    if base.early_stopping_epochs or watches_samples(first):
        return Verdict(False, "callbacks beyond the learning curve (early stopping, sample grids)")
    if list(first.buffers()):
        return Verdict(False, "the model has buffers (per-member running statistics)")
    params = {k: v.unsqueeze(0) for k, v in first.named_parameters()}
    try:
        dry_run(_Losses(copy.deepcopy(first)), params, (base.batch_size, *dataset.shape))
    except Exception as exc:  # noqa: BLE001 (any failure of the vectorised loss: train one by one)
        return Verdict(False, f"the loss does not vectorise ({type(exc).__name__}: {exc})")
    return Verdict(True)


def train_ensemble(models: Sequence[nn.Module], dataset: ImageDataset, configs: Sequence[TrainConfig],
                   run_dirs: Sequence[Path], metas: Sequence[dict[str, Any]],
                   max_steps: int | None = None,
                   progress: bool = True) -> list[TrainResult | TrainingDiverged]:
    """Train each ``models[i]`` as ``train(models[i], dataset, configs[i], run_dirs[i], metas[i])``
    would, all in one vectorised pass; one result per member (its ``TrainingDiverged`` where it
    went non-finite). Each member's ``seconds`` is its training clock's: the ensemble's wall time."""
    verdict = ensemble_applies(models, dataset, configs)
    if not verdict:
        raise GenbenchError(f"these runs cannot train as one ensemble: {verdict.reason}")
    if len({str(Path(d).resolve()) for d in run_dirs}) != len(run_dirs):
        raise GenbenchError("every member needs its own run directory")
    results: list[TrainResult | TrainingDiverged | None] = [None] * len(models)
    _level_starts(models, dataset, configs, run_dirs, metas, max_steps, results)
    members = {i: Run.begin(model, dataset, configs[i], Path(run_dirs[i]), metas[i])
               for i, model in enumerate(models) if results[i] is None}
    if not members:
        return results
    first = next(iter(members.values()))  # levelled: every member at the same step, with one cadence
    cadence = first.cadence(max_steps)
    bar = progress_bar((cadence.end_step - first.start) * first.config.batch_size * len(members),
                       f"ensemble x{len(members)}", progress)
    steps = _Vectorised(members, results, dataset.device, bar)
    cadence.run(steps, first.start)
    bar.close()
    for row in range(len(steps.active)):
        steps.sync(row)
    for i in steps.active:
        results[i] = members[i].finish()
    return results


class _Vectorised:
    """The ensemble's steps (``genbench.train.cadence.Steps``): the active members' losses as one
    vmapped batch, one optimizer over their stacked parameters; a member that diverges is dropped."""

    def __init__(self, members: dict[int, Run], results: list, device: torch.device, bar):
        self.members, self.results, self.device, self.bar = members, results, device, bar
        self.active = list(members)  # member i of the stack is run active[i]
        self.first = next(iter(members.values()))
        self.stack = _stack_members(list(members.values()))
        rates = self.first.optimizers.rates["model"]
        self.rates = ScheduledRates(rates.initial, rates.schedule)  # the stack's optimizer's
        self.stack.template.train()

    def take(self, step: int) -> None:
        config = self.first.config
        epoch = step / self.first.steps_per_epoch
        set_progress(self.stack.template, config, epoch)
        xs, noises = [], []
        for i in self.active:
            xs.append(self.members[i].batch(step))  # as train(): binarization, then the noise
            noises.append([torch.randn(shape, dtype=dtype, device=self.device)
                           for shape, dtype in self.stack.noise_shapes(tuple(xs[-1].shape))])
        self.rates.apply(self.stack.opt, epoch)
        losses = self.stack.step(torch.stack(xs), [torch.stack(parts) for parts in zip(*noises, strict=True)])
        for row, i in enumerate(self.active):
            self.members[i].record(step, [("model", losses[row])])
        self.bar.update(config.batch_size * len(self.active))

    def check(self) -> bool:
        """Read every active member's losses; a member that diverged is failed and dropped."""
        keep = []
        for row, i in enumerate(self.active):
            try:
                self.members[i].window.check()
                keep.append(row)
            except TrainingDiverged as exc:
                self.results[i] = exc
        if len(keep) < len(self.active) and keep:
            self.stack.keep(keep)
        self.active = [self.active[row] for row in keep]
        return bool(self.active)

    def diverged_before(self) -> None:
        for i in self.active:
            self.members[i].window.check()

    def end_epoch(self) -> bool:
        for i in self.active:
            self.members[i].end_epoch()
        return True

    def save(self, step: int) -> None:
        for row, i in enumerate(self.active):
            self.sync(row)
            self.members[i].save(step)

    def sync(self, row: int) -> None:
        """Member ``row``'s own module and optimizer set from the stack (its checkpoint is then
        the single-run format)."""
        member = self.members[self.active[row]]
        with torch.no_grad():
            for name, p in member.model.named_parameters():
                p.copy_(self.stack.params[name][row])
        opt = member.optimizers.named["model"]
        own = opt.param_groups[0]["params"]
        opt.state.clear()
        for j, state in self.stack.state_of(row).items():
            opt.state[own[j]] = state
        for group, source in zip(opt.param_groups, self.stack.opt.param_groups, strict=True):
            group["lr"] = source["lr"]


def _level_starts(models, dataset, configs, run_dirs, metas, max_steps, results) -> None:
    """Members whose checkpoints are behind the furthest are trained alone up to it."""
    starts = []
    for run_dir in run_dirs:
        path = Path(run_dir) / ckpt.FILENAME
        starts.append(int(ckpt.read_checkpoint(path)[0]["step"]) if path.exists() else 0)
    target = max(starts) if max_steps is None else min(max(starts), max_steps)
    for i, begun in enumerate(starts):
        if begun < target:
            try:
                train(models[i], dataset, configs[i], Path(run_dirs[i]), metas[i], max_steps=target,
                      progress=False)
            except TrainingDiverged as exc:
                results[i] = exc


def _stack_members(members: list[Run]) -> _Stack:
    opt = members[0].optimizers.named["model"]
    names = [k for k, _ in members[0].model.named_parameters()]
    params = {k: torch.stack([dict(m.model.named_parameters())[k].detach() for m in members]) for k in names}
    template = copy.deepcopy(members[0].model)
    stack = _Stack(template, params, type(opt), opt.defaults)
    for group, source in zip(stack.opt.param_groups, opt.param_groups, strict=True):
        group["lr"] = source["lr"]
    states = [m.optimizers.named["model"] for m in members]
    for j, p in enumerate(stack.params.values()):
        per = [o.state.get(o.param_groups[0]["params"][j]) for o in states]
        if per[0] is None:
            continue
        stack.opt.state[p] = {k: torch.stack([s[k] for s in per]) if _per_member(v, p[0]) else
                              (v.clone() if isinstance(v, Tensor) else v) for k, v in per[0].items()}
    return stack


__all__ = ["ELEMENTWISE_OPTIMIZERS", "Verdict", "ensemble_applies", "train_ensemble"]
