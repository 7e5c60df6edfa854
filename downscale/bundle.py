"""The model bundle: one self-describing file with everything needed to downscale.

A bundle is a single safetensors file: the (EMA) weights as tensors, and in its header a JSON
document (:class:`BundleMetadata`): architecture config, normalization statistics, variables,
resolutions and factor (recorded, never inferred from tensor shapes), clip length, training-data
provenance, baseline tables (quantile mapping), software version, and a SHA-256 of the weights. Loading never unpickles code
(safetensors holds tensors only); a bundle whose checksum, version, variables or resolution do not
fit is refused with a message that says what differs.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from downscale.version import __version__

BUNDLE_FORMAT = 1
_METADATA_KEY = "fv3_downscale_bundle"


class BundleError(ValueError):
    """A bundle that cannot be used: names the file and what is wrong."""


class BundleMetadata(BaseModel):
    """What a bundle says about itself (stored as JSON in the safetensors header)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: int = BUNDLE_FORMAT
    software_version: str = __version__
    created: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    network: dict[str, Any]
    model: dict[str, Any]
    target: str
    predictors: tuple[str, ...]
    static_features: tuple[str, ...]
    coarse_resolution: int
    fine_resolution: int
    factor: int
    clip_frames: int
    time_step_seconds: float
    normalization: dict[str, Any]
    provenance: dict[str, Any] = Field(default_factory=dict)
    #: tables of the deterministic baselines fitted on the training split, e.g. ``quantile_mapping``
    #: (a :class:`downscale.inference.baselines.QuantileTable` as JSON)
    baselines: dict[str, Any] = Field(default_factory=dict)
    weights_sha256: str = ""

    def model_post_init(self, _: Any) -> None:
        if self.fine_resolution != self.factor * self.coarse_resolution:
            raise ValueError(
                f"fine resolution C{self.fine_resolution} != factor {self.factor} x coarse C{self.coarse_resolution}"
            )

    @property
    def bundle_id(self) -> str:
        """Short id of the weights (first 12 hex digits of their SHA-256)."""
        return self.weights_sha256[:12]


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over tensor names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_bundle(path: str | Path, state: dict[str, torch.Tensor], metadata: BundleMetadata) -> BundleMetadata:
    """Write ``state`` and ``metadata`` atomically to ``path`` (temp file, then rename)."""
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    meta = metadata.model_copy(update={"weights_sha256": weights_digest(tensors)})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={_METADATA_KEY: meta.model_dump_json()})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return meta


def read_bundle_metadata(path: str | Path) -> BundleMetadata:
    """The metadata of a bundle, without loading its weights."""
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
        meta = BundleMetadata.model_validate(json.loads(header[_METADATA_KEY]))
    except (ValidationError, json.JSONDecodeError) as err:
        raise BundleError(f"bundle {path}: metadata invalid ({err})") from None
    if meta.format != BUNDLE_FORMAT:
        raise BundleError(f"bundle {path}: format {meta.format}, this software reads format {BUNDLE_FORMAT}")
    major = __version__.split(".")[0]
    if meta.software_version.split(".")[0] != major:
        raise BundleError(
            f"bundle {path}: written by version {meta.software_version}, incompatible with {__version__} "
            f"(major versions differ)"
        )
    return meta


def load_bundle(path: str | Path, device: str | torch.device = "cpu") -> tuple[BundleMetadata, dict[str, torch.Tensor]]:
    """Metadata and weights of a bundle; refuses one whose weights do not match their recorded checksum."""
    meta = read_bundle_metadata(path)
    try:
        state = load_file(str(path), device=str(device))
    except (SafetensorError, OSError) as err:
        raise BundleError(f"bundle {path}: weights unreadable ({err})") from None
    if weights_digest(state) != meta.weights_sha256:
        raise BundleError(f"bundle {path}: weights do not match their recorded SHA-256 (modified or corrupted)")
    return meta, state


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
