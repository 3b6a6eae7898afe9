import pytest

from medmm.synth import SynthConfig, synthesize


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory):
    """A 16-patient synthetic cohort (with FHIR-borne vitals for some patients and a CT for some)."""
    root = tmp_path_factory.mktemp("cohort") / "c"
    synthesize(root, SynthConfig(patients=16, seed=7, image_size=64, ct_fraction=0.25, fhir_vitals_fraction=0.3, workers=1), progress=False)
    return root
