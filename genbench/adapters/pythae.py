"""pythae (benchmark_VAE, Chadebec et al. 2022) VAEs scored as genbench latent-variable models.

``wrap(model)`` gives a pythae VAE genbench's contract (LatentVariableModel, Sampler, Reconstructor),
so genbench's one importance-sampling estimator gives its NLL, ELBO and the rest. Its state dict
keys are pythae's own (``encoder.*``, ``decoder.*``), so the ``model_state_dict`` of a pythae
``model.pt`` loads into it unchanged.

The likelihood is exactly the one of pythae's ``VAE.get_nll``: q(z|x) = N(mu, diag exp(log_var))
from the encoder, p(z) = N(0, I), and for r = decoder(z) (a mean in [0, 1]):

- ``reconstruction_loss="bce"``: log p(x|z) = sum_d x_d log r_d + (1 - x_d) log(1 - r_d), a
  Bernoulli (each log clamped at -100, as torch's ``binary_cross_entropy`` does): a probability of
  binary data, so bits/dim apply. On gray levels it is no normalised probability: score such a
  model on binarized data.
- ``reconstruction_loss="mse"``: log p(x|z) = -||x - r||^2 / 2 - D/2 log(2 pi), a unit-variance
  Gaussian: a density, so the model sets ``log_prob_is_density`` and its NLL is reported without
  bits/dim.

``load_pythae_folder`` builds such a model from a folder ``model.save`` wrote, reading only data:
``model_config.json`` is validated here, the networks are pythae's default ones built from it, and
``model.pt`` is read by genbench's weights-only reader and checked key by key. pythae's own
``load_from_folder`` is never called (it unpickles), and a folder with custom networks
(``encoder.pkl``/``decoder.pkl``, cloudpickles) is refused.

pythae is optional: ``pip install --no-deps pythae==0.1.2`` (so pip keeps the installed torch), then
``pip install 'genbench[pythae]'`` for the few packages it needs.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal

from genbench.core.errors import GenbenchError
from genbench.core.state_specs import check_state_specs, finite_state, model_specs, spec_of
from genbench.data import DATASETS
from genbench.scoring import LoadedModel, read_torch_state_dict

#: pythae models that are its VAE trained with another objective: the same encoder, decoder,
#: N(0, I) prior and ``VAE.get_nll``, so the same likelihood
SUPPORTED = ("VAE", "BetaVAE", "IWAE", "DisentangledBetaVAE", "BetaTCVAE", "CIWAE", "MIWAE", "PIWAE")
#: pythae's reconstruction losses, each the log-likelihood get_nll gives it
LIKELIHOODS = ("bce", "mse")
#: the largest latent_dim a config may ask for (pythae's MLPs have 512 hidden units)
MAX_LATENT = 4096
#: the longest model_config.json read (a real one is a few hundred bytes)
MAX_CONFIG_BYTES = 1 << 20
#: what ``model.save`` writes where the user gave their own networks: pickles, never read
CUSTOM_NETWORKS = ("encoder.pkl", "decoder.pkl")
INSTALL = "pip install --no-deps pythae==0.1.2 && pip install 'genbench[pythae]'"


class PythaeVAE(nn.Module):
    """A pythae VAE's encoder and decoder as a genbench LatentVariableModel, Sampler and Reconstructor."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.encoder, self.decoder = vae.encoder, vae.decoder  # pythae's keys: its model.pt loads as is
        self.latent_dim = int(vae.latent_dim)
        self.data_shape = tuple(vae.model_config.input_dim)
        self.likelihood = vae.model_config.reconstruction_loss
        # the Gaussian's log p(x) is a density on data it does not model as discrete: no bits/dim
        self.log_prob_is_density = self.likelihood == "mse"

    def encode(self, x: Tensor) -> Distribution:
        """q(z|x), a diagonal Gaussian of the encoder's mean and log-variance."""
        out = self.encoder(x)
        return Independent(Normal(out.embedding, (0.5 * out.log_covariance).exp()), 1)

    def prior(self) -> Distribution:
        """p(z) = N(0, I), pythae's prior for every supported model."""
        zeros = self.decoder_weight().new_zeros(self.latent_dim)
        return Independent(Normal(zeros, torch.ones_like(zeros)), 1)

    def log_importance_weights(self, x: Tensor, k: int) -> Tensor:
        """``[k, B]`` log p(x|z) + log p(z) - log q(z|x), z ~ q(z|x): x encoded once for all k."""
        q = self.encode(x)
        z = q.rsample((k,))
        return self.log_likelihood(x, z) + self.prior().log_prob(z) - q.log_prob(z)

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z) ``[k, B]`` for z ``[k, B, latent]``, in get_nll's convention (module docstring)."""
        k, batch = z.shape[:2]
        mean = self.decode(z.reshape(k * batch, -1)).reshape(k, batch, -1)
        target = x.reshape(1, batch, -1).to(mean.dtype).expand_as(mean)
        if self.likelihood == "bce":
            return -F.binary_cross_entropy(mean, target, reduction="none").sum(-1)
        return Normal(mean, 1.0).log_prob(target).sum(-1)

    def decode(self, z: Tensor) -> Tensor:
        """The decoder's mean r(z), ``[n, *data_shape]``."""
        return self.decoder(z)["reconstruction"].reshape(len(z), *self.data_shape)

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """x ~ p(x): Bernoulli draws for "bce" (as the zoo's VAEs); the decoder mean for "mse", whose
        unit-variance noise would leave [0, 1] (pythae's own samplers return that mean)."""
        mean = self.decode(self.prior().sample((n,)))
        return torch.bernoulli(mean) if self.likelihood == "bce" else mean

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """The decoder's mean at the posterior mean."""
        return self.decode(self.encode(x).mean)

    def decoder_weight(self) -> Tensor:
        """A parameter, for the device and dtype of new tensors."""
        return next(self.decoder.parameters())


