"""Hostile inputs: every file and flag of the adversarial pass over ``genbench score``, and more.

``hostile_cases`` makes the files in a folder: each case is an argv of ``genbench`` and a fragment
of the one line it must give. ``tests/hostile_driver.py`` runs them: one process imports genbench
once and forks a child per case, which runs ``genbench.cli.main(argv)`` under ``RLIMIT_AS`` (a
memory bomb fails fast instead of taking the machine); the child's exit status and peak RSS come
from ``os.wait4``. Every case must exit 2 with exactly one line ``genbench: ...`` on stderr, no
traceback, and a peak RSS under ``PEAK_RSS_BOUND``. The real entry point (``python -m
genbench.cli``) is checked on its own processes, and hypothesis checks the validators on generated
checkpoint metadata, ``.npy`` headers and numbers of the CLI.

``python -m tests.harness.test_hostile_inputs DIR [PYTHONPATH]`` prints each case's exit code, problems,
stderr and peak RSS as JSON lines (with PYTHONPATH, of another checkout: to measure it before a change).
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import sqlite3
import struct
import subprocess
import sys
import typing
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file
from torch import nn

from genbench.cli import build_parser
from genbench.core.errors import GenbenchError
from genbench.core.hyperparameters import bounds_of
from genbench.core.models import MODELS
from genbench.sample_sets import read_samples
from genbench.scoring import load_for_scoring
from genbench.train import checkpoint as ckpt
from tests.hostile_driver import ADDRESS_SPACE_CAP
from tests.peak_memory import peak_rss, reset_peak

ROOT = Path(__file__).resolve().parents[2]
#: the most resident memory a hostile case may reach (a forked child of the driver starts near 0.4 GiB)
PEAK_RSS_BOUND = 1.5 * 2**30
#: the data shape of the checkpoints' base model, a small VAE of the toy data set
TOY_SHAPE = [1, 8, 8]
FEW = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
#: a metadata field ``base_meta`` leaves out
DROP = object()


@dataclass(frozen=True)
class Case:
    name: str
    argv: list[str]
    fragment: str
    """Text the one error line must contain."""


# --- files ------------------------------------------------------------------------------------------
def toy_state() -> dict[str, torch.Tensor]:
    return MODELS["vae"].build({"layers": 1}, tuple(TOY_SHAPE)).state_dict()


def base_meta(**changes) -> dict:
    """A genbench checkpoint's metadata for ``toy_state``, with ``changes`` (``DROP``: leave it out)."""
    meta = {"format": ckpt.FORMAT, "format_version": ckpt.FORMAT_VERSION, "model": "vae",
            "config": {"layers": 1}, "dataset": "toy", "data_shape": TOY_SHAPE, "seed": 0, **changes}
    return {k: v for k, v in meta.items() if v is not DROP}


def write_checkpoint(path: Path, meta, state: dict[str, torch.Tensor] | None = None) -> Path:
    """A safetensors file with ``meta`` (a dict, or the JSON text itself) as its genbench metadata."""
    text = meta if isinstance(meta, str) else json.dumps(meta)
    tensors = {f"model.{k}": v.contiguous() for k, v in (toy_state() if state is None else state).items()}
    save_file(tensors, str(path), metadata={ckpt.META_KEY: text})
    return path


def npy_bytes(shape: tuple, descr: str = "|u1", fortran: bool = False, data: bytes = b"") -> bytes:
    """An .npy file (version 1.0) whose header declares ``shape`` and ``descr``, then ``data``."""
    header = repr({"descr": descr, "fortran_order": fortran, "shape": tuple(shape)}).encode("latin1")
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


def write_npz(path: Path, members: dict[str, bytes], deflate: bool = True) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def write_zero_npz(path: Path, shape: tuple, dtype: str) -> Path:
    """A deflated .npz of zeros of ``shape`` (a few MB for GBs), streamed: never whole in memory."""
    total, block = int(np.prod(shape)) * np.dtype(dtype).itemsize, bytes(1 << 22)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("samples.npy", "w", force_zip64=True) as stream:
            stream.write(npy_bytes(shape, np.dtype(dtype).str))
            for start in range(0, total, len(block)):
                stream.write(block[:min(len(block), total - start)])
    return path


