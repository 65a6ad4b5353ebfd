"""Hostile model files: every probe of issue 13's model side is refused and nothing runs.

Each crafted file carries a payload that would create a marker file if any of it were
executed; every test asserts the marker is never created. Where the probe is live
against torch itself (a .pt2's pickled sample inputs, a TorchScript ``from_file``), a
control test shows that plain torch *does* run it, so the refusal is not vacuous.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import shutil
import struct
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import auditkit
from auditkit import _model_security as sec
from auditkit.cli import main
from auditkit.exceptions import (
    ModelError,
    ModelNotFoundError,
    UnsafeModelError,
    UntrustedModelError,
)
from auditkit.models import ModelCard, list_models, load_model, scan_pickle, sha256_file
from auditkit.predict import predict
from tests.conftest import BrightnessNet, demo_models_present, write_model


@pytest.fixture
def untrusted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The safe default: nobody has said any model's code is trusted."""
    monkeypatch.delenv("AUDITKIT_TRUST_MODEL_CODE", raising=False)


class _Evil:
    """Unpickling this opens (creates) ``marker``: the proof that a pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _card(folder: Path, weights: str, fmt: str, **extra) -> Path:
    path = folder / weights
    sha = sha256_file(path) if path.is_file() else "0" * 64
    ModelCard(name="probe", version="v1", task="probe", class_names=["benign", "malignant"],
              positive_class="malignant", output="softmax", input_size=[16, 16], channels=3,
              normalization={"mean": [0.5] * 3, "std": [0.25] * 3}, format=fmt,
              weights=weights, sha256=sha, **extra).save(folder)
    return folder


def _state_dict_card(folder: Path, weights: str = "weights.pt") -> Path:
    return _card(folder, weights, "state_dict", architecture="small_resnet",
                 architecture_kwargs={"in_channels": 3, "num_outputs": 2, "widths": [4, 8, 8, 8]})


def _rewrite_zip(path: Path, change: Callable[[dict[str, bytes]], dict[str, bytes]]) -> None:
    with zipfile.ZipFile(path) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    members = change(members)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)


def _key(members: dict[str, bytes], suffix: str) -> str:
    return next(k for k in members if k.endswith(suffix))


def _torch_save_bytes(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


# --------------------------------------------------------------------------- trust


def test_code_formats_need_trust_by_default(tmp_path: Path, untrusted: None) -> None:
    for fmt in ("torchscript", "export"):
        folder = write_model(tmp_path / fmt, BrightnessNet(2), fmt=fmt)
        with pytest.raises(UntrustedModelError, match="carries code.*trust_model_code=True"):
            load_model(folder, device="cpu")
        model = load_model(folder, device="cpu", trust_model_code=True)
        assert model.trust["trusted_by"] == "user" and model.trust["carries_code"]
        assert "pickle scan" in model.trust["checks"]


def test_safe_formats_need_no_trust(small_resnet_dir: Path, untrusted: None) -> None:
    model = load_model(small_resnet_dir, device="cpu")
    assert model.trust == {"format": "state_dict", "carries_code": False,
                           "trusted_by": "not needed", "checks": ["weights-only load"]}


def test_explicit_false_overrides_the_environment(brightness_model_dir: Path) -> None:
    assert os.environ["AUDITKIT_TRUST_MODEL_CODE"] == "1"  # set by conftest
    with pytest.raises(UntrustedModelError):
        load_model(brightness_model_dir, device="cpu", trust_model_code=False)


@pytest.mark.skipif(not demo_models_present(), reason="demo models not in this checkout")
def test_bundled_demo_models_load_without_trust_and_unchanged(untrusted: None) -> None:
    for ref in ("derm-lesion@v1", "mri-tumor@v1"):
        model = load_model(ref, device="cpu")
        assert model.trust["trusted_by"] == "bundled", ref
    # the export demo through auditkit's loader gives torch's own numbers
    folder = auditkit.resolve_model("mri-tumor@v1").folder
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    ours = load_model("mri-tumor@v1", device="cpu").module(x)
    theirs = torch.export.load(str(folder / "weights.pt2")).module()(x)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    assert {m.card.ref: m.trust for m in list_models()}["cxr-covid@v1"] == "none"


@pytest.mark.skipif(not demo_models_present(), reason="demo models not in this checkout")
def test_card_cannot_claim_bundled_trust(tmp_path: Path, untrusted: None) -> None:
    """Copying a demo card next to other TorchScript weights earns no trust: trust
    follows the sha256 of the bytes, and the sha256 is checked against the file."""
    src = auditkit.resolve_model("derm-lesion@v1").folder
    folder = tmp_path / "fake"
    shutil.copytree(src, folder)
    write_model(tmp_path / "other", BrightnessNet(2), fmt="torchscript")
    shutil.copy(tmp_path / "other" / "weights.torchscript.pt", folder / "weights.torchscript.pt")
    with pytest.raises(auditkit.IntegrityError):
        load_model(folder, device="cpu")
    card = json.loads((folder / "card.json").read_text())
    card["sha256"] = sha256_file(folder / "weights.torchscript.pt")
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(UntrustedModelError):
        load_model(folder, device="cpu")


def test_cli_trust_flag_and_audit_json(tmp_path: Path, tiny_dataset_dir: Path,
                                       brightness_model_dir: Path, untrusted: None,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    args = ["audit", "--model", str(brightness_model_dir), "--dataset", str(tiny_dataset_dir),
            "--n-boot", "50", "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err
    assert "is a TorchScript model: its file carries code" in err and "--trust-model-code" in err
    assert not (tmp_path / "refused").exists()
    assert main([*args, "--out", str(tmp_path / "ok"), "--trust-model-code"]) == 0
    audit = json.loads((tmp_path / "ok" / "audit.json").read_text())
    assert audit["model"]["trust"] == {
        "format": "torchscript", "carries_code": True, "trusted_by": "user",
        "checks": ["pickle scan", "code allowlist", "graph allowlist"]}


def test_compare_takes_the_same_trust_flag(tmp_path: Path, data_root: Path, untrusted: None,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    reg = tmp_path / "reg"
    for version, scale in (("v1", 4.0), ("v2", 2.0)):
        write_model(reg / "cxr-tiny" / version, BrightnessNet(1, scale=scale),
                    fmt="torchscript", name="cxr-tiny", version=version, channels=1, size=8,
                    output="binary_logit", class_names=["not_covid", "covid"])
    args = ["compare", "--models", "cxr-tiny@v1,cxr-tiny@v2", "--dataset", "covid_cxr",
            "--data-root", str(data_root), "--registry", str(reg), "--n-boot", "50",
            "--device", "cpu", "--all-images", "--out", str(tmp_path / "cmp")]
    assert main(args) == 2
    assert "--trust-model-code" in capsys.readouterr().err
    audits = Path(os.environ["AUDITKIT_AUDITS"])
    assert not list(audits.glob("*/audit.json"))
    assert main([*args, "--trust-model-code"]) == 0, capsys.readouterr().err
    trusts = [json.loads(p.read_text())["model"]["trust"]["trusted_by"]
              for p in audits.glob("*/audit.json")]
    assert trusts == ["user", "user"]


def test_models_command_shows_trust(tmp_path: Path, brightness_model_dir: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--registry", str(brightness_model_dir.parents[1])]) == 0
    assert "needs --trust-model-code" in capsys.readouterr().out


# --------------------------------------------------------------------------- TorchScript


class ReadsAndWritesFiles(torch.nn.Module):
    """The issue's probe: a forward that reads a file into its logits and writes one."""

    def __init__(self, secret: str, marker: str) -> None:
        super().__init__()
        self.secret = secret
        self.marker = marker

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.from_file(self.secret, shared=False, size=4, dtype=torch.uint8)
        torch.save(t, self.marker)
        return x.mean(dim=(1, 2, 3)).unsqueeze(1) + t[:2].float()


