"""Many runs trained as one: seeds of one architecture as a vectorised ensemble.

``train_ensemble`` trains M runs that share a model class, its hyperparameters, the data set
and the training config (seeds aside) in one process: the M members' parameters are stacked
``[M, ...]`` and one ``torch.func.vmap`` of ``functional_call`` over the model's
``training_losses`` computes the M losses with batched matmuls; one optimizer steps the
stacked parameters (Adam is elementwise, so one Adam over ``[M, ...]`` is M Adams).

Each member is the run ``train()`` would make, step for step:

- its batch: ``Batches`` of its own config (the (seed, epoch) permutation), drawn after the
  global generators are seeded with (seed, step) exactly as the loop seeds them;
- its noise: the model's ``torch.randn_like`` calls are answered, under a
  ``TorchFunctionMode``, from tensors drawn *outside* vmap from that member's seeded
  generator, in the order the model asks for them (the shapes come from one dry run on the
  ``meta`` device per batch shape). vmap's ``randomness="different"`` would give each member
  noise, but not its single run's noise; any other random op inside the loss stays an error
  (vmap's default ``randomness="error"``), so such a model is refused by ``ensemble_applies``;
- its checkpoint: written by the loop's own ``save_run`` from the member's own module and
  optimizer (synced from the stacked state), so it is the single-run format, resumes alone
  with ``train()`` and scores with ``genbench score``; resuming reads it with the loop's
  ``resume_run``. Members at different steps are brought level by ``train()`` first.

Numbers: a member's losses and parameters equal its single run's to float rounding, not
bit for bit: batched matmuls (vmap's ``bmm``) and ``mm`` sum in different orders
(tests/test_ensemble.py states the tolerance). A NaN fails that member only: at the loop's
check points its ``TrainingDiverged`` is its result, it is dropped from the stack, its last
checkpoint stays the one before the NaN, and the others train on.

Out of scope (``ensemble_applies`` says why, train those one by one): several optimizers
(GANs), callbacks beyond the learning curve (early stopping, sample grids), buffers,
non-elementwise optimizers, data-dependent control flow or other randomness in the loss,
``torchrun``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.overrides import TorchFunctionMode
from tqdm import tqdm

from genbench.core.distributed import rank_and_world
from genbench.core.errors import GenbenchError, TrainingDiverged
from genbench.core.protocols import DataInitialized, ProgressAware, Trainable
from genbench.data.base import ImageDataset
from genbench.train import checkpoint as ckpt
from genbench.train.callbacks import LearningCurve, TrainState, watches_samples
from genbench.train.loop import (
    Batches,
    LossWindow,
    Optimizers,
    TrainConfig,
    TrainResult,
    fit_tensor,
    resume_run,
    save_run,
    seed_step,
    step_seed,
    train,
)

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

    def losses(self, x: Tensor, noise: list[Tensor]) -> Tensor:
        return self._loss(self.params, x, noise)

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


@dataclass
class _Member:
    """One run of the ensemble: its own module, optimizer, batches, window and curve."""

    model: nn.Module
    config: TrainConfig
    run_dir: Path
    meta: dict[str, Any]
    optimizers: Optimizers
    batches: Batches
    curve: LearningCurve
    window: LossWindow
    state: TrainState
    start: int = 0


def train_ensemble(models: Sequence[nn.Module], dataset: ImageDataset, configs: Sequence[TrainConfig],
                   run_dirs: Sequence[Path], metas: Sequence[dict[str, Any]],
                   max_steps: int | None = None,
                   progress: bool = True) -> list[TrainResult | TrainingDiverged]:
    """Train each ``models[i]`` as ``train(models[i], dataset, configs[i], run_dirs[i], metas[i])``
    would, all in one vectorised pass; one result per member (its ``TrainingDiverged`` where it
    went non-finite). ``seconds`` is the ensemble's wall time."""
    started = time.perf_counter()
    verdict = ensemble_applies(models, dataset, configs)
    if not verdict:
        raise GenbenchError(f"these runs cannot train as one ensemble: {verdict.reason}")
    if len({str(Path(d).resolve()) for d in run_dirs}) != len(run_dirs):
        raise GenbenchError("every member needs its own run directory")
    device = dataset.device
    results: list[TrainResult | TrainingDiverged | None] = [None] * len(models)
    _level_starts(models, dataset, configs, run_dirs, metas, max_steps, results)
    members: dict[int, _Member] = {}
    for i, (model, config) in enumerate(zip(models, configs, strict=True)):
        if results[i] is not None:
            continue
        model.to(device)
        meta = {**metas[i], "seed": config.seed, "train": asdict(config)}
        optimizers, batches, curve = Optimizers(model, config), Batches(dataset, config), LearningCurve()
        start = resume_run(model, optimizers, [curve], Path(run_dirs[i]), meta)
        if start is None:
            start = 0
            if isinstance(model, DataInitialized):
                model.init_from_data(fit_tensor(dataset, config.seed))
        per_epoch = batches.steps_per_epoch
        members[i] = _Member(model, config, Path(run_dirs[i]), meta, optimizers, batches, curve,
                             LossWindow(per_epoch), TrainState(model, Path(run_dirs[i]), config.seed, 0,
                                                               per_epoch, start), start)
    if not members:
        return results
    first = next(iter(members.values()))
    config, per_epoch, start = first.config, first.batches.steps_per_epoch, first.start
    total_steps = round(config.epochs * per_epoch)
    end_step = total_steps if max_steps is None else min(total_steps, max_steps)
    stack = _stack_members(list(members.values()))
    active = list(members)  # member i of the stack is run active[i]
    schedule, initial, scale = first.optimizers.schedule, first.optimizers.initial["model"], None
    bar = tqdm(total=(end_step - start) * config.batch_size * len(active), unit="img", unit_scale=True,
               disable=not progress, desc=f"ensemble x{len(active)}", leave=False)
    stack.template.train()
    for step in range(start, end_step):
        epoch = step / per_epoch
        if isinstance(stack.template, ProgressAware):
            stack.template.set_training_progress(epoch, config.kl_weight(epoch))
        xs, noises = [], []
        for i in active:
            seed_step(step_seed(members[i].config.seed, step), device)  # as train(): binarization, noise
            xs.append(members[i].batches(step))
            noises.append([torch.randn(shape, dtype=dtype, device=device)
                           for shape, dtype in stack.noise_shapes(tuple(xs[-1].shape))])
        if schedule(epoch) != scale:
            scale = schedule(epoch)
            for group, rate in zip(stack.opt.param_groups, initial, strict=True):
                group["lr"] = rate * scale
        try:
            noise = [torch.stack(parts) for parts in zip(*noises, strict=True)]
            losses = stack.losses(torch.stack(xs), noise)
            stack.opt.zero_grad(set_to_none=True)
            losses.sum().backward()
            stack.opt.step()
        except Exception:
            for i in active:
                members[i].window.check()  # a loss that went non-finite before is the real cause
            raise
        losses = losses.detach()
        for row, i in enumerate(active):
            member = members[i]
            pairs = [("model", losses[row])]
            member.window.add(step, pairs)
            member.state.step = step + 1
            member.curve.on_step_end(member.state, pairs)
        bar.update(config.batch_size * len(active))
        done = step + 1
        epoch_ends = done % per_epoch == 0 or done == total_steps
        checkpoints = done % config.checkpoint_every == 0 and done < end_step
        if epoch_ends or checkpoints or done % config.check_every == 0:
            active = _check(members, active, stack, results)
            if not active:
                break
        if epoch_ends:
            for member in (members[i] for i in active):
                member.curve.record(member.state.epoch, member.curve.on_epoch_end(member.state))
        if checkpoints:
            for row, i in enumerate(active):
                _save_member(members[i], stack, row, done, total_steps)
    active = _check(members, active, stack, results)
    bar.close()
    seconds = time.perf_counter() - started
    for row, i in enumerate(active):
        member = members[i]
        end = max(member.state.step, member.start)
        _save_member(member, stack, row, end, total_steps)
        member.model.eval()
        results[i] = TrainResult(end, member.start, seconds, member.window.last,
                                 epochs_trained=end / per_epoch, curve=member.curve.rows)
    return results


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


