"""FewStepTeaCache: skip denoising calls whose output is predictable (TeaCache, with
published coefficients where they exist, a model-agnostic indicator elsewhere, and an
optional per-model calibration). The algorithm lives in fewstep/caching/."""

import logging
import math

from comfy_api.latest import io

from ..fewstep import comfy_compat
from ..fewstep.caching.profiles import AUTO, FAMILY_CHOICES, PROFILES, FamilyError
from ..fewstep.caching.state import CACHE_DEVICES, CALIBRATION_MODES, Settings, check
from ..fewstep.caching.hooks import apply_teacache

EVENT = "fewstep.cache_stats"
_RECOMMENDED = ", ".join(f"{p.name} {p.recommended_threshold:g}" for p in PROFILES.values() if p.recommended_threshold)


def _finite(value):
    """JSON for the browser: no NaN/Infinity (JSON.parse rejects them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def send_stats(stats: dict) -> None:
    """Send one run's numbers to the frontend (web/js/cache_stats.js); no-op without a server."""
    comfy_compat.send_event(EVENT, _finite(stats))


class FewStepTeaCache(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FewStepTeaCache",
            display_name="FewStep TeaCache",
            category="FewStep/speed",
            description="Skips model calls whose output barely changes and reuses the cached prediction "
            "(TeaCache). Works on UNets and DiTs; reports skipped calls and the speedup on the node after each run.",
            inputs=[
                io.Model.Input("model", tooltip="The model to speed up; it is cloned, the input stays unchanged."),
                io.Float.Input(
                    "threshold", default=0.1, min=0.0, max=10.0, step=0.01,
                    tooltip="Budget of accumulated estimated relative output change before a call must be computed. "
                    "Higher = more calls skipped, more error. 0 = never skip (identical to the unpatched model). "
                    f"Published TeaCache values: {_RECOMMENDED}."),
                io.Float.Input(
                    "start_percent", default=0.0, min=0.0, max=1.0, step=0.01,
                    tooltip="Skipping may start at this point of the sampling (0 = from the start). "
                    "The first step is always computed."),
                io.Float.Input(
                    "end_percent", default=1.0, min=0.0, max=1.0, step=0.01,
                    tooltip="Skipping stops at this point of the sampling (1 = until the end). "
                    "The last step is always computed. Must be larger than start_percent."),
                io.Int.Input(
                    "max_consecutive_skips", default=0, min=0, max=100,
                    tooltip="At most this many skipped steps in a row (0 = no limit)."),
                io.Combo.Input(
                    "model_family", options=FAMILY_CHOICES, default=AUTO,
                    tooltip="auto: TeaCache's published coefficients for Flux, HunyuanVideo, LTXV, Lumina 2 and "
                    "Wan 2.1, the model-agnostic indicator for everything else. Pick a name to force its coefficients "
                    "(e.g. flux-kontext, a Wan variant); 'generic' forces the model-agnostic indicator."),
                io.Combo.Input(
                    "cache_device", options=CACHE_DEVICES, default="auto",
                    tooltip="auto: keep cached outputs where the model runs; cpu: keep them in RAM "
                    "(saves VRAM on large video latents, costs a copy per step)."),
                io.Combo.Input(
                    "calibration", options=list(CALIBRATION_MODES), default=CALIBRATION_MODES[0],
                    tooltip="use stored: use this model's calibration from the user folder when there is one. "
                    "calibrate on next run: the next sampling run computes every step and stores a fit for this model "
                    "(user/fewstep/teacache/). off: published coefficients / online estimate only."),
            ],
            outputs=[io.Model.Output(tooltip="A clone of the model with TeaCache; the input model is unchanged.")],
            hidden=[io.Hidden.unique_id],
            # The output carries this node's id (the stats name it). ComfyUI 0.3.75 keys a node's
            # cached output by its id only for V1 hidden UNIQUE_ID inputs, not V3's, so without
            # this a TeaCache node elsewhere in the graph (e.g. moved into a subgraph) with the
            # same inputs would reuse this output and report its runs under this node's id.
            not_idempotent=True,
        )

    @classmethod
    def validate_inputs(cls, threshold=None, start_percent=None, end_percent=None, max_consecutive_skips=None,
                        model_family=None, cache_device=None, calibration=None):
        # Declaring these makes ComfyUI skip its own min/max/list checks for them: check() does all.
        problem = check(threshold, start_percent, end_percent, max_consecutive_skips, model_family,
                        cache_device, calibration)
        return problem or True

    @classmethod
    def execute(cls, model, threshold, start_percent, end_percent, max_consecutive_skips, model_family,
                cache_device, calibration) -> io.NodeOutput:
        problem = check(threshold, start_percent, end_percent, max_consecutive_skips, model_family,
                        cache_device, calibration)
        if problem:
            raise ValueError(f"FewStep TeaCache: {problem}")
        settings = Settings(float(threshold), float(start_percent), float(end_percent), int(max_consecutive_skips),
                            cache_device)
        node_id = getattr(cls.hidden, "unique_id", None)  # None when called outside a prompt (bench, tests)
        try:
            patched = apply_teacache(model, settings, model_family, calibration, node_id=node_id, reporter=send_stats)
        except FamilyError as e:
            raise ValueError(f"FewStep TeaCache: {e}") from e
        logging.debug("FewStep TeaCache on node %s: %s", node_id, settings)
        return io.NodeOutput(patched)
