"""The model bundle: one self-describing file with everything needed to downscale.

A bundle is a single safetensors file: the (EMA) weights as tensors, and in its header a JSON
document (:class:`BundleMetadata`, all fields typed): the dataset description the model was trained on
(:class:`~downscale.dataset_info.DatasetInfo`: variables, resolutions and factor — recorded, never
inferred from tensor shapes —, clip length, time step, normalization statistics, data provenance), the
model spec (:class:`~downscale.models.downscaler.DownscalerSpec`, whose ``build()`` returns the network),
the training record (:class:`TrainingRecord`), the baseline tables (:class:`BaselineTables`: quantile
mapping), the bundle format, the software version, a SHA-256 of the weights and a SHA-256 of the
metadata document itself (which covers the weights' digest: every byte of meaning is checked).

    meta = save_bundle("model.bundle.safetensors", net.state_dict(), metadata)
    meta = read_bundle_metadata("model.bundle.safetensors")      # header only (checked), no weights
    meta = verify_bundle("model.bundle.safetensors")             # header and weights checked, no model built
    net, meta = load_model("model.bundle.safetensors", "cuda")     # built from the spec, weights loaded, eval

Loading never unpickles code (safetensors holds tensors only) and never imports the training stack. A
bundle whose format, checksums (metadata or weights), software version, variables or resolution do not
fit is refused with a message that says what differs. The format (:data:`BUNDLE_FORMAT`) changes
whenever the layout of the metadata or of the weights does; each change has an entry in ``CHANGELOG.md``. An
older format whose layout is the current one less optional parts is still read (:data:`_STILL_READ`); any other
format is refused naming the format it has and the one this software reads.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from datetime import UTC, datetime
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from downscale.baselines import QuantileTable
from downscale.dataset_info import DatasetInfo
from downscale.models.config import Geometry
from downscale.models.downscaler import DownscalerSpec, TrainingMode, VideoDownscaler
from downscale.version import __version__

#: Layout of the bundle metadata and weights this software writes (history in CHANGELOG.md).
BUNDLE_FORMAT = 4
#: Older formats this software still reads: their layout is this one less parts that have a default (format 3:
#: no ``residual_scale`` tensor, read as 1; format 2: nor ``baselines.ensemble_quantile_mapping``, read as None).
_STILL_READ = frozenset({2, 3})
#: Older formats → the last software that reads them (named in the refusal).
_LAST_READER = {1: "fv3-downscale 0.1.0 up to commit 4cbd43d (untyped metadata)"}
_METADATA_KEY = "fv3_downscale_bundle"


class BundleError(ValueError):
    """A bundle that cannot be used: names the file and what is wrong."""


class TrainingRecord(BaseModel):
    """How the bundled weights were trained."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: int = Field(ge=0, description="optimizer steps taken")
    max_steps: int = Field(ge=0, description="optimizer steps the run was configured for")
    seed: int
    mode: TrainingMode = Field(description="how μ and the diffusion were trained (TrainingMode)")
    spatial_mode: Geometry = Field(description="'cube': whole cubes; 'patch': face crops")
    patch_size: int | None = Field(description="fine cells per patch edge (patch mode)")
    ema_decay: float
    ema_updates: int = Field(ge=0, description="EMA updates behind the bundled weights (the weights are the EMA)")
    checkpoint: str | None = Field(description="checkpoint file exported; None = the end of training")
    train_config: dict[str, JsonValue] = Field(
        description="the whole training configuration (downscale.training.config.TrainConfig, as JSON)")


