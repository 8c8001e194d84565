"""diffusers (Hugging Face) DDPM and DDIM models scored as genbench diffusion models.

``load_diffusers_folder`` reads the folder a ``DDPMPipeline``/``DDIMPipeline`` ``save_pretrained`` wrote
(``unet/config.json``, ``unet/diffusion_pytorch_model.safetensors``, ``scheduler/scheduler_config.json``,
optionally ``model_index.json``) as data: each JSON is read strictly (bounded size, no NaN, no
duplicate keys) and checked field by field against the tables below (known class names, numeric
ranges, no unknown field); the weights are safetensors only (a ``.bin``/``.pt`` is a pickle and is
refused), checked key by key against the ``UNet2DModel`` built from the config on the meta device,
then read. diffusers' ``from_pretrained`` is never called: no pickle, no network, no remote code.

The wrapped model (``DiffusersDDPM``) follows genbench's ddpm conventions (``zoo/ddpm.py``): the
scheduler's T steps k = 0 .. T - 1 (diffusers' 0-based timesteps; Ho et al.'s step k + 1) sit at
t = k / (T - 1), so ``predict_noise(x_t, t)`` is the UNet at timestep t (T - 1); ``noise_schedule`` is
alpha = sqrt(alpha-bar), sigma = sqrt(1 - alpha-bar), with log alpha-bar the cubic spline through the
scheduler's exact values log prod_{j <= k} (1 - beta_j) (betas as diffusers defines them for
linear, scaled_linear and squaredcos_cap_v2, in float64): smooth in t for the probability-flow ODE,
exact on every step, so the bound (``time_steps`` = T - 1) is Ho et al.'s L_vlb on the scheduler's
own steps. The decoder is Ho et al.'s discretised Gaussian N(x_hat(z_0), beta_1) over each 8-bit
level's bin, as the zoo's ddpm's. The UNet sees images in [-1, 1] (``data_interval``), diffusers'
convention. Samples come from the scheduler's own ``step`` (DDPM: all T steps; DDIM: 50,
its pipeline's default: ``SAMPLE_STEPS``). Only eps-prediction (``prediction_type`` "epsilon")
and an unconditional UNet with positional time embedding are scored; anything else is one line.

diffusers is optional: ``pip install 'genbench[diffusers]'`` (it does not replace torch).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.interpolate import CubicSpline
from torch import Tensor, nn

from genbench.core.discretized import LEVELS, discretized_gaussian_log_prob
from genbench.core.errors import GenbenchError
from genbench.core.models import MAX_MODEL_BYTES
from genbench.core.state_specs import check_state_specs, finite_state, model_specs
from genbench.data import DATASETS
from genbench.scoring import LoadedModel, read_safetensors, read_safetensors_header

INSTALL = "pip install 'genbench[diffusers]'"
#: the longest config JSON read (a real one is about 1 KB)
MAX_CONFIG_BYTES = 1 << 16
UNET_CONFIG, WEIGHTS = Path("unet/config.json"), Path("unet/diffusion_pytorch_model.safetensors")
SCHEDULER_CONFIG, MODEL_INDEX = Path("scheduler/scheduler_config.json"), Path("model_index.json")
#: weight files that are pickles (torch.save's, diffusers' safe_serialization=False): never read
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
#: the pipelines whose folder is read, each with its scheduler
PIPELINES = {"DDPMPipeline": "DDPMScheduler", "DDIMPipeline": "DDIMScheduler"}
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
#: each scheduler's sampling steps, its pipeline's default (None: all T steps, DDPMPipeline's 1000)
SAMPLE_STEPS = {"DDPMScheduler": None, "DDIMScheduler": 50}
#: the largest beta of squaredcos_cap_v2 (diffusers' betas_for_alpha_bar)
MAX_BETA = 0.999

Check = Callable[[Any], "str | None"]
"""A field's check: None where the value is valid, else what was expected, in words."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def integer(lo: int, hi: int) -> Check:
    return lambda v: None if _is_int(v) and lo <= v <= hi else f"an integer in [{lo}, {hi}]"


