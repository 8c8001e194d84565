"""``genbench score``'s work: a model, a sample set or a generator evaluated into a ``ScoreReport``,
recorded in the results database where the request asks for it (``genbench.recording``).

A genbench checkpoint, a zoo model's foreign state dict, another library's folder (``--from``) or the
user's own model (``--model-code``, the one code genbench runs that it did not write) is evaluated
by every metric that applies; a sample set or a TorchScript generator's samples by IS/FID/KID/PR. A
metric that is not a finite number fails the score, as it fails a zoo run, and nothing is recorded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

from genbench.core.errors import GenbenchError
from genbench.metrics.fid_protocols import protocol_record
from genbench.metrics.registry import EvalSettings
from genbench.metrics.sample_quality import QualitySettings
from genbench.recording import RecordRequest, Subject, prepare_recording
from genbench.scoring import LoadedModel, ScoreReport, SettingsRequest

#: what a generator's latent is, and the range of its outputs, where the request does not say
DEFAULT_LATENT_DIST, DEFAULT_OUTPUT_RANGE = "normal", "0,1"


@dataclass(frozen=True)
class ScoreRequest:
    """What to score and how: ``path`` (a checkpoint, run directory, state dict, sample set, library
    folder or generator), how its model is built (a zoo ``model`` with ``sets``, the user's
    ``model_code`` with ``init``, ``from_library``, or a ``generator`` with its latent), the
    evaluation settings, and where the result is recorded."""

    path: Path
    dataset: str | None
    settings: SettingsRequest
    record: RecordRequest
    data_root: str | None = None
    device: str = "auto"
    model: str | None = None
    sets: tuple[str, ...] = ()
    model_code: str | None = None
    init: tuple[str, ...] = ()
    state_key: str | None = None
    from_library: str | None = None
    generator: bool = False
    latent_dim: int | None = None
    latent_dist: str | None = None
    output_range: str | None = None
    reference_stats: Path | None = None
    """A TTUR / clean-fid ``.npz`` of mu and sigma: FID against it instead of the reference images."""
    write_stats: Path | None = None
    """Where the scored samples' feature statistics are written, in the same format."""
    write_reference_stats: Path | None = None
    """Where the reference images' feature statistics are written, in the same format."""
    copying_figure: Path | None = None
    """Where the figure of samples beside their nearest training images is written (a PNG)."""


def score(request: ScoreRequest) -> ScoreReport:
    """The request's score, recorded where asked (checked before evaluating); a real Ctrl-C told apart
    from a KeyboardInterrupt the user's code raises."""
    from genbench.runner import check_finite_metrics
    from genbench.train.device import select_device
    from genbench.user_models import interrupts_marked

    with interrupts_marked():
        recorder = prepare_recording(request.record, Subject(request.path, request.model_code, request.init,
                                                             request.dataset))
        report = _evaluate(request)
        check_finite_metrics(report.metrics, "scoring failed" + (", nothing recorded" if recorder else ""))
        if recorder is None:
            return report
        return replace(report, recorded=recorder(report, str(select_device(request.device))))


def _evaluate(request: ScoreRequest) -> ScoreReport:
    """The report of what ``path`` is: a generator's samples, a sample set, or a model."""
    from genbench.sample_sets import is_sample_set

    if request.generator:
        return _score_generator(request)
    if request.latent_dim or request.latent_dist or request.output_range:
        raise GenbenchError("--latent-dim, --latent-dist and --output-range apply only with --generator")
    foreign_code = request.model_code is not None or request.from_library is not None  # not genbench's code
    if not foreign_code and not is_sample_set(request.path):
        if request.init or request.state_key:
            raise GenbenchError("--init and --state-key apply only with --model-code")
    elif not foreign_code:
        return _score_samples(request)
    return _score_model(request, foreign_code)


