"""FewStepABTest and FewStepCompare's pictures: see a speed-up and what it costs.

Pure: pictures.py (heat map of |a - b|, side by side, latent previews), report.py (the
timing rules and the report text). Hooks: hooks.py (the SAMPLER_SAMPLE timer and the
model-call counters on a clone), ab_test.py (the two branches through core KSampler).
SSIM and PSNR live in fewstep/metrics.py, shared with the bench.
"""
