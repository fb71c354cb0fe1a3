"""Which format an upload is in, told from its bytes, and the checks made before it is stored.

Runs in the web process on every upload, so it reads only archive directories and a few
header bytes; nothing here loads a model. A format that executes pickled Python on load
(`torch.save` of a module, joblib, pickle, legacy Keras HDF5 with Lambda bytecode) is
refused: the converter never sees it (docs/conversion.md).
"""

import json
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from apps.core.exceptions import InvalidInput, PayloadTooLarge, UnprocessableInput

ONNX = "onnx"
SAVEDMODEL = "savedmodel"
KERAS = "keras"
TORCHSCRIPT = "torchscript"
TORCH_EXPORT = "torch-export"
FORMATS = (ONNX, SAVEDMODEL, KERAS, TORCHSCRIPT, TORCH_EXPORT)
CONVERTED = FORMATS[1:]
# The formats whose input signature the file does not tell: the upload must give it.
NEEDS_INPUT_SIGNATURE = (TORCHSCRIPT,)

# Name endings → format, for an upload that does not say its format.
_EXTENSIONS = {
    ".onnx": ONNX,
    ".zip": SAVEDMODEL,
    ".tar": SAVEDMODEL,
    ".tar.gz": SAVEDMODEL,
    ".tgz": SAVEDMODEL,
    ".keras": KERAS,
    ".pt": TORCHSCRIPT,
    ".pth": TORCHSCRIPT,
    ".pt2": TORCH_EXPORT,
}
# What the file is kept as in the store (the stored name's suffix).
SUFFIXES = {SAVEDMODEL: ".savedmodel", KERAS: ".keras", TORCHSCRIPT: ".pt", TORCH_EXPORT: ".pt2"}

_PICKLE_HINT = (
    "Pickled Python runs code when it is loaded, so the platform does not accept it. "
    "Save a PyTorch module with torch.jit.save (TorchScript) or torch.export.save (.pt2), "
    "a Keras model with model.save('model.keras'), or convert to ONNX yourself."
)


@dataclass(frozen=True)
class ArchiveLimits:
    max_members: int
    max_unpacked_bytes: int
    max_ratio: int  # largest uncompressed / compressed size of one member


def format_from_name(filename: str) -> str | None:
    name = filename.lower()
    for ending in sorted(_EXTENSIONS, key=len, reverse=True):
        if name.endswith(ending):
            return _EXTENSIONS[ending]
    return None


def detect(path: Path, limits: ArchiveLimits) -> str:
    """The format of the file at `path`, from its bytes; refuses pickles and archive bombs.

    ONNX is the answer for anything that is not an archive nor a pickle: the ONNX checks
    that follow (apps/registry/validation.py) refuse what is not ONNX either."""
    with open(path, "rb") as file:
        head = file.read(8)
    if _is_pickle(head):
        raise UnprocessableInput(f"The file is a Python pickle. {_PICKLE_HINT}", code="pickle_refused")
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        raise UnprocessableInput(
            "The file is a legacy Keras HDF5 (.h5) model, whose Lambda layers hold Python bytecode. "
            "Save it as a .keras file (model.save('model.keras')) and upload that.",
            code="unsupported_format",
        )
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                infos = archive.infolist()
                _check_members([(i.filename, i.file_size, i.compress_size) for i in infos], limits)
                return _zip_format(archive, [i.filename for i in infos])
        except zipfile.BadZipFile as exc:
            raise UnprocessableInput(
                f"The file looks like a zip archive but is damaged: {exc}", code="bad_archive"
            ) from exc
    if _is_tar(path):
        with tarfile.open(path) as archive:
            members = archive.getmembers()
            _check_tar_members(members, limits)
            return _savedmodel_or_refuse([m.name for m in members if m.isfile()])
    return ONNX


def check_declared(declared: str | None, actual: str) -> None:
    if declared is not None and declared != actual:
        raise UnprocessableInput(
            f"The upload says its format is '{declared}', but the file is {_describe(actual)}.",
            code="format_mismatch",
            details={"declared": declared, "detected": actual},
        )


def _describe(fmt: str) -> str:
    return {
        ONNX: "not an archive (ONNX, if anything)",
        SAVEDMODEL: "a TensorFlow SavedModel archive",
        KERAS: "a Keras .keras file",
        TORCHSCRIPT: "a TorchScript archive",
        TORCH_EXPORT: "a torch.export (.pt2) archive",
    }[fmt]


def _is_pickle(head: bytes) -> bool:
    # Protocol 2+ starts with PROTO (0x80) and its number; joblib files are pickles too.
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except (OSError, tarfile.TarError):
        return False


