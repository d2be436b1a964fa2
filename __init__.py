"""FewStep: fast diffusion sampling for ComfyUI.

ComfyUI loads this folder under a module name derived from its path, so everything
inside uses relative imports. Node classes are imported only when ComfyUI asks for
them, so tools and tests can import the plain modules without a running ComfyUI.
"""

WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    from .nodes import FewStepExtension

    return FewStepExtension()


__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