def pythae_models():
    """``pythae.models``; without pythae installed, one line saying how to install it."""
    try:
        import pythae.models
    except ImportError as exc:
        raise GenbenchError(f"pythae is not installed ({exc}): {INSTALL}") from None
    return pythae.models


def supported_classes() -> dict[str, tuple[type, type]]:
    """Model name -> (pythae model class, its config class), for each of ``SUPPORTED``."""
    models = pythae_models()
    return {name: (getattr(models, name), getattr(models, f"{name}Config")) for name in SUPPORTED}


def wrap(model: nn.Module) -> PythaeVAE:
    """The pythae model as a genbench model; one whose likelihood is not VAE.get_nll's is refused."""
    name = type(model).__name__
    classes = supported_classes()
    if name not in classes or type(model) is not classes[name][0]:
        raise GenbenchError(f"pythae model {name} is not supported: genbench scores the pythae models that "
                            f"share VAE's likelihood ({', '.join(SUPPORTED)})")
    loss = model.model_config.reconstruction_loss
    if loss not in LIKELIHOODS:
        raise GenbenchError(f"pythae {name} has reconstruction_loss {loss!r}; supported: "
                            f"{', '.join(LIKELIHOODS)}")
    return PythaeVAE(model)


def load_pythae_folder(folder: Path, dataset: str | None) -> LoadedModel:
    """The model of a folder pythae's ``model.save`` wrote, for scoring on ``dataset``: its config
    validated, pythae's default networks built from it on the meta device, the weights of
    ``model.pt`` checked against them key by key, and only then read into a real model."""
    if dataset is None:
        raise GenbenchError("--from pythae needs --dataset NAME (the data the model was trained on)")
    folder = Path(folder)
    if not folder.is_dir():
        raise GenbenchError(f"--from pythae expects the folder pythae's model.save wrote, not {folder}")
    refuse_custom_networks(folder)
    shape = tuple(DATASETS[dataset].shape)
    name, values = read_model_config(folder / "model_config.json", shape, dataset)
    model_cls, config_cls = supported_classes()[name]
    config = pythae_config(config_cls, values, folder / "model_config.json")
    with torch.device("meta"):
        skeleton = wrap(model_cls(config))
    weights = folder / "model.pt"
    if not weights.is_file():
        raise GenbenchError(f"{folder}: no model.pt (pythae's model.save writes it beside model_config.json)")
    state = read_torch_state_dict(weights, "model_state_dict")
    expected = model_specs(skeleton)
    check_state_specs(expected, {k: spec_of(v) for k, v in state.items()}, str(weights), f"pythae {name}")
    state = finite_state(state, expected, str(weights))
    model = wrap(model_cls(config))
    model.load_state_dict(state)
    return LoadedModel(model.eval(), f"pythae.{name}", values, dataset, shape)


