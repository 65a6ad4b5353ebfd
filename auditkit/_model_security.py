"""Static checks run on a weights file before torch is allowed to open it.

Three layers, each refusing with :class:`~auditkit.exceptions.UnsafeModelError`:

1. **Pickle scan** (:func:`scan_file`): every pickle anywhere in the file is walked
   opcode by opcode on a *symbolic* stack (nothing is executed). Every global it would
   import must be on an allowlist of tensor-rebuilding functions. This covers every
   pickle of a legacy ``torch.save`` file (there are five in a row), every member of
   a zip archive and of zips nested inside it (a ``.pt2`` keeps its sample inputs as
   a ``torch.save`` zip inside the zip), ``STACK_GLOBAL`` whose strings come back
   from the memo, the extension registry (``EXT1/2/4``, refused), duplicate member
   names and files that are both a zip and something else (a polyglot: Python's
   ``zipfile`` reads from the end of a file, torch's legacy loader from its start).
2. **Code check** for TorchScript (:func:`check_torchscript_archive`): the archive's
   ``code/`` is TorchScript source, parsed here with :mod:`ast`; every operator it
   calls must be on :data:`ALLOWED_ATEN_OPS` / :data:`ALLOWED_PRIM_OPS`. This runs
   *before* ``torch.jit.load`` because a scripted ``__setstate__`` runs at load
   time. After loading, :func:`check_torchscript_graph` walks every method's
   inlined graph against the same allowlist (defence in depth).
3. **Program check** for ``torch.export`` (:func:`check_export_archive`): the graph
   is JSON, so every node's target is checked without loading; weights or constants
   stored as pickles (``use_pickle``), custom or opaque objects, AOTInductor native
   code, guard code (which torch ``exec``\\ s) and symbolic-shape expressions outside
   a small grammar (torch hands them to ``sympy.sympify``, i.e. ``eval``) are refused.
   :func:`load_export_program` then loads the program without any
   ``weights_only=False`` path that ``torch.export.load`` would take.

Why hand-written: picklescan and modelscan are *deny*lists of known-bad globals
(and both have had bypasses through the memo); fickling needs its own decompiler.
An allowlist over a symbolic stack is short, and no library checks TorchScript code
or a ``.pt2`` graph against an operator allowlist.
"""

from __future__ import annotations

import ast
import io
import json
import pickletools
import re
import tokenize
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .exceptions import UnsafeModelError

__all__ = [
    "ALLOWED_ATEN_OPS",
    "ALLOWED_PRIM_OPS",
    "BUNDLED_TRUSTED_SHA256",
    "check_export_archive",
    "check_torchscript_archive",
    "check_torchscript_graph",
    "load_export_program",
    "scan_file",
]

#: Weights shipped with auditkit in ``models/`` whose code the project vouches for:
#: sha256 -> model. A card is supplied by whoever supplies the model, so a "trusted"
#: field in a card would prove nothing; this list is part of the installed package.
BUNDLED_TRUSTED_SHA256: dict[str, str] = {
    "f429776f40a2fa4988d882194deb349442417655328ef2ca224c72196c7cd253": "derm-lesion@v1",
    "513c50eeae149468976760f746a9661a8f27768957dfd17eee9f7ed418825d64": "mri-tumor@v1",
}

_MAX_PICKLE_BYTES = 512 << 20  # a tensor-only pickle is small; its data lives elsewhere
_MAX_NESTING = 3

# --------------------------------------------------------------------------- allowlists

_STORAGE_KINDS = ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char",
                  "Byte", "Bool", "ComplexFloat", "ComplexDouble", "Untyped")

#: Globals a tensor-only ``torch.save`` pickle legitimately imports.
TENSOR_GLOBALS: frozenset[tuple[str, str]] = frozenset({
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor_v3"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch", "Size"),
    ("torch", "device"),
    ("builtins", "set"),
    *{("torch", f"{kind}Storage") for kind in _STORAGE_KINDS},
    *{("torch", dt) for dt in ("float32", "float64", "float16", "bfloat16", "int64", "int32",
                                "int16", "int8", "uint8", "bool")},
})

#: Extra globals a TorchScript archive's pickles use. ``__torch__.*`` names are classes
#: compiled from the archive's own (checked) code, resolved by torch's C++ unpickler.
_TORCHSCRIPT_GLOBALS: frozenset[tuple[str, str]] = frozenset({
    ("torch.jit._pickle", name) for name in (
        "build_intlist", "build_tensorlist", "build_doublelist", "build_boollist",
        "build_tensor_from_id", "restore_type_tag")
})

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

