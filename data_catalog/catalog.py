"""The catalog: which stores hold what, per ensemble member.

A catalog is a YAML file in one of two forms.

**Native form** (roles explicit; paths relative to the catalog file)::

    name: synthetic-demo
    resolution: {coarse: 12, fine: 96}       # C-N of each grid; factor = fine / coarse (never guessed)
    precipitation: PRATEsfc                   # fine target variable
    predictors: [PRATEsfc_coarse, CPRATsfc_coarse, TMPsfc_coarse,
                 UGRD10m_coarse, VGRD10m_coarse, DSWRFtoa_coarse]
    static: {urlpath: static/atmos_static.zarr}      # holds zsurf on the fine grid
    grid:
      fine: {urlpath: grid/c96.zarr}                 # lat, lon, latb, lonb, area
      coarse: {urlpath: grid/c12.zarr}
    members:
      "0001":
        fine: {urlpath: members/0001/sfc_8xdaily_ave.zarr}
        coarse:                                      # one store or a list of stores
          - {urlpath: gs://bucket/0001/sfc_8xdaily_ave_coarse.zarr,
             storage_options: {token: /path/to/key.json}}

Every store reference takes ``urlpath`` (local path, ``file://``, ``gs://``, ``s3://`` … any fsspec
URL), ``storage_options`` (passed to fsspec, never logged) and ``consolidated``. A member may lack
``fine`` (a coarse run to downscale) or ``coarse`` (fine data only: the coarse predictors are then
coarse-grained from it). Without ``grid`` the grid is computed from the FV3 cube-sphere geometry.

**intake-v1 form** (fv3net's ``catalog.yaml``), read as-is::

    sources:
      c384_precip_0001:
        driver: zarr
        args: {urlpath: gs://…/sfc_8xdaily_ave.zarr, consolidated: true, storage_options: {…}}
        metadata: {grid: c384, role: fine, member: "0001"}

Roles come from ``metadata.role`` (``fine``, ``coarse``, ``static``, ``grid_fine``, ``grid_coarse``)
and members from ``metadata.member``; where absent, :mod:`data_catalog.intake` infers them from the
source names and ``metadata.grid``. Top-level keys of the native form (``resolution``,
``precipitation``, ``predictors``) may be given under ``metadata`` of the intake file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from data_catalog.errors import CatalogError, describe_validation_error, read_yaml_mapping
from data_catalog.intake import native_document
from data_catalog.redaction import option_secrets, redact, redact_url, register_secrets, url_credentials
from data_catalog.schema import PRECIPITATION

DEFAULT_PREDICTORS = (
    "PRATEsfc_coarse",
    "CPRATsfc_coarse",
    "TMPsfc_coarse",
    "UGRD10m_coarse",
    "VGRD10m_coarse",
    "DSWRFtoa_coarse",
)


class StoreRef(BaseModel):
    """Where one store lives. ``storage_options`` may hold credentials: it is never shown, and its secrets
    and those of the URL are registered for redaction (:mod:`data_catalog.redaction`) on creation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    urlpath: str
    storage_options: dict[str, Any] = Field(default_factory=dict, repr=False)
    consolidated: bool | None = None
    name: str | None = None

    @field_validator("urlpath")
    @classmethod
    def _non_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("urlpath is empty")
        return v

    @model_validator(mode="after")
    def _register_secrets(self) -> "StoreRef":
        register_secrets([*url_credentials(self.urlpath), *option_secrets(self.storage_options)])
        return self

    @property
    def display(self) -> str:
        """A name safe for logs, errors and output attributes (no credentials)."""
        url = redact_url(self.urlpath)
        return f"{self.name} ({url})" if self.name else url

    def scrub(self, text: str) -> str:
        """``text`` (e.g. a backend's error message) with this store's secrets and URL credentials removed."""
        text = redact(text)
        for value in _leaf_strings(self.storage_options):
            if len(value) >= 4:
                text = text.replace(value, "***")
        return text

    def __repr__(self) -> str:
        hidden = f", storage_options=<{len(self.storage_options)} hidden>" if self.storage_options else ""
        return f"StoreRef({self.display!r}{hidden})"

    __str__ = __repr__

    def resolved(self, base: Path) -> "StoreRef":
        """Relative local paths are taken relative to ``base`` (the catalog's directory)."""
        url = self.urlpath
        if "://" in url or Path(url).is_absolute():
            return self
        return self.model_copy(update={"urlpath": str((base / url).resolve())})


