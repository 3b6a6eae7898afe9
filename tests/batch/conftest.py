import pytest

from medmm.synth import SynthConfig, synthesize
from tests.batch.helpers import save_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A saved tiny MedMM checkpoint (its notes encoder is a tiny local BERT, stored with it)."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("batch-model") / "model")


@pytest.fixture(scope="session")
def cohort300(tmp_path_factory):
    """The 300-patient synthetic cohort of the acceptance tests (small images)."""
    root = tmp_path_factory.mktemp("batch-cohort") / "c"
    synthesize(root, SynthConfig(patients=300, image_size=32, workers=2), progress=False)
    return root


@pytest.fixture(scope="session")
def study_protocol():
    """Small batches and parts, short impressions: the protocol of the fast end-to-end tests."""
    from medmm.batch.plan import Outputs, RunOptions, StudyProtocol

    return StudyProtocol(name="small", outputs=Outputs(max_new_tokens=3), run=RunOptions(batch_size=4, part_size=8))


@pytest.fixture(scope="session")
def finished_study(tiny_checkpoint, small_cohort, study_protocol, tmp_path_factory):
    """(output folder, summary) of one complete local study over the 16-patient cohort."""
    from medmm.batch.run import run_batch

    out = tmp_path_factory.mktemp("batch-study") / "out"
    summary = run_batch(
        tiny_checkpoint, small_cohort, out, protocol=study_protocol, progress=False, user="research-operator"
    )
    return out, summary