def _stack_members(members: list[_Member]) -> _Stack:
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


def _check(members, active, stack: _Stack, results) -> list[int]:
    """Read every active member's losses; a member that diverged is failed and dropped."""
    keep = []
    for row, i in enumerate(active):
        try:
            members[i].window.check()
            keep.append(row)
        except TrainingDiverged as exc:
            results[i] = exc
    if len(keep) < len(active) and keep:
        stack.keep(keep)
    return [active[row] for row in keep]


def _save_member(member: _Member, stack: _Stack, row: int, step: int, total_steps: int) -> None:
    """Write member ``row``'s checkpoint from its own module and optimizer (the single-run format)."""
    with torch.no_grad():
        for name, p in member.model.named_parameters():
            p.copy_(stack.params[name][row])
    opt = member.optimizers.named["model"]
    own = opt.param_groups[0]["params"]
    opt.state.clear()
    for j, state in stack.state_of(row).items():
        opt.state[own[j]] = state
    for group, source in zip(opt.param_groups, stack.opt.param_groups, strict=True):
        group["lr"] = source["lr"]
    save_run(member.run_dir, member.model, member.optimizers, [member.curve], member.meta, step, total_steps)


__all__ = ["ELEMENTWISE_OPTIMIZERS", "Verdict", "ensemble_applies", "train_ensemble"]
