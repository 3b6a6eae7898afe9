"""Every shipped recipe config loads, names the command that runs it, and bad keys fail loudly."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest
import yaml

from medmm.errors import ConfigError
from medmm.train.recipe import RecipeConfig, load_recipe_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "training" / "configs").glob("*.yaml"))
COMMANDS = ("medmm train", "medmm demo", "accelerate launch")


def test_configs_are_shipped():
    assert len(CONFIGS) >= 3
    assert {load_recipe_config(p).recipe for p in CONFIGS} == {"pretrain_lm", "pretrain_image", "align", "finetune"}


def test_demo_image_stage_builds_the_encoder_stage_one_loads():
    """Stage 1 refuses an encoder pretrained with other settings: the two demo configs must agree."""
    folder = CONFIGS[0].parent
    image = load_recipe_config(folder / "demo_pretrain_image.yaml").model
    stage1 = load_recipe_config(folder / "demo_align.yaml").model
    assert dataclasses.replace(image.image, frozen=True) == stage1.image
    assert image.preprocess == stage1.preprocess


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads_and_starts_with_its_command(path):
    cfg = load_recipe_config(path)
    assert isinstance(cfg, RecipeConfig)
    assert importlib.util.find_spec(f"training.{cfg.recipe}") is not None  # the recipe it names exists
    lines = path.read_text().splitlines()
    assert lines[0].startswith("#") and any(c in lines[0] for c in COMMANDS), lines[0]
    header = [line for line in lines if line.startswith("#")]
    # the comment that shows how to run it alone points at this very file
    assert any(f"training/configs/{path.name}" in line for line in header), header


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_overrides_reach_the_tree(path):
    cfg = load_recipe_config(path, ["train.epochs=3", "model.head_hidden=8", "out=somewhere", "train.max_steps=null"])
    assert (cfg.train.epochs, cfg.model.head_hidden, cfg.out, cfg.train.max_steps) == (3, 8, "somewhere", None)


def leaves(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_value_in_the_file_reaches_the_config(path):
    cfg = load_recipe_config(path)
    written = list(leaves(yaml.safe_load(path.read_text())))
    assert written
    for dotted, value in written:
        node = cfg
        for part in dotted.split("."):
            node = getattr(node, part)
        assert node == (tuple(value) if isinstance(value, list) else value), dotted


@pytest.mark.parametrize(
    ("yaml_text", "key", "where"),
    [
        ("recipe: align\ntrain:\n  epochz: 3\n", "epochz", "train"),
        ("recipe: align\nrecipy: align\n", "recipy", "RecipeConfig"),
        ("recipe: align\nmodel:\n  image:\n    dims: 3\n", "dims", "model.image"),
    ],
)
def test_unknown_key_in_yaml_is_a_config_error_naming_it(tmp_path, yaml_text, key, where):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        load_recipe_config(path)
    assert key in str(err.value) and err.value.where == where


def test_unknown_override_key_is_a_config_error_naming_it():
    with pytest.raises(ConfigError) as err:
        load_recipe_config(CONFIGS[0], ["train.lr_typo=0.1"])
    assert "lr_typo" in str(err.value) and err.value.where == "train"


def test_wrong_type_is_a_config_error_naming_the_field(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_recipe_config(CONFIGS[0], ["train.epochs=three"])
    assert err.value.where == "train.epochs"
    with pytest.raises(ConfigError) as err:
        load_recipe_config(CONFIGS[0], ["model.backbone.finetune.method=sometimes"])
    assert "finetune" in str(err.value)


def test_missing_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_recipe_config(tmp_path / "absent.yaml")
    assert err.value.path == str(tmp_path / "absent.yaml")