def number(lo: float, hi: float, closed: str = "[]") -> Check:
    """A finite number in the interval; ``closed`` says which ends belong to it ("[]", "(]", "[)", "()")."""
    def check(v):
        ok = _is_number(v) and (lo <= v if closed[0] == "[" else lo < v) and (v <= hi if closed[1] == "]"
                                                                              else v < hi)
        return None if ok else f"a number in {closed[0]}{lo:g}, {hi:g}{closed[1]}"
    return check


def choice(*options: Any) -> Check:
    return lambda v: None if any(v is o if o is None or isinstance(o, bool) else v == o for o in options) \
        else "one of " + ", ".join(json.dumps(o) for o in options)


def boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else "true or false"


def optional(check: Check) -> Check:
    return lambda v: None if v is None else (None if check(v) is None else f"null or {check(v)}")


def listed(check: Check, longest: int) -> Check:
    """A list of 1 .. ``longest`` values, each passing ``check``."""
    def checked(v):
        if isinstance(v, list) and 1 <= len(v) <= longest and all(check(item) is None for item in v):
            return None
        return f"a list of 1 to {longest} values, each {check(object())}"
    return checked


def version(v: Any) -> str | None:
    return None if isinstance(v, str) and len(v) <= 32 else "a version string"


DOWN_BLOCKS = ("DownBlock2D", "AttnDownBlock2D", "ResnetDownsampleBlock2D", "AttnDownsampleBlock2D")
UP_BLOCKS = ("UpBlock2D", "AttnUpBlock2D", "ResnetUpsampleBlock2D", "AttnUpsampleBlock2D")
#: UNet2DModel's config fields, each with its check (the data shape's fields are checked again, against
#: the data set); a conditional or Fourier-embedded UNet (score-SDE's NCSN++) is refused
UNET_FIELDS: dict[str, Check] = {
    "sample_size": lambda v: None if integer(1, 1024)(v) is None or listed(integer(1, 1024), 2)(v) is None
    else "an integer in [1, 1024] or [height, width]",
    "in_channels": integer(1, 64),
    "out_channels": integer(1, 64),
    "center_input_sample": boolean,
    "time_embedding_type": choice("positional"),
    "time_embedding_dim": optional(integer(1, 16384)),
    "freq_shift": integer(0, 16),
    "flip_sin_to_cos": boolean,
    "down_block_types": listed(choice(*DOWN_BLOCKS), 8),
    "mid_block_type": optional(choice("UNetMidBlock2D")),
    "up_block_types": listed(choice(*UP_BLOCKS), 8),
    "block_out_channels": listed(integer(1, 4096), 8),
    "layers_per_block": integer(1, 16),
    "mid_block_scale_factor": number(0, 100, "(]"),
    "downsample_padding": integer(0, 4),
    "downsample_type": choice("conv", "resnet"),
    "upsample_type": choice("conv", "resnet"),
    "dropout": number(0, 1, "[)"),
    "act_fn": choice("silu", "swish", "mish", "gelu", "relu"),
    "attention_head_dim": optional(integer(1, 4096)),
    "norm_num_groups": integer(1, 1024),
    "attn_norm_num_groups": optional(integer(1, 1024)),
    "norm_eps": number(0, 1, "()"),
    "resnet_time_scale_shift": choice("default", "scale_shift"),
    "add_attention": boolean,
    "class_embed_type": choice(None),
    "num_class_embeds": choice(None),
    "num_train_timesteps": optional(integer(1, 100000)),
}
#: what both schedulers share; the fields that decide the likelihood come first
SCHEDULER_FIELDS: dict[str, Check] = {
    "num_train_timesteps": integer(2, 100000),
    "beta_start": number(0, 1, "()"),
    "beta_end": number(0, 1, "()"),
    "beta_schedule": choice(*BETA_SCHEDULES),
    "prediction_type": choice("epsilon"),
    "trained_betas": choice(None),
    "rescale_betas_zero_snr": choice(False),
    # the sampler's settings only
    "clip_sample": boolean,
    "clip_sample_range": number(0, 100, "(]"),
    "thresholding": boolean,
    "dynamic_thresholding_ratio": number(0, 1, "(]"),
    "sample_max_value": number(0, 100, "(]"),
    "timestep_spacing": choice("leading", "trailing", "linspace"),
    "steps_offset": integer(0, 1000),
}
SCHEDULERS: dict[str, dict[str, Check]] = {
    # the bound uses the posterior's variance beta-tilde whatever variance_type (the sampler's) says
    "DDPMScheduler": SCHEDULER_FIELDS | {
        "variance_type": choice("fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log")},
    "DDIMScheduler": SCHEDULER_FIELDS | {"set_alpha_to_one": boolean},
}
#: why a field's refused value is not scored, where a plain "expected ..." would not say
REFUSALS = {
    "prediction_type": "genbench scores eps-prediction (\"epsilon\") UNets: a {value} model predicts "
                       "another quantity, which the probability-flow ODE and the bound would misread",
    "beta_schedule": "genbench derives the noise schedule of " + ", ".join(BETA_SCHEDULES) + " only",
    "trained_betas": "a table of betas is not read; use a beta schedule: " + ", ".join(BETA_SCHEDULES),
    "rescale_betas_zero_snr": "a zero terminal SNR leaves no Gaussian prior at t = 1, where both "
                              "likelihoods end",
    "time_embedding_type": "only a positional time embedding takes diffusers' timesteps (a Fourier one "
                           "takes noise levels, a learned one integer steps)",
    "class_embed_type": "genbench scores unconditional UNets",
    "num_class_embeds": "genbench scores unconditional UNets",
}


