"""Compression and model-building tools (the `edgefarm tools` commands)."""
