"""The distillation engine (Direct Distill) and its headless / torchrun entry points."""