def _score_model(request: ScoreRequest, foreign_code: bool) -> ScoreReport:
    """Every metric that applies to the model, with its checkpoint's settings (``settings_for``)."""
    import torch

    from genbench.data import load_dataset
    from genbench.metrics.features import resolve_feature_net
    from genbench.metrics.registry import METRICS, evaluate
    from genbench.metrics.subsets import describe
    from genbench.scoring import settings_for
    from genbench.train.device import select_device
    from genbench.user_models import check_contract, not_applicable, user_code_errors

    loaded = _load_model(request)
    device = select_device(request.device)
    dataset = load_dataset(loaded.dataset, request.data_root, device)
    settings, source = settings_for(loaded, request.settings, request.data_root)
    protocol = protocol_record(request.settings.protocol, loaded.dataset, settings.quality_samples)
    if request.settings.value("features"):  # named explicitly: unusable is an error, not a skipped metric
        resolve_feature_net(request.settings.value("features"), dataset, request.data_root)
    model, test = loaded.model.to(device), dataset.eval_tensor("test")
    if foreign_code:  # its methods, on a tiny batch before the long run
        check_contract(model, test, loaded.model_name)
    torch.manual_seed(settings.seed)
    skipped: dict[str, str] = {}
    imported = _imported_stats(request, settings.quality_samples)
    only = [name for name in METRICS if not (imported and name == "sample_quality")]
    with user_code_errors(request.model_code, loaded.model_name):  # its exception: one line, file:line
        metrics = evaluate(model, test, settings, only=only, dataset=dataset, skipped=skipped)
        extra = _sample_extras(request, model, dataset, settings, device, imported)
    metrics |= extra.metrics
    n_used = min(settings.n_test or dataset.size("test"), dataset.size("test"))
    recorded = {k: v for k, v in asdict(settings).items() if k != "cache_root"} | extra.settings | protocol
    subset = describe(settings.n_test, dataset.size("test"), settings.points_seed)
    return ScoreReport(
        kind="checkpoint", path=str(request.path), model=loaded.model_name,
        reference=f"{loaded.model_name} checkpoint {request.path.name}", dataset=loaded.dataset,
        metrics=metrics, settings=recorded,
        header=f"{request.path}: model {loaded.model_name}, data set {loaded.dataset}; {source} settings: "
        f"NLL with k={settings.k} on {subset} test points",
        lead={"model": loaded.model_name, "config": loaded.config},
        detail={"k": settings.k, "n_test": n_used, "settings_from": source, "settings": recorded},
        config=loaded.config or {},
        not_applicable=not_applicable(model, metrics, skipped) if foreign_code else None)


def _load_model(request: ScoreRequest) -> LoadedModel:
    """The model scored: another library's folder (--from), the user's (--model-code), else a
    checkpoint or a zoo model's foreign state dict (--model)."""
    from genbench.scoring import load_for_scoring
    from genbench.user_models import load_user_model

    if request.from_library is not None:
        if request.model or request.sets or request.model_code or request.init or request.state_key:
            raise GenbenchError(f"--from {request.from_library} builds the model from its folder: --model, "
                                "--set, --model-code, --init and --state-key do not apply")
        return _library_loader(request.from_library)(request.path, request.dataset)
    if request.model_code is None:
        return load_for_scoring(request.path, request.model, _parse_sets(request.sets), request.dataset)
    if request.model or request.sets:
        raise GenbenchError("--model-code builds the model from your code: --model and --set do not apply "
                            "(give its arguments with --init)")
    return load_user_model(request.path, request.model_code, list(request.init), request.state_key,
                           request.dataset)


def _library_loader(library: str):
    """The folder loader of another library (``--from``), imported only when asked for."""
    if library == "diffusers":
        from genbench.adapters.diffusers import load_diffusers_folder
        return load_diffusers_folder
    from genbench.adapters.pythae import load_pythae_folder
    return load_pythae_folder