class BaselineTables(BaseModel):
    """Quantile-mapping tables fitted on the training split: the baseline's and the ensemble's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    quantile_mapping: QuantileTable | None = Field(
        None, description="the table of the quantile-mapping baseline (downscale.baselines); None: not fitted")
    ensemble_quantile_mapping: QuantileTable | None = Field(
        None, description="the ensemble's own table, for the ensemble_qm source (downscale.training.ensemble_table); "
                          "None: not fitted")


class BundleMetadata(DatasetInfo):
    """What a bundle says about itself (stored as JSON in the safetensors header): the description of the
    dataset it was trained on (the fields of :class:`DatasetInfo`, so ``meta.predictors`` is what inputs must
    provide), plus the model spec, the training record and the baseline tables."""

    format: int = BUNDLE_FORMAT
    software_version: str = __version__
    created: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    model: DownscalerSpec
    training: TrainingRecord
    baselines: BaselineTables = BaselineTables()
    weights_sha256: str = ""
    metadata_sha256: str = Field("", description="SHA-256 of this document without this field "
                                                 "(metadata_digest); covers weights_sha256 too")

    @property
    def bundle_id(self) -> str:
        """Short id of the whole bundle (first 12 hex digits of :attr:`metadata_sha256`, which covers the
        weights' digest): another byte of metadata or weights is another id."""
        return self.metadata_sha256[:12]


def _tensors_digest(tensors: Iterable[tuple[str, torch.Tensor]]) -> str:
    h = hashlib.sha256()
    for name, tensor in tensors:
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over tensor names, dtypes, shapes and bytes, in name order."""
    return _tensors_digest((name, state[name]) for name in sorted(state))


def metadata_digest(document: dict[str, Any]) -> str:
    """SHA-256 of a bundle's metadata document (parsed JSON) without its ``metadata_sha256`` entry, in
    canonical form (keys sorted, no spaces): any changed value, added or removed field changes it."""
    body = {k: v for k, v in document.items() if k != "metadata_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def save_bundle(path: str | Path, state: dict[str, torch.Tensor], metadata: BundleMetadata) -> BundleMetadata:
    """Write ``state`` and ``metadata`` atomically to ``path`` (temp file, then rename), in this software's
    format whatever ``metadata`` says (a bundle read in an older format is written in this one)."""
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    document = metadata.model_copy(update={"weights_sha256": weights_digest(tensors), "format": BUNDLE_FORMAT}
                                   ).model_dump(mode="json")
    document["metadata_sha256"] = metadata_digest(document)
    meta = BundleMetadata.model_validate(document)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={_METADATA_KEY: json.dumps(document)})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return meta


def _check_format(path: Path, found: Any) -> None:
    """Refuse a bundle of another format than :data:`BUNDLE_FORMAT` (or one of :data:`_STILL_READ`), saying what
    reads it."""
    if found == BUNDLE_FORMAT or found in _STILL_READ:
        return
    if not isinstance(found, int):
        raise BundleError(f"bundle {path}: its metadata names no format; this software reads format {BUNDLE_FORMAT}")
    if found > BUNDLE_FORMAT:
        advice = "update fv3-downscale to read it"
    else:
        advice = (f"re-export it from its training checkpoint (downscale.training.trainer.export_bundle) or "
                  f"retrain, or read it with {_LAST_READER.get(found, 'an older fv3-downscale')}")
    raise BundleError(f"bundle {path} has format {found}, this software (fv3-downscale {__version__}) reads "
                      f"format {BUNDLE_FORMAT}; {advice}")


def _check_metadata_digest(path: Path, document: dict[str, Any]) -> None:
    """Refuse a metadata document whose recorded SHA-256 is missing or is not its own."""
    recorded = document.get("metadata_sha256")
    if not recorded:
        raise BundleError(f"bundle {path}: metadata has no checksum (metadata_sha256); re-export the bundle")
    if recorded != metadata_digest(document):
        raise BundleError(f"bundle {path}: metadata checksum mismatch (the header was modified or corrupted "
                          f"after it was written); re-export the bundle from its training checkpoint")


def read_bundle_metadata(path: str | Path) -> BundleMetadata:
    """The metadata of a bundle, checked against its recorded SHA-256, without reading its weights
    (:func:`verify_bundle` checks those too)."""
    path = Path(path)
    if not path.is_file():
        raise BundleError(f"bundle {path}: not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise BundleError(f"bundle {path}: not a safetensors bundle ({err})") from None
    if _METADATA_KEY not in header:
        raise BundleError(f"bundle {path}: no bundle metadata in the safetensors header")
    try:
        document = json.loads(header[_METADATA_KEY])
    except json.JSONDecodeError as err:
        raise BundleError(f"bundle {path}: metadata invalid ({err})") from None
    _check_format(path, document.get("format") if isinstance(document, dict) else None)
    _check_metadata_digest(path, document)
    try:
        meta = BundleMetadata.model_validate(document)
    except ValidationError as err:
        raise BundleError(f"bundle {path}: metadata invalid ({err})") from None
    major = __version__.split(".")[0]
    if meta.software_version.split(".")[0] != major:
        raise BundleError(
            f"bundle {path}: written by version {meta.software_version}, incompatible with {__version__} "
            f"(major versions differ)"
        )
    return meta


def _check_weights(path: str | Path, meta: BundleMetadata, digest: str) -> None:
    if digest != meta.weights_sha256:
        raise BundleError(f"bundle {path}: weights do not match their recorded SHA-256 (modified or corrupted)")


def _streamed_tensors(path: str | Path) -> Iterator[tuple[str, torch.Tensor]]:
    """The tensors of a safetensors file in name order, one at a time (on the CPU)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            for name in sorted(f.keys()):
                yield name, f.get_tensor(name)
    except (SafetensorError, OSError) as err:
        raise BundleError(f"bundle {path}: weights unreadable ({err})") from None


def verify_bundle(path: str | Path) -> BundleMetadata:
    """The metadata of a bundle after checking every byte that matters: the metadata against its SHA-256
    and the weights against theirs (read one tensor at a time; no model is built). What to call before
    anything is created from a bundle (an output store, say)."""
    meta = read_bundle_metadata(path)
    _check_weights(path, meta, _tensors_digest(_streamed_tensors(path)))
    return meta


def load_bundle(path: str | Path, device: str | torch.device = "cpu") -> tuple[BundleMetadata, dict[str, torch.Tensor]]:
    """Metadata and weights of a bundle; refuses one whose metadata or weights do not match their recorded
    checksums."""
    meta = read_bundle_metadata(path)
    try:
        state = load_file(str(path), device=str(device))
    except (SafetensorError, OSError) as err:
        raise BundleError(f"bundle {path}: weights unreadable ({err})") from None
    _check_weights(path, meta, weights_digest(state))
    return meta, state


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[VideoDownscaler, BundleMetadata]:
    """The network a bundle describes (built from its :class:`DownscalerSpec`) with its weights loaded
    strictly, in eval mode on ``device``; and the bundle's metadata."""
    meta, state = load_bundle(path, device)
    net = meta.model.build()
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise BundleError(f"bundle {path}: weights do not fit the model spec ({err})") from None
    return net.to(device).eval(), meta


def check_inputs(meta: BundleMetadata, predictors: list[str] | tuple[str, ...], coarse_resolution: int,
                 time_step_seconds: float | None = None, source: str = "input") -> None:
    """Refuse inputs that do not fit the bundle; the message says what the bundle expects."""
    missing = [p for p in meta.predictors if p not in predictors]
    if missing:
        raise BundleError(
            f"{source}: lacks predictor(s) {', '.join(missing)} that bundle {meta.bundle_id} was trained on "
            f"({', '.join(meta.predictors)})"
        )
    if coarse_resolution != meta.coarse_resolution:
        raise BundleError(
            f"{source}: is C{coarse_resolution} but bundle {meta.bundle_id} downscales C{meta.coarse_resolution} "
            f"-> C{meta.fine_resolution}"
        )
    if time_step_seconds is not None and abs(time_step_seconds - meta.time_step_seconds) > 1:
        raise BundleError(
            f"{source}: time step {time_step_seconds / 3600:g} h but bundle {meta.bundle_id} was trained on "
            f"{meta.time_step_seconds / 3600:g} h steps"
        )
