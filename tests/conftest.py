import pytest

from medmm.lm import fourbit
from medmm.synth import SynthConfig, synthesize


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory):
    """A 16-patient synthetic cohort (with FHIR-borne vitals for some patients and a CT for some)."""
    root = tmp_path_factory.mktemp("cohort") / "c"
    synthesize(
        root,
        SynthConfig(patients=16, seed=7, image_size=64, ct_fraction=0.25, fhir_vitals_fraction=0.3, workers=1),
        progress=False,
    )
    return root


@pytest.fixture(params=["plain", "fused"])
def cpu_4bit_kernel(request, monkeypatch):
    """Run a 4-bit test once per bitsandbytes CPU path.

    "plain": the path of a CPU without AVX-512 BF16, forced here by patching bitsandbytes'
    capability check as well. "fused": the repacking bf16 kernel, which exists only on CPUs
    with AVX-512 BF16.
    """
    if request.param == "fused":
        if not fourbit.fused_kernel_available():
            pytest.skip("this CPU lacks AVX-512 BF16: bitsandbytes has no fused 4-bit CPU kernel here")
    else:
        import bitsandbytes.nn.modules as bnb_modules

        monkeypatch.setattr(bnb_modules, "has_avx512bf16", lambda: False)  # new layers start unpacked-only
        monkeypatch.setattr(fourbit, "fused_kernel_available", lambda: False)
    monkeypatch.setenv(fourbit.KERNEL_ENV, request.param)
    return request.param