# --- reading the folder -------------------------------------------------------------------------------------

def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file of at most ``MAX_CONFIG_BYTES``, strictly: no NaN or Infinity, no key
    twice; anything else is one line."""
    if not path.is_file():
        raise GenbenchError(f"{path}: missing (a folder DDPMPipeline/DDIMPipeline.save_pretrained wrote has "
                            f"{UNET_CONFIG}, {WEIGHTS} and {SCHEDULER_CONFIG})")
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise GenbenchError(f"{path}: {size:,} bytes, over the limit of {MAX_CONFIG_BYTES:,} for a config")

    def no_constant(name):
        raise ValueError(f"{name} is not JSON")

    def no_duplicates(pairs):
        keys = [key for key, _ in pairs]
        twice = sorted({key for key in keys if keys.count(key) > 1})
        if twice:
            raise ValueError(f"key {twice[0]!r} appears twice")
        return dict(pairs)

    try:
        obj = json.loads(path.read_bytes(), parse_constant=no_constant, object_pairs_hook=no_duplicates)
    except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, NaN, a repeated key, too deep
        raise GenbenchError(f"{path}: not strict JSON ({_first_line(exc)})") from None
    if not isinstance(obj, dict):
        raise GenbenchError(f"{path}: not a JSON object (a diffusers config)")
    return obj


def check_fields(obj: dict[str, Any], fields: dict[str, Check], path: Path) -> dict[str, Any]:
    """The config's fields (its ``_class_name`` and ``_diffusers_version`` aside), each known and valid."""
    values = {}
    for key, value in obj.items():
        if key in ("_class_name", "_diffusers_version"):
            expected = version(value) if key == "_diffusers_version" else None
        elif key not in fields:
            raise GenbenchError(f"{path}: unknown field {_clip(key)}; the fields genbench reads: "
                                f"{', '.join(fields)}")
        else:
            expected = fields[key](value)
            values[key] = value
        if expected is not None:
            why = REFUSALS[key].format(value=_clip(value)) if key in REFUSALS else f"expected {expected}"
            raise GenbenchError(f"{path}: {key} is {_clip(value)}: {why}")
    return values


def class_name(obj: dict[str, Any], known: tuple[str, ...], path: Path) -> str:
    name = obj.get("_class_name")
    if name not in known:
        raise GenbenchError(f"{path}: _class_name is {_clip(name)}; genbench reads {', '.join(known)}")
    return name