def png_bytes(width: int, height: int, rows: bytes = b"") -> bytes:
    """A gray 8-bit PNG whose header declares width x height; ``rows`` (filter byte + pixels) its data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def png_folder(folder: Path, png: bytes) -> str:
    folder.mkdir()
    (folder / "0.png").write_bytes(png)
    return str(folder)


class Exploit:
    """Unpickling this would create a file: the weights-only loader must refuse it."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


class PrintingFeatures(nn.Module):
    """A feature network that prints on every call (stdout must still hold only the JSON)."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        print("features of a batch")
        f = x.flatten(1)
        return f, self.head(f)


class WritingFeatures(nn.Module):
    """A feature network whose forward writes a file."""

    def __init__(self, target: str):
        super().__init__()
        self.target = target

    def forward(self, x):
        torch.save(x, self.target)
        return x.flatten(1)


class ExtraMethodFeatures(nn.Module):
    def forward(self, x):
        return x.flatten(1)

    @torch.jit.export
    def other(self, x):
        return x


class LoadTimeFeatures(nn.Module):
    """A feature network whose __setstate__ writes a file as it loads."""

    def __init__(self, target: str):
        super().__init__()
        self.target = target

    def forward(self, x):
        return x.flatten(1)

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool]:
        return (self.target, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.target, self.training = state[0], state[1]
        torch.save(torch.zeros(1), self.target)


def script(module: nn.Module, path: Path) -> Path:
    torch.jit.save(torch.jit.script(module.eval()), str(path))
    return path


# --- the cases ----------------------------------------------------------------------------------------
def metadata_cases(d: Path) -> list[Case]:
    """Checkpoint metadata that built a model of its own declared size, or gave a traceback."""
    state = toy_state()
    cases = [
        ("meta_data_shape_1500x1500", base_meta(dataset="mnist", data_shape=[1, 1500, 1500]),
         "has shape [1, 28, 28], the model expects [1, 1500, 1500]", {"x": torch.zeros(1)}),
        ("meta_hvae_latent_1e9", base_meta(model="hvae", config={"latent": 10**9}),
         "latent=1000000000 is outside [1, 1024]", state),
        ("meta_hvae_hidden_1e5", base_meta(model="hvae", config={"hidden": 10**5}),
         "hidden=100000 is outside [1, 4096]", state),
        ("meta_is_a_list", "[1, 2]", "metadata is an array, expected an object", state),
        ("meta_is_a_string", '"abc"', "metadata is a string, expected an object", state),
        ("meta_not_json", "{", "corrupt genbench metadata (not JSON)", state),
        ("meta_nested_100000_deep", "[" * 100_000, "corrupt genbench metadata (not JSON)", state),
        ("meta_without_model", base_meta(model=DROP), "lacks 'model'", state),
        ("meta_without_data_shape", base_meta(data_shape=DROP), "lacks 'data_shape'", state),
        ("meta_config_5", base_meta(config=5), "'config' is an integer, expected an object", state),
        ("meta_data_shape_abc", base_meta(data_shape="abc"), "'data_shape' is a string", state),
        ("meta_data_shape_7", base_meta(data_shape=7), "'data_shape' is an integer", state),
        ("meta_data_shape_negative", base_meta(data_shape=[-1, 8, 8]), "not a list of 1 to 4 positive",
         state),
        ("meta_hvae_latent_40.5", base_meta(model="hvae", config={"latent": 40.5}),
         "latent=40.5 is not an integer", state),
        ("meta_format_version_true", base_meta(format_version=True), "unsupported checkpoint format", state),
        ("meta_unknown_model", base_meta(model="nosuch"), "unknown model 'nosuch'", state),
        ("meta_of_17MB", base_meta(padding="x" * (17 << 20)), "over the limit of 16,777,216", state),
        ("weights_all_nan", base_meta(), "NaN or infinite", {k: v * torch.nan for k, v in state.items()}),
        ("weights_all_inf", base_meta(), "NaN or infinite", {k: v * 0 + torch.inf for k, v in state.items()}),
        ("weights_bool", base_meta(), "holds bool values", {k: v > 0 for k, v in state.items()}),
        ("weights_int8", base_meta(), "holds integer values", {k: v.char() for k, v in state.items()}),
    ]
    return [Case(name, ["score", str(write_checkpoint(d / f"{name}.safetensors", meta, tensors))], fragment)
            for name, meta, fragment, tensors in cases]


def foreign_cases(d: Path) -> list[Case]:
    """Hyperparameters from --set, and .pt files that are not plain state dicts."""
    foreign = d / "foreign.safetensors"
    save_file({"unused": torch.zeros(1)}, str(foreign))
    evil, legacy, stored, deflated = d / "evil.pt", d / "legacy.pt", d / "stored.pt", d / "deflated.pt"
    torch.save({"weight": torch.zeros(1), "payload": Exploit(str(d / "pwned"))}, evil)
    torch.save({"w": torch.zeros(1)}, legacy, _use_new_zipfile_serialization=False)
    torch.save({"w": torch.zeros(20 << 20)}, stored)
    with zipfile.ZipFile(stored) as src, zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    stored.unlink()
    sets = [("set_hvae_hidden_1e5", "hvae", ["hidden=100000"], "hidden=100000 is outside [1, 4096]"),
            ("set_hvae_latent_1e9", "hvae", ["latent=1000000000"], "latent=1000000000 is outside"),
            ("set_beta_nan", "vae", ["beta=nan"], "beta=nan is not a finite number"),
            ("set_pixelcnn_of_68GiB", "pixelcnn", ["channels=1024", "layers=64", "kernel_size=15"],
             "over genbench's limit of 2 GiB")]
    files = [("pt_pickle_with_code", evil, "weights-only state dict (Unsupported global: GLOBAL io.open"),
             ("pt_deflated_80MB", deflated, "compressed members inflate to"),
             ("pt_legacy_format", legacy, "missing key")]  # read (test_hostile_scoring.py), not a VAE's
    return ([Case(name, ["score", str(foreign), "--model", model, "--dataset", "toy", "--set", *values],
                  fragment) for name, model, values, fragment in sets]
            + [Case(name, ["score", str(path), "--model", "vae", "--dataset", "toy"], fragment)
               for name, path, fragment in files])


def sample_set_cases(d: Path, tiny: str) -> list[Case]:
    """.npz and PNG sample sets that are bombs, lie in their headers, or are too few."""
    toy_npz = write_npz(d / "toy.npz", {"samples.npy": npy_bytes((40, 8, 8), data=bytes(40 * 64))})
    truncated = d / "truncated.npz"
    truncated.write_bytes(toy_npz.read_bytes()[:150])
    few = {n: write_npz(d / f"{n}.npz", {"samples.npy": npy_bytes((n, 8, 8), data=bytes(n * 64))})
           for n in (1, 2)}
    terabyte = {"samples.npy": npy_bytes((1_400_000_000, 28, 28))}
    mnist8 = [
        ("npz_250000_float_images", write_zero_npz(d / "count.npz", (250_000, 28, 28), "<f4"),
         "250,000 samples, over the limit of 100,000"),
        ("npz_wrong_shape_150000", write_zero_npz(d / "shape.npz", (150_000, 32, 32), "<f4"),
         "samples are 1x32x32 images, data set mnist8 has 1x28x28"),
        ("npz_header_claims_1TB", write_npz(d / "tb.npz", terabyte),
         "1,400,000,000 samples, over the limit"),
        ("png_declaring_100000x100000", png_folder(d / "bomb", png_bytes(100_000, 100_000)),
         "decompression bomb"),
        ("png_declaring_5000x5000", png_folder(d / "big", png_bytes(5000, 5000)),
         "over the limit of 16,777,216"),
    ]
    toy = [
        ("npz_data_shorter_than_header", write_npz(d / "short.npz", {"samples.npy": npy_bytes((100, 8, 8))}),
         "truncated array"),
        ("npz_truncated_zip", truncated, "not a readable .npz file"),
        ("npz_member_not_npy", write_npz(d / "txt.npz", {"samples.txt": b"hello"}),
         "member 'samples.txt' is not an .npy array"),
        ("npz_member_bad_magic", write_npz(d / "magic.npz", {"samples.npy": b"garbage" * 20}),
         "is not a readable .npy array"),
        ("npz_object_array", write_npz(d / "obj.npz", {"samples.npy": npy_bytes((2, 8, 8), "|O")}),
         "unreadable without pickle"),
        ("png_of_another_size", png_folder(d / "nine", png_bytes(9, 9, bytes(10 * 9))),
         "samples are 1x9x9 images, data set toy has 1x8x8"),
    ]
    scored = ["--dataset", "toy", "--features", tiny, "--data-root", str(d / "data")]
    return ([Case(name, ["score", str(path), "--dataset", "mnist8"], fragment)
             for name, path, fragment in mnist8]
            + [Case(name, ["score", str(path), "--dataset", "toy"], fragment) for name, path, fragment in toy]
            + [Case("one_sample", ["score", str(few[1]), *scored],
                    "1 samples: IS, FID, KID and precision/recall need at least 10"),
               Case("two_samples", ["score", str(few[2]), *scored], "2 samples")])


def flag_cases(d: Path) -> list[Case]:
    """Numbers out of range, and argparse's own errors, on every command that has them."""
    good = str(write_checkpoint(d / "good.safetensors", base_meta()))
    flags = [("--n-reference", "0", "must be an integer >= 6, got '0'"), ("--n-reference", "1", "got '1'"),
             ("--n-reference", "-5", "got '-5'"), ("--k", "-5", "argument --k: must be an integer >= 1"),
             ("--k", "0", "--k"), ("--k", "2.5", "--k"), ("--n-test", "0", "--n-test"),
             ("--n-test", "-5", "--n-test"), ("--quality-samples", "-1", "0 or an integer >= 10"),
             ("--quality-samples", "3", "0 or an integer >= 10"), ("--max-samples", "0", "--max-samples")]
    run = ["run", "--suite", "smoke", "--budget", "smoke", "--runs-dir", str(d / "runs"), "--leaderboards",
           str(d / "lb"), "--no-progress", "--db", str(d / "new.sqlite")]
    return ([Case(f"flag{flag}={value}", ["score", good, flag, value], fragment)
             for flag, value, fragment in flags]
            + [Case(f"run_seeds={n}", [*run, "--seeds", n], "argument --seeds") for n in ("-2", "0")]
            + [Case("quality_samples_over_max", ["score", good, "--quality-samples", "200000"],
                    "200,000 model samples asked for, over the limit of 100,000"),
               Case("flag_without_value", ["score", good, "--k"], "argument --k: expected one argument"),
               Case("unknown_flag", ["score", good, "--bogus"], "unrecognized arguments: --bogus"),
               Case("no_command", [], "the following arguments are required: command")])


