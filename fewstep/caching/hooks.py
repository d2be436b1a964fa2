"""FewStep TeaCache on a ModelPatcher: wrappers and one replace patch, never a copied forward.

Everything is added to a `clone()` with `add_wrapper_with_key(..., KEY, ...)` (and, for
first-block families, a ("double_block", 0) replace patch that chains to any patch
already there), so other packs' wrappers stay in place and the input MODEL is untouched.

Which hook decides, per family (ComfyUI 0.3.75), and why:
- OUTER_SAMPLE (all): creates the run's `RunState` at the start of every sampling run
  and drops it in `finally` (errors and interrupts included), then logs the stats and
  sends them to the frontend; saves a calibration only when the run completed.
- CALC_COND_BATCH (all): marks the start of an evaluation (one sigma, one x), so cond
  and uncond calls of one step share one decision even when they run as two batches.
- DIFFUSION_MODEL (flux, flux-kontext, hunyuan_video, ltxv, wan2.1, lumina2): these have
  published coefficients, which describe the raw network output, so the cache holds that
  output. For Wan and Lumina 2 TeaCache's indicator is a timestep embedding: computed
  here, before the call, and a skip never enters the network.
- ("double_block", 0) replace patch (flux, hunyuan_video, ltxv, wan *_ret_mode): their
  indicator is the first block's modulated input, which exists only inside the forward;
  the patch receives exactly that block's inputs, computes it and, to skip, raises
  `SkipBlocks`, which the DIFFUSION_MODEL wrapper turns into the cached output (the cheap
  embedding layers before block 0 have run; no transformer block has).
- APPLY_MODEL (generic: SD1.5, SDXL, SD3, Qwen-Image and any other model): reaches every
  family, including SD3's MMDiT, which DIFFUSION_MODEL does not. The cache holds the
  model's raw output in its own parameterisation (eps, v, x0, flow velocity), recovered
  from the denoised latent through `model_sampling.calculate_denoised`, which is affine
  in it; a skip turns the (extrapolated) output back into a denoised latent the same way.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import comfy.patcher_extension as pe
import torch

from .. import comfy_compat
from . import calibration as cal
from .profiles import (BLOCK0, MODEL_INPUT, TIMESTEP_EMBEDDING, Profile, architecture_name, for_latent,
                       per_uuid, resolve_profile)
from .state import FunctionRescale, OnlineRatio, PolynomialRescale, RunState, Settings

KEY = "fewstep_teacache"  # wrapper key and transformer_options key of the node's config
RUN_KEY = "fewstep_teacache_run"  # transformer_options key of the current run's state
log = logging.getLogger("FewStep.TeaCache")


class SkipBlocks(BaseException):
    """Raised by the first-block patch to leave the forward; never escapes our wrapper.
    A BaseException so that `except Exception` in code in between cannot swallow it."""


@dataclass(frozen=True)
class TeaCacheConfig:
    """What the node fixes, stored on the clone (immutable: ModelPatcher.clone deep-copies
    model_options, and every copy must mean the same). A "calibrate on next run" request
    is fulfilled once, by whichever copy samples first: `request` names it."""

    settings: Settings
    profile: Profile
    auto: bool
    architecture: str
    calibration: str = "use stored"
    node_id: str | None = None
    store_root: Path | None = None
    reporter: Callable[[dict], None] | None = None  # e.g. the websocket sender
    request: str = field(default_factory=lambda: uuid.uuid4().hex)

    def root(self) -> Path:
        return self.store_root if self.store_root is not None else comfy_compat.user_data_dir("teacache")

    def calibration_pending(self) -> bool:
        return self.calibration == "calibrate on next run" and not _fulfilled.contains(self.request)


class _BoundedSet:
    """Process-wide memory with a bound: the oldest entries go first."""

    def __init__(self, size: int):
        self._items: OrderedDict = OrderedDict()
        self._size, self._lock = size, threading.Lock()

    def contains(self, key) -> bool:
        with self._lock:
            return key in self._items

    def get(self, key):
        with self._lock:
            return self._items.get(key)

    def put(self, key, value=None) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


_fulfilled = _BoundedSet(256)  # calibration requests already carried out
_fingerprints = _BoundedSet(32)  # patcher state -> fingerprint (weights are hashed once)


def fingerprint(model_patcher, legacy: bool = False) -> str:
    """The model's calibration fingerprint; `legacy`: the one FewStep 0.1.x stored under."""
    key = (comfy_compat.patcher_state_key(model_patcher), legacy)
    found = _fingerprints.get(key)
    if found is None:
        if legacy:
            found = comfy_compat.legacy_model_fingerprint(model_patcher, cal.LEGACY_FINGERPRINT_TAG)
        else:
            found = comfy_compat.model_fingerprint(model_patcher, cal.FINGERPRINT_TAG)
        _fingerprints.put(key, found)
    return found


