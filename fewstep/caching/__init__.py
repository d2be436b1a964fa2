"""FewStep TeaCache: skip model calls whose output barely changes.

Pure: profiles.py (which indicator each family reads, published rescale polynomials),
state.py (per-run decisions and caches), calibration.py (fit, store and look up a
model's own polynomial). Hooks: hooks.py (the ModelPatcher wrappers and first-block patch).
"""