def database_cases(d: Path) -> list[Case]:
    """--db at something that is not genbench's results database."""
    (d / "random.bin").write_bytes(np.random.default_rng(0).bytes(4096))
    (d / "text.db").write_text("not a database\n")
    (d / "folder.db").mkdir()
    (d / "a_file").write_text("x")
    with sqlite3.connect(d / "other.sqlite") as conn:
        conn.execute("CREATE TABLE people (name TEXT)")
        conn.execute("PRAGMA user_version = 7")
    cases = [("db_random_bytes", "random.bin", "not a genbench results database (not an SQLite file)"),
             ("db_text_file", "text.db", "not a genbench results database"),
             ("db_directory", "folder.db", "a directory, not a genbench results database"),
             ("db_other_schema", "other.sqlite", "another schema, version 7 (tables: people)"),
             ("db_under_a_file", "a_file/x.sqlite", "cannot write there")]
    run = ["run", "--suite", "smoke", "--budget", "smoke", "--runs-dir", str(d / "runs"), "--no-progress"]
    return ([Case(name, ["tables", "--paper", "iwae", "--db", str(d / path)], fragment)
             for name, path, fragment in cases]
            + [Case("run_db_random_bytes", [*run, "--db", str(d / "random.bin")],
                    "not a genbench results database")])


