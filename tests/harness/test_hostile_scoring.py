"""Hostile scoring (issue 26): weights checked at the precision the model holds them, tensors a ``.pt``
can hold that are no weights, a metric that is not finite, ``--json`` that is strict JSON alone on
stdout whatever the model's code does, exits and interrupts raised by that code, and torch's legacy
(pre-1.6) format read by ``torch.load(weights_only=True)`` only once what it allocates is bounded.

Every case goes through the CLI in a forked child of ``tests/hostile_driver.py`` (the harness
of ``tests/harness/test_hostile_inputs.py``): the bad ones must give exactly one ``genbench:`` line,
exit 2, within the memory bound; the good ones must score, with strict JSON alone on stdout.
"""

from __future__ import annotations

import collections
import io
import json
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch

from genbench.user_models import build_user_model, import_user_code
from tests.harness.test_hostile_inputs import (
    ROOT,
    Case,
    Exploit,
    base_meta,
    problems,
    run_driver,
    toy_state,
    write_checkpoint,
)
from tests.harness.test_user_models import FOREIGN_VAE

#: model classes whose code misbehaves after the contract check (which calls them on 2 points)
HOSTILE_CODE = FOREIGN_VAE + '''
import os
import signal
import subprocess
import sys


class NaNLater(ForeignVAE):
    def log_importance_weights(self, x, k):
        weights = super().log_importance_weights(x, k)
        return weights if len(x) <= 2 else weights * float("nan")


class ExitsInInit(ForeignVAE):
    def __init__(self, **kwargs):
        sys.exit(0)


class RaisesInterrupt(ForeignVAE):
    def log_importance_weights(self, x, k):
        if len(x) > 2:
            raise KeyboardInterrupt
        return super().log_importance_weights(x, k)


class CtrlC(ForeignVAE):
    """A real SIGINT arrives while it evaluates (it sends one to its own process)."""

    def log_importance_weights(self, x, k):
        if len(x) > 2:
            os.kill(os.getpid(), signal.SIGINT)
        return super().log_importance_weights(x, k)


class Prints(ForeignVAE):
    """Writes to file descriptor 1 and starts a child that prints, as it is built."""

    def __init__(self, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        print("print of the model")
        sys.stdout.flush()
        os.write(1, b"os.write of the model\\n")
        subprocess.run([sys.executable, "-c", "print('a child of the model')"], check=True)
'''
SCORE = ("--dataset", "toy", "--k", "4", "--n-test", "40")
#: torch's legacy format: its magic number, protocol version and the system description it saves
LEGACY_HEADER = (torch.serialization.MAGIC_NUMBER, torch.serialization.PROTOCOL_VERSION,
                 {"protocol_version": torch.serialization.PROTOCOL_VERSION, "little_endian": True,
                  "type_sizes": {"short": 2, "int": 4, "long": 4}})
STORAGE = object()


class _LegacyTensor:
    """Pickles as torch's legacy format pickles a float tensor of ``count`` elements on storage '0'."""

    def __init__(self, count: int):
        self.count = count

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2,
                (STORAGE, 0, (self.count,), (1,), False, collections.OrderedDict()))


def legacy_bytes(declared: int, stored: int | None = None, data: int | None = None) -> bytes:
    """A legacy-format torch file of {'w': tensor} whose pickle declares a float storage of ``declared``
    elements, then the storage: ``stored`` (default ``declared``) as its count and ``data`` bytes (default
    what the count needs)."""
    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", declared, None) if obj is STORAGE else None

    stored = declared if stored is None else stored
    out = io.BytesIO()
    for header in LEGACY_HEADER:
        pickle.dump(header, out, protocol=2)
    Pickler(out, protocol=2).dump({"w": _LegacyTensor(declared)})
    pickle.dump(["0"], out, protocol=2)
    out.write(stored.to_bytes(8, "little", signed=True) + bytes(4 * stored if data is None else data))
    return out.getvalue()


def small_zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("data.pkl", b"x")
    return out.getvalue()