#: aten operators a model may call: tensor arithmetic, shapes, layers, reductions.
#: No operator here reads or writes files, starts processes, talks to a network,
#: prints, or changes global state. Everything else (``aten::from_file``,
#: ``aten::save``, ``aten::warn``, ``prim::Print``, custom namespaces) is refused.
ALLOWED_ATEN_OPS: frozenset[str] = frozenset("""
abs absolute acos acosh adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d
_adaptive_avg_pool2d adaptive_max_pool1d adaptive_max_pool2d add add_ addcdiv addcmul addmm
addmv alias all amax amin any arange argmax argmin argsort as_strided as_tensor asin asinh
atan atan2 atanh avg_pool1d avg_pool2d avg_pool3d baddbmm batch_norm bernoulli bilinear
bitwise_and bitwise_not bitwise_or bitwise_xor bmm broadcast_tensors broadcast_to cat ceil
celu channel_shuffle chunk clamp clamp_ clamp_max clamp_min clip clone concat concatenate
constant_pad_nd contiguous conv1d conv2d conv3d conv_transpose1d conv_transpose2d
conv_transpose3d _convolution convolution copy copy_ cos cosh cosine_similarity cpu cuda
cumprod cumsum detach detach_ device diag diagonal dim div div_ dot dropout dropout_ einsum
elu elu_ embedding eq erf erfc exp exp2 expand expand_as expm1 eye
feature_dropout fill fill_ flatten flip float_power floor floor_divide fmod frac full
full_like gather ge gelu glu grid_sampler grid_sampler_2d group_norm gt hardsigmoid
hardswish hardswish_ hardtanh hardtanh_ index index_put index_put_ index_select
instance_norm is_floating_point isfinite isinf isnan item layer_norm le leaky_relu
leaky_relu_ lerp lift_fresh lift_fresh_copy linalg_vector_norm linear linspace log log10
log1p log2 log_softmax _log_softmax logical_and logical_not logical_or logical_xor
logsumexp lt masked_fill masked_fill_ matmul max max_pool1d max_pool2d max_pool3d
max_pool2d_with_indices maximum mean median min minimum mish mm movedim mul mul_ mv
nan_to_num narrow native_batch_norm _native_batch_norm_legit
_native_batch_norm_legit_no_training _native_batch_norm_legit_functional native_dropout
native_group_norm native_layer_norm ne neg new_full new_ones new_zeros norm
numel one_hot ones ones_like outer pad permute pixel_shuffle pixel_unshuffle pow prelu
prod rand rand_like randn randn_like reciprocal reflection_pad1d reflection_pad2d relu
relu_ relu6 remainder repeat repeat_interleave replication_pad1d replication_pad2d
reshape reshape_as roll round rsqrt rsub scalar_tensor scaled_dot_product_attention
scatter scatter_add select selu sigmoid sigmoid_ sign silu silu_ sin sinh size slice
softmax _softmax softplus sort split split_with_sizes sqrt square squeeze stack std std_mean
sub sub_ sum sym_numel sym_size sym_storage_offset sym_stride t tan tanh tanh_ tensor
tensor_split threshold tile to _to_copy topk transpose tril triu true_divide trunc type_as
unbind unflatten unsqueeze _unsafe_view upsample_bicubic2d upsample_bilinear2d
_upsample_bilinear2d_aa upsample_nearest1d upsample_nearest2d var var_mean view view_as
where zero_ zeros zeros_like
_assert_scalar _assert_tensor_metadata sym_constrain_range_for_size _local_scalar_dense
Int Float Bool ScalarImplicit IntImplicit FloatImplicit Complex __getitem__ _set_item
__contains__ __is__ __isnot__ __not__ __and__ __or__ __xor__ __range_length __derive_index
len append extend insert pop list keys values items copy format str floordiv
__interpolate __upsample_bilinear __upsample eq ne lt gt le ge add mul sub neg div
_native_multi_head_attention _transformer_encoder_layer_fwd _upsample_bicubic2d_aa
_upsample_lanczos2d_aa _upsample_nearest_exact1d _upsample_nearest_exact2d
_upsample_nearest_exact3d upsample_linear1d upsample_nearest3d upsample_trilinear3d
alpha_dropout alpha_dropout_ feature_alpha_dropout feature_dropout_ celu_ selu_ mish_
hardsigmoid_ threshold_ elu_ gelu_ lstm gru rnn_tanh rnn_relu is_grad_enabled
is_autocast_enabled local_response_norm
""".split())

#: TorchScript structural operators (constants, attributes, lists, control flow).
ALLOWED_PRIM_OPS: frozenset[str] = frozenset("""
Constant GetAttr SetAttr ListConstruct ListUnpack TupleConstruct TupleUnpack TupleIndex
TupleSlice DictConstruct DictIndex If Loop NumToTensor device dtype layout requires_grad
shape is_cuda is_cpu data unchecked_cast unchecked_unwrap_optional Uninitialized
RaiseException isinstance min max abs CreateObject ConstantChunk BroadcastSizes
EnumValue EnumName tolist type name id AutogradAdd ListIndex is_nested
""".split())

