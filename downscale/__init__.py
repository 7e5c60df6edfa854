"""fv3-downscale: C48 → C384 precipitation downscaling with a spatio-temporal diffusion model.

The small public API for ad hoc use (each name is imported on first use, so ``import downscale`` stays
cheap and never pulls in Lightning)::

    import downscale
    ds = downscale.open_output("run/output/member_0003.zarr")     # a finished output store, lazily
    model, meta = downscale.load_model("run/model/bundle.safetensors")
    downscale.evaluate("run/output/member_0003.zarr", "run/diagnostics")
    config = downscale.demo_config("run")                         # the `make demo` pipeline config

The command line (``downscale --help``) and the Prefect flows (``flows/``) are built on the same functions.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from downscale.version import __version__

if TYPE_CHECKING:
    from downscale.bundle import load_model, read_bundle_metadata
    from downscale.evaluation.evaluate import evaluate
    from downscale.inference.generate import generate
    from downscale.inference.store import open_output
    from downscale.pipeline_config import PipelineConfig, demo_config
    from downscale.report.render import render_report

#: public name → the module that owns it
_PUBLIC: dict[str, str] = {
    "open_output": "downscale.inference.store",
    "load_model": "downscale.bundle",
    "read_bundle_metadata": "downscale.bundle",
    "generate": "downscale.inference.generate",
    "evaluate": "downscale.evaluation.evaluate",
    "render_report": "downscale.report.render",
    "PipelineConfig": "downscale.pipeline_config",
    "demo_config": "downscale.pipeline_config",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'downscale' has no attribute {name!r}")
    value = getattr(import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