def refuse_custom_networks(folder: Path) -> None:
    """A folder with pythae's pickled custom networks is one line: genbench never unpickles."""
    found = [name for name in CUSTOM_NETWORKS if (folder / name).exists()]
    if found:
        raise GenbenchError(
            f"{folder}: refused, it holds {' and '.join(found)}, pythae's cloudpickle of custom networks, "
            "and genbench never unpickles (loading a pickle runs the code it carries); score it with "
            "--model-code FILE.py:NAME instead, NAME building your networks and returning "
            "genbench.adapters.pythae.wrap(model), with model.pt as the weights")


def read_model_config(path: Path, shape: tuple[int, ...], dataset: str) -> tuple[str, dict[str, Any]]:
    """(model name, config fields) of a model_config.json, checked before anything is built: a
    supported model, input_dim the data set's shape, latent_dim an int in [1, MAX_LATENT], a known
    reconstruction loss, pythae's default networks."""
    obj = read_json(path)
    configs = {f"{name}Config": name for name in SUPPORTED}
    kind = obj.get("name")
    if kind not in configs:
        raise GenbenchError(f"{path}: name is {_clip(kind)}, not a supported pythae model config; supported: "
                            f"{', '.join(configs)} (the models {', '.join(SUPPORTED)})")
    values = {key: value for key, value in obj.items() if key != "name"}
    dims = values.get("input_dim")
    if not (isinstance(dims, list) and all(_is_int(d) for d in dims)) or tuple(dims) != shape:
        raise GenbenchError(f"{path}: input_dim is {_clip(dims)}, but data set {dataset} has shape "
                            f"{list(shape)}")
    latent = values.get("latent_dim")
    if not (_is_int(latent) and 1 <= latent <= MAX_LATENT):
        raise GenbenchError(f"{path}: latent_dim is {_clip(latent)}, expected an integer in "
                            f"[1, {MAX_LATENT}]")
    loss = values.get("reconstruction_loss", "mse")  # pythae's default
    if loss not in LIKELIHOODS:
        raise GenbenchError(f"{path}: reconstruction_loss is {_clip(loss)}; supported: "
                            f"{', '.join(LIKELIHOODS)}")
    custom = [part for part in ("encoder", "decoder") if values.get(f"uses_default_{part}", True) is not True]
    if custom:
        raise GenbenchError(f"{path}: the model uses a custom {' and '.join(custom)}, which pythae saves "
                            "as a pickle genbench never reads; score it with --model-code FILE.py:NAME")
    return configs[kind], values


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file of at most ``MAX_CONFIG_BYTES``; anything else is one line."""
    if not path.is_file():
        raise GenbenchError(f"{path.parent}: no model_config.json, not a folder pythae's model.save wrote")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise GenbenchError(f"{path}: {path.stat().st_size:,} bytes, over the limit of {MAX_CONFIG_BYTES:,}")
    try:
        obj = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as exc:  # not JSON, or not UTF-8
        raise GenbenchError(f"{path}: not JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise GenbenchError(f"{path}: not a JSON object (a pythae model config)")
    return obj


def pythae_config(config_cls: type, values: dict[str, Any], path: Path):
    """pythae's config of these (checked) fields; a field it lacks (which pydantic would drop unread) or a
    value it rejects is one line."""
    known = {field.name for field in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise GenbenchError(f"{path}: unknown field {unknown[0]!r} for pythae's {config_cls.__name__}; its "
                            f"fields: {', '.join(sorted(known - {'name'}))}")
    try:
        return config_cls(**values)
    except (TypeError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        lines = [line.strip() for line in str(exc).strip().splitlines()[:3]] or [type(exc).__name__]
        raise GenbenchError(f"{path}: not a valid pythae {config_cls.__name__} ({'; '.join(lines)})"
                            ) from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _clip(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
