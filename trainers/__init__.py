"""The distillation engine (Direct Distill), usable without a node or a server.

    config.py       DistillConfig: every setting, checked before long work (pure)
    plan.py         samples, per-sample seeds, held-out split, batch order (pure)
    schedule.py     learning-rate schedules (pure)
    conds.py        batching of conditioning (pure)
    targets.py      which layers get adapters (pure)
    files.py        numbered names, atomic writes, the resume file (pure)
    lora_format.py  kohya keys and FewStep metadata of the saved LoRA (pure)
    graph.py        upstream LoRAs read from the prompt graph (pure)
    report.py       loss curve and comparison pictures (pure)
    teacher.py      teacher samples through KSampler, cached in <user>/fewstep/teacher_cache (hook)
    adapters.py     trainable adapters as weight wrappers on a clone (hook)
    student.py      the differentiable euler/lcm student sampler (hook)
    collective.py   torch.distributed glue: gradient all-reduce, barriers, batch shards (pure)
    distill.py      the training loop: train(config, model, clip, folder, callbacks) (hook)
    cli.py          the headless entry point (tools/distill_cli.py), torchrun / accelerate (hook)

HOOK_MODULES lists the modules that import ComfyUI.
"""

HOOK_MODULES = ("teacher", "adapters", "student", "distill", "cli")