#: Builtin names TorchScript's code printer emits as plain calls.
_TS_BUILTIN_CALLS = {
    "annotate": None, "unchecked_cast": None, "uninitialized": None, "isinstance": None,
    "int": "aten::Int", "float": "aten::Float", "bool": "aten::Bool", "str": "aten::str",
    "len": "aten::len", "range": None, "enumerate": None, "zip": None, "min": "prim::min",
    "max": "prim::max", "abs": "prim::abs", "list": "aten::list", "tuple": None,
    "dict": None, "round": "aten::round", "divmod": None, "getattr": None, "hasattr": None,
    "Module": None, "Tensor": None, "Optional": None, "List": None, "Dict": None,
    "Tuple": None, "NamedTuple": None, "Enum": None, "Future": None, "Any": None,
}
_TS_METHOD_CALLS = {"forward", "append", "extend", "insert", "pop", "items", "keys",
                    "values", "format", "copy", "get", "index", "count", "__getitem__"}
_MATH_NAMES = {"sqrt", "exp", "log", "log10", "log2", "floor", "ceil", "pi", "e", "inf",
               "nan", "isnan", "isinf", "isfinite", "fabs", "pow", "cos", "sin", "tan",
               "tanh", "erf", "trunc", "fmod", "copysign", "gcd", "factorial"}

#: ``torch.export`` node targets outside ``torch.ops.aten``.
_EXPORT_OTHER_TARGETS = (
    {f"_operator.{n}" for n in ("getitem", "add", "sub", "mul", "floordiv", "truediv", "mod",
                                 "neg", "pos", "eq", "ne", "lt", "le", "gt", "ge", "and_",
                                 "or_", "not_", "pow", "abs")}
    | {f"torch.{n}" for n in ("sym_int", "sym_float", "sym_max", "sym_min", "sym_not",
                               "sym_sqrt", "sym_ite", "sym_sum")}
    | {f"math.{n}" for n in _MATH_NAMES}
)

# --------------------------------------------------------------------------- pickles

_ANY = object()  # a value on the symbolic stack that is not a string


class _Refusal(Exception):
    """Internal: a reason to refuse, turned into UnsafeModelError with the file name."""


def _pickle_globals(data: bytes, start: int = 0) -> tuple[list[tuple[str, str]], int]:
    """Globals one pickle at ``start`` would import, and where it ends.

    Runs the pickle machine on a symbolic stack: strings are tracked through the stack
    and the memo, everything else is an unknown value. Nothing is constructed.
    """
    stream = io.BytesIO(data)
    stream.seek(start)
    stack: list[Any] = []
    metastack: list[list[Any]] = []
    memo: dict[int, Any] = {}
    found: list[tuple[str, str]] = []

    def pop() -> Any:
        nonlocal stack
        if not stack:
            raise _Refusal("its opcodes pop from an empty stack")
        return stack.pop()

    try:
        for op, arg, _pos in pickletools.genops(stream):
            name = op.name
            if name in ("EXT1", "EXT2", "EXT4"):
                raise _Refusal("it imports through the copyreg extension registry (EXT opcodes)")
            if name == "MARK":
                metastack.append(stack)
                stack = []
                continue
            if name in ("GLOBAL", "INST"):
                module, _, attr = str(arg).partition(" ")
                found.append((module, attr))
            if name == "STACK_GLOBAL":
                attr, module = pop(), pop()
                if isinstance(module, str) and isinstance(attr, str):
                    found.append((module, attr))
                else:
                    found.append(("<computed>", "<computed>"))
                stack.append(_ANY)
                continue
            if name in ("MEMOIZE",):
                if not stack:
                    raise _Refusal("it memoizes from an empty stack")
                memo[len(memo)] = stack[-1]
                continue
            if name in ("PUT", "BINPUT", "LONG_BINPUT"):
                if not stack:
                    raise _Refusal("it memoizes from an empty stack")
                memo[_slot(arg)] = stack[-1]
                continue
            if name in ("GET", "BINGET", "LONG_BINGET"):
                if _slot(arg) not in memo:
                    raise _Refusal(f"it reads memo slot {arg}, which was never written")
                stack.append(memo[_slot(arg)])
                continue
            if name == "DUP":
                stack.append(stack[-1] if stack else _ANY)
                continue
            if name == "POP" and not stack and metastack:
                stack = metastack.pop()  # POP of a bare mark, as the unpickler does
                continue
            before = list(op.stack_before)
            if pickletools.markobject in before:
                after_mark = before[:before.index(pickletools.markobject)]
                if not metastack:
                    raise _Refusal("it closes a mark that was never opened")
                stack = metastack.pop()
                for _ in after_mark:
                    pop()
            else:
                for _ in before:
                    pop()
            if name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8",
                        "STRING", "BINSTRING", "SHORT_BINSTRING"):
                stack.append(arg if isinstance(arg, str) else _ANY)
            else:
                stack.extend(_ANY for _ in op.stack_after)
    except _Refusal:
        raise
    except Exception as exc:  # malformed opcodes: refused, never half-read
        raise _Refusal(f"it is not a well-formed pickle ({exc})") from exc
    return found, stream.tell()