def feature_and_record_cases(d: Path) -> list[Case]:
    """TorchScript feature networks that would do more than compute, a data root that is a file, and
    run directories whose recorded evaluation settings are hostile."""
    toy_npz = str(write_npz(d / "toy40.npz", {"samples.npy": npy_bytes((40, 8, 8), data=bytes(40 * 64))}))
    mnist_npz = str(write_npz(d / "mnist40.npz",
                              {"samples.npy": npy_bytes((40, 28, 28), data=bytes(40 * 784))}))
    (d / "junk.pt").write_bytes(bytes(100))
    (d / "root_file").write_text("x")
    target = str(d / "written.pt")
    nets = [("features_write_a_file", script(WritingFeatures(target), d / "writes.pt"),
             "its forward calls aten::save"),
            ("features_extra_method", script(ExtraMethodFeatures(), d / "extra.pt"),
             "may expose only forward"),
            ("features_run_at_load", script(LoadTimeFeatures(target), d / "loads.pt"), "runs as it loads"),
            ("features_not_torchscript", d / "junk.pt", "not a zip-format TorchScript file")]
    cases = [Case(name, ["score", toy_npz, "--dataset", "toy", "--features", str(path)], fragment)
             for name, path, fragment in nets]
    cases.append(Case("data_root_is_a_file", ["score", mnist_npz, "--dataset", "mnist8", "--data-root",
                                              str(d / "root_file")], "missing MNIST/raw"))
    for name, record, fragment in [("evaluation_k_0", {"k": 0}, "k must be an integer >= 1"),
                                   ("evaluation_features_5", {"features": 5}, "features is 5"),
                                   ("evaluation_seed_2e70", {"seed": 2**70}, "seed is")]:
        (d / name).mkdir()
        write_checkpoint(d / name / ckpt.FILENAME, base_meta())
        (d / name / "evaluation.json").write_text(json.dumps(record))
        cases.append(Case(name, ["score", str(d / name)], fragment))
    return cases