def _lookup(root, model_patcher, fp: str, steps: int):
    """cal.lookup under `fp`, then under the legacy fingerprint when nothing is stored."""
    found, how = cal.lookup(root, fp, steps)
    if found is None and how == cal.NONE_STORED:
        try:
            legacy_fp = fingerprint(model_patcher, legacy=True)
        except Exception as e:  # noqa: BLE001 - never let bookkeeping break sampling
            log.warning("FewStep TeaCache: cannot compute the earlier fingerprint (%s)", e)
            return found, how
        legacy_found, legacy_how = cal.lookup(root, legacy_fp, steps)
        if legacy_found is not None:
            return legacy_found, legacy_how + " (stored by an earlier FewStep)"
    return found, how


def apply_teacache(model, settings: Settings, family: str = "auto", calibration: str = "use stored",
                   node_id: str | None = None, store_root=None, reporter=None):
    """A clone of `model` with FewStep TeaCache. Raises FamilyError for a wrong family."""
    m = model.clone()
    profile = resolve_profile(m, family)
    config = TeaCacheConfig(settings, profile, family == "auto", architecture_name(m), calibration,
                            node_id, store_root, reporter)
    for kind in (pe.WrappersMP.OUTER_SAMPLE, pe.WrappersMP.CALC_COND_BATCH, pe.WrappersMP.DIFFUSION_MODEL,
                 pe.WrappersMP.APPLY_MODEL):
        m.remove_wrappers_with_key(kind, KEY)  # a second TeaCache node replaces the first
    m.model_options["transformer_options"][KEY] = config
    m.add_wrapper_with_key(pe.WrappersMP.OUTER_SAMPLE, KEY, outer_sample_wrapper)
    m.add_wrapper_with_key(pe.WrappersMP.CALC_COND_BATCH, KEY, calc_cond_batch_wrapper)
    if profile.source == MODEL_INPUT:
        m.add_wrapper_with_key(pe.WrappersMP.APPLY_MODEL, KEY, apply_model_wrapper)
    else:
        m.add_wrapper_with_key(pe.WrappersMP.DIFFUSION_MODEL, KEY, diffusion_model_wrapper)
    if profile.source == BLOCK0:
        previous = comfy_compat.dit_replace_patch(m, "double_block", 0)
        if getattr(previous, "fewstep_teacache", False):
            previous = previous.previous
        m.set_model_patch_replace(_block0_patch(previous), "dit", "double_block", 0)
    return m


# ---- OUTER_SAMPLE: one RunState per sampling run ------------------------------------------

def _rescale_for(config: TeaCacheConfig, profile: Profile, model_patcher, steps: int):
    """(Rescale, calibrating?, calibration info for the stats, full fingerprint or None)."""
    info = {"mode": config.calibration}
    fp = None
    if config.calibration != "off":
        try:
            fp = fingerprint(model_patcher)
            info["fingerprint"] = fp[:20]
            info["file"] = str(cal.path_for(config.root(), fp))
        except Exception as e:  # noqa: BLE001 - never let bookkeeping break sampling
            log.warning("FewStep TeaCache: cannot fingerprint the model (%s); calibration off", e)
            fp = None
        if fp and config.calibration_pending():
            info["status"] = "calibrating (this run computes every step)"
            return OnlineRatio(), True, info, fp
        if fp:
            found, how = _lookup(config.root(), model_patcher, fp, steps)
            info["status"] = how
            if found is not None:
                info["coefficients"] = list(found.coefficients)
                return FunctionRescale(found, how), False, info, fp
    info.setdefault("status", "off")
    if profile.published:
        return PolynomialRescale(profile.coefficients, f"published TeaCache coefficients ({profile.name})"), False, info, fp
    return OnlineRatio(), False, info, fp


