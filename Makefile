# FewStep developer commands. Every target is safe to rerun.
#   make setup   venv + torch + ComfyUI runtime (or your COMFYUI_PATH) + dependencies
#   make test    the whole suite (runs setup first): the unit layer, then the others
#   make test-unit  the unit layer alone, in a venv with torch but no ComfyUI (setup-unit)
#   make demo    the main job on the built-in default model, through a real server
#   make serve   ComfyUI with this pack on http://127.0.0.1:$(PORT)
#   make screenshots  the browser tests that draw the README's node pictures, writing docs/screenshots/
#   make bench   benchmarks; BENCH=full adds the large sizes (report in bench/results/full/),
#                ROWS=caching,lora runs only those row families (the others keep their last results)
#   make compat  every tier against each ComfyUI tree in tools/compat_trees.toml -> README table

SHELL := /bin/bash
PYTHON ?= python3.11
VENV_PY := .venv/bin/python
# -P: never put the checkout on sys.path (its nodes/ would hide ComfyUI's nodes module).
RUN := $(VENV_PY) -P
PORT ?= 8188
PYTEST_ARGS ?=
# The ComfyUI tiers on two worker processes, whole test files per worker (module fixtures
# stay shared): 1.5x faster on 2 cores. More cores: PYTEST_WORKERS="-n 4 --dist loadfile";
# one process: PYTEST_WORKERS=
PYTEST_WORKERS ?= -n 2 --dist loadfile

.PHONY: setup setup-unit models test test-unit test-comfy test-e2e test-browser screenshots demo serve bench browser compat clean

setup:
	@$(PYTHON) tools/setup_runtime.py

# torch, numpy, safetensors, pytest (+ pytest-timeout, matplotlib); no ComfyUI.
setup-unit:
	@$(PYTHON) tools/setup_runtime.py --unit

# The built-in default model (the trained digits teacher): ~10 min on 2 idle cores the
# first time, then cached under .runtime/cache.
models: setup
	@$(RUN) -m comfyui_fewstep.tools.teacher

browser:
	@$(RUN) -m comfyui_fewstep.tools.browser

# The unit layer runs in its own process first: its guard against importing ComfyUI can
# only see imports in a process where ComfyUI is not loaded yet. Exit code 5 (no test
# selected, e.g. by -k) is fine for one layer.
test: setup browser models
	@$(RUN) -m pytest tests/unit $(PYTEST_ARGS); s=$$?; [ $$s -eq 0 ] || [ $$s -eq 5 ] || exit $$s
	$(RUN) -m pytest tests/comfy tests/e2e tests/browser $(PYTEST_WORKERS) $(PYTEST_ARGS)

test-unit: setup-unit
	$(RUN) -m pytest tests/unit $(PYTEST_ARGS)

test-comfy: setup models
	$(RUN) -m pytest tests/comfy $(PYTEST_WORKERS) $(PYTEST_ARGS)

test-e2e: setup models
	$(RUN) -m pytest tests/e2e $(PYTEST_WORKERS) $(PYTEST_ARGS)

test-browser: setup browser models
	$(RUN) -m pytest tests/browser $(PYTEST_WORKERS) $(PYTEST_ARGS)

# The browser tests marked `screenshot` also write their node crops to docs/screenshots/
# (commit them: tests/unit/test_screenshots.py fails when one is older than its web/js file).
screenshots: setup browser models
	FEWSTEP_UPDATE_SCREENSHOTS=1 $(RUN) -m pytest tests/browser -m screenshot $(PYTEST_ARGS)

demo: setup models
	$(RUN) -m comfyui_fewstep.tools.demo $(if $(CKPT),--ckpt $(CKPT),)

serve: setup
	$(RUN) -m comfyui_fewstep.tools.serve --port $(PORT)

bench: setup models
	$(RUN) -m comfyui_fewstep.bench.run $(if $(BENCH),--preset $(BENCH),) $(if $(ROWS),--rows $(ROWS),)

# COMPAT_ARGS e.g. --tree 0.9.2 --tier e2e; trees outside the repo need FEWSTEP_COMPAT_DIR.
compat: setup browser models
	@$(PYTHON) tools/compat.py $(COMPAT_ARGS)

clean:
	rm -rf .runtime/serve/output tests/artifacts