def refuse_pickles(folder: Path) -> None:
    """A pickle in the folder, its unet/ or its scheduler/ is one line: genbench never unpickles."""
    places = [place for place in (folder, folder / "unet", folder / "scheduler") if place.is_dir()]
    for path in sorted(path for place in places for path in place.iterdir()):
        if path.suffix in PICKLE_SUFFIXES:
            raise GenbenchError(f"{path}: refused, a pickle ({path.suffix}), and genbench never unpickles "
                                "(loading one runs the code it carries); save the model with "
                                "save_pretrained(..., safe_serialization=True), which writes safetensors")


def read_model_index(folder: Path) -> str | None:
    """The scheduler class model_index.json names (None without the file): a DDPM or DDIM pipeline of a
    UNet2DModel and nothing else."""
    path = folder / MODEL_INDEX
    if not path.exists():
        return None
    obj = read_json(path)
    pipeline = class_name(obj, tuple(PIPELINES), path)
    expected = {"unet": ["diffusers", "UNet2DModel"], "scheduler": ["diffusers", PIPELINES[pipeline]]}
    components = {k: v for k, v in obj.items() if k not in ("_class_name", "_diffusers_version")}
    if components != expected:
        raise GenbenchError(f"{path}: components {_clip(components, 120)}; genbench reads a {pipeline} of "
                            f"{expected}")
    return PIPELINES[pipeline]


def read_unet_config(path: Path, shape: tuple[int, ...], dataset: str) -> dict[str, Any]:
    """UNet2DModel's fields, checked (``UNET_FIELDS``), its images the data set's and its output eps."""
    obj = read_json(path)
    class_name(obj, ("UNet2DModel",), path)
    values = check_fields(obj, UNET_FIELDS, path)
    for key in ("sample_size", "in_channels", "out_channels"):
        if key not in values:
            raise GenbenchError(f"{path}: no {key}")
    size = values["sample_size"]
    height, width = (size, size) if _is_int(size) else (size * 2)[:2]
    if (values["in_channels"], height, width) != shape:
        raise GenbenchError(f"{path}: the UNet takes images [{values['in_channels']}, {height}, {width}], "
                            f"but data set {dataset} has shape {list(shape)}")
    if values["out_channels"] != values["in_channels"]:
        raise GenbenchError(f"{path}: out_channels {values['out_channels']} is not in_channels "
                            f"{values['in_channels']}: an eps-prediction UNet outputs the image's shape")
    levels = [len(values[key]) for key in ("down_block_types", "up_block_types", "block_out_channels")
              if key in values]
    if len(set(levels)) > 1:
        raise GenbenchError(f"{path}: down_block_types, up_block_types and block_out_channels have "
                            f"{', '.join(map(str, levels))} entries, expected one per resolution level each")
    return values


def read_scheduler_config(path: Path, named: str | None) -> tuple[str, dict[str, Any]]:
    """(scheduler class, its fields), checked (``SCHEDULERS``); the class model_index.json named, if any."""
    obj = read_json(path)
    name = class_name(obj, tuple(SCHEDULERS), path)
    if named is not None and name != named:
        raise GenbenchError(f"{path}: a {name}, but {MODEL_INDEX} names a {named}")
    values = check_fields(obj, SCHEDULERS[name], path)
    start, end = values.get("beta_start", 1e-4), values.get("beta_end", 0.02)
    if values.get("beta_schedule", "linear") != "squaredcos_cap_v2" and end < start:
        raise GenbenchError(f"{path}: beta_end ({end}) is below beta_start ({start})")
    return name, values


def diffusers_classes():
    """(UNet2DModel, {scheduler name: class}); without diffusers, one line saying how to install it."""
    try:
        import diffusers
    except ImportError as exc:
        raise GenbenchError(f"diffusers is not installed ({exc}): {INSTALL}") from None
    return diffusers.UNet2DModel, {name: getattr(diffusers, name) for name in SCHEDULERS}


def build_unet(unet_cls: type, values: dict[str, Any], path: Path) -> nn.Module:
    """UNet2DModel of these (checked) fields; a combination it rejects is one line."""
    try:
        return unet_cls(**values)
    except (TypeError, ValueError, AssertionError, RuntimeError) as exc:
        raise GenbenchError(f"{path}: UNet2DModel rejects this config ({_first_line(exc)})") from None


