"""Samplers FewStep adds: TCD (tcd.py: the update rule; hooks.py: the ComfyUI sampler and
its registration as "tcd")."""
