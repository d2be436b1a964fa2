"""FewStepTCDSampler: TCD for SamplerCustom. KSampler's "tcd" is the same sampler,
registered when ComfyUI asks the pack for its nodes (nodes/__init__.py)."""

import comfy.samplers
from comfy_api.latest import io

from ..fewstep.presets.registry import DEFAULT_TCD_ETA
from ..fewstep.sampling.hooks import sample_tcd


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