def _leaf_strings(obj: Any) -> list[str]:
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _leaf_strings(v)]
    if isinstance(obj, list | tuple):
        return [s for v in obj for s in _leaf_strings(v)]
    return [obj] if isinstance(obj, str) else []


def _as_list(v: Any) -> Any:
    return [v] if isinstance(v, dict | StoreRef) else v


class MemberStores(BaseModel):
    """The time-varying stores of one ensemble member."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fine: StoreRef | None = None
    coarse: list[StoreRef] = Field(default_factory=list)

    @field_validator("coarse", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return _as_list(v) or []

    @model_validator(mode="after")
    def _has_data(self) -> "MemberStores":
        if self.fine is None and not self.coarse:
            raise ValueError("a member needs a 'fine' store, 'coarse' stores, or both")
        return self


class GridStores(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    fine: StoreRef | None = None
    coarse: StoreRef | None = None


class Resolution(BaseModel):
    """Cube-sphere resolutions as C-N (cells along a tile edge)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    coarse: int = Field(gt=0)
    fine: int = Field(gt=0)

    @model_validator(mode="after")
    def _integer_factor(self) -> "Resolution":
        if self.fine % self.coarse or self.fine == self.coarse:
            raise ValueError(
                f"fine resolution C{self.fine} must be an integer multiple (> 1) of coarse C{self.coarse}"
            )
        return self

    @property
    def factor(self) -> int:
        return self.fine // self.coarse


class Catalog(BaseModel):
    """Stores by role and member; see the module docstring for the YAML forms."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "catalog"
    resolution: Resolution
    precipitation: str = PRECIPITATION
    predictors: tuple[str, ...] = DEFAULT_PREDICTORS
    topography: str = "zsurf"
    static: StoreRef | None = None
    grid: GridStores = GridStores()
    members: dict[str, MemberStores]

    @field_validator("members")
    @classmethod
    def _some_members(cls, v: dict) -> dict:
        if not v:
            raise ValueError("the catalog lists no members")
        return v

    @field_validator("predictors")
    @classmethod
    def _some_predictors(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("at least one coarse predictor is needed")
        if len(set(v)) != len(v):
            raise ValueError(f"predictors listed twice: {sorted(x for x in v if v.count(x) > 1)}")
        return v

    def member(self, name: str) -> MemberStores:
        try:
            return self.members[name]
        except KeyError:
            raise CatalogError(
                f"catalog '{self.name}' has no member '{name}' (members: {', '.join(self.members)})"
            ) from None

    def resolved(self, base: Path) -> "Catalog":
        """The same catalog with relative local paths made absolute against ``base``."""

        def r(ref: StoreRef | None) -> StoreRef | None:
            return None if ref is None else ref.resolved(base)

        members = {
            k: MemberStores(fine=r(m.fine), coarse=[r(c) for c in m.coarse]) for k, m in self.members.items()
        }
        grid = GridStores(fine=r(self.grid.fine), coarse=r(self.grid.coarse))
        return self.model_copy(update={"members": members, "grid": grid, "static": r(self.static)})


def load_catalog(path: str | Path) -> Catalog:
    """Read a catalog YAML file (native or intake-v1 form); relative paths resolve against its folder.

    Raises :class:`CatalogError` naming the file and every problem found.
    """
    path = Path(path)
    doc = read_yaml_mapping(path, "catalog", CatalogError)
    try:
        if "sources" in doc:
            doc = native_document(doc, default_name=path.stem)
        catalog = Catalog.model_validate(doc)
    except CatalogError as err:
        raise CatalogError(f"catalog {path}: {err}") from None
    except ValueError as err:
        raise CatalogError(describe_validation_error(f"catalog {path} is invalid", err)) from None
    return catalog.resolved(path.parent.resolve())


def dump_catalog(catalog: Catalog, path: str | Path) -> Path:
    """Write ``catalog`` in the native form (credentials included: it is the user's own file)."""
    path = Path(path)
    doc = catalog.model_dump(mode="json", exclude_none=True, exclude_defaults=False)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path