def hostile_cases(d: Path) -> list[Case]:
    """Every hostile case, its files made under ``d``."""
    from tests.helpers import TinyFeatures

    d.mkdir(parents=True, exist_ok=True)
    tiny = str(script(TinyFeatures(), d / "tiny.pt"))
    return [*metadata_cases(d), *foreign_cases(d), *sample_set_cases(d, tiny), *flag_cases(d),
            *database_cases(d), *feature_and_record_cases(d)]


# --- the contract -------------------------------------------------------------------------------------
def run_driver(cases: list[Case], folder: Path, pythonpath: str | None = None) -> list[dict]:
    """The cases through ``tests/hostile_driver.py`` in a fresh process (the test process's memory does
    not count), in ``folder`` (so no default path reaches the project's runs/); with ``pythonpath``,
    on the genbench of another checkout."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "GENBENCH_CACHE": str(folder / "cache"), "GENBENCH_DATA": str(folder / "data"),
           "PYTHONPATH": os.pathsep.join(filter(None, [pythonpath, str(ROOT)]))}
    (folder / "driver").mkdir(exist_ok=True)
    payload = json.dumps([{"name": c.name, "argv": c.argv} for c in cases])
    # as a module: run as a script, its folder tests/ would come first on sys.path, and tests/zoo
    # would be imported as the zoo
    done = subprocess.run([sys.executable, "-m", "tests.hostile_driver", str(folder / "driver")],
                          input=payload, capture_output=True, text=True, env=env, cwd=folder, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def problems(case: Case, result: dict) -> list[str]:
    """What a case's result breaks of the contract (nothing: it keeps it)."""
    lines = result["stderr"].strip().splitlines()
    found = []
    if result["code"] != 2:
        found.append(f"exit code {result['code']}")
    if len(lines) != 1 or not lines[0].startswith("genbench: "):
        found.append(f"{len(lines)} lines on stderr")
    if "Traceback" in result["stderr"]:
        found.append("a traceback")
    if "weights_only" in result["stderr"]:
        found.append("advice to change weights_only (which would run a pickle's code)")
    if lines and case.fragment not in lines[0]:
        found.append(f"no {case.fragment!r} in the line")
    if result["peak_rss"] > PEAK_RSS_BOUND:
        found.append(f"peak RSS {result['peak_rss'] / 2**30:.2f} GiB")
    return found


@pytest.mark.slow
def test_every_hostile_input_is_one_line_and_exit_2_within_bounded_memory(tmp_path):
    cases = hostile_cases(tmp_path / "files")
    results = zip(cases, run_driver(cases, tmp_path), strict=True)
    failures = {case.name: [*problems(case, result), result["stderr"].strip()[-400:]]
                for case, result in results if problems(case, result)}
    assert not failures, json.dumps(failures, indent=1)
    assert not (tmp_path / "files" / "written.pt").exists() and not (tmp_path / "files" / "pwned").exists()