def _start_run(config: TeaCacheConfig, guider, args) -> RunState:
    noise, _latent, sampler, sigmas = comfy_compat.outer_sample_args(args)
    steps = max(len(sigmas) - 1, 0)
    profile = for_latent(config.profile, tuple(noise.shape), config.auto)
    rescale, calibrating, info, fp = _rescale_for(config, profile, guider.model_patcher, steps)
    ms = guider.model_patcher.model.model_sampling
    s = config.settings
    run = RunState(s, rescale, sigmas.flatten().tolist(), float(ms.percent_to_sigma(s.start_percent)),
                   float(ms.percent_to_sigma(s.end_percent)), calibrating=calibrating)
    run.profile, run.calibration_info, run.steps, run.fingerprint = profile, info, steps, fp
    run.sampler = getattr(getattr(sampler, "sampler_function", None), "__name__", type(sampler).__name__)
    if comfy_compat.uses_context_windows(guider.model_options):
        # Context windows run several x windows per step under the same conds: one cache
        # per cond cannot tell them apart, so this run computes every call.
        run.block("context windows are active: every call is computed")
    return run


def outer_sample_wrapper(executor, *args, **kwargs):
    guider = executor.class_obj
    original = guider.model_options
    guider.model_options = comfy_compat.clone_model_options(original)
    to = guider.model_options.setdefault("transformer_options", {})
    config: TeaCacheConfig = to[KEY]
    run, completed = None, False
    try:
        try:
            run = _start_run(config, guider, args)
            to[RUN_KEY] = run
        except Exception:  # noqa: BLE001 - bookkeeping must never stop a sampling run
            log.exception("FewStep TeaCache: could not prepare this run; sampling without it")
        out = executor(*args, **kwargs)
        completed = True
        return out
    finally:
        guider.model_options = original
        if run is not None:
            _finish(config, run, completed)


def _finish(config: TeaCacheConfig, run: RunState, completed: bool) -> None:
    """Save a calibration, log the numbers, send them to the frontend. Never raises."""
    try:
        if run.calibrating and completed:
            _save_calibration(config, run)
        stats = {**run.summary(), "node": config.node_id, "family": run.profile.name,
                 "architecture": config.architecture, "indicator": run.profile.source,
                 "threshold": config.settings.threshold, "steps": run.steps, "completed": completed,
                 "calibration": run.calibration_info}
        log.info("FewStep TeaCache [%s, %s, %s]: skipped %d/%d model calls (%.2fx estimated)%s",
                 config.architecture, run.profile.name, run.rescale.description, stats["skipped"], stats["calls"],
                 stats["speedup"], "" if completed else " - run did not complete")
        for note in run.stats.notes:
            log.warning("FewStep TeaCache: %s", note)
        if config.reporter is not None:
            config.reporter(stats)
    except Exception:  # noqa: BLE001 - reporting must never turn a finished run into an error
        log.exception("FewStep TeaCache: could not report the run's stats")


def _save_calibration(config: TeaCacheConfig, run: RunState) -> None:
    info = run.calibration_info
    try:
        new_fit = cal.fit(run.stats.calibration_points, run.steps, run.sampler)
        path = cal.save(config.root(), run.fingerprint, new_fit, config.architecture, run.profile.source,
                        comfy_compat.comfyui_version())
        _fulfilled.put(config.request)
        info.update(status=f"calibrated and saved ({run.steps} steps)", file=str(path),
                    coefficients=list(new_fit.coefficients), rmse=new_fit.rmse, points=len(new_fit.points))
        log.info("FewStep TeaCache: calibration saved to %s: %s (rmse %.4g, %d points)", path,
                 [f"{c:.4g}" for c in new_fit.coefficients], new_fit.rmse, len(new_fit.points))
    except (ValueError, OSError) as e:
        info["status"] = f"calibration failed: {e}"
        log.warning("FewStep TeaCache: calibration not saved: %s", e)


# ---- per evaluation ---------------------------------------------------------------------

def calc_cond_batch_wrapper(executor, *args, **kwargs):
    options = comfy_compat.calc_cond_batch_model_options(args)
    run = options.get("transformer_options", {}).get(RUN_KEY) if options is not None else None
    if run is not None:
        run.new_evaluation()
    return executor(*args, **kwargs)


def _sigma(to: dict, fallback: torch.Tensor) -> float:
    s = to.get("sigmas")
    s = fallback if s is None else s
    return float(s.flatten()[0]) if isinstance(s, torch.Tensor) and s.numel() else math.nan


def _uuids(to: dict, batch: int) -> list:
    uuids = list(to.get("uuids") or [])
    return uuids if uuids and batch % len(uuids) == 0 else [None]


