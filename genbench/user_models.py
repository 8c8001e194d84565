"""Scoring a model whose code is the user's: ``genbench score WEIGHTS --model-code FILE.py:NAME``.

This is the one kind of code genbench runs that it did not write: the file (or installed module)
is imported and NAME (a class or a factory) is called with the ``--init`` keyword arguments, so it
runs with the user's rights, as any script would. The weights are still data only: a safetensors
file, or a ``.pt`` read by ``torch.load(weights_only=True)`` (``genbench.scoring``), checked key by
key against the model (``check_state_specs``) before they are loaded.

Before the long evaluation the model's contract is checked on a tiny batch (``check_contract``):
each protocol method it has must give outputs of the documented shape, finite, samples in [0, 1],
so a transposed ``log_importance_weights`` is one line in a second, not a wrong NLL in an hour.

Whatever the user's code raises is its failure, one line: an exception, an exit it asks for
(``sys.exit``: never a silent exit 0) or a KeyboardInterrupt it raises itself. A real Ctrl-C is
still an interrupt: while ``interrupts_marked`` lasts, SIGINT raises ``Interrupted``, a
KeyboardInterrupt genbench can tell from one that code raised (``raised_by_code``).
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import json
import signal
import sys
import threading
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from genbench.core.errors import GenbenchError
from genbench.core.protocols import (
    DiffusionDecoder,
    DiffusionModel,
    ExactLikelihood,
    LatentVariableModel,
    Representation,
    Sampler,
    VelocityField,
    data_interval,
)
from genbench.core.state_specs import check_state_specs, finite_state, model_specs, spec_of
from genbench.data import DATASETS
from genbench.metrics.registry import METRICS
from genbench.scoring import LoadedModel, read_safetensors, read_safetensors_header, read_torch_state_dict

#: the prefix ``nn.DataParallel`` and ``DistributedDataParallel`` leave on every key
PARALLEL_PREFIX = "module."
#: test points and importance samples of the contract check (k != B, so [B, k] is not [k, B])
CONTRACT_POINTS, CONTRACT_K = 2, 3


def parse_model_code(text: str) -> tuple[str, str]:
    """(file or module, NAME) of ``path/to/file.py:NAME`` or ``package.module:NAME``."""
    source, sep, name = text.rpartition(":")
    if not sep or not source or not name.isidentifier():
        raise GenbenchError(f"--model-code expects FILE.py:NAME or MODULE:NAME, got {text!r}")
    return source, name


def import_user_code(source: str):
    """The user's module: a ``.py`` file imported from its path, else an installed module by name;
    a file that is not Python, or an exception while importing, is one line."""
    if not (source.endswith(".py") or "/" in source):
        return _run_import(source, lambda: importlib.import_module(source))
    path = Path(source)
    if not path.is_file():
        raise GenbenchError(f"--model-code: no Python file at {path}")
    code = _compiled(path)
    name = f"genbench_user_model_{path.stem}"
    module = importlib.util.module_from_spec(importlib.util.spec_from_file_location(name, path))
    sys.modules[name] = module  # as an import does: dataclasses and pickling look it up there

    def run():
        try:
            exec(code, module.__dict__)  # the user's code, by the user's choice (--model-code)
        except BaseException:
            del sys.modules[name]
            raise
        return module

    return _run_import(source, run)


def _compiled(path: Path):
    """The file's code object; a file that is not Python source (a syntax error, binary) is one line."""
    try:
        return compile(path.read_bytes(), str(path), "exec")
    except SyntaxError as exc:
        raise GenbenchError(f"--model-code {path}: not Python (syntax error at line {exc.lineno}: "
                            f"{exc.msg})") from None
    except (ValueError, OSError) as exc:  # null bytes, an undecodable file, unreadable
        raise GenbenchError(f"--model-code {path}: not Python source ({_described(exc)})") from None


def _run_import(source: str, load):
    """``load()``, the user's module; whatever its code raises is one line."""
    try:
        return load()
    except SyntaxError as exc:  # an installed module's, or one it imports
        raise GenbenchError(f"--model-code {source}: not Python (syntax error in {exc.filename} at line "
                            f"{exc.lineno}: {exc.msg})") from None
    except BaseException as exc:
        if not raised_by_code(exc):
            raise
        raise GenbenchError(f"--model-code {source}: importing it raised {_described(exc)}") from None


class Interrupted(KeyboardInterrupt):
    """The KeyboardInterrupt of a real SIGINT (Ctrl-C) while ``interrupts_marked`` lasts."""


def _raise_interrupted(signum, frame):
    raise Interrupted


