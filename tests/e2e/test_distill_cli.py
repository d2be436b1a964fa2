"""FewStep Distill headless: the CLI script (as a user runs it from custom_nodes/) writes the
LoRA the node writes, runs data-parallel under torchrun, resumes with another number of
processes, and refuses a bad config before loading anything."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch


SETTINGS = """
[distill]
width = 32
height = 32
teacher_steps = 6
teacher_cfg = 4.0
student_steps = 2
samples_per_prompt = 2
batch_size = 4
rank = 2
alpha = 2.0
save_every = 0
student_sampler = "lcm"
lr_schedule = "constant"
"""


def write_config(folder: Path, checkpoint: Path, name: str, iterations: int, resume: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "prompts.txt").write_text("a red square\na blue circle\n")
    config = folder / f"{name}.toml"
    config.write_text(f'checkpoint = "{checkpoint}"\nprompts_file = "prompts.txt"\noutput = "loras"\n'
                      f'user_directory = "../user"\n{SETTINGS}iterations = {iterations}\nlora_name = "{name}"\n'
                      f'resume = "{resume}"\n')
    return config


def lora(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


@pytest.fixture(scope="module")
def work(tmp_path_factory, tiny_sd15_path):
    return tmp_path_factory.mktemp("distill_cli"), tiny_sd15_path


@pytest.fixture(scope="module")
def single(work, distill_cli):
    folder, checkpoint = work
    done = distill_cli.run(write_config(folder / "one", checkpoint, "solo", iterations=4))
    assert done.returncode == 0, done.stderr[-3000:]
    return folder / "one" / "loras" / "solo_00001.safetensors", done


def test_the_cli_writes_a_lora_core_loraloader_reads_and_prints_the_report(single):
    path, done = single
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    assert meta["fewstep.family"] == "FewStep Distill" and meta["fewstep.steps"] == "2"
    assert all(k.startswith("lora_unet_") for k in lora(path))
    assert "held-out" in done.stdout and path.with_suffix(".distill").exists()


def test_two_processes_under_torchrun_train_the_same_student(work, single, distill_cli):
    folder, checkpoint = work
    done = distill_cli.run(write_config(folder / "two", checkpoint, "duo", iterations=4), processes=2)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = lora(single[0]), lora(folder / "two" / "loras" / "duo_00001.safetensors")
    assert a.keys() == b.keys()
    # Same batches, noise and targets; only the order of the float sums differs (a rank's
    # half-batch mean, weighted, summed over ranks): a few ulps per step over 4 Adam steps.
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-3, atol=1e-5), k


def test_accelerate_launch_on_cpu_runs_the_same_single_process_student(work, single, distill_cli):
    """On a CPU-only machine `accelerate launch --cpu` starts one process (several need MPI):
    the script must start under its launcher and train what the plain run trains."""
    import shutil
    import subprocess
    import sys

    folder, checkpoint = work
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    assert accelerate, (f"no `accelerate` beside {sys.executable}: install the distributed extra "
                        "(pip install 'accelerate>=0.30'); make setup does")
    config = write_config(folder / "acc", checkpoint, "acc", iterations=4)
    cmd = [accelerate, "launch", "--cpu", "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", *distill_cli.command(config)[1:]]
    done = subprocess.run(cmd, env=distill_cli.env(), capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = lora(single[0]), lora(folder / "acc" / "loras" / "acc_00001.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_another_number_of_processes(work, single, distill_cli):
    folder, checkpoint = work
    first = distill_cli.run(write_config(folder / "resume", checkpoint, "half", iterations=2), processes=2)
    assert first.returncode == 0, first.stderr[-3000:]
    config = write_config(folder / "resume", checkpoint, "half", iterations=4, resume="half_00001.distill")
    second = distill_cli.run(config, processes=1)
    assert second.returncode == 0, second.stderr[-3000:]
    a, b = lora(single[0]), lora(folder / "resume" / "loras" / "half_00002.safetensors")
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-3, atol=1e-5), k


def test_a_bad_config_fails_before_loading_anything(tmp_path, distill_cli):
    config = tmp_path / "bad.toml"
    config.write_text('checkpoint = "nowhere.safetensors"\nprompts = []\n[distill]\nrank = 0\n')
    done = distill_cli.run(config)
    assert done.returncode != 0
    assert "prompt list is empty" in done.stderr and "rank 0" in done.stderr


def test_sigterm_to_torchrun_saves_one_consistent_checkpoint(work, single, distill_cli):
    """torchrun forwards SIGTERM; both processes agree on the iteration to stop at, one writes."""
    import signal
    import time

    folder, checkpoint = work
    config = write_config(folder / "term", checkpoint, "term", iterations=400)
    proc = subprocess.Popen(distill_cli.command(config, processes=2), env=distill_cli.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in proc.stdout:
            if line.startswith("[train] 10/"):
                break
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=300)
    finally:
        proc.kill()
    loras = folder / "term" / "loras"
    deadline = time.time() + 30
    while time.time() < deadline and not list(loras.glob("*.distill")):
        time.sleep(1)
    names = sorted(p.name for p in loras.iterdir())
    assert len(names) == 2 and names[0] == "term_00001.distill" and names[1].startswith("term_00001_it")
    from comfyui_fewstep.trainers.files import load_resume

    _, state = load_resume(loras / names[0])
    assert names[1] == f"term_00001_it{state['iteration']:06d}.safetensors" and 10 <= state["iteration"] < 400