def _slot(arg: Any) -> int:
    return int(arg) if isinstance(arg, (int, str)) else -1


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _iter_pickles(data: bytes) -> Iterator[list[tuple[str, str]]]:
    """Globals of every pickle in a non-zip file, one list per pickle.

    A legacy ``torch.save`` file holds five pickles (magic number, protocol, system
    info, the object, the storage keys) followed by raw storage bytes; any other file
    must be pickles all the way to its end.
    """
    pos, count, legacy = 0, 0, False
    while pos < len(data):
        if legacy and count >= 5:
            return  # raw tensor bytes follow the five pickles
        found, end = _pickle_globals(data, pos)
        if count == 0:
            legacy = _is_legacy_magic(data[pos:end])
        count += 1
        pos = end
        yield found


def _is_legacy_magic(blob: bytes) -> bool:
    """True when ``blob`` is exactly the pickle of torch's legacy magic number."""
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(io.BytesIO(blob))]
    ints = [arg for name, arg in ops if name in ("LONG1", "LONG4", "LONG", "INT")]
    return ints == [_LEGACY_MAGIC] and len(ops) <= 4


def _check_globals(found: Iterable[tuple[str, str]], *, torchscript: bool) -> list[str]:
    bad = []
    for module, attr in found:
        if (module, attr) in TENSOR_GLOBALS:
            continue
        if torchscript and ((module, attr) in _TORCHSCRIPT_GLOBALS or (
                (module == "__torch__" or module.startswith("__torch__."))
                and all(_IDENT.match(p) for p in module.split("."))
                and _IDENT.match(attr))):
            continue
        bad.append(f"{module}.{attr}")
    return bad


def _raw_member(name: str) -> bool:
    """Members torch reads as raw bytes or text, never unpickled."""
    return bool(re.search(r"(^|/)(data|\.data)/\d+$", name)
                or re.search(r"(^|/)\.data/serialization_id$", name)
                or name.endswith((".py", ".json", ".txt"))
                or re.search(r"(^|/)(version|byteorder|\.format_version|\.storage_alignment"
                             r"|archive_format|archive_version)$", name))


def _scan_zip(zf: zipfile.ZipFile, where: str, *, torchscript: bool, raw: set[str],
              depth: int) -> list[str]:
    names = [info.filename for info in zf.infolist()]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise _Refusal(f"it holds members with the same name twice ({dupes[:3]}); which one "
                       "a reader takes is ambiguous")
    bad: list[str] = []
    for info in zf.infolist():
        name = info.filename
        if info.is_dir() or name in raw:
            continue
        is_pickle_name = name.endswith((".pkl", ".debug_pkl", ".pickle"))
        if _raw_member(name) and not is_pickle_name:
            continue  # raw tensor bytes or text: torch never unpickles these
        with zf.open(info) as fh:
            head = fh.read(4)
        if head.startswith(b"PK\x03\x04") or name.endswith((".pt", ".pth", ".pt2", ".zip")):
            if info.file_size > _MAX_PICKLE_BYTES * 4:
                raise _Refusal(f"member {name} is {info.file_size} bytes, too large to inspect")
            bad += _scan_bytes(zf.read(info), f"{where}:{name}", torchscript=False,
                               depth=depth + 1)
            continue
        if is_pickle_name or head[:1] == b"\x80":
            if info.file_size > _MAX_PICKLE_BYTES:
                raise _Refusal(f"pickle {name} is {info.file_size} bytes, too large to inspect")
            blob = zf.read(info)
            for found in _iter_pickles(blob):
                member = f"{where}/{name}" if depth else name
                bad += [f"{g} (in {member})"
                        for g in _check_globals(found, torchscript=torchscript)]
    return bad


def _scan_bytes(data: bytes, where: str, *, torchscript: bool, depth: int = 0) -> list[str]:
    if depth > _MAX_NESTING:
        raise _Refusal(f"it nests archives more than {_MAX_NESTING} deep")
    buf = io.BytesIO(data)
    is_zip = zipfile.is_zipfile(buf)
    starts_zip = data[:4] == b"PK\x03\x04"
    if is_zip != starts_zip:
        raise _Refusal("it is both a zip archive and something else (a polyglot): Python "
                       "reads zips from the end of a file, torch's legacy loader from the start")
    if is_zip:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return _scan_zip(zf, where, torchscript=torchscript, raw=set(), depth=depth)
    bad: list[str] = []
    for found in _iter_pickles(data):
        bad += _check_globals(found, torchscript=torchscript)
    return bad