def load_diffusers_folder(folder: Path, dataset: str | None) -> LoadedModel:
    """The model of a folder DDPMPipeline/DDIMPipeline.save_pretrained wrote, for scoring on ``dataset``:
    the configs validated, the UNet built from its config on the meta device, the safetensors checked
    against it key by key, and only then read into a real UNet."""
    if dataset is None:
        raise GenbenchError("--from diffusers needs --dataset NAME (the data the model was trained on)")
    folder = Path(folder)
    if not folder.is_dir():
        raise GenbenchError(f"--from diffusers expects the folder a pipeline's save_pretrained wrote, not "
                            f"{folder}")
    refuse_pickles(folder)
    shape = tuple(DATASETS[dataset].shape)
    named = read_model_index(folder)
    unet_values = read_unet_config(folder / UNET_CONFIG, shape, dataset)
    scheduler_name, scheduler_values = read_scheduler_config(folder / SCHEDULER_CONFIG, named)
    unet_cls, scheduler_classes = diffusers_classes()
    with torch.device("meta"):
        skeleton = build_unet(unet_cls, unet_values, folder / UNET_CONFIG)
    expected = model_specs(skeleton)
    size = sum(math.prod(spec.shape) * spec.dtype.itemsize for spec in expected.values())
    if size > MAX_MODEL_BYTES:
        raise GenbenchError(f"{folder / UNET_CONFIG}: a UNet of {size / 2**30:.1f} GiB, over the limit of "
                            f"{MAX_MODEL_BYTES / 2**30:g} GiB")
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise GenbenchError(f"{weights}: missing (save_pretrained(..., safe_serialization=True) writes it)")
    _, found = read_safetensors_header(weights, "diffusers safetensors file")
    check_state_specs(expected, found, str(weights), "diffusers UNet2DModel")
    state = finite_state(read_safetensors(weights, {key: key for key in found}), expected, str(weights))
    unet = build_unet(unet_cls, unet_values, folder / UNET_CONFIG)
    unet.load_state_dict(state)
    scheduler = SchedulerSpec.of(scheduler_name, scheduler_values)
    make_scheduler = lambda: scheduler_classes[scheduler_name](**scheduler_values)  # noqa: E731
    model = DiffusersDDPM(unet.eval(), scheduler, make_scheduler, shape)
    config = {"scheduler": scheduler_name, **scheduler_values, "unet": unet_values}
    return LoadedModel(model.eval(), f"diffusers.{scheduler_name}", config, dataset, shape)


# --- the schedule -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SchedulerSpec:
    """What a DDPM/DDIM scheduler config says of the likelihood: its betas, and its sampler's steps."""

    name: str
    betas: np.ndarray
    """float64 ``[T]``, diffusers' definitions in float64 (diffusers itself keeps float32)."""
    sample_steps: int

    @classmethod
    def of(cls, name: str, values: dict[str, Any]) -> SchedulerSpec:
        steps = values.get("num_train_timesteps", 1000)
        betas = scheduler_betas(values.get("beta_schedule", "linear"), steps, values.get("beta_start", 1e-4),
                                values.get("beta_end", 0.02))
        return cls(name, betas, min(SAMPLE_STEPS[name] or steps, steps))


def scheduler_betas(schedule: str, steps: int, beta_start: float, beta_end: float) -> np.ndarray:
    """beta_1 .. beta_T in float64, as diffusers' DDPMScheduler/DDIMScheduler define them."""
    if schedule == "linear":
        return np.linspace(beta_start, beta_end, steps, dtype=np.float64)
    if schedule == "scaled_linear":
        return np.linspace(beta_start ** 0.5, beta_end ** 0.5, steps, dtype=np.float64) ** 2
    if schedule == "squaredcos_cap_v2":  # Nichol & Dhariwal's cosine alpha-bar, betas capped at MAX_BETA
        def alpha_bar(t):
            return np.cos((t + 0.008) / 1.008 * np.pi / 2) ** 2
        grid = np.arange(steps + 1, dtype=np.float64) / steps
        return np.minimum(1 - alpha_bar(grid[1:]) / alpha_bar(grid[:-1]), MAX_BETA)
    raise GenbenchError(f"beta_schedule {schedule!r}: {REFUSALS['beta_schedule']}")