def _check_members(members: list[tuple[str, int, int]], limits: ArchiveLimits) -> None:
    """Refuse an archive that would unpack to too much (a zip bomb) or outside its folder."""
    if len(members) > limits.max_members:
        raise UnprocessableInput(
            f"The archive holds {len(members)} files; the limit is {limits.max_members}.",
            code="archive_too_large",
        )
    total = 0
    for name, size, compressed in members:
        path = PurePosixPath(name)
        if path.is_absolute() or ".." in path.parts:
            raise UnprocessableInput(
                f"The archive member '{name}' points outside the archive.", code="unsafe_archive"
            )
        total += size
        if size > 1024 * 1024 and size > limits.max_ratio * max(compressed, 1):
            raise UnprocessableInput(
                f"The archive member '{name}' unpacks to {size} bytes from {compressed}: "
                f"more than {limits.max_ratio} times its packed size (a zip bomb?).",
                code="archive_bomb",
            )
    if total > limits.max_unpacked_bytes:
        raise PayloadTooLarge(
            f"The archive unpacks to {total} bytes; the limit is {limits.max_unpacked_bytes} bytes.",
            code="archive_bomb",
            details={"limit_bytes": limits.max_unpacked_bytes},
        )


def _check_tar_members(members: list[tarfile.TarInfo], limits: ArchiveLimits) -> None:
    for member in members:
        if not (member.isfile() or member.isdir()):  # links and devices could escape the folder
            raise UnprocessableInput(
                f"The archive member '{member.name}' is a link or a device; only files and folders.",
                code="unsafe_archive",
            )
    # A tar's sizes are its real sizes (a compressed tar is bounded by its total, checked here).
    _check_members([(m.name, m.size, m.size) for m in members], limits)


def _zip_format(archive: zipfile.ZipFile, names: list[str]) -> str:
    if "config.json" in names and "metadata.json" in names:
        return KERAS
    roots = {name.split("/", 1)[0] for name in names if "/" in name}
    if len(roots) == 1:  # torch archives keep everything under one folder
        root = roots.pop()
        if f"{root}/archive_format" in names:
            _refuse_pickled_pt2_payloads(archive, names)
            return TORCH_EXPORT
        if f"{root}/constants.pkl" in names and any(n.startswith(f"{root}/code/") for n in names):
            return TORCHSCRIPT
        if f"{root}/data.pkl" in names:
            raise UnprocessableInput(
                f"The file is a pickled PyTorch object (torch.save), not TorchScript. {_PICKLE_HINT}",
                code="pickle_refused",
            )
    return _savedmodel_or_refuse(names)


def _refuse_pickled_pt2_payloads(archive: zipfile.ZipFile, names: list[str]) -> None:
    """torch.export.load unpickles weights marked `use_pickle` with weights_only=False."""
    for name in names:
        if name.endswith(("_weights_config.json", "_constants_config.json")):
            try:
                config = json.loads(archive.read(name)).get("config", {})
            except (ValueError, AttributeError) as exc:
                raise UnprocessableInput(f"'{name}' in the .pt2 archive is not valid JSON.") from exc
            if any(isinstance(v, dict) and v.get("use_pickle") for v in config.values()):
                raise UnprocessableInput(
                    f"The .pt2 archive stores pickled objects ({name}). {_PICKLE_HINT}", code="pickle_refused"
                )


def _savedmodel_or_refuse(names: list[str]) -> str:
    if any(PurePosixPath(name).name == "saved_model.pb" for name in names):
        return SAVEDMODEL
    raise UnprocessableInput(
        "The archive holds no saved_model.pb: zip or tar the folder written by "
        "tf.saved_model.save (saved_model.pb and variables/).",
        code="savedmodel_missing",
    )


def parse_input_signature(raw: str | list | None, fmt: str) -> list[dict] | None:
    """The `input_signature` field: [{"name", "dtype", "shape"}], -1 (or null) for a dynamic
    dimension. Required for the formats in NEEDS_INPUT_SIGNATURE: a 400 naming it."""
    if raw in (None, ""):
        if fmt in NEEDS_INPUT_SIGNATURE:
            raise InvalidInput(
                f"A {fmt} upload needs the field 'input_signature': the file does not tell its inputs. "
                'For example [{"name": "input", "dtype": "float32", "shape": [-1, 1, 8, 8]}].',
                details={"input_signature": ["This field is required for this format."]},
            )
        return None
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
        return [_signature_entry(entry) for entry in value]
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidInput(
            f"input_signature: {exc}" if str(exc) else "input_signature is not valid.",
            details={"input_signature": ['A JSON list of {"name", "dtype", "shape"}.']},
        ) from exc


_DTYPES = ("float32", "float64", "float16", "int64", "int32", "uint8", "bool")


def _signature_entry(entry: dict) -> dict:
    name, dtype, shape = str(entry["name"]), str(entry.get("dtype", "float32")), entry["shape"]
    if dtype not in _DTYPES:
        raise ValueError(f"dtype '{dtype}' is not one of {', '.join(_DTYPES)}")
    if not isinstance(shape, list) or not all(
        d is None or (isinstance(d, int) and d >= -1 and d) for d in shape
    ):
        raise ValueError(f"the shape of '{name}' must be a list of positive sizes, -1 for a dynamic one")
    return {"name": name, "dtype": dtype, "shape": [-1 if d is None else d for d in shape]}
