"""FewStepPreset: the settings a distilled checkpoint or few-step LoRA was published with,
as outputs that link straight into KSampler (or SamplerCustom / FluxGuidance).

`steps`: -1 takes the preset's default count; any other value must be a count the preset
supports, so 0 (or e.g. 4 on a 2/8-step preset) is refused with an error naming the preset
and its allowed counts.
"""

import comfy.samplers
from comfy_api.latest import io

from ..fewstep import comfy_compat
from ..fewstep.presets.apply import apply_preset
from ..fewstep.presets.registry import PresetError, get_preset, plan, preset_ids

DEFAULT_STEPS = -1


class FewStepPreset(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        ids = preset_ids()
        return io.Schema(
            node_id="FewStepPreset",
            display_name="FewStep Preset",
            category="FewStep/presets",
            description="Published settings for a few-step model (SDXL-Turbo, SDXL-Lightning, DMD2, "
            "FLUX.1-schnell, LCM/Hyper-SD/TCD/PCM/Lightning LoRAs, ...): the patched MODEL plus steps, cfg, "
            "sampler and scheduler for KSampler, and sigmas/guidance for what KSampler cannot express.",
            inputs=[
                io.Model.Input("model", tooltip="The distilled model, or a model with its few-step LoRA already applied."),
                io.Combo.Input(
                    "preset", options=ids, default=ids[0],
                    tooltip="Which published setting to use; `info` shows its numbers and source.",
                ),
                io.Int.Input(
                    "steps", default=DEFAULT_STEPS, min=-1, max=100,
                    tooltip="-1 = the preset's default step count. Otherwise a count the preset supports "
                    "(for LoRAs with a step count in the file name, that count); 0 or an unsupported count is an error.",
                ),
            ],
            outputs=[
                io.Model.Output(display_name="MODEL", tooltip="A clone of the input with the preset's model patches (e.g. LCM sampling, flow shift); the input is unchanged."),
                io.Int.Output(display_name="steps", tooltip="Step count for KSampler."),
                io.Float.Output(display_name="cfg", tooltip="CFG for KSampler (1 = no negative pass; FLUX guidance is the separate `guidance` output)."),
                comfy_compat.combo_output(display_name="sampler_name", options=comfy.samplers.KSampler.SAMPLERS, tooltip="Sampler for KSampler's sampler_name."),
                comfy_compat.combo_output(display_name="scheduler", options=comfy.samplers.KSampler.SCHEDULERS, tooltip="Scheduler for KSampler's scheduler."),
                io.String.Output(display_name="info", tooltip="What was chosen, the preset's source, and how to wire what KSampler cannot express."),
                io.Sigmas.Output(display_name="sigmas", tooltip="The preset's exact schedule for SamplerCustom (custom timesteps such as DMD2's t=399 included)."),
                io.Float.Output(display_name="guidance", tooltip="FLUX guidance for FluxGuidance (e.g. 3.5); 0 when the preset uses none."),
            ],
        )

    @classmethod
    def validate_inputs(cls, preset=None, steps=None):
        # Declaring these here makes ComfyUI skip its own list check for them: do it all.
        try:
            if preset is not None:
                p = get_preset(preset)
                if steps is not None and steps != DEFAULT_STEPS:
                    plan(p, steps)
        except PresetError as e:
            return str(e)
        return True

    @classmethod
    def execute(cls, model, preset, steps=DEFAULT_STEPS) -> io.NodeOutput:
        applied = apply_preset(model, preset, None if steps == DEFAULT_STEPS else steps)
        p = applied.plan
        return io.NodeOutput(
            applied.model, p.steps, p.cfg, p.sampler_name, p.scheduler, applied.info, applied.sigmas,
            0.0 if p.guidance is None else p.guidance,
        )