def _refuse(path: Path, reason: str) -> UnsafeModelError:
    return UnsafeModelError(
        f"Refused to load {path.name}: {reason}. Nothing from the file was executed."
    )


def _open_zip_checked(path: Path) -> zipfile.ZipFile:
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not zipfile.is_zipfile(path) or head != b"PK\x03\x04":
        raise _Refusal("it is not a plain zip archive (or it is a zip and a pickle at once)")
    return zipfile.ZipFile(path)


def scan_file(path: str | Path, *, torchscript: bool = False,
              raw_members: set[str] | None = None) -> None:
    """Refuse a file if any pickle in it would import anything but tensor rebuilders.

    Parameters
    ----------
    path : path
        A ``torch.save`` file (zip or legacy), a TorchScript archive or a ``.pt2``.
    torchscript : bool
        Also accept the classes a TorchScript archive's pickles name (``__torch__.*``,
        ``torch.jit._pickle.*``), which torch resolves to compiled code, not Python.
    raw_members : set of str, optional
        Zip members declared to be raw tensor bytes (not scanned as pickles).

    Raises
    ------
    UnsafeModelError
        Naming the offending ``module.name`` globals, or why the file cannot be read
        with certainty (a malformed pickle, a polyglot, duplicate members).
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
        is_zip = zipfile.is_zipfile(path)
        if is_zip != (head == b"PK\x03\x04"):
            raise _Refusal("it is both a zip archive and something else (a polyglot): Python "
                           "reads zips from the end of a file, torch's legacy loader from the "
                           "start")
        if is_zip:
            with zipfile.ZipFile(path) as zf:
                bad = _scan_zip(zf, path.name, torchscript=torchscript,
                                raw=raw_members or set(), depth=0)
        else:
            bad = _scan_bytes(path.read_bytes(), path.name, torchscript=torchscript)
    except _Refusal as exc:
        raise _refuse(path, str(exc)) from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise _refuse(path, f"it is not an archive auditkit can inspect ({exc})") from None
    if bad:
        raise UnsafeModelError(
            f"Refused to load {path.name}: its pickle would import {sorted(set(bad))}, which "
            "can run arbitrary code. Expected only tensors (a state dict). Nothing from the "
            "file was executed. Save the weights with safetensors or "
            "torch.save(model.state_dict())."
        )


# --------------------------------------------------------------------------- TorchScript


def _allowed_op(qualified: str) -> bool:
    ns, _, op = qualified.partition("::")
    if ns == "aten":
        return op in ALLOWED_ATEN_OPS
    if ns == "prim":
        return op in ALLOWED_PRIM_OPS
    return False


def _dotted(node: ast.AST) -> list[str] | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return parts[::-1]
    return None


def _rooted_at_self(node: ast.AST) -> bool:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return isinstance(node, ast.Name) and node.id == "self"


def _code_problems(source: str, member: str, methods: set[str]) -> list[str]:
    """Operators in one TorchScript code file that are not on the allowlist."""
    if not source.isascii():
        return [f"non-ASCII text in {member}"]
    try:
        tree = ast.parse(source, filename=member)
    except SyntaxError as exc:
        return [f"code that does not parse in {member} ({exc.msg})"]
    problems: list[str] = []
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    # the code printer binds functions to locals (``_0 = __torch__.….interpolate``) and
    # calls them; what such a local is bound to is itself checked where it is assigned
    bound = {t.id for n in ast.walk(tree) if isinstance(n, (ast.Assign, ast.AnnAssign))
             for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
             if isinstance(t, ast.Name)}
    inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            chain = _dotted(func)
            if isinstance(func, ast.Name):
                if func.id in bound and func.id not in _TS_BUILTIN_CALLS:
                    continue
                if func.id not in _TS_BUILTIN_CALLS:
                    problems.append(f"{func.id}() in {member}")
                elif func.id in ("getattr", "hasattr") and not (
                        node.args and _rooted_at_self(node.args[0])):
                    problems.append(f"{func.id}() on something other than the module in {member}")
                elif (mapped := _TS_BUILTIN_CALLS[func.id]) and not _allowed_op(mapped):
                    problems.append(f"{mapped} in {member}")
            elif chain and chain[0] in ("torch", "ops", "math"):
                problems += _chain_problem(chain, member)
            elif chain and chain[0] == "__torch__":
                continue  # a class or function compiled from this archive (checked too)
            elif isinstance(func, ast.Attribute):
                # a method of the archive's own classes, or of a list / str / dict; a tensor
                # method is an aten operator, so it must be on that allowlist too
                if (func.attr not in _TS_METHOD_CALLS and func.attr not in methods) or (
                        func.attr not in ALLOWED_ATEN_OPS and _is_aten_op(func.attr)):
                    problems.append(f".{func.attr}() in {member}")
            else:
                problems.append(f"an indirect call in {member}")
        elif isinstance(node, ast.Attribute) and id(node) not in called | inner:
            # a bare reference (not a call) to a torch name: checked like a call
            chain = _dotted(node)
            if chain and chain[0] in ("torch", "ops", "math"):
                problems += _chain_problem(chain, member)
        elif isinstance(node, ast.Name) and node.id in ("print", "open", "exec", "eval",
                                                          "__import__", "compile"):
            problems.append(f"{node.id} in {member}")
    return problems


def _is_aten_op(name: str) -> bool:
    import torch

    try:
        return bool(torch._C._jit_get_schemas_for_operator(f"aten::{name}"))
    except RuntimeError:
        return False


def _chain_problem(chain: list[str], member: str) -> list[str]:
    if chain[0] == "math":
        return [] if len(chain) == 2 and chain[1] in _MATH_NAMES else [
            f"{'.'.join(chain)} in {member}"]
    if chain[0] == "torch" and len(chain) >= 4 and chain[1] == "ops":
        qualified = f"{chain[2]}::{chain[3]}"
    elif chain[0] == "ops" and len(chain) >= 3:
        qualified = f"{chain[1]}::{chain[2]}"
    elif chain[0] == "torch" and len(chain) == 2:
        qualified = f"aten::{chain[1]}"
    else:
        return [f"{'.'.join(chain)} in {member}"]
    return [] if _allowed_op(qualified) else [f"{qualified} in {member}"]


def check_torchscript_archive(path: str | Path) -> None:
    """Refuse a TorchScript archive before ``torch.jit.load`` may run any of it.

    Scans every pickle (see :func:`scan_file`) and parses every code file, refusing
    any operator outside :data:`ALLOWED_ATEN_OPS` / :data:`ALLOWED_PRIM_OPS`.
    Loading runs a scripted ``__setstate__``, so this must pass first.
    """
    path = Path(path)
    scan_file(path, torchscript=True)
    try:
        with _open_zip_checked(path) as zf:
            code = {info.filename: zf.read(info) for info in zf.infolist()
                    if "/code/" in f"/{info.filename}" and info.filename.endswith(".py")}
    except _Refusal as exc:
        raise _refuse(path, str(exc)) from None
    if not code:
        raise _refuse(path, "it holds no TorchScript code (expected code/ in the archive)")
    methods: set[str] = set()
    texts: dict[str, str] = {}
    for member, raw in code.items():
        try:
            texts[member] = raw.decode("ascii")
        except UnicodeDecodeError:
            raise _refuse(path, f"its code {member} is not plain ASCII text") from None
        try:
            methods |= {n.name for n in ast.walk(ast.parse(texts[member]))
                        if isinstance(n, ast.FunctionDef)}
        except SyntaxError as exc:
            raise _refuse(path, f"its code {member} does not parse ({exc.msg})") from None
    problems = [p for member, text in texts.items() for p in _code_problems(text, member, methods)]
    if problems:
        raise _refuse(path, _ops_sentence(problems))


def _ops_sentence(problems: list[str]) -> str:
    shown = sorted(set(problems))
    more = f" and {len(shown) - 8} more" if len(shown) > 8 else ""
    return ("it calls operations outside auditkit's allowlist of tensor operations "
            f"({'; '.join(shown[:8])}{more}); a model may compute on tensors, not read or "
            "write files, start processes, use the network or print")


def check_torchscript_graph(module: Any, name: str = "model") -> None:
    """Refuse a loaded TorchScript module whose graphs use an operator off the allowlist.

    Every method of every submodule is inlined and walked, including nested blocks.
    """
    import torch

    bad: set[str] = set()
    for sub in module.modules():
        c = getattr(sub, "_c", None)
        if c is None:
            continue
        for method_name in c._method_names():
            graph = c._get_method(method_name).graph.copy()
            torch._C._jit_pass_inline(graph)
            for kind in _graph_kinds(graph.nodes()):
                if not _allowed_op(kind):
                    bad.add(kind)
    if bad:
        raise UnsafeModelError(
            f"Refused to run {name}: " + _ops_sentence(sorted(bad)) + ". Nothing was run.")


def _graph_kinds(nodes: Iterable[Any]) -> Iterator[str]:
    for node in nodes:
        yield node.kind()
        for block in node.blocks():
            yield from _graph_kinds(block.nodes())


# --------------------------------------------------------------------------- torch.export

_EXPR_NAMES = {"Symbol", "Integer", "Rational", "Float", "True", "False", "positive",
               "integer", "real", "nonnegative", "finite", "Max", "Min", "Abs", "oo", "Eq",
               "Ne", "Lt", "Le", "Gt", "Ge", "And", "Or", "Not", "FloorDiv", "ModularIndexing",
               "Where", "PythonMod", "Mod", "CleanDiv", "CeilToInt", "FloorToInt",
               "CeilDiv", "LShift", "RShift", "IsNonOverlappingAndDenseIndicator",
               "TruncToFloat", "TruncToInt", "RoundToInt", "RoundDecimal", "ToFloat",
               "FloatPow", "PowByNatural", "IntTrueDiv", "FloatTrueDiv", "Identity"}
_EXPR_SYMBOL = re.compile(r"^[a-z]{1,4}\d+$")
_EXPR_OPS = {"+", "-", "*", "/", "//", "%", "(", ")", ",", "=", "**", "<", ">", "<=", ">=",
             "==", "!="}


def _expr_ok(expr: str) -> bool:
    """True when a symbolic-shape expression uses only sympy's arithmetic vocabulary."""
    if not expr.isascii() or len(expr) > 2000:
        return False
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(expr).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return False
    for tok in tokens:
        if tok.type in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER):
            continue
        if tok.type == tokenize.NUMBER:
            continue
        if tok.type == tokenize.NAME and (tok.string in _EXPR_NAMES
                                          or _EXPR_SYMBOL.match(tok.string)):
            continue
        if tok.type == tokenize.STRING and re.fullmatch(r"'[a-z]{1,4}\d+'", tok.string):
            continue
        if tok.type == tokenize.OP and tok.string in _EXPR_OPS:
            continue
        return False
    return True


