"""FewStepTCDSampler, and the pack's one change to ComfyUI's shared state: the "tcd" name.

Importing this module (ComfyUI does when it loads the pack) registers sampler "tcd" in
KSampler's list, once (see fewstep/tcd.py). A workflow saved with "tcd" in a KSampler
needs FewStep installed; without it ComfyUI reports "Value not in list".
"""

import comfy.samplers
from comfy_api.latest import io

from ..fewstep.sampling.tcd import DEFAULT_TCD_ETA, TCD_NAME, register_tcd_sampler, sample_tcd

register_tcd_sampler()


class FewStepTCDSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FewStepTCDSampler",
            display_name="FewStep TCD Sampler",
            category="FewStep/sampling",
            description="Trajectory Consistency Distillation sampling for SamplerCustom, for TCD and "
            "Hyper-SD unified LoRAs. KSampler's 'tcd' is the same sampler with the preset's eta (else 0.3).",
            inputs=[
                io.Float.Input(
                    "eta", default=DEFAULT_TCD_ETA, min=0.0, max=1.0, step=0.01, round=False,
                    tooltip="Stochasticity per step (gamma in the TCD paper). 0: deterministic (same as "
                    "euler); 1: re-noise from the clean estimate (LCM-like). 0.3 suits 4 steps; raise it "
                    "with more steps.",
                ),
            ],
            outputs=[io.Sampler.Output(tooltip="The TCD sampler with this eta; connect to SamplerCustom's sampler.")],
        )

    @classmethod
    def execute(cls, eta) -> io.NodeOutput:
        return io.NodeOutput(comfy.samplers.KSAMPLER(sample_tcd, extra_options={"eta": float(eta)}))


__all__ = ["FewStepTCDSampler", "TCD_NAME"]