@contextmanager
def interrupts_marked():
    """While it lasts, SIGINT raises ``Interrupted`` where it would raise a KeyboardInterrupt (Python's
    own handler, in the main thread); anywhere else (SIGINT ignored, another handler) nothing changes."""
    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    signal.signal(signal.SIGINT, _raise_interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def raised_by_code(exc: BaseException) -> bool:
    """Whether ``exc``, out of the user's code, is that code's own failure: an exception, an exit it asked
    for (SystemExit), or a KeyboardInterrupt no SIGINT raised (no handler that raises one is installed
    but ``interrupts_marked``'s, and this is not its ``Interrupted``)."""
    if isinstance(exc, KeyboardInterrupt):
        handler = signal.getsignal(signal.SIGINT)
        return not isinstance(exc, Interrupted) and (handler is _raise_interrupted or not callable(handler))
    return isinstance(exc, Exception | SystemExit)


def _described(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def parse_init(pairs: list[str]) -> dict[str, Any]:
    """``--init KEY=VALUE`` pairs as keyword arguments, each value a Python literal."""
    kwargs = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise GenbenchError(f"--init expects KEY=VALUE with KEY a Python name, got {pair!r}")
        try:
            kwargs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise GenbenchError(f"--init {key}={value!r} is not a Python literal (a number, string, "
                                f"tuple, list, dict, True/False/None; quote a string: {key}=\"'text'\")"
                                ) from None
    return kwargs


def build_user_model(module, source: str, name: str, kwargs: dict[str, Any]) -> nn.Module:
    """``NAME(**kwargs)`` of the user's module: it must exist and give a torch module."""
    factory = getattr(module, name, None)
    if factory is None:
        public = sorted(n for n in vars(module) if not n.startswith("_"))
        raise GenbenchError(f"--model-code {source}: no {name!r} in it (it defines: {', '.join(public)})")
    if not callable(factory):
        raise GenbenchError(f"--model-code {source}:{name} is not a class or a function")
    try:
        model = factory(**kwargs)
    except BaseException as exc:
        if not raised_by_code(exc):
            raise
        raise GenbenchError(f"--model-code {source}:{name}({_call_text(kwargs)}) raised "
                            f"{_described(exc)}") from None
    if not isinstance(model, nn.Module):
        raise GenbenchError(f"--model-code {source}:{name} gave {type(model).__name__}, not a torch "
                            "nn.Module (its weights load through load_state_dict)")
    return model


def _call_text(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def read_user_state(path: Path, state_key: str | None) -> dict[str, Tensor]:
    """The tensors of a weights file: a safetensors file whole, or the state dict of a ``.pt``."""
    if path.suffix == ".safetensors":
        if state_key is not None:
            raise GenbenchError("--state-key names a dict inside a .pt file; a safetensors file is flat")
        _, specs = read_safetensors_header(path)
        return read_safetensors(path, {key: key for key in specs})
    return read_torch_state_dict(path, state_key)


def strip_parallel_prefix(state: dict[str, Tensor], model_keys) -> dict[str, Tensor]:
    """Keys without DataParallel's ``module.`` where every key has it and the model's do not."""
    keys = set(model_keys)
    if state and all(k.startswith(PARALLEL_PREFIX) for k in state) \
            and not any(k.startswith(PARALLEL_PREFIX) for k in keys):
        return {k[len(PARALLEL_PREFIX):]: v for k, v in state.items()}
    return state


def load_user_weights(model: nn.Module, path: Path, state_key: str | None) -> None:
    """The file's weights into ``model``: every key and shape checked first, NaNs refused at the
    model's precision."""
    path = Path(path)
    state = read_user_state(path, state_key)
    expected = model_specs(model)
    state = strip_parallel_prefix(state, expected)
    check_state_specs(expected, {k: spec_of(v) for k, v in state.items()}, str(path), type(model).__name__)
    model.load_state_dict(finite_state(state, expected, str(path)))


def load_user_model(path: Path, model_code: str, init: list[str], state_key: str | None,
                    dataset: str | None) -> LoadedModel:
    """The user's model built from its code and loaded with the weights at ``path``, for ``dataset``."""
    if dataset is None:
        raise GenbenchError("--model-code needs --dataset NAME (the data the model was trained on)")
    shape = tuple(DATASETS[dataset].shape)
    path = Path(path)
    if not path.is_file():
        raise GenbenchError(f"no weights file at {path}")
    source, name = parse_model_code(model_code)
    kwargs = parse_init(init)
    model = build_user_model(import_user_code(source), source, name, kwargs)
    load_user_weights(model, path, state_key)
    check_capabilities(model, name)
    config = json.loads(json.dumps(kwargs, default=repr))
    return LoadedModel(model.eval(), model_code, config, dataset, shape)


#: the capabilities a metric can use, and so the methods a scored model must have some of
SCORED = (LatentVariableModel, ExactLikelihood, DiffusionModel, Sampler, Representation)


def protocol_methods(protocol: type) -> list[str]:
    """The methods a protocol declares, in their order."""
    return [n for n, v in vars(protocol).items() if callable(v) and not n.startswith("_")]


def _missing(model: object, protocol: type) -> list[str]:
    """The methods of ``protocol`` the model lacks, as Protocol.method."""
    return [f"{protocol.__name__}.{m}" for m in protocol_methods(protocol)
            if not callable(getattr(model, m, None))]


def check_capabilities(model: object, name: str) -> None:
    """A model no metric can use is one line naming the methods to implement."""
    if not any(isinstance(model, proto) for proto in SCORED):
        wanted = "; or ".join(", ".join(m + "()" for m in protocol_methods(p)) + f" ({p.__name__})"
                              for p in SCORED)
        raise GenbenchError(f"{name} implements none of genbench's capabilities, so no metric applies: "
                            f"implement {wanted} (see README, The model contract)")


#: what an applicable metric without a value usually waits for
NEEDS = {"elbo_surgery": " (a fixed prior() and a diagonal-Gaussian encode())",
         "sample_quality": " (--quality-samples N)",
         **dict.fromkeys(("beta_vae_score", "factor_vae_score", "mig"),
                         " (a data set with ground-truth factors)")}


def not_applicable(model: object, values: dict[str, float], skipped: dict[str, str]) -> dict[str, str]:
    """Why each metric without a value has none: the protocol methods the model lacks, or else
    that it needs data or settings this evaluation did not have."""
    reasons = {}
    for name, spec in METRICS.items():
        if any(spec.column_of(key) is not None for key in values):
            continue
        if name in skipped:
            reasons[name] = f"skipped: {skipped[name]}"
        elif not spec.applies(model):
            lacks = " or ".join(", ".join(_missing(model, p)) for p in spec.requires)
            reasons[name] = f"the model lacks {lacks}"
        else:
            reasons[name] = "needs data or settings this evaluation lacks" + NEEDS.get(name, "")
    return reasons



@torch.no_grad()
def check_contract(model: nn.Module, test: Tensor, name: str) -> None:
    """Each protocol method the model has, called on ``CONTRACT_POINTS`` test points, must give the
    documented shapes, finite values and samples in [0, 1]; else one line naming the method."""
    x = test[:CONTRACT_POINTS]
    batch, shape = len(x), tuple(x.shape[1:])
    call = functools.partial(_call, name)
    if isinstance(model, LatentVariableModel):
        weights = call("log_importance_weights", model.log_importance_weights, x, CONTRACT_K)
        _check_tensor(weights, (CONTRACT_K, batch),
                      f"{name}.log_importance_weights(x, k={CONTRACT_K}) on {batch} points", "[k, B]")
        q = call("encode", model.encode, x)
        if not isinstance(q, Distribution) or tuple(q.batch_shape) != (batch,):
            got = f"batch shape {list(q.batch_shape)}" if isinstance(q, Distribution) else type(q).__name__
            raise GenbenchError(f"{name}.encode(x) on {batch} points gave {got}, expected a torch "
                                f"Distribution of batch shape [B] = [{batch}]")
    if isinstance(model, ExactLikelihood):
        _check_tensor(call("log_prob", model.log_prob, x), (batch,), f"{name}.log_prob(x) on {batch} points",
                      "[B]")
    if isinstance(model, DiffusionModel):  # before sample, which calls these
        _check_diffusion(model, x, name, call)
    if isinstance(model, Sampler):
        samples = _check_tensor(call("sample", model.sample, batch), (batch, *shape),
                                f"{name}.sample({batch})", "[n, *data_shape]")
        if bool((samples < 0).any() | (samples > 1).any()):
            raise GenbenchError(f"{name}.sample({batch}) gave values in [{samples.min().item():.3g}, "
                                f"{samples.max().item():.3g}], outside [0, 1]")
    if isinstance(model, Representation):
        rep = call("represent", model.represent, x)
        if not isinstance(rep, Tensor) or rep.dim() != 2 or len(rep) != batch:
            got = list(rep.shape) if isinstance(rep, Tensor) else type(rep).__name__
            raise GenbenchError(f"{name}.represent(x) on {batch} points gave {got}, expected [B, d]")


def _check_diffusion(model, x: Tensor, name: str, call) -> None:
    """noise_schedule at t = 0 and 1: two ``[B]`` tensors, alpha_t > 0 and sigma_t > 0 (the bound's decoder
    and the ODE's prior need both); predict_noise (and velocity) shaped like x; decoder_log_prob ``[B]``."""
    batch = len(x)
    lo, hi = data_interval(model)
    y = lo + (hi - lo) * x
    for when in (0.0, 1.0):
        t = torch.full((batch,), when, dtype=x.dtype, device=x.device)
        schedule = call("noise_schedule", model.noise_schedule, t)
        what = f"{name}.noise_schedule(t = {when:g} for {batch} points)"
        if not (isinstance(schedule, tuple | list) and len(schedule) == 2):
            raise GenbenchError(f"{what} gave {type(schedule).__name__}, expected (alpha_t, sigma_t)")
        alpha, sigma = (_check_tensor(v, (batch,), what, "[B]") for v in schedule)
        if bool((sigma <= 0).any()) or (when == 0.0 and bool((alpha <= 0).any())):
            raise GenbenchError(f"{what} gave alpha_t {alpha.tolist()}, sigma_t {sigma.tolist()}: sigma_t "
                                "must be > 0 at both ends and alpha_0 > 0 (x_t = alpha_t x + sigma_t eps)")
        column = (-1, *[1] * (y.dim() - 1))
        x_t = alpha.reshape(column) * y + sigma.reshape(column) * torch.randn_like(y)
        noise = call("predict_noise", model.predict_noise, x_t, t)
        _check_tensor(noise, tuple(x.shape), f"{name}.predict_noise(x_t, t = {when:g})", "[B, *data_shape]")
        if isinstance(model, VelocityField):
            _check_tensor(call("velocity", model.velocity, y, t), tuple(x.shape),
                          f"{name}.velocity(x_t, t = {when:g})", "[B, *data_shape]")
    if isinstance(model, DiffusionDecoder):
        _check_tensor(call("decoder_log_prob", model.decoder_log_prob, y, y), (batch,),
                      f"{name}.decoder_log_prob(x, z_0) on {batch} points", "[B]")


def _call(name: str, method: str, fn, *args):
    """A protocol method's output; an exception it raises is one line naming it."""
    try:
        return fn(*args)
    except BaseException as exc:
        if not raised_by_code(exc):
            raise
        raise GenbenchError(f"{name}.{method} raised {_described(exc)} on a batch of "
                            f"{CONTRACT_POINTS} test points") from None


def _check_tensor(value: Any, expected: tuple[int, ...], what: str, convention: str) -> Tensor:
    """``value`` must be a tensor of shape ``expected`` (``convention`` in the contract's words),
    every value finite."""
    if not isinstance(value, Tensor):
        raise GenbenchError(f"{what} gave {type(value).__name__}, expected a tensor {convention}")
    if tuple(value.shape) != expected:
        raise GenbenchError(f"{what} gave shape {list(value.shape)}, expected {convention} = "
                            f"{list(expected)}")
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        raise GenbenchError(f"{what} gave NaN or infinite values")
    return value


def user_code_file(model_code: str) -> Path | None:
    """The file of ``--model-code``'s code: FILE.py itself, or an imported module's file (None where
    it has none)."""
    source, _ = parse_model_code(model_code)
    if source.endswith(".py") or "/" in source:
        return Path(source)
    module = sys.modules.get(source)
    return Path(module.__file__) if getattr(module, "__file__", None) else None


def raised_at(exc: BaseException, path: Path) -> str | None:
    """``file:line`` of the deepest frame of ``exc``'s traceback inside ``path`` (None: none is)."""
    wanted = path.resolve()
    inside = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).resolve() == wanted]
    return f"{path}:{inside[-1].lineno}" if inside else None


@contextmanager
def user_code_errors(model_code: str | None, name: str):
    """Around the evaluation of the user's model: an exception raised in the user's code (after its
    contract check passed) is one line naming it and where in the user's file it was raised, as
    ``check_contract`` reports one; genbench's own errors, and any other code's, pass unchanged. An
    exit or a KeyboardInterrupt the code raised (``raised_by_code``) is one line wherever it came from."""
    path = user_code_file(model_code) if model_code is not None else None
    try:
        yield
    except GenbenchError:
        raise
    except BaseException as exc:
        where = raised_at(exc, path) if path is not None else None
        if not raised_by_code(exc) or where is None and isinstance(exc, Exception):
            raise
        at = f" at {where}" if where else ""
        raise GenbenchError(f"{name} raised {_described(exc)}{at}, during the evaluation (its contract "
                            f"check on {CONTRACT_POINTS} test points had passed)") from None
