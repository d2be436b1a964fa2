"""FewStepTokenMerge: fewer attention tokens at a UNet's high-resolution levels (ToDo key/value
downsampling or ToMe token merging), or in a Flux DiT's blocks (ToDo). The maths lives in
fewstep/tome/."""

from comfy_api.latest import io

from ..fewstep.tome.hooks import apply_token_merge
from ..fewstep.tome.settings import MAX_SEED, METHODS, DepthError, Settings, check


class FewStepTokenMerge(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="FewStepTokenMerge",
            display_name="FewStep Token Merge",
            category="FewStep/speed",
            description="Cuts the tokens attention works on in a UNet's high-resolution levels: ToDo downsamples "
            "self-attention keys/values, ToMe merges similar tokens through whole transformer blocks. Pays at large "
            "images (attention grows with the square of the token count), little at 512 px. SD1.5, SD2 and SDXL "
            "UNets; Flux (FLUX.1, Kontext, FLUX.2) with todo only, on the image tokens' keys/values. Other models "
            "pass through unchanged with a warning in the log.",
            inputs=[
                io.Model.Input(
                    "model", tooltip="An SD1.5, SD2 or SDXL UNet, or a Flux DiT (FLUX.1, Kontext, FLUX.2: method "
                    "todo only); it is cloned, the input stays unchanged. Other DiTs (SD3, Wan, Chroma, ...) and tome "
                    "on Flux have no route: the model passes through unchanged and the log says so."),
                io.Combo.Input(
                    "method", options=list(METHODS), default="todo",
                    tooltip="todo: downsample self-attention keys/values (all queries kept, no unmerge; cheap, "
                    "the better choice under efficient attention; on Flux only the image tokens' keys/values, text "
                    "kept whole). tome (UNets only): merge similar tokens before each selected transformer block and "
                    "unmerge after (also saves cross-attention and feed-forward work)."),
                io.Float.Input(
                    "ratio", default=0.5, min=0.0, max=0.99, step=0.05,
                    tooltip="ToMe only: share of a level's tokens merged away (at most 0.75: one token of each 2x2 "
                    "cell is always kept). 0 = off, identical to the unpatched model. 0.3-0.5 typical."),
                io.Float.Input(
                    "downsample", default=2.0, min=1.0, max=8.0, step=0.5,
                    tooltip="ToDo only: keys/values are downsampled by this factor per side (2 = a quarter of the "
                    "tokens; on Flux, of the image tokens). 1 = off, identical to the unpatched model. 2-3 typical."),
                io.Int.Input(
                    "max_depth", default=1, min=1, max=8,
                    tooltip="How many UNet levels with attention, from the highest resolution down (1 = the top one "
                    "only: 64x64 tokens on SD1.5 at 512 px, on SDXL at 1024 px, whose top level has no attention). "
                    "On Flux, whose blocks all see the same tokens, the block groups in the order they run: 1 = the "
                    "double-stream blocks (19 on FLUX.1), 2 = double- and single-stream blocks (all 57). "
                    "More than the model has is an error when the run starts."),
                io.Float.Input(
                    "start_percent", default=0.0, min=0.0, max=1.0, step=0.01,
                    tooltip="Merging starts at this point of the sampling (0 = from the first step)."),
                io.Float.Input(
                    "end_percent", default=1.0, min=0.0, max=1.0, step=0.01,
                    tooltip="Merging stops at this point of the sampling (1 = to the end). Stopping at 0.6-0.8 keeps "
                    "fine detail in the last steps. Must be larger than start_percent."),
                io.Int.Input(
                    "seed", default=0, min=0, max=MAX_SEED, control_after_generate=False,
                    tooltip="ToMe only: seeds which token of each 2x2 cell is kept (per level and step). The same "
                    "seed gives the same image, whether or not ComfyUI batches cond and uncond together."),
            ],
            outputs=[io.Model.Output(tooltip="A clone of the model with token merging (or the input model unchanged "
                                             "when this node has no route for it and the method).")],
        )

    @classmethod
    def validate_inputs(cls, method=None, ratio=None, downsample=None, max_depth=None, start_percent=None,
                        end_percent=None, seed=None):
        # Declaring these makes ComfyUI skip its own min/max checks for them: check() does all.
        return check(method, ratio, downsample, max_depth, start_percent, end_percent, seed) or True

    @classmethod
    def execute(cls, model, method, ratio, downsample, max_depth, start_percent, end_percent, seed) -> io.NodeOutput:
        problem = check(method, ratio, downsample, max_depth, start_percent, end_percent, seed)
        if problem:
            raise ValueError(f"FewStep Token Merge: {problem}")
        settings = Settings(method, float(ratio), float(downsample), int(max_depth), float(start_percent),
                            float(end_percent), int(seed))
        try:
            return io.NodeOutput(apply_token_merge(model, settings))
        except DepthError as e:
            raise ValueError(f"FewStep Token Merge: {e}") from e
