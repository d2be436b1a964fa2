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


def ab_test(ckpt_name: str, prompt: str = "seven", negative: str = "", seed: int = 0, size: int = 64,
            batch: int = 1, a: tuple[int, float] = (6, 5.0), b: tuple[int, float] = (3, 5.0), sampler: str = "euler",
            scheduler: str = "normal", repeats: int = 2, vae: bool = True,
            save_prefix: str | None = "ab") -> tuple[Graph, dict]:
    """One checkpoint as both branches of FewStepABTest at (steps, cfg) `a` and `b`; with
    `save_prefix`, saves image A, the comparison picture and B's latent decoded by core VAEDecode."""
    g = Graph()
    ckpt = g.add("CheckpointLoaderSimple", ckpt_name=ckpt_name)
    pos = g.add("CLIPTextEncode", text=prompt, clip=g.out(ckpt, 1))
    neg = g.add("CLIPTextEncode", text=negative, clip=g.out(ckpt, 1))
    latent = g.add("EmptyLatentImage", width=size, height=size, batch_size=batch)
    inputs = dict(model_a=g.out(ckpt), model_b=g.out(ckpt), positive=g.out(pos), negative=g.out(neg),
                  latent=g.out(latent), seed=seed, steps_a=a[0], cfg_a=a[1], sampler_a=sampler,
                  scheduler_a=scheduler, steps_b=b[0], cfg_b=b[1], sampler_b=sampler, scheduler_b=scheduler,
                  repeats=repeats)
    if vae:
        inputs["vae"] = g.out(ckpt, 2)
    ids = {"ckpt": ckpt, "latent": latent, "ab": g.add("FewStepABTest", **inputs)}
    if save_prefix:
        ids["save_a"] = g.add("SaveImage", images=g.out(ids["ab"], 2), filename_prefix=f"{save_prefix}_a")
        ids["save_cmp"] = g.add("SaveImage", images=g.out(ids["ab"], 4), filename_prefix=f"{save_prefix}_cmp")
        ids["decode_b"] = g.add("VAEDecode", samples=g.out(ids["ab"], 1), vae=g.out(ckpt, 2))
        ids["save_b"] = g.add("SaveImage", images=g.out(ids["decode_b"]), filename_prefix=f"{save_prefix}_b")
    return g, ids
