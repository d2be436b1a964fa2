"""FewStepLoraLoader: core LoraLoader plus the settings the LoRA was published with.

The work is in fewstep/lora/load.py. `steps`, as on FewStepPreset: -1 keeps the count the
file was made for (or the preset's default).
`fingerprint_inputs` makes ComfyUI rerun the node when the file (or the user hash list)
changes on disk under the same name; it only stats files, it never hashes.
"""

import comfy.samplers
import folder_paths
from comfy_api.latest import io

from ..fewstep import comfy_compat
from ..fewstep.lora.library import LoraNameError, library, resolve_lora
from ..fewstep.lora.load import load
from ..fewstep.lora.settings import AUTO, DEFAULT_STEPS, LoraSettingsError, check_steps_value
from ..fewstep.presets.registry import PresetError, get_preset, plan, preset_ids


class FewStepLoraLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        loras = folder_paths.get_filename_list("loras")
        return io.Schema(
            node_id="FewStepLoraLoader",
            display_name="FewStep LoRA Loader",
            category="FewStep/loaders",
            description="Load a few-step LoRA (LCM, DMD2, Hyper-SD, SDXL-Lightning, TCD, PCM, Qwen-Image-Lightning, "
            "...) like core LoraLoader, recognise it (metadata, hash, name, structure), patch the model as its preset "
            "needs, and output the steps/cfg/sampler/scheduler it was made for. Refuses LoRAs for another architecture.",
            inputs=[
                io.Model.Input("model", tooltip="The diffusion model the LoRA is applied to."),
                io.Clip.Input("clip", optional=True, tooltip="The text encoder the LoRA's text-encoder part is applied to "
                              "(optional: most few-step LoRAs only touch the diffusion model)."),
                io.Combo.Input("lora_name", options=loras, tooltip="A LoRA file from ComfyUI's loras folders."),
                io.Float.Input("strength_model", default=1.0, min=-100.0, max=100.0, step=0.01,
                               tooltip="How strongly to modify the diffusion model (as core LoraLoader). `info` "
                               "notes the preset's published strength when it differs."),
                io.Float.Input("strength_clip", default=1.0, min=-100.0, max=100.0, step=0.01,
                               tooltip="How strongly to modify the text encoder (ignored without a CLIP)."),
                io.Combo.Input("preset", options=[AUTO, *preset_ids()], default=AUTO,
                               tooltip="'auto': the preset recognised from the file (metadata, hash, name). Or pick "
                               "one; `info` says what was recognised and why."),
                io.Int.Input("steps", default=DEFAULT_STEPS, min=-1, max=100,
                             tooltip="-1 = the count the LoRA was made for (from its name/metadata), else the "
                             "preset's default. Otherwise a count the preset supports; 0 is an error."),
            ],
            outputs=[
                io.Model.Output(display_name="MODEL", tooltip="A clone of the model with the LoRA and the preset's "
                                "model patches (e.g. LCM sampling, AuraFlow shift); the input is unchanged."),
                io.Clip.Output(display_name="CLIP", tooltip="The CLIP with the LoRA's text-encoder part (empty when "
                               "no CLIP is connected)."),
                io.Int.Output(display_name="steps", tooltip="Step count for KSampler."),
                io.Float.Output(display_name="cfg", tooltip="CFG for KSampler (1 = no negative pass; FLUX guidance "
                                "is the separate `guidance` output)."),
                comfy_compat.combo_output(display_name="sampler_name", options=comfy.samplers.KSampler.SAMPLERS,
                                          tooltip="Sampler for KSampler's sampler_name."),
                comfy_compat.combo_output(display_name="scheduler", options=comfy.samplers.KSampler.SCHEDULERS,
                                          tooltip="Scheduler for KSampler's scheduler."),
                io.String.Output(display_name="info", tooltip="What was recognised and from which evidence, how much "
                                 "of the LoRA fit the model, the preset's source, and how to wire what KSampler "
                                 "cannot express."),
                io.Sigmas.Output(display_name="sigmas", tooltip="The preset's exact schedule for SamplerCustom "
                                 "(custom timesteps such as DMD2's 999/749/499/249 included)."),
                io.Float.Output(display_name="guidance", tooltip="FLUX guidance for FluxGuidance (e.g. 3.5); 0 when "
                                "the preset uses none."),
            ],
        )

    @classmethod
    def validate_inputs(cls, lora_name=None, preset=None, steps=None):
        # Declaring these skips ComfyUI's own list/min checks for them: do all of it here.
        try:
            if lora_name is not None:
                resolve_lora(lora_name)
            name = lora_name or "the LoRA"
            if steps is not None and steps != DEFAULT_STEPS:
                check_steps_value(steps, name)
            if preset is not None and preset != AUTO:
                p = get_preset(preset)
                if steps is not None and steps != DEFAULT_STEPS:
                    try:
                        plan(p, steps)
                    except PresetError as e:
                        return f"{name}: {e}"
            if steps is not None and steps > 100:
                return f"{name}: steps {steps} is above the maximum of 100."
        except (LoraNameError, LoraSettingsError, PresetError) as e:
            return str(e)
        return True

    @classmethod
    def fingerprint_inputs(cls, lora_name=None, **kwargs):
        try:
            return library().fingerprint(resolve_lora(lora_name))
        except (LoraNameError, OSError):
            return lora_name  # validation or execution reports the problem

    @classmethod
    def execute(cls, model, lora_name, strength_model, strength_clip, preset=AUTO, steps=DEFAULT_STEPS,
                clip=None) -> io.NodeOutput:
        r = load(model, clip, lora_name, strength_model, strength_clip, preset, steps)
        return io.NodeOutput(r.model, r.clip, r.steps, r.cfg, r.sampler_name, r.scheduler, r.info, r.sigmas, r.guidance)
