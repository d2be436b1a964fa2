"""The pack's HTTP route: GET /fewstep/lora_info (also /api/fewstep/lora_info).

    ?lora_name=<name from the loras list>&preset=auto&steps=-1
    200 {"badge", "family", "steps", "cfg", "sampler_name", "scheduler", "recognised_by", "info", ...}
    400 {"error"}  lora_name is a path (../, absolute, drive) or not in the loras folders
    422 {"error"}  the file is unusable (pickle, truncated, corrupt) or preset/steps cannot work

Used by web/js/preset_badge.js. Only names from ComfyUI's loras folders resolve, the file's
header is read (tensors never are), and hashing runs in a worker thread, once per file.
"""

import asyncio
import logging

from aiohttp import web

from ..fewstep import comfy_compat
from ..fewstep.lora.files import LoraFileError
from ..fewstep.lora.library import LoraNameError
from ..fewstep.lora.load import describe_lora
from ..fewstep.lora.settings import AUTO, DEFAULT_STEPS, LoraSettingsError
from ..fewstep.presets.registry import PresetError

ROUTE = "/fewstep/lora_info"


async def lora_info(request):
    query = request.rel_url.query
    name = query.get("lora_name", "")
    try:
        steps = int(query.get("steps", DEFAULT_STEPS))
    except ValueError:
        return web.json_response({"error": f"steps must be an integer, got {query.get('steps')!r}"}, status=400)
    try:
        result = await asyncio.to_thread(describe_lora, name, query.get("preset", AUTO), steps)
    except LoraNameError as e:
        return web.json_response({"error": str(e)}, status=400)
    except (LoraFileError, LoraSettingsError, PresetError) as e:
        return web.json_response({"error": str(e)}, status=422)
    return web.json_response(result)


def register_routes() -> bool:
    """Add the route to ComfyUI's server once; False when there is no server (in-process use)."""
    added = comfy_compat.add_get_route(ROUTE, lora_info)
    if added:
        logging.debug("[FewStep] route GET %s ready", ROUTE)
    return added
