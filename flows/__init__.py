"""Prefect flows of the downscaling service (orchestration only; the science is in ``downscale``)."""