# ---- generic: APPLY_MODEL ---------------------------------------------------------------

def _affine(ms, t: torch.Tensor, x: torch.Tensor):
    """(a, b) with denoised = a + b * model_output: `calculate_denoised` is affine in the
    output for every parameterisation ComfyUI has (eps, v, x0, flow, EDM, ...), so two
    probes give the model's raw output back from the denoised latent, without model code."""
    a = ms.calculate_denoised(t, torch.zeros_like(x, dtype=torch.float32), x)
    return a, ms.calculate_denoised(t, torch.ones_like(x, dtype=torch.float32), x) - a


def apply_model_wrapper(executor, *args, **kwargs):
    x, t, to = comfy_compat.apply_model_args(args, kwargs)
    run: RunState | None = to.get(RUN_KEY)
    if run is None:
        return executor(*args, **kwargs)
    start = time.perf_counter()
    ms = executor.class_obj.model_sampling
    uuids = _uuids(to, x.shape[0])
    sigma = _sigma(to, t)
    xs = per_uuid(x, len(uuids))
    indicators = None
    if run.decision is None:
        indicators = per_uuid(ms.calculate_input(t, x), len(uuids))
    if run.decide(uuids, sigma, indicators, xs):
        out = ms.calculate_denoised(t, torch.cat(run.predictions(uuids, sigma, x.device)).float(), x)
        run.overhead += time.perf_counter() - start
        return out
    run.overhead += time.perf_counter() - start
    out = executor(*args, **kwargs)
    start = time.perf_counter()
    a, b = _affine(ms, t, x)
    if sigma > 0 and bool((b.abs() > 1e-12).all()):
        run.computed(uuids, sigma, per_uuid((out - a) / b, len(uuids)), xs)
    else:
        run.pending = None
    run.overhead += time.perf_counter() - start
    return out


# ---- published families: DIFFUSION_MODEL and the first-block patch ------------------------

def diffusion_model_wrapper(executor, *args, **kwargs):
    x, timestep, to = comfy_compat.diffusion_model_args(args, kwargs)
    run: RunState | None = to.get(RUN_KEY)
    if run is None:
        return executor(*args, **kwargs)
    start = time.perf_counter()
    uuids = _uuids(to, x.shape[0])
    sigma = _sigma(to, timestep)
    xs = per_uuid(x, len(uuids))
    profile = run.profile
    skip = False
    if run.decision is not None:
        skip = run.decide(uuids, sigma, None, xs)
    elif profile.source == TIMESTEP_EMBEDDING:
        emb = comfy_compat.timestep_embedding(profile.architecture, executor.class_obj, x, timestep)
        skip = run.decide(uuids, sigma, per_uuid(emb, len(uuids)), xs)
    if skip:
        out = torch.cat(run.predictions(uuids, sigma, x.device)).to(x.dtype)
        run.overhead += time.perf_counter() - start
        return out
    run.overhead += time.perf_counter() - start
    if profile.source == BLOCK0 and run.decision is None:
        run.armed = (executor.class_obj, uuids, sigma, xs)
        try:
            out = executor(*args, **kwargs)
        except SkipBlocks:
            return torch.cat(run.predictions(uuids, sigma, x.device)).to(x.dtype)
        finally:
            armed, run.armed = getattr(run, "armed", None), None
        if armed is not None:
            run.computed_without_indicator()
            return out
    else:
        out = executor(*args, **kwargs)
    start = time.perf_counter()
    run.computed(uuids, sigma, per_uuid(out, len(uuids)), xs)
    run.overhead += time.perf_counter() - start
    return out


def _block0_patch(previous):
    """The ("double_block", 0) replace patch; `previous` is a patch that was there before."""

    def patch(args: dict, extra: dict):
        to = args.get("transformer_options") or {}
        run: RunState | None = to.get(RUN_KEY)
        armed = getattr(run, "armed", None) if run is not None else None
        if armed is not None:
            start = time.perf_counter()
            run.armed = None
            dm, uuids, sigma, xs = armed
            ind = comfy_compat.first_block_modulated_input(run.profile.architecture, dm, args)
            skip = run.decide(uuids, sigma, per_uuid(ind, len(uuids)), xs)
            run.overhead += time.perf_counter() - start
            if skip:
                raise SkipBlocks()
        if previous is not None:
            return previous(args, extra)
        return extra["original_block"](args)

    patch.fewstep_teacache = True
    patch.previous = previous
    return patch
