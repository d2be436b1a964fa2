"""FewStepCompare: how close a fast result is to the slow one, in numbers."""

from comfy_api.latest import io, ui

from ..fewstep.metrics import difference


class FewStepCompare(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FewStepCompare",
            display_name="FewStep Compare",
            category="FewStep/analysis",
            description="PSNR and absolute error of a fast result against a reference "
            "(e.g. cached vs uncached, 4 steps vs 30). Shows the numbers on the node.",
            inputs=[
                io.Image.Input("reference", tooltip="The slow or trusted result (e.g. the uncached, many-step image)."),
                io.Image.Input("candidate", tooltip="The fast result to judge; must have the reference's size and batch."),
            ],
            outputs=[
                io.Float.Output("psnr", tooltip="PSNR in dB over pixel values in [0, 1]; inf when identical."),
                io.Float.Output("max_abs_error", tooltip="Largest absolute pixel difference, in [0, 1]."),
                io.String.Output("report", tooltip="Both numbers and the mean absolute error as text."),
            ],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, reference, candidate) -> io.NodeOutput:
        diff = difference(reference, candidate, value_range=1.0)
        report = diff.summary()
        return io.NodeOutput(diff.psnr_db, diff.max_abs, report, ui=ui.PreviewText(report))