class WritesWhileLoading(torch.nn.Module):
    """A scripted ``__setstate__`` runs inside ``torch.jit.load`` itself."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker
        self.w = torch.nn.Parameter(torch.ones(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2, 3)).unsqueeze(1) * self.w

    @torch.jit.export
    def __getstate__(self) -> tuple[torch.Tensor, str, bool]:
        return (self.w, self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, str, bool]) -> None:
        self.w = state[0]
        self.marker = state[1]
        self.training = state[2]
        torch.save(state[0], self.marker)


class Prints(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        print("model says hello")
        return x.mean(dim=(1, 2, 3)).unsqueeze(1).repeat(1, 2)


def _scripted(folder: Path, module: torch.nn.Module) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    torch.jit.save(torch.jit.script(module), str(folder / "weights.torchscript.pt"))
    return _card(folder, "weights.torchscript.pt", "torchscript")


def test_control_plain_torch_runs_from_file(tmp_path: Path) -> None:
    secret = tmp_path / "outside" / "secret"
    secret.parent.mkdir()
    secret.write_bytes(b"\x07\x09ab")
    marker = tmp_path / "outside" / "written.pt"
    folder = _scripted(tmp_path / "m", ReadsAndWritesFiles(str(secret), str(marker)))
    module = torch.jit.load(str(folder / "weights.torchscript.pt"))
    out = module(torch.zeros(1, 3, 4, 4))
    assert marker.exists() and out.tolist() == [[7.0, 9.0]]  # the file's bytes became logits


def test_torchscript_from_file_is_refused_even_when_trusted(tmp_path: Path) -> None:
    secret = tmp_path / "outside" / "secret"
    secret.parent.mkdir()
    secret.write_bytes(b"\x07\x09ab")
    marker = tmp_path / "outside" / "written.pt"
    folder = _scripted(tmp_path / "m", ReadsAndWritesFiles(str(secret), str(marker)))
    with pytest.raises(UnsafeModelError, match=r"aten::from_file.*aten::save|"
                                               r"aten::save.*aten::from_file") as info:
        load_model(folder, device="cpu", trust_model_code=True)
    assert "allowlist of tensor operations" in str(info.value)
    assert "Nothing from the file was executed" in str(info.value)
    assert not marker.exists()


def test_torchscript_setstate_is_checked_before_load(tmp_path: Path) -> None:
    marker = tmp_path / "loaded.pt"
    folder = _scripted(tmp_path / "m", WritesWhileLoading(str(marker)))
    marker.unlink(missing_ok=True)  # scripting does not run __setstate__, but be sure
    with pytest.raises(UnsafeModelError, match="aten::save"):
        load_model(folder, device="cpu", trust_model_code=True)
    assert not marker.exists()
    torch.jit.load(str(folder / "weights.torchscript.pt"))  # control: torch alone runs it
    assert marker.exists()


def test_torchscript_print_is_refused(tmp_path: Path) -> None:
    folder = _scripted(tmp_path / "m", Prints())
    with pytest.raises(UnsafeModelError, match="print"):
        load_model(folder, device="cpu", trust_model_code=True)


def test_graph_check_refuses_what_the_code_check_would(tmp_path: Path) -> None:
    """The post-load graph walk is a second, independent allowlist."""
    module = torch.jit.script(ReadsAndWritesFiles("/nonexistent", str(tmp_path / "m")))
    with pytest.raises(UnsafeModelError, match="aten::from_file.*aten::save"):
        sec.check_torchscript_graph(module)
    sec.check_torchscript_graph(torch.jit.script(BrightnessNet(2)))  # passes


def test_torchscript_pickles_are_scanned(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    folder = write_model(tmp_path / "m", BrightnessNet(2), fmt="torchscript")
    weights = folder / "weights.torchscript.pt"

    def add_evil(members: dict[str, bytes]) -> dict[str, bytes]:
        members[_key(members, "constants.pkl")] = pickle.dumps((_Evil(marker),), protocol=2)
        return members

    _rewrite_zip(weights, add_evil)
    _card(folder, weights.name, "torchscript")
    with pytest.raises(UnsafeModelError, match=r"would import \['(builtins|io)\.open"):
        load_model(folder, device="cpu", trust_model_code=True)
    assert not marker.exists()


# --------------------------------------------------------------------------- torch.export


def _export(tmp_path: Path) -> tuple[Path, Path]:
    folder = write_model(tmp_path / "m", BrightnessNet(2), fmt="export")
    return folder, folder / "weights.pt2"


def test_control_plain_torch_export_load_runs_sample_input_pickle(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    _folder, weights = _export(tmp_path)
    _rewrite_zip(weights, lambda m: {**m, _key(m, "sample_inputs/model.pt"): _torch_save_bytes(
        ((torch.zeros(2, 3, 16, 16), _Evil(marker)), {}))})
    import logging

    logging.disable(logging.CRITICAL)  # torch logs the weights_only=False fallback it takes
    try:
        torch.export.load(str(weights))
    except Exception:  # the payload ran before any error
        pass
    finally:
        logging.disable(logging.NOTSET)
    assert marker.exists()


def _pt2_sample_inputs(members: dict[str, bytes], marker: Path) -> dict[str, bytes]:
    members[_key(members, "sample_inputs/model.pt")] = _torch_save_bytes(
        ((torch.zeros(2, 3, 16, 16), _Evil(marker)), {}))
    return members


def _pt2_use_pickle_weight(members: dict[str, bytes], marker: Path) -> dict[str, bytes]:
    key = _key(members, "model_weights_config.json")
    config = json.loads(members[key])
    first = next(iter(config["config"]))
    config["config"][first]["use_pickle"] = True
    members[key] = json.dumps(config).encode()
    path = config["config"][first]["path_name"]
    members[_key(members, f"data/weights/{path}")] = _torch_save_bytes(_Evil(marker))
    return members


def _pt2_constant(prefix: str) -> Callable[[dict[str, bytes], Path], dict[str, bytes]]:
    def change(members: dict[str, bytes], marker: Path) -> dict[str, bytes]:
        key = _key(members, "model_constants_config.json")
        config = json.loads(members[key])
        config["config"]["evil"] = {"path_name": f"{prefix}0", "is_param": False,
                                    "use_pickle": prefix == "opaque_obj_", "tensor_meta": None}
        members[key] = json.dumps(config).encode()
        top = key.split("/", 1)[0]
        members[f"{top}/data/constants/{prefix}0"] = pickle.dumps(_Evil(marker))
        return members
    return change


def _pt2_program(edit: Callable[[dict], None]) -> Callable[[dict[str, bytes], Path],
                                                           dict[str, bytes]]:
    def change(members: dict[str, bytes], marker: Path) -> dict[str, bytes]:
        key = _key(members, "models/model.json")
        program = json.loads(members[key])
        edit(program)
        members[key] = json.dumps(program).encode()
        return members
    return change


def _set_target(target: str) -> Callable[[dict], None]:
    def edit(program: dict) -> None:
        program["graph_module"]["graph"]["nodes"][0]["target"] = target
    return edit


def _set_expr(program: dict) -> None:
    for value in program["graph_module"]["graph"]["tensor_values"].values():
        for size in value["sizes"]:
            if "as_expr" in size:
                size["as_expr"]["expr_str"] = "__import__('os').system('touch pwned')"
                return
    raise AssertionError("the exported probe has no symbolic size")


def _set_arg_name(program: dict) -> None:
    """torch writes forward_arg_names verbatim into the source of the module it builds."""
    signature = program["graph_module"]["module_call_graph"][0]["signature"]
    signature["forward_arg_names"] = ["x=__import__('os').system('touch pwned')):#"]


def _set_metadata(program: dict) -> None:
    node = program["graph_module"]["graph"]["nodes"][0]
    node["metadata"]["nn_module_stack"] = "L__self__,,x\n__import__('os').system('touch pwned')"


def _aoti(members: dict[str, bytes], marker: Path) -> dict[str, bytes]:
    top = next(iter(members)).split("/", 1)[0]
    members[f"{top}/data/aotinductor/model/model.so"] = b"\x7fELF native code"
    return members


def _legacy(members: dict[str, bytes], marker: Path) -> dict[str, bytes]:
    return {k: v for k, v in members.items() if not k.endswith("archive_format")}


PT2_PROBES = {
    "pickled sample inputs": (_pt2_sample_inputs, r"would import \['(builtins|io)\.open"),
    "use_pickle weights": (_pt2_use_pickle_weight, "stored as a pickle \\(use_pickle\\)"),
    "opaque constant": (_pt2_constant("opaque_obj_"), "stored as a pickle|as an object"),
    "custom object constant": (_pt2_constant("custom_obj_"), "stored as an object"),
    "graph op from_file": (_pt2_program(_set_target("torch.ops.aten.from_file.default")),
                           "torch.ops.aten.from_file.default"),
    "graph op os.system via torch.os": (_pt2_program(_set_target("torch.os.system")),
                                        "torch.os.system"),
    "graph op torch.save": (_pt2_program(_set_target("torch.save")), "torch.save"),
    "sympy eval in a shape": (_pt2_program(_set_expr), "symbolic expressions outside"),
    "argument name carrying code": (_pt2_program(_set_arg_name), "not plain identifiers"),
    "metadata carrying code": (_pt2_program(_set_metadata), "not plain identifiers"),
    "guard code": (_pt2_program(lambda p: p.__setitem__(
        "guards_code", ["__import__('os').system('touch pwned')"])), "guard code"),
    "AOTInductor native code": (_aoti, "AOTInductor native code"),
    "legacy pickle layout": (_legacy, "not a current torch.export archive"),
}


@pytest.mark.parametrize("probe", list(PT2_PROBES))
def test_crafted_pt2_is_refused_and_nothing_runs(tmp_path: Path, probe: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a shell payload would write here
    marker = tmp_path / "pwned"
    change, message = PT2_PROBES[probe]
    folder, weights = _export(tmp_path)
    _rewrite_zip(weights, lambda m: change(m, marker))
    _card(folder, weights.name, "export")
    with pytest.raises(UnsafeModelError, match=message) as info:
        load_model(folder, device="cpu", trust_model_code=True)
    assert "Nothing from the file was executed" in str(info.value)
    assert not marker.exists() and not (tmp_path / "pwned").exists()


def test_crafted_pt2_through_the_cli_exits_2(tmp_path: Path, tiny_dataset_dir: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "pwned"
    folder, weights = _export(tmp_path)
    _rewrite_zip(weights, lambda m: _pt2_sample_inputs(m, marker))
    _card(folder, weights.name, "export")
    rc = main(["audit", "--model", str(folder), "--dataset", str(tiny_dataset_dir),
               "--out", str(tmp_path / "out"), "--trust-model-code", "--device", "cpu"])
    assert rc == 2 and not marker.exists() and not (tmp_path / "out").exists()
    assert "Refused to load weights.pt2" in capsys.readouterr().err


def test_clean_pt2_passes_every_check(tmp_path: Path) -> None:
    folder, weights = _export(tmp_path)
    sec.check_export_archive(weights)
    model = load_model(folder, device="cpu", trust_model_code=True)
    assert model.trust["checks"] == ["pickle scan", "program allowlist"]


# --------------------------------------------------------------------------- pickle scanner


def _legacy_pickles(blob: bytes) -> tuple[list[bytes], bytes]:
    """Split a legacy torch.save file into its five pickles and the raw rest."""
    pieces, pos = [], 0
    for _ in range(5):
        _found, end = sec._pickle_globals(blob, pos)
        pieces.append(blob[pos:end])
        pos = end
    return pieces, blob[pos:]


def test_every_pickle_of_a_legacy_file_is_scanned(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    buf = io.BytesIO()
    torch.save({"w": torch.ones(3)}, buf, _use_new_zipfile_serialization=False)
    pieces, rest = _legacy_pickles(buf.getvalue())
    scan_path = tmp_path / "clean.pt"
    scan_path.write_bytes(buf.getvalue())
    scan_pickle(scan_path)  # a clean legacy file passes, raw storage bytes and all
    pieces[2] = pickle.dumps({"protocol_version": 1001, "x": _Evil(marker)}, protocol=2)
    path = tmp_path / "m" / "weights.pt"
    path.parent.mkdir()
    path.write_bytes(b"".join(pieces) + rest)
    with pytest.raises(UnsafeModelError, match=r"(builtins|io)\.open"):
        scan_pickle(path)
    # and the plain-pickle case: a second pickle after a harmless first one
    two = tmp_path / "two.pt"
    two.write_bytes(pickle.dumps({"w": 1}) + pickle.dumps(_Evil(marker)))
    with pytest.raises(UnsafeModelError, match=r"(builtins|io)\.open"):
        scan_pickle(two)
    _state_dict_card(path.parent)
    with pytest.raises(UnsafeModelError):
        load_model(path.parent, device="cpu")
    assert not marker.exists()


def _memo_stack_global(marker: Path) -> bytes:
    """STACK_GLOBAL whose strings come back from the memo, after decoy strings.

    A scanner that pairs STACK_GLOBAL with the last two strings it saw reads
    ``collections.OrderedDict``; the pickle machine imports ``builtins.open``.
    """
    def u(s: str) -> bytes:
        return b"\x8c" + bytes([len(s)]) + s.encode()  # SHORT_BINUNICODE

    return (b"\x80\x04"                                   # PROTO 4
            + u("builtins") + b"\x94" + u("open") + b"\x94"  # MEMOIZE 0, 1
            + b"0" + b"0"                                # POP, POP
            + u("collections") + u("OrderedDict") + b"0" + b"0"  # decoys, popped
            + b"h\x00" + b"h\x01" + b"\x93"              # BINGET 0, BINGET 1, STACK_GLOBAL
            + u(str(marker)) + u("w") + b"\x86"          # TUPLE2
            + b"R" + b".")                               # REDUCE, STOP


def test_stack_global_through_the_memo(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    blob = _memo_stack_global(marker)
    path = tmp_path / "memo.pt"
    path.write_bytes(blob)
    with pytest.raises(UnsafeModelError, match=r"would import \['builtins\.open'\]"):
        scan_pickle(path)
    assert not marker.exists()
    pickle.loads(blob).close()  # control: the bytes really do call builtins.open
    assert marker.exists()


def test_zip_and_pickle_polyglot_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    clean = tmp_path / "clean.pt"
    torch.save({"w": torch.ones(2)}, str(clean))
    folder = tmp_path / "m"
    folder.mkdir()
    poly = folder / "weights.pt"
    poly.write_bytes(pickle.dumps(_Evil(marker), protocol=2) + clean.read_bytes())
    assert zipfile.is_zipfile(poly)  # Python sees a valid zip ...
    with pytest.raises(UnsafeModelError, match="polyglot"):  # ... torch would see a pickle
        scan_pickle(poly)
    _state_dict_card(folder)
    with pytest.raises(UnsafeModelError, match="polyglot"):
        load_model(folder, device="cpu")
    assert not marker.exists()


def test_extension_registry_and_duplicate_members_are_refused(tmp_path: Path) -> None:
    ext = tmp_path / "ext.pt"
    ext.write_bytes(b"\x80\x02\x82\x01)R.")  # EXT1 1, EMPTY_TUPLE, REDUCE
    with pytest.raises(UnsafeModelError, match="extension registry"):
        scan_pickle(ext)
    dup = tmp_path / "dup.pt"
    torch.save({"w": torch.ones(2)}, str(dup))
    with zipfile.ZipFile(dup) as zf:
        name = next(n for n in zf.namelist() if n.endswith("data.pkl"))
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(dup, "a") as zf:
        zf.writestr(name, pickle.dumps(_Evil(tmp_path / "pwned"), protocol=2))
    with pytest.raises(UnsafeModelError, match="same name twice"):
        scan_pickle(dup)


def test_malformed_pickle_is_refused_not_half_read(tmp_path: Path) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(b"\x80\x02" + struct.pack("<B", 0xFF) + b".")
    with pytest.raises(UnsafeModelError, match="not a well-formed pickle"):
        scan_pickle(path)


def test_legitimate_files_pass_the_scanner(tmp_path: Path) -> None:
    torch.save({"w": torch.ones(2, dtype=torch.float16), "n": torch.tensor(3)},
               str(tmp_path / "sd.pt"))
    scan_pickle(tmp_path / "sd.pt")
    sec.check_torchscript_archive(write_model(tmp_path / "ts", BrightnessNet(2),
                                              fmt="torchscript") / "weights.torchscript.pt")
    sec.check_export_archive(write_model(tmp_path / "ex", BrightnessNet(2), fmt="export")
                             / "weights.pt2")


class CommonLayers(torch.nn.Module):
    """Layers a real imaging model uses; none of them may trip the allowlists."""

    def __init__(self) -> None:
        super().__init__()
        nn = torch.nn
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.gn = nn.GroupNorm(2, 8)
        self.ln = nn.LayerNorm(8)
        self.att = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = torch.nn.functional
        y = f.max_pool2d(f.gelu(self.bn(self.conv(x))), 2)
        y = f.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False)
        y = self.gn(y) + torch.sigmoid(y) * f.silu(y) + f.hardswish(y)
        t = self.ln(y.flatten(2).transpose(1, 2))
        t, _ = self.att(t, t, t)
        return self.head(f.dropout(t.mean(1), 0.1, self.training))


def test_common_layers_pass_every_check(tmp_path: Path) -> None:
    net = CommonLayers().eval()
    x = torch.rand(2, 3, 16, 16)
    with warnings.catch_warnings():  # torch's own tracer notes about layer internals
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(net, x, check_trace=False)
    torch.jit.save(traced, str(tmp_path / "t.pt"))
    sec.check_torchscript_archive(tmp_path / "t.pt")
    sec.check_torchscript_graph(torch.jit.load(str(tmp_path / "t.pt")))
    torch.export.save(torch.export.export(net, (x,)), str(tmp_path / "e.pt2"))
    sec.check_export_archive(tmp_path / "e.pt2")
    with torch.no_grad():
        torch.testing.assert_close(sec.load_export_program(tmp_path / "e.pt2").module()(x),
                                   net(x))


@pytest.mark.skipif(not demo_models_present(), reason="demo models not in this checkout")
def test_demo_models_pass_every_static_check() -> None:
    checked = set()
    for m in list_models():
        if m.card.format == "torchscript":
            sec.check_torchscript_archive(m.weights_path)
        elif m.card.format == "export":
            sec.check_export_archive(m.weights_path)
        elif m.weights_path.suffix == ".pt":
            scan_pickle(m.weights_path)
        checked.add(m.card.format)
    assert checked == {"torchscript", "export", "state_dict"}


# --------------------------------------------------------------------------- weights path


def _escape_folder(tmp_path: Path, weights: str) -> Path:
    """A model folder whose hand-written card names ``weights`` (no validation on write)."""
    folder = tmp_path / "reg" / "escape" / "v1"
    folder.mkdir(parents=True)
    _state_dict_card(folder, "placeholder.pt")
    card = json.loads((folder / "card.json").read_text())
    card["weights"] = weights
    (folder / "card.json").write_text(json.dumps(card))
    return folder


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_weights_outside_the_model_folder_are_refused(tmp_path: Path, how: str,
                                                      tiny_dataset_dir: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    outside = tmp_path / "outside.pt"
    torch.save({"w": torch.ones(2)}, str(outside))
    weights = {"dotdot": "../../../outside.pt", "absolute": str(outside),
               "symlink": "weights.pt"}[how]
    folder = _escape_folder(tmp_path, weights)
    if how == "symlink":
        (folder / "weights.pt").symlink_to(outside)
    card = json.loads((folder / "card.json").read_text())
    card["sha256"] = sha256_file(outside)  # the card even carries the outside file's hash
    (folder / "card.json").write_text(json.dumps(card))
    hashed: list[Path] = []
    real_sha = auditkit.models.sha256_file
    monkeypatch.setattr(auditkit.models, "sha256_file",
                        lambda p: hashed.append(Path(p)) or real_sha(p))
    # `../` and absolute paths are refused by the card schema already; a symlink only by
    # resolving the path, which the loader does whatever the card says
    message = ("is missing or not allowed: expected a file inside the model folder"
               if how == "symlink" else "expected a file name beside card.json")
    with pytest.raises(ModelError, match=message) as refused:
        load_model(folder, device="cpu")
    assert main(["audit", "--model", str(folder), "--dataset", str(tiny_dataset_dir),
                 "--out", str(tmp_path / "out")]) == 2
    assert message.split(":")[0] in capsys.readouterr().err
    assert Path(outside).resolve() not in [p.resolve() for p in hashed]  # never even hashed
    if how == "symlink":
        assert main(["models", "--registry", str(tmp_path / "reg")]) == 0
        assert "NO - weights missing, not allowed" in capsys.readouterr().out
    # the same message as when nothing is there at all: existence is not revealed
    outside.unlink()
    with pytest.raises(ModelError) as missing:
        load_model(folder, device="cpu")
    assert str(missing.value) == str(refused.value)


@pytest.mark.parametrize("weights", ["../outside.pt", "/etc/passwd", "sub/../../outside.pt"])
def test_loader_confines_weights_whatever_the_card_allows(tmp_path: Path, weights: str) -> None:
    """Defence in depth: the loader's own check, independent of the card schema."""
    from types import SimpleNamespace

    from auditkit.models import confined_weights_path

    (tmp_path / "outside.pt").write_bytes(b"x")
    folder = tmp_path / "m"
    (folder / "sub").mkdir(parents=True)
    card = SimpleNamespace(weights=weights, ref="probe@v1")
    with pytest.raises(ModelNotFoundError, match="missing or not allowed"):
        confined_weights_path(folder, card)  # type: ignore[arg-type]


