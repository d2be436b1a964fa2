"""FewStepCompare and FewStepABTest: how close a fast result is to the slow one, and how
much faster it is. The measuring lives in fewstep/analysis/ and fewstep/metrics.py."""

import comfy.samplers
from comfy_api.latest import io, ui

from ..fewstep.analysis.ab_test import run_ab_test
from ..fewstep.analysis.pictures import heat_map
from ..fewstep.analysis.report import BranchSettings
from ..fewstep.metrics import difference, ssim


class FewStepCompare(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FewStepCompare",
            display_name="FewStep Compare",
            category="FewStep/analysis",
            description="PSNR, absolute error and SSIM of a fast result against a reference "
            "(e.g. cached vs uncached, 4 steps vs 30), and a heat map of where they differ. "
            "Shows the numbers on the node.",
            inputs=[
                io.Image.Input("reference", tooltip="The slow or trusted result (e.g. the uncached, many-step image)."),
                io.Image.Input("candidate", tooltip="The fast result to judge; must have the reference's size and batch "
                               "(at least 11x11 px, SSIM's window)."),
            ],
            outputs=[  # append only: saved workflows link outputs by position
                io.Float.Output("psnr", tooltip="PSNR in dB over pixel values in [0, 1]; inf when identical."),
                io.Float.Output("max_abs_error", tooltip="Largest absolute pixel difference, in [0, 1]."),
                io.String.Output("report", tooltip="The numbers as text."),
                io.Float.Output("ssim", tooltip="Mean SSIM (11-px Gaussian window, sigma 1.5, valid region, "
                                "mean over channels and batch); 1 when identical."),
                io.Image.Output("difference", tooltip="Heat map of |reference - candidate| (mean over channels): "
                                "black = equal, white = the largest difference in the batch (its value is in the report)."),
            ],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, reference, candidate) -> io.NodeOutput:
        diff = difference(reference, candidate, value_range=1.0)  # first: names a shape mismatch
        score = ssim(reference, candidate)
        heat, scale = heat_map(reference, candidate)
        report = f"{diff.summary()}, SSIM {score:.4f}; heat map white = mean |diff| {scale:.4g}"
        return io.NodeOutput(diff.psnr_db, diff.max_abs, report, score, heat, ui=ui.PreviewText(report))


def _branch_inputs(name: str, steps: int) -> list:
    which = "A (the reference, e.g. the plain model)" if name == "a" else "B (the candidate, e.g. the patched model)"
    return [
        io.Int.Input(f"steps_{name}", default=steps, min=1, max=10000, tooltip=f"Sampling steps of branch {which}."),
        io.Float.Input(f"cfg_{name}", default=5.0, min=0.0, max=100.0, step=0.1, round=0.01,
                       tooltip=f"Classifier-free guidance of branch {which}; 1 skips the uncond pass (half the model calls)."),
        io.Combo.Input(f"sampler_{name}", options=comfy.samplers.KSampler.SAMPLERS, default="euler",
                       tooltip=f"Sampler of branch {which}, as in KSampler."),
        io.Combo.Input(f"scheduler_{name}", options=comfy.samplers.KSampler.SCHEDULERS, default="normal",
                       tooltip=f"Scheduler of branch {which}, as in KSampler."),
    ]


class FewStepABTest(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FewStepABTest",
            display_name="FewStep A/B Test",
            category="FewStep/analysis",
            description="Samples two models (or one model at two settings) from identical noise and reports how much "
            "faster B is than A and what it costs: median sampling time, model calls, latent and pixel PSNR, SSIM, "
            "and a picture A | B | difference heat map. Only the sampler loop is timed (after one untimed warm-up "
            "per branch); loading and patching are reported apart.",
            inputs=[
                io.Model.Input("model_a", tooltip="Branch A, the reference: e.g. the plain model or the base model. "
                               "Cloned; the input is untouched."),
                io.Model.Input("model_b", tooltip="Branch B, the candidate: e.g. the same model through TeaCache or "
                               "a few-step LoRA. Must use A's latent format. Cloned; the input is untouched."),
                io.Conditioning.Input("positive", tooltip="Positive conditioning, shared by both branches."),
                io.Conditioning.Input("negative", tooltip="Negative conditioning, shared by both branches "
                                      "(unused by a branch at cfg 1)."),
                io.Latent.Input("latent", tooltip="The starting latent (e.g. Empty Latent Image), shared by both branches."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Noise seed; both branches get the same noise from it."),
                *_branch_inputs("a", 30),
                *_branch_inputs("b", 8),
                io.Int.Input("repeats", default=3, min=1, max=100,
                             tooltip="Timed runs per branch after the warm-up, in alternating order; times are medians. "
                             "More repeats, steadier numbers on a busy machine."),
                io.Vae.Input("vae", optional=True,
                             tooltip="Decodes both latents for pixel PSNR, SSIM and the picture. Without it the "
                             "picture shows the latents (channel mean) and only latent PSNR is reported."),
            ],
            outputs=[  # append only: saved workflows link outputs by position
                io.Latent.Output("latent_a", tooltip="Branch A's sampled latent."),
                io.Latent.Output("latent_b", tooltip="Branch B's sampled latent."),
                io.Image.Output("image_a", tooltip="Branch A decoded (with a VAE), else a grey preview of its latent."),
                io.Image.Output("image_b", tooltip="Branch B decoded (with a VAE), else a grey preview of its latent."),
                io.Image.Output("comparison", tooltip="A | B | heat map of |A - B| (white = the largest difference, "
                                "named in the report)."),
                io.String.Output("report", tooltip="Times, model calls, speedup, PSNR and SSIM as text."),
            ],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, model_a, model_b, positive, negative, latent, seed, steps_a, cfg_a, sampler_a, scheduler_a,
                steps_b, cfg_b, sampler_b, scheduler_b, repeats, vae=None) -> io.NodeOutput:
        result = run_ab_test(model_a, model_b, positive, negative, latent, seed,
                             BranchSettings(steps_a, cfg_a, sampler_a, scheduler_a),
                             BranchSettings(steps_b, cfg_b, sampler_b, scheduler_b), repeats, vae)
        report = result.report.text()
        shown = {**ui.PreviewText(report).as_dict(), **ui.PreviewImage(result.comparison).as_dict()}
        return io.NodeOutput(result.latent_a, result.latent_b, result.image_a, result.image_b, result.comparison,
                             report, ui=shown)
