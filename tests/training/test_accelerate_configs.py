"""The shipped accelerate launch configs parse as accelerate reads them, and the commands they give run recipes that exist."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DistributedType

from medmm.train.recipe import load_recipe_config

FOLDER = Path(__file__).resolve().parents[2] / "training" / "configs" / "accelerate"
EXPECTED = {
    "cpu2.yaml": DistributedType.MULTI_CPU,
    "ddp_gpus.yaml": DistributedType.MULTI_GPU,
    "fsdp_qlora.yaml": DistributedType.FSDP,
}


def test_every_launch_config_is_listed():
    assert sorted(p.name for p in FOLDER.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_launch_config_parses_and_its_command_names_a_recipe(name):
    path = FOLDER / name
    config = load_config_from_file(str(path))
    assert config.distributed_type == EXPECTED[name] and config.num_processes >= 2
    assert config.use_cpu == (name == "cpu2.yaml")
    command = next(line for line in path.read_text().splitlines() if "accelerate launch" in line)
    assert f"--config_file training/configs/accelerate/{name}" in command
    recipe = re.search(r"-m training\.(\w+)", command).group(1)
    assert importlib.util.find_spec(f"training.{recipe}") is not None


def test_the_fsdp_overrides_are_backbone_fields_a_recipe_accepts():
    config = load_config_from_file(str(FOLDER / "fsdp_qlora.yaml"))
    assert config.fsdp_config["fsdp_version"] == 2 and config.mixed_precision == "bf16"
    command = next(
        line for line in (FOLDER / "fsdp_qlora.yaml").read_text().splitlines() if "accelerate launch" in line
    )
    overrides = [word for word in command.split() if word.startswith("model.backbone.")]
    assert overrides == ["model.backbone.finetune.quant_storage=bfloat16", "model.backbone.compute_dtype=bfloat16"]
    recipe = Path(__file__).resolve().parents[2] / "training" / "configs" / "demo_finetune.yaml"
    cfg = load_recipe_config(recipe, overrides)
    assert (
        cfg.model.backbone.finetune.quant_storage,
        cfg.model.backbone.compute_dtype,
        cfg.model.backbone.finetune.method,
    ) == (
        "bfloat16",
        "bfloat16",
        "qlora",
    )