def _entry_point(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GENBENCH_CACHE": str(cwd / "cache"),
           "GENBENCH_DATA": str(cwd)}
    cap = (ADDRESS_SPACE_CAP, ADDRESS_SPACE_CAP)
    return subprocess.run([sys.executable, "-m", "genbench.cli", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, cap))


@pytest.mark.slow
def test_the_entry_point_gives_one_line_errors_and_json_alone_on_stdout(tmp_path):
    """Through ``python -m genbench.cli``: an argparse error is the one line; on a fresh cache, with a
    feature network that prints, ``--json`` output is the JSON alone and the print goes to stderr."""
    done = _entry_point(["score", str(tmp_path), "--k", "-5"], tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == ("genbench: argument --k: must be an integer >= 1, got '-5' "
                           "(see genbench score --help)\n")
    net = script(PrintingFeatures(), tmp_path / "printing.pt")
    images = np.random.default_rng(0).integers(0, 256, (30, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "s.npz", samples=images)
    done = _entry_point(["score", str(tmp_path / "s.npz"), "--dataset", "toy", "--features", str(net),
                         "--n-reference", "40", "--data-root", str(tmp_path / "fresh"), "--json"], tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["n_samples"] == 30 and "fid_ts_printing" in report["metrics"]
    assert "features of a batch" in done.stderr


def test_an_error_of_several_lines_is_printed_as_one(monkeypatch, capsys):
    """A library's message inside ours (a failed download lists every mirror on a line of its own)."""
    from genbench import cli

    def fails(args):
        raise GenbenchError("download failed: Error downloading x:\nTried https://a/, got:\n  <urlopen>\n")

    monkeypatch.setitem(cli.COMMANDS, "list", fails)
    assert cli.main(["list"]) == 2
    assert capsys.readouterr().err == ("genbench: download failed: Error downloading x:; "
                                       "Tried https://a/, got:; <urlopen>\n")


def test_every_numeric_hyperparameter_of_the_zoo_declares_its_bounds():
    unbounded = [f"{name}.{f.name}" for name, entry in MODELS.items()
                 for f in dataclasses.fields(entry.config_cls)
                 if typing.get_type_hints(entry.config_cls)[f.name] in (int, float) and bounds_of(f) is None]
    assert not unbounded


def test_a_model_over_the_size_limit_is_refused_on_the_meta_device_without_memory():
    MODELS["pixelcnn"].build({"channels": 8, "layers": 2, "kernel_size": 3}, (1, 28, 28))  # its imports
    before = reset_peak()  # ru_maxrss would not see a peak below the test process's earlier ones
    with pytest.raises(GenbenchError, match="needs .* GiB of parameters and buffers"):
        MODELS["pixelcnn"].build({"channels": 1024, "layers": 64, "kernel_size": 15}, (1, 28, 28))
    assert peak_rss() - before < 100 * 2**20


# --- properties -----------------------------------------------------------------------------------------
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                  max_size=4), max_leaves=12)
HYPERPARAMETER_VALUES = (st.integers(-10, 10**12) | st.floats() | st.booleans() | st.text(max_size=6)
                         | st.none())


@st.composite
def checkpoint_meta(draw):
    """A checkpoint's metadata near a valid one (fields dropped or replaced by any JSON, hyperparameters
    of any of several models set to anything), or any JSON at all."""
    if draw(st.booleans()):
        return draw(JSON)
    model = draw(st.sampled_from(["vae", "hvae", "pixelcnn", "realnvp", "gan", "vlae", "ppca"]))
    names = [f.name for f in dataclasses.fields(MODELS[model].config_cls)]
    meta = base_meta(model=model, config=draw(st.dictionaries(st.sampled_from(names), HYPERPARAMETER_VALUES,
                                                              max_size=3)))
    for key in draw(st.lists(st.sampled_from(sorted(meta)), max_size=2)):
        meta[key] = draw(JSON) if draw(st.booleans()) else DROP
    return {k: v for k, v in meta.items() if v is not DROP}


@FEW
@given(meta=checkpoint_meta())
def test_any_checkpoint_metadata_loads_or_is_one_clear_error(tmp_path, meta):
    path = write_checkpoint(tmp_path / "c.safetensors", meta)
    try:
        loaded = load_for_scoring(path, None, {}, None)
    except GenbenchError as exc:  # any other exception (a traceback) fails the test
        assert str(exc).strip()
        return
    assert loaded.model_name == "vae" and list(loaded.data_shape) == TOY_SHAPE


DESCRS = st.sampled_from(["|u1", "|b1", "<f4", ">f8", "<f2", "<i8", "|O", "|V8", "<U3", "garbage", "<f4 "])
SHAPES = (st.lists(st.integers(-3, 2**62), max_size=5) | st.lists(st.integers(0, 12), max_size=5)).map(tuple)


@FEW
@given(shape=SHAPES, descr=DESCRS, fortran=st.booleans(), data=st.binary(max_size=2048),
       deflate=st.booleans())
def test_any_npy_header_reads_or_is_one_clear_error(tmp_path, shape, descr, fortran, data, deflate):
    path = write_npz(tmp_path / "s.npz", {"samples.npy": npy_bytes(shape, descr, fortran, data)}, deflate)
    try:
        images = read_samples(path, (1, 8, 8), "toy", max_samples=1000)
    except GenbenchError:
        return
    assert images.dtype == torch.uint8 and tuple(images.shape[1:]) == (1, 8, 8) and 1 <= len(images) <= 1000


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=st.integers(1, 40).flatmap(lambda n: st.sampled_from([(n, 8, 8), (n, 1, 8, 8), (n, 8, 8, 1)])),
       dtype=st.sampled_from(["uint8", "bool", "float32", ">f8"]), fortran=st.booleans(),
       seed=st.integers(0, 99))
