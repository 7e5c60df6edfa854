"""Names of the output store's dims and of its truth and coarse-input variables (docs/inference.md, "The output
store"): the one place they are spelled. The store's writer (:mod:`downscale.inference.store_schema`) and the
diagnostics' defaults (:mod:`downscale.diagnostics.dims`, :mod:`downscale.diagnostics.sources`,
:mod:`downscale.evaluation.score`) read them from here."""

from __future__ import annotations

from data_catalog.schema import PRECIPITATION

#: Fine cell centres, tile first and x last (FV3GFS's own names).
FINE_DIMS: tuple[str, str, str] = ("tile", "grid_yt", "grid_xt")
#: Coarse cell centres (the input ``PRATEsfc_coarse``, ``area_coarse``).
COARSE_DIMS: tuple[str, str, str] = ("tile", "grid_yt_coarse", "grid_xt_coarse")
#: Fine cell corners (``latb``, ``lonb``).
FINE_CORNER_DIMS: tuple[str, str, str] = ("tile", "grid_y", "grid_x")
#: The held-out truth and the coarse input, beside the ensemble ``PRATEsfc``.
TRUTH, COARSE = f"{PRECIPITATION}_truth", f"{PRECIPITATION}_coarse"
