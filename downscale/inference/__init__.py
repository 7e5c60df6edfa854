"""Inference: downscale a coarse run into a high-resolution ensemble and write it as a CF output store
(planning, schema, store I/O, locks and the per-worker runner; see docs/inference.md)."""