def test_symlink_within_the_folder_is_fine(small_resnet_dir: Path) -> None:
    real = small_resnet_dir / "store" / "w.safetensors"
    real.parent.mkdir()
    (small_resnet_dir / "weights.safetensors").rename(real)
    (small_resnet_dir / "weights.safetensors").symlink_to(real)
    assert load_model(small_resnet_dir, device="cpu").card.name == "resnet"


# --------------------------------------------------------------------------- bad outputs


class ReturnsTuple(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = x.mean(dim=(1, 2, 3)).unsqueeze(1).repeat(1, 2)
        return z, z


class ReturnsNaN(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2, 3)).unsqueeze(1).repeat(1, 2) * float("nan")


class ReturnsInf(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2, 3)).unsqueeze(1).repeat(1, 2) / 0.0


class DropsARow(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2, 3)).unsqueeze(1).repeat(1, 2)[1:]


class Raises(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 0:
            raise ValueError("the model gave up")
        return x


@pytest.mark.parametrize(("module", "message"), [
    (ReturnsTuple(), "returned a tuple for a batch of images; expected one tensor"),
    (ReturnsNaN(), "returned NaN or infinite outputs for 24 image\\(s\\)"),
    (ReturnsInf(), "returned NaN or infinite outputs"),
    (DropsARow(), "returned outputs of shape \\(23, 2\\) for 24 image\\(s\\)"),
    (Raises(), "probe@v1 failed on images 1-24 of 'tiny': .*the model gave up"),
], ids=["tuple", "nan", "inf", "wrong-length", "exception"])
def test_bad_model_outputs_exit_2_with_a_message(tmp_path: Path, tiny_dataset_dir: Path,
                                                 module: torch.nn.Module, message: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    folder = _scripted(tmp_path / "m", module)
    rc = main(["audit", "--model", str(folder), "--dataset", str(tiny_dataset_dir),
               "--out", str(tmp_path / "out"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    assert re.search(message, err), err
    assert not (tmp_path / "out" / "audit.json").exists()
    with pytest.raises(ModelError):
        predict(load_model(folder, device="cpu"), auditkit.load_dataset(tiny_dataset_dir),
                cache=False)
