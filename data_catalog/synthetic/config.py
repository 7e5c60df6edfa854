"""Configuration of the synthetic FV3GFS generator: a validated pydantic model and its presets.

Example::

    >>> cfg = preset("tests")
    >>> cfg.fine_n, cfg.n_times, cfg.members
    (32, 32, ('0001', '0002'))
    >>> SyntheticConfig(coarse_n=12, factor=8, days=10).n_times
    80
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import zlib
from typing import Any

import cftime
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Hours between two records (``8xdaily_ave``: 3-hour means).
STEP_HOURS = 3.0
STEPS_PER_DAY = int(24 / STEP_HOURS)


class SyntheticConfig(BaseModel):
    """What to generate: grids, members, period, seed, chunking and the time scales of the weather.

    ``days`` may be given instead of ``n_times`` (``n_times = 8 · days``). Record ``i`` is the 3-hour
    interval ``[start + 3i h, start + 3(i + 1) h)``, stamped at its middle like FMS time averages.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "custom"
    coarse_n: int = Field(12, gt=0, description="coarse grid C-N (cells along a tile edge)")
    factor: int = Field(8, ge=2, description="fine C-N = factor · coarse C-N")
    members: tuple[str, ...] = ("0001", "0002", "0003")
    start: str = Field("2016-08-05", description="ISO date or date-time of the first interval, Julian calendar")
    n_times: int = Field(480, gt=0, description="number of 3-hour records")
    seed: int = Field(0, ge=0)
    time_chunk: int = Field(8, gt=0, description="records per chunk of the written stores")
    negative_noise: bool = Field(False, description="sprinkle rare -1e-13 kg m-2 s-1 values (model numerics)")
    workers: int = Field(2, gt=0, description="dask threads used while generating")
    synoptic_lifetime_hours: float = Field(60.0, gt=0, description="life of one large-scale weather pattern")
    convective_lifetime_hours: float = Field(9.0, gt=0, description="life of one sub-coarse convective pattern")

    @model_validator(mode="before")
    @classmethod
    def _days_to_times(cls, data: Any) -> Any:
        if isinstance(data, dict) and "days" in data:
            data = dict(data)
            days = data.pop("days")
            if "n_times" in data:
                raise ValueError("give either 'days' or 'n_times', not both")
            if days is None or float(days) <= 0:
                raise ValueError(f"days must be positive, got {days!r}")
            data["n_times"] = int(round(float(days) * STEPS_PER_DAY))
        return data

    @field_validator("members", mode="before")
    @classmethod
    def _member_names(cls, v: Any) -> Any:
        names = [v] if isinstance(v, str) else list(v)
        if not names:
            raise ValueError("at least one member is needed")
        bad = [m for m in names if not isinstance(m, str) or not m or "/" in m or m.startswith(".")]
        if bad:
            raise ValueError(f"member names must be non-empty strings usable as folder names, got {bad}")
        if len(set(names)) != len(names):
            raise ValueError(f"member names repeat: {names}")
        return tuple(names)

    @field_validator("start")
    @classmethod
    def _valid_start(cls, v: str) -> str:
        try:
            dt.datetime.fromisoformat(v)
        except ValueError:
            raise ValueError(f"start must be an ISO date or date-time like '2016-08-05', got {v!r}") from None
        return v

    @property
    def fine_n(self) -> int:
        return self.coarse_n * self.factor

    @property
    def start_date(self) -> cftime.DatetimeJulian:
        """``start`` as a Julian-calendar date-time."""
        d = dt.datetime.fromisoformat(self.start)
        return cftime.DatetimeJulian(d.year, d.month, d.day, d.hour, d.minute, d.second)

    @property
    def time_units(self) -> str:
        """CF units of the time axis, as FMS writes them (``hours since 2016-08-05``)."""
        d = dt.datetime.fromisoformat(self.start)
        stamp = d.strftime("%Y-%m-%d") if d.time() == dt.time(0) else d.strftime("%Y-%m-%d %H:%M:%S")
        return f"hours since {stamp}"

    def member_seed(self, member: str) -> int:
        """A 63-bit seed per member, from (seed, member name) only."""
        return int.from_bytes(hashlib.sha256(f"{self.seed}:{member}".encode()).digest()[:8], "little") >> 1

    def shaping_fields(self) -> dict[str, Any]:
        """Every field that shapes the data (not ``workers`` nor ``name``), as JSON values."""
        return self.model_dump(mode="json", exclude={"workers", "name"})

    def fingerprint(self) -> str:
        """Hash of :meth:`shaping_fields`: equal fingerprints, equal stores."""
        return f"{zlib.crc32(json.dumps(self.shaping_fields(), sort_keys=True).encode()):08x}"


PRESETS: dict[str, dict[str, Any]] = {
    # C8 → C32, 2 members, 4 days: a couple of seconds; the test data.
    "tests": dict(name="tests", coarse_n=8, factor=4, members=("0001", "0002"), days=4, time_chunk=8,
                  synoptic_lifetime_hours=60.0, convective_lifetime_hours=9.0),
    # C12 → C96 (factor 8 as in STVD), 3 members, 60 days: the embedded default of `make demo`.
    "demo": dict(name="demo", coarse_n=12, factor=8, members=("0001", "0002", "0003"), days=60, time_chunk=8),
    # C8 → C64 (factor 8), 17 members, 60 days: the `skill` benchmark (bench/skill.py), trained ≤ 45 min on 2 cores.
    # Sixteen training members: with two, the 1600 steps then used saw each clip 3 times and μ fitted the training
    # members' large scales better than the held-out one's (residual mean square 0.21 vs 0.29), so the diffusion
    # learned a residual too narrow for unseen weather (sampled std 0.98× the truth's on training clips, 0.84× on
    # held-out ones); on the held-out member the ratio was 0.79 with two, 0.88 with four, 0.92 with eight and
    # 0.93 with sixteen training members (the last with 2200 steps; docs/skill.md).
    "skill": dict(name="skill", coarse_n=8, factor=8, members=tuple(f"{i:04d}" for i in range(1, 18)), days=60,
                  time_chunk=8),
    # C8 → C32 (factor 4), 3 members, 365 days from January 1st (every season): bench/year.py on 2 cores.
    "year": dict(name="year", coarse_n=8, factor=4, members=("0001", "0002", "0003"), days=365,
                 start="2016-01-01", time_chunk=8),
    # The STVD set-up: C48 → C384, 11 members, 13 months (≈ 1.3 TB uncompressed). Never run in tests.
    "full": dict(name="full", coarse_n=48, factor=8, members=tuple(f"{i:04d}" for i in range(1, 12)),
                 days=395, time_chunk=8),
}


def preset(name: str, **overrides: Any) -> SyntheticConfig:
    """The preset ``tests``, ``demo``, ``skill``, ``year`` or ``full``, with optional field overrides."""
    if name not in PRESETS:
        raise ValueError(f"unknown synthetic preset {name!r}; choose one of {', '.join(PRESETS)}")
    doc = {**PRESETS[name], **overrides}
    if "n_times" in overrides:
        doc.pop("days", None)
    return SyntheticConfig(**doc)