def test_reading_100_bytes_at_a_time_gives_what_np_load_gives(tmp_path, monkeypatch, shape, dtype, fortran,
                                                              seed):
    import genbench.sample_sets as sample_sets

    monkeypatch.setattr(sample_sets, "CHUNK_BYTES", 100)
    gen = np.random.default_rng(seed)
    values = gen.integers(0, 256, shape).astype(np.uint8) if dtype == "uint8" else \
        gen.random(shape).astype(dtype)
    np.savez(tmp_path / "s.npz", samples=np.asfortranarray(values) if fortran else values)
    whole = np.load(tmp_path / "s.npz")["samples"]
    if whole.ndim == 3 or whole.shape[1] != 1:  # [N, H, W] and [N, H, W, 1] as [N, 1, H, W]
        whole = whole[:, None] if whole.ndim == 3 else whole.transpose(0, 3, 1, 2)
    expected = {"bool": lambda a: a.astype(np.uint8) * 255, "uint8": lambda a: a}.get(
        dtype, lambda a: np.round(a * 255).astype(np.uint8))(whole)
    assert np.array_equal(read_samples(tmp_path / "s.npz", (1, 8, 8), "toy").numpy(), expected)


#: each numeric flag: the command it is on, its attribute, its least value (None: 0 or at least 10)
NUMERIC_FLAGS = {"--k": ("score", "k", 1), "--n-test": ("score", "n_test", 1),
                 "--n-reference": ("score", "quality_reference", 6),
                 "--max-samples": ("score", "max_samples", 1),
                 "--quality-samples": ("score", "quality_samples", None), "--seeds": ("run", "seeds", 1)}


@FEW
@given(flag=st.sampled_from(sorted(NUMERIC_FLAGS)), text=st.integers(-10**6, 10**6).map(str)
       | st.floats().map(str) | st.text(max_size=6).filter(lambda t: not t.startswith("-")))
def test_any_number_on_a_numeric_flag_is_in_range_or_one_clear_error(flag, text):
    command, attribute, least = NUMERIC_FLAGS[flag]
    try:
        args = build_parser().parse_args([command, *(["x"] if command == "score" else []), flag, text])
    except GenbenchError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("argument")
        return
    value = getattr(args, attribute)
    assert value == int(text) and (value >= least if least else value == 0 or value >= 10)


if __name__ == "__main__":  # python -m tests.harness.test_hostile_inputs DIR [PYTHONPATH]
    folder = Path(sys.argv[1])
    cases = hostile_cases(folder / "files")
    for case, result in zip(cases, run_driver(cases, folder, *sys.argv[2:3]), strict=True):
        print(json.dumps({"name": case.name, "code": result["code"], "problems": problems(case, result),
                          "stderr": result["stderr"].strip()[-300:], "peak_rss_mib": result["peak_rss"] >> 20,
                          "seconds": round(result["seconds"], 2)}))