def overflowing(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state with its first weight in float64 holding one 1e300: finite there, +inf in float32."""
    key = next(iter(state))
    wide = state[key].double()
    wide.view(-1)[0] = 1e300
    return {**state, key: wide}


def first_replaced(state: dict[str, torch.Tensor], value: torch.Tensor) -> dict[str, torch.Tensor]:
    return {**state, next(iter(state)): value}


def tar_file(path: Path) -> Path:
    with tarfile.open(path, "w") as archive:
        info = tarfile.TarInfo("pickle")
        info.size = 1
        archive.addfile(info, io.BytesIO(b"x"))
    return path


def weight_cases(d: Path) -> list[Case]:
    """Weights finite in the file but not at the model's precision, and tensors that are no weights."""
    state = toy_state()
    first = next(iter(state.values()))
    wide = overflowing(state)
    torch.save(wide, d / "wide.pt")
    torch.save(wide, d / "wide_legacy.pt", _use_new_zipfile_serialization=False)
    kinds = {"sparse": (first.to_sparse(), "is a sparse tensor"),
             "meta": (first.to("meta"), "is a meta tensor, which holds no values"),
             "quantized": (torch.quantize_per_tensor(first, 0.1, 0, torch.qint8), "is a quantized tensor")}
    for kind, (value, _) in kinds.items():
        torch.save(first_replaced(state, value), d / f"{kind}.pt")
    overflow = "holds 1 of 12800 values that are NaN or infinite as torch.float32 (the model's precision)"
    vae = ["--model", "vae", *SCORE]
    checkpoint = write_checkpoint(d / "wide.safetensors", base_meta(), wide)
    return [Case("checkpoint_float64_1e300", ["score", str(checkpoint)], overflow),
            Case("pt_float64_1e300", ["score", str(d / "wide.pt"), *vae], overflow),
            Case("pt_legacy_float64_1e300", ["score", str(d / "wide_legacy.pt"), *vae], overflow),
            *(Case(f"pt_{kind}_tensor", ["score", str(d / f"{kind}.pt"), *vae], fragment)
              for kind, (_, fragment) in kinds.items())]


def legacy_cases(d: Path) -> list[Case]:
    """Legacy-format files that carry code, or declare storages the file does not hold."""
    torch.save({"w": torch.zeros(1), "payload": Exploit(str(d / "pwned"))}, d / "exploit.pt",
               _use_new_zipfile_serialization=False)
    files = {"declares_4GB": legacy_bytes(10**9, stored=10**9, data=0),
             "declares_4GB_with_a_zip_appended": legacy_bytes(10**9, stored=10**9, data=0) + small_zip(),
             "count_unlike_its_declaration": legacy_bytes(10**9, stored=4),
             "garbage": b"\x80\x02" + bytes(range(256)) * 4}
    for name, data in files.items():
        (d / f"{name}.pt").write_bytes(data)
    fragments = {"declares_4GB": "of 4,000,000,000 bytes runs past the end of the file",
                 "declares_4GB_with_a_zip_appended": "runs past the end of the file",
                 "count_unlike_its_declaration": "declared of 1,000,000,000 elements holds 4",
                 "garbage": "not a zip-format torch state dict, nor a readable legacy-format one"}
    vae = ["--model", "vae", *SCORE]
    return [Case("legacy_carrying_code", ["score", str(d / "exploit.pt"), *vae],
                 "weights-only state dict (Unsupported global: GLOBAL io.open"),
            Case("legacy_tar_format", ["score", str(tar_file(d / "tar.pt")), *vae], "in torch's tar format"),
            *(Case(f"legacy_{name}", ["score", str(d / f"{name}.pt"), *vae], fragment)
              for name, fragment in fragments.items())]


@pytest.fixture(scope="module")
def hostile_model(tmp_path_factory):
    """(code file, weights .pt) of ``HOSTILE_CODE``'s VAE."""
    d = tmp_path_factory.mktemp("model")
    code = d / "hostile_vae.py"
    code.write_text(HOSTILE_CODE)
    torch.manual_seed(1)
    model = build_user_model(import_user_code(str(code)), str(code), "ForeignVAE", {})
    torch.save(model.state_dict(), d / "vae.pt")
    return code, d / "vae.pt"


def model_code_cases(d: Path, code: Path, weights: Path) -> list[Case]:
    """Model code that turns NaN after its contract check, exits, or raises KeyboardInterrupt itself."""
    def score(name: str, *extra: str) -> list[str]:
        return ["score", str(weights), "--model-code", f"{code}:{name}", *SCORE, *extra]

    return [Case("model_nan_after_its_contract_check", score("NaNLater"),
                 "metric elbo is nan; scoring failed"),
            Case("model_nan_recorded_with_name", score("NaNLater", "--json", "--db", str(d / "nan.sqlite"),
                                                       "--name", "nan"), "scoring failed, nothing recorded"),
            Case("model_sys_exit_0_in_init", score("ExitsInInit", "--json"),
                 "ExitsInInit() raised SystemExit: 0"),
            Case("model_raises_keyboard_interrupt", score("RaisesInterrupt"),
                 "RaisesInterrupt raised KeyboardInterrupt at")]


@pytest.mark.slow
def test_hostile_scoring_is_one_line_and_exit_2_within_bounded_memory(tmp_path, hostile_model):
    d = tmp_path / "files"
    d.mkdir()
    cases = [*weight_cases(d), *legacy_cases(d), *model_code_cases(d, *hostile_model)]
    results = zip(cases, run_driver(cases, tmp_path), strict=True)
    failures = {case.name: [*problems(case, result), result["stderr"].strip()[-400:]]
                for case, result in results if problems(case, result)}
    assert not failures, json.dumps(failures, indent=1)
    assert not (d / "pwned").exists()
    assert not (d / "nan.sqlite").exists() or _runs(d / "nan.sqlite") == 0


def _runs(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM runs").fetchone()[0]


def strict_json(text: str) -> dict:
    """``text`` as JSON, refusing NaN and Infinity (Python's json accepts them, RFC 8259 does not)."""
    def refuse(constant: str):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.slow
def test_legacy_float8_and_odd_outputs_score_with_strict_json_alone_on_stdout(tmp_path, hostile_model):
    """A legacy-format state dict scores exactly as the zip-format one; float8 weights as the float32
    weights they round to; a standard error of one test point and an infinite --init value are null in
    strict JSON, with their reasons; what model code and its child print goes to stderr."""
    code, weights = hostile_model
    d = tmp_path / "files"
    d.mkdir()
    state = toy_state()
    torch.save(state, d / "zip.pt")
    torch.save(state, d / "legacy.pt", _use_new_zipfile_serialization=False)
    eight = {k: v.to(torch.float8_e4m3fn) for k, v in state.items()}
    torch.save(eight, d / "float8.pt")
    torch.save({k: v.float() for k, v in eight.items()}, d / "float8_as_float32.pt")
    one_point = write_checkpoint(d / "good.safetensors", base_meta())
    vae = ["--model", "vae", *SCORE, "--json"]
    argv = {name: ["score", str(d / f"{name}.pt"), *vae]
            for name in ("zip", "legacy", "float8", "float8_as_float32")}
    argv["one_test_point"] = ["score", str(one_point), "--k", "4", "--n-test", "1", "--json"]
    argv["init_1e999_and_prints"] = ["score", str(weights), "--model-code", f"{code}:Prints", *SCORE,
                                     "--init", "scale=1e999", "--json"]
    cases = [Case(name, args, "") for name, args in argv.items()]
    results = {case.name: r for case, r in zip(cases, run_driver(cases, tmp_path), strict=True)}
    assert all(r["code"] == 0 for r in results.values()), {n: r["stderr"][-400:] for n, r in results.items()}
    reports = {name: strict_json(r["stdout"]) for name, r in results.items()}
    assert reports["legacy"]["metrics"] == reports["zip"]["metrics"]
    assert reports["float8"]["metrics"] == reports["float8_as_float32"]["metrics"]
    one = reports["one_test_point"]
    assert one["metrics"]["nll_se"] is None and one["metrics"]["nll"] > 0
    assert one["nulls"]["metrics.nll_se"] == "nan is not a finite number"
    printed = reports["init_1e999_and_prints"]
    assert printed["config"]["scale"] is None
    assert printed["nulls"] == {"config.scale": "inf is not a finite number"}
    stderr = results["init_1e999_and_prints"]["stderr"]
    assert all(line in stderr for line in ("print of the model", "os.write of the model",
                                           "a child of the model"))


def _score_in_a_process(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``python -m genbench.cli`` with SIGINT at its default (Python's KeyboardInterrupt handler), even
    where this test runs with SIGINT ignored (a background job)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GENBENCH_CACHE": str(cwd / "cache"),
           "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "genbench.cli", *argv], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


@pytest.mark.slow
def test_a_keyboard_interrupt_of_the_model_is_its_error_and_a_real_ctrl_c_an_interrupt(tmp_path,
                                                                                       hostile_model):
    code, weights = hostile_model
    raised = _score_in_a_process(["score", str(weights), "--model-code", f"{code}:RaisesInterrupt", *SCORE],
                                 tmp_path)
    assert raised.returncode == 2, raised.stderr
    assert raised.stderr.startswith(f"genbench: {code}:RaisesInterrupt raised KeyboardInterrupt at {code}:")
    assert len(raised.stderr.splitlines()) == 1
    ctrl_c = _score_in_a_process(["score", str(weights), "--model-code", f"{code}:CtrlC", *SCORE], tmp_path)
    assert ctrl_c.returncode == 130, ctrl_c.stderr
    assert ctrl_c.stderr.startswith("genbench: interrupted") and len(ctrl_c.stderr.splitlines()) == 1
