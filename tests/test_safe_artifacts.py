"""No code path unpickles: checkpoints are safetensors + JSON, YAML is read safely."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for d in ("medmm", "training", "ui") for p in (ROOT / d).rglob("*.py"))


def _calls(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def test_sources_exist():
    assert len(SOURCES) > 50


def test_no_torch_load_without_weights_only_and_no_pickle():
    offenders = []
    for path in SOURCES:
        for node, name in _calls(path):
            keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
            if name.endswith("torch.load") and keywords.get("weights_only") != "True":
                offenders.append(f"{path}:{node.lineno} {name}")
            if name in ("pickle.load", "pickle.loads", "cPickle.load", "dill.load", "joblib.load", "marshal.loads"):
                offenders.append(f"{path}:{node.lineno} {name}")
            if name.endswith("np.load") or name.endswith("numpy.load"):
                if keywords.get("allow_pickle") not in (None, "False"):
                    offenders.append(f"{path}:{node.lineno} {name} allow_pickle")
    assert offenders == []


def test_yaml_is_loaded_safely():
    offenders = []
    for path in SOURCES:
        for node, name in _calls(path):
            if re.fullmatch(r"yaml\.(load|load_all|unsafe_load|full_load)", name):
                offenders.append(f"{path}:{node.lineno} {name}")
    assert offenders == []


def test_checkpoint_files_are_safetensors_and_json(tmp_path):
    from medmm.checkpoint import FORMAT, load_checkpoint  # noqa: F401  (loading reads only these)

    source = (ROOT / "medmm" / "checkpoint.py").read_text()
    assert "safetensors" in source and "torch.load" not in source and "pickle" not in source.replace("unpickled", "")