# --- the model ----------------------------------------------------------------------------------------------

class DiffusersDDPM(nn.Module):
    """A diffusers UNet2DModel and its scheduler's betas as a genbench DiffusionModel, DiffusionDecoder and
    Sampler in the zoo's ddpm conventions (module docstring)."""

    data_interval = (-1.0, 1.0)

    def __init__(self, unet: nn.Module, scheduler: SchedulerSpec, make_scheduler: Callable[[], Any],
                 data_shape: tuple[int, ...]):
        super().__init__()
        self.unet, self.data_shape, self.make_scheduler = unet, data_shape, make_scheduler
        self.scheduler_name, self.sample_steps = scheduler.name, scheduler.sample_steps
        steps = len(scheduler.betas)
        self.time_steps = steps - 1
        self.beta_1 = float(scheduler.betas[0])
        log_alpha_bar = np.cumsum(np.log1p(-scheduler.betas))
        # [T - 1, 4] coefficients of (u - k)^3, ^2, ^1, ^0 on [k, k + 1]; with T = 2 a line
        spline = CubicSpline(np.arange(steps, dtype=np.float64), log_alpha_bar).c.T.copy()
        self.register_buffer("spline", torch.from_numpy(spline), persistent=False)

    def log_alpha_bar(self, step: Tensor) -> Tensor:
        """The spline of log alpha-bar at (fractional) 0-based steps, float64: exact at integer steps."""
        k = step.detach().floor().clamp(0, self.time_steps - 1)
        d = step - k
        c = self.spline[k.long()]
        return ((c[..., 0] * d + c[..., 1]) * d + c[..., 2]) * d + c[..., 3]

    # --- DiffusionModel -----------------------------------------------------------------------------
    def noise_schedule(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """alpha = sqrt(alpha-bar), sigma = sqrt(1 - alpha-bar) at 0-based step t (T - 1)."""
        log_alpha_bar = self.log_alpha_bar(t.double() * self.time_steps).to(t.dtype)
        return (log_alpha_bar / 2).exp(), (-torch.expm1(log_alpha_bar)).sqrt()

    def predict_noise(self, x_t: Tensor, t: Tensor) -> Tensor:
        """The UNet's eps at diffusers' timestep t (T - 1)."""
        return self.unet(x_t, t * self.time_steps).sample

    # --- DiffusionDecoder ---------------------------------------------------------------------------
    def decoder_log_prob(self, x: Tensor, z_0: Tensor) -> Tensor:
        """L_0's decoder: x's bins under N(x_hat(z_0), beta_1), x_hat = (z_0 - sigma_0 eps_hat) / alpha_0."""
        t_0 = torch.zeros(len(x), dtype=x.dtype, device=x.device)
        alpha_0, sigma_0 = (v.reshape(-1, *[1] * (x.dim() - 1)) for v in self.noise_schedule(t_0))
        mean = (z_0 - sigma_0 * self.predict_noise(z_0, t_0)) / alpha_0
        return discretized_gaussian_log_prob(x, mean, self.beta_1 ** 0.5)

    # --- Sampler ------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """The scheduler's own sampling loop (its ``step``) over ``sample_steps`` steps, then each pixel's
        8-bit level, in [0, 1]."""
        scheduler, weight = self.make_scheduler(), next(self.unet.parameters())
        scheduler.set_timesteps(self.sample_steps, device=weight.device)
        x = torch.randn((n, *self.data_shape), device=weight.device, dtype=weight.dtype)
        for step in scheduler.timesteps:
            x = scheduler.step(self.unet(x, step).sample, step, x).prev_sample
        return ((x + 1) / 2 * (LEVELS - 1)).round().clamp(0, LEVELS - 1) / (LEVELS - 1)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _clip(value: Any, limit: int = 60) -> str:
    text = json.dumps(value) if isinstance(value, str | int | float | bool | None) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