# Names torch.export's loader writes into the Python source of the module it builds
# (``GraphModule`` code generation): they must be identifiers or dotted module paths.
_NAME_KEYS = {"name"}
_FQN_KEYS = {"parameter_name", "buffer_name", "tensor_constant_name", "custom_obj_name", "fqn",
             "class_fqn"}
_FQN = re.compile(r"^([A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*)?$")
_META = re.compile(r"^[A-Za-z0-9_.,;:@<>\[\]() -]*$")  # no newline, quote or backslash


def _walk_json(value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield k, v
            yield from _walk_json(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk_json(v)


def _export_target_ok(target: str) -> bool:
    if target in _EXPORT_OTHER_TARGETS:
        return True
    parts = target.split(".")
    return (len(parts) == 5 and parts[:3] == ["torch", "ops", "aten"]
            and parts[3] in ALLOWED_ATEN_OPS and bool(_IDENT.match(parts[4])))


def check_export_archive(path: str | Path) -> None:
    """Refuse a ``torch.export`` archive (``.pt2``) before torch reads it.

    Checks, without loading: the archive is the current ``pt2`` format with one
    program; no weight or constant is stored as a pickle (``use_pickle``); no custom
    or opaque object constants; no AOTInductor native code; no guard code; every
    symbolic expression within sympy's arithmetic vocabulary; every graph node's
    target on the allowlist; every remaining pickle (the sample inputs) passes
    :func:`scan_file`.
    """
    path = Path(path)
    try:
        with _open_zip_checked(path) as zf:
            infos = zf.infolist()
            prefix = _common_prefix([i.filename for i in infos])
            by_name = {i.filename[len(prefix):]: i for i in infos}
            problems: list[str] = []
            if by_name.get("archive_format") is None or \
                    zf.read(by_name["archive_format"]).strip() != b"pt2":
                raise _Refusal("it is not a current torch.export archive (no archive_format "
                               "'pt2'); older layouts load through pickle")
            if any(n.startswith("data/aotinductor/") for n in by_name):
                problems.append("AOTInductor native code (data/aotinductor/)")
            models = [n for n in by_name if n.startswith("models/") and n.endswith(".json")]
            if models != ["models/model.json"]:
                raise _Refusal(f"expected exactly one program models/model.json; found {models}")
            raw: set[str] = set()
            for config_name, folder in (("data/weights/model_weights_config.json",
                                         "data/weights/"),
                                        ("data/constants/model_constants_config.json",
                                         "data/constants/")):
                info = by_name.get(config_name)
                if info is None:
                    raise _Refusal(f"it lacks {config_name}")
                config = json.loads(zf.read(info)).get("config", {})
                for fqn, meta in config.items():
                    pname = str(meta.get("path_name", ""))
                    if meta.get("use_pickle"):
                        problems.append(f"{fqn!r} stored as a pickle (use_pickle)")
                    elif pname.startswith(("custom_obj", "opaque_obj")) or \
                            not pname.startswith(("weight_", "tensor_")):
                        problems.append(f"{fqn!r} stored as an object ({pname})")
                    raw.add(prefix + folder + pname)
            program = json.loads(zf.read(by_name["models/model.json"]))
    except _Refusal as exc:
        raise _refuse(path, str(exc)) from None
    except (zipfile.BadZipFile, OSError, ValueError, AttributeError, KeyError) as exc:
        raise _refuse(path, f"it is not a torch.export archive auditkit can inspect ({exc})"
                      ) from None
    graph = program.get("graph_module", {}).get("graph", {}) if isinstance(program, dict) else {}
    if graph.get("custom_obj_values"):
        problems.append("custom object values in the graph")
    if program.get("guards_code"):
        problems.append("guard code, which torch runs with exec()")
    bad_targets, bad_exprs, bad_names = set(), set(), set()
    for key, value in _walk_json(program):
        if key in _NAME_KEYS and value is not None and not (
                isinstance(value, str) and _IDENT.match(value)):
            bad_names.add(f"{key}={str(value)[:60]!r}")
        elif key == "forward_arg_names" and not (isinstance(value, list) and all(
                isinstance(v, str) and _IDENT.match(v) for v in value)):
            bad_names.add(f"{key}={str(value)[:60]!r}")
        elif key in _FQN_KEYS and not (isinstance(value, str) and _FQN.match(value)):
            bad_names.add(f"{key}={str(value)[:60]!r}")
        elif key == "metadata" and isinstance(value, dict):
            for meta_key, meta in value.items():
                if meta_key != "stack_trace" and not (
                        isinstance(meta, str) and _META.match(meta)):
                    bad_names.add(f"metadata {meta_key}={str(meta)[:60]!r}")
        if key == "nodes" and isinstance(value, list):
            for node in value:
                target = node.get("target") if isinstance(node, dict) else None
                if not isinstance(target, str) or not _export_target_ok(target):
                    bad_targets.add(str(target))
        elif key == "expr_str" and not (isinstance(value, str) and _expr_ok(value)):
            bad_exprs.add(str(value)[:80])
    for name in program.get("range_constraints", {}) or {}:
        if not _expr_ok(str(name)):
            bad_exprs.add(str(name)[:80])
    if bad_exprs:
        problems.append(f"symbolic expressions outside sympy arithmetic {sorted(bad_exprs)[:3]}"
                        " (torch would eval them)")
    if bad_names:
        problems.append(f"names that are not plain identifiers {sorted(bad_names)[:3]} (torch "
                        "writes them into Python source it runs)")
    if bad_targets:
        problems.append(_ops_sentence(sorted(bad_targets)))
    if problems:
        raise _refuse(path, "; ".join(problems))
    scan_file(path, raw_members=raw)


def _common_prefix(names: list[str]) -> str:
    """The archive's top folder (``weights/``) that torch strips from member names."""
    tops = {n.split("/", 1)[0] for n in names if "/" in n}
    return f"{tops.pop()}/" if len(tops) == 1 and all("/" in n for n in names) else ""


def load_export_program(path: str | Path) -> Any:
    """Load a ``.pt2`` checked by :func:`check_export_archive`, never via pickle fallbacks.

    ``torch.export.load`` would read the sample inputs and any ``use_pickle`` payload
    with ``torch.load(weights_only=False)`` and fall back to an older, pickle-based
    layout on error. Here the sample inputs are read with ``weights_only=True`` and
    handed to torch's deserializer already decoded.
    """
    import torch
    from torch._export.serde import schema
    from torch._export.serde.serialize import ExportedProgramDeserializer, _bytes_to_dataclass
    from torch.export.pt2_archive import _package as pkg

    with pkg.PT2ArchiveReader(str(path)) as reader:
        version = reader.read_string(pkg.ARCHIVE_VERSION_PATH)
        if version != pkg.ARCHIVE_VERSION_VALUE:
            raise UnsafeModelError(f"{Path(path).name} has archive version {version}; "
                                   f"this torch reads {pkg.ARCHIVE_VERSION_VALUE}.")
        sample = reader.read_bytes(pkg.SAMPLE_INPUTS_FILENAME_FORMAT.format("model"))
        inputs = torch.load(io.BytesIO(sample), weights_only=True) if sample else ((), {})
        raw = json.loads(reader.read_bytes(pkg.MODELS_FILENAME_FORMAT.format("model")))
        for key, value in _walk_json(raw):  # free text torch would copy into generated code
            if key == "metadata" and isinstance(value, dict):
                value.pop("stack_trace", None)
        program = _bytes_to_dataclass(schema.ExportedProgram, json.dumps(raw).encode())
        state_dict = pkg._load_state_dict(reader, "model")
        constants = pkg._load_constants(reader, "model")
    if not isinstance(state_dict, dict) or not isinstance(constants, dict):
        raise UnsafeModelError(f"{Path(path).name} uses a legacy pickled weights layout.")
    return ExportedProgramDeserializer(None).deserialize(program, state_dict, constants, inputs)