def _parse_sets(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise GenbenchError(f"--set expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key] = value
    return out


@dataclass(frozen=True)
class _Images:
    """Images to score against the request's data set: what they came from (``kind``; ``lead``, its
    JSON fields and recorded settings) and how the report's first line names them (``header``)."""

    images: object
    kind: str
    lead: dict
    header: str


def _score_images(request: ScoreRequest, scored: _Images, device) -> ScoreReport:
    """IS/FID/KID/PR of uint8 images against ``request.dataset``: a sample set's or a generator's."""
    from genbench.data import load_dataset
    from genbench.metrics.features import cache_dir, resolve_feature_net
    from genbench.metrics.sample_quality import score_images

    value, images = request.settings.value, scored.images
    protocol = protocol_record(request.settings.protocol, request.dataset, len(images))
    dataset = load_dataset(request.dataset, request.data_root)
    net = resolve_feature_net(value("features"), dataset, request.data_root)
    imported = _imported_stats(request, len(images))
    if imported is None:
        metrics = score_images(images, dataset, net, value("quality_split"), value("quality_reference"),
                               cache_dir(request.data_root), device)
    else:
        metrics = {}
    eval_settings = EvalSettings(**{name: value(name) for name in ("quality_split", "quality_reference",
                                                                   "memorization_train", "features")},
                                 quality_samples=len(images), cache_root=request.data_root)
    extra = _image_extras(request, images, _Against(dataset, net, eval_settings, device), imported)
    metrics |= extra.metrics
    n_real = min(value("quality_reference"), dataset.size(value("quality_split")))
    lead = {**scored.lead, "n_samples": len(images)}
    detail = {"reference_split": value("quality_split"), "n_reference": n_real, "features": net.label,
              **extra.settings, **protocol}
    settings = {"quality_samples": len(images), "quality_reference": n_real,
                "quality_split": value("quality_split"), "features": net.label, **scored.lead,
                **extra.settings, **protocol}
    if value("memorization_train"):
        settings["memorization_train"] = value("memorization_train")
    detail_text = f" ({net.detail})" if net.detail else ""
    return ScoreReport(
        kind=scored.kind, path=str(request.path), model=scored.kind,
        reference=f"{scored.kind} {request.path.name}", dataset=request.dataset, metrics=metrics,
        settings=settings, lead=lead, detail=detail,
        header=f"{scored.header}: {len(images)} samples vs "
        f"{_versus(imported, n_real, request.dataset, value)}; features {net.label}{detail_text}")


def _need_dataset(request: ScoreRequest, what: str) -> None:
    if not request.dataset:
        raise GenbenchError(f"scoring {what} needs --dataset NAME (the real data they are compared with)")


def _score_samples(request: ScoreRequest) -> ScoreReport:
    """IS/FID/KID/PR of a folder of PNGs or an .npz array against a named data set."""
    from genbench.data import DATASETS
    from genbench.sample_sets import read_samples
    from genbench.train.device import select_device

    _need_dataset(request, "samples")
    images = read_samples(request.path, DATASETS[request.dataset].shape, request.dataset,
                          request.settings.max_samples)
    return _score_images(request, _Images(images, "samples", {}, str(request.path)),
                         select_device(request.device))


def _generator_sample_count(request: ScoreRequest) -> int:
    """--quality-samples, by default the reference count (10,000, capped by --max-samples)."""
    given, limit = request.settings.overrides.get("quality_samples"), request.settings.max_samples
    n = min(EvalSettings.quality_reference, limit) if given is None else given
    if n == 0:
        raise GenbenchError("a generator is scored on its samples: --quality-samples must be at least "
                            f"{QualitySettings().min_samples}")
    if n > limit:
        raise GenbenchError(f"{n:,} generator samples asked for, over the limit of {limit:,} (--max-samples)")
    return n


def _score_generator(request: ScoreRequest) -> ScoreReport:
    """IS/FID/KID/PR of samples of a TorchScript generator z -> x, drawn as a zoo sampler's are."""
    from genbench.generators import load_generator
    from genbench.metrics.sample_quality import model_samples
    from genbench.train.device import select_device

    if request.model or request.sets or request.model_code or request.init or request.state_key \
            or request.from_library:
        raise GenbenchError("--generator scores a TorchScript file alone: --model, --set, --model-code, "
                            "--init, --state-key and --from do not apply")
    _need_dataset(request, "a generator")
    n, device, seed = _generator_sample_count(request), select_device(request.device), EvalSettings.seed
    dist = request.latent_dist or DEFAULT_LATENT_DIST
    output_range = request.output_range or DEFAULT_OUTPUT_RANGE
    generator = load_generator(request.path, request.dataset, request.latent_dim, dist, output_range, device)
    images = model_samples(generator, n, seed)
    lead = {"latent_dim": request.latent_dim, "latent_dist": dist, "output_range": output_range, "seed": seed}
    return _score_images(request, _Images(images, "generator", lead, f"{request.path}: generator, z ~ {dist} "
                                          f"{request.latent_dim}-d, seed {seed}"), device)


@dataclass(frozen=True)
class _Extras:
    """What the flags of imported and written statistics, the copying tests and their figure add to a
    score: metric values, and the settings recorded with them (the statistics file and its sha256)."""

    metrics: dict
    settings: dict


def _imported_stats(request: ScoreRequest, n_samples: int):
    """The ``--reference-stats`` file read and checked (``genbench.metrics.reference_stats``), or None."""
    if request.reference_stats is None:
        return None
    if not n_samples:
        raise GenbenchError("--reference-stats scores model samples against the statistics: give "
                            "--quality-samples N")
    from genbench.metrics.reference_stats import read_reference_stats
    return read_reference_stats(request.reference_stats)


def _versus(imported, n_real: int, dataset: str, value) -> str:
    """How a report's first line names what the samples were compared with."""
    if imported is not None:
        return f"reference statistics {imported.path} (sha256 {imported.sha256[:16]})"
    return f"{n_real} {dataset} {value('quality_split')} images"


@dataclass(frozen=True)
class _Against:
    """What images are scored against: a data set, in a feature network's features, under evaluation
    settings, on a device."""

    dataset: object
    net: object
    settings: EvalSettings
    device: object


def _image_extras(request: ScoreRequest, images, against: _Against, imported,
                  copying: bool = True) -> _Extras:
    """FID against imported statistics, statistics written, the copying tests (``copying``) and their
    figure, of uint8 images scored against ``against.dataset`` under ``against.settings``."""
    dataset, net, settings, device = against.dataset, against.net, against.settings, against.device
    from genbench.core.errors import log
    from genbench.metrics.features import cache_dir
    from genbench.metrics.memorization import copying_data, copying_scores, nearest_training_images
    from genbench.metrics.reference_stats import score_against_stats, write_reference_stats
    from genbench.metrics.sample_quality import extract_features, reference_features, reference_images
    from genbench.report.nearest import write_nearest_figure

    metrics, recorded = {}, {}
    if imported is not None:
        metrics |= score_against_stats(images, net, imported, device)
        recorded = {"reference_stats": Path(imported.path).name, "reference_stats_sha256": imported.sha256}
    if request.write_stats is not None:
        features = extract_features(images, net, device)[net.layer_fid]
        digest = write_reference_stats(request.write_stats, features)
        log(f"wrote the statistics of {len(images)} samples' {net.label} features to {request.write_stats} "
            f"(sha256 {digest})")
    if request.write_reference_stats is not None:
        split = settings.quality_split
        real = reference_images(dataset, split, settings.quality_reference, settings.points_seed)
        features, _ = reference_features(real, net, cache_dir(settings.cache_root),
                                         f"{dataset.name}-{split}-{len(real)}", device)
        digest = write_reference_stats(request.write_reference_stats, features[net.layer_fid])
        log(f"wrote the statistics of {len(real)} {dataset.name} {split} images' {net.label} features to "
            f"{request.write_reference_stats} (sha256 {digest})")
    if settings.memorization_train and copying:
        metrics |= copying_scores(images, copying_data(dataset, settings, device), net)
    if request.copying_figure is not None:
        if not settings.memorization_train:
            raise GenbenchError("--copying-figure shows the nearest of the training images the copying tests "
                                "search: give --memorization-train N")
        shown, nearest, _ = nearest_training_images(images, copying_data(dataset, settings, device), net)
        write_nearest_figure(request.copying_figure, shown, nearest)
        log(f"wrote {len(shown)} samples beside their nearest training images to {request.copying_figure}")
    return _Extras(metrics, recorded)


def _sample_extras(request: ScoreRequest, model, dataset, settings: EvalSettings, device,
                   imported) -> _Extras:
    """``_image_extras`` of a model's ``quality_samples`` samples (the sample metrics' own draws), where a
    flag asks for one; the copying tests themselves ran in the evaluation."""
    from genbench.metrics.features import resolve_feature_net
    from genbench.metrics.sample_quality import model_samples

    wanted = request.write_stats or request.write_reference_stats or request.copying_figure
    if imported is None and not wanted:
        return _Extras({}, {})
    if not settings.quality_samples:
        raise GenbenchError("--write-stats, --write-reference-stats and --copying-figure work on model "
                            "samples: give --quality-samples N")
    net = resolve_feature_net(settings.features, dataset, settings.cache_root)
    images = model_samples(model, settings.quality_samples, settings.seed)
    return _image_extras(request, images, _Against(dataset, net, settings, device), imported, copying=False)
