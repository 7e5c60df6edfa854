"""Inference: samplers with recorded settings and time-window fusion for long blocks."""
