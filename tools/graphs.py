"""API-format graphs (what POST /prompt takes), built in code for tests, demo and bench."""

from __future__ import annotations

import itertools


class Graph:
    """A ComfyUI API-format prompt. `add` returns the node id; `out(id, i)` links output i."""

    def __init__(self):
        self.nodes: dict[str, dict] = {}
        self._ids = itertools.count(1)

    def add(self, class_type: str, **inputs) -> str:
        node_id = str(next(self._ids))
        self.nodes[node_id] = {"class_type": class_type, "inputs": inputs}
        return node_id

    @staticmethod
    def out(node_id: str, index: int = 0) -> list:
        return [node_id, index]

    def to_api(self) -> dict:
        return self.nodes


def txt2img(ckpt_name: str, prompt: str = "a photo", negative: str = "", seed: int = 0, steps: int = 20,
            cfg: float = 5.0, sampler: str = "euler", scheduler: str = "normal", width: int = 64,
            height: int = 64, batch: int = 1, save_prefix: str | None = "fewstep") -> tuple[Graph, dict]:
    """The stock checkpoint -> KSampler -> VAEDecode graph; returns the graph and its node ids."""
    g = Graph()
    ckpt = g.add("CheckpointLoaderSimple", ckpt_name=ckpt_name)
    pos = g.add("CLIPTextEncode", text=prompt, clip=g.out(ckpt, 1))
    neg = g.add("CLIPTextEncode", text=negative, clip=g.out(ckpt, 1))
    latent = g.add("EmptyLatentImage", width=width, height=height, batch_size=batch)
    sampler_id = g.add("KSampler", model=g.out(ckpt, 0), seed=seed, steps=steps, cfg=cfg, sampler_name=sampler,
                       scheduler=scheduler, positive=g.out(pos), negative=g.out(neg), latent_image=g.out(latent),
                       denoise=1.0)
    decode = g.add("VAEDecode", samples=g.out(sampler_id), vae=g.out(ckpt, 2))
    ids = {"ckpt": ckpt, "positive": pos, "negative": neg, "latent": latent, "sampler": sampler_id, "decode": decode}
    if save_prefix:
        ids["save"] = g.add("SaveImage", images=g.out(decode), filename_prefix=save_prefix)
    return g, ids
