import json

import numpy as np
import pytest

from medmm.errors import MedmmError
from medmm.evaluate.arrays import (
    EvaluationError,
    diagnosis_names,
    json_safe,
    label_matrix,
    labels_and_probs,
    patient_codes,
)
from medmm.synth.diagnoses import DIAGNOSIS_NAMES


def test_label_matrix_promotes_vector_and_bool():
    assert label_matrix(np.array([0, 1, 1])).shape == (3, 1)
    out = label_matrix(np.array([[True, False]]))
    assert out.dtype == np.int8 and out.tolist() == [[1, 0]]


@pytest.mark.parametrize(
    "bad", [np.array([[0, 2]]), np.array([[0.0, np.nan]]), np.zeros((0, 3)), np.array([["a", "b"]])]
)
def test_label_matrix_rejects_non_binary(bad):
    with pytest.raises(EvaluationError) as info:
        label_matrix(bad)
    assert isinstance(info.value, MedmmError) and "y_true" in str(info.value)


def test_probabilities_must_match_and_be_finite_in_unit_interval():
    y = np.zeros((2, 2))
    with pytest.raises(EvaluationError, match="shape"):
        labels_and_probs(y, np.zeros((2, 3)))
    with pytest.raises(EvaluationError, match="finite"):
        labels_and_probs(y, np.array([[0.1, np.inf], [0.2, 0.3]]))
    with pytest.raises(EvaluationError, match=r"\[0, 1\]"):
        labels_and_probs(y, np.array([[0.1, 1.2], [0.2, 0.3]]))


def test_error_messages_do_not_echo_values():
    with pytest.raises(EvaluationError) as info:
        labels_and_probs(np.zeros((1, 1)), np.array([[0.123456789]]) + 5)
    assert "0.123" not in str(info.value) and "5.123" not in str(info.value)


def test_diagnosis_names_default_and_checks():
    assert diagnosis_names(None, len(DIAGNOSIS_NAMES)) == DIAGNOSIS_NAMES
    assert diagnosis_names(None, 2) == ("label_0", "label_1")
    with pytest.raises(EvaluationError):
        diagnosis_names(["a"], 2)
    with pytest.raises(EvaluationError):
        diagnosis_names(["a", "a"], 2)


def test_patient_codes_group_rows_by_patient():
    codes = patient_codes(["p2", "p1", "p2", "p3"], 4)
    assert codes[0] == codes[2] and len({codes[0], codes[1], codes[3]}) == 3
    assert sorted(set(codes.tolist())) == [0, 1, 2]
    assert patient_codes(None, 3).tolist() == [0, 1, 2]
    with pytest.raises(EvaluationError):
        patient_codes(["a"], 2)
    with pytest.raises(EvaluationError):
        patient_codes(["a", None], 2)


def test_json_safe_replaces_non_finite():
    out = json_safe({"a": (1.0, float("nan")), "b": np.int64(3), "c": np.float32(0.5), "d": float("inf")})
    assert out == {"a": [1.0, None], "b": 3, "c": 0.5, "d": None}
    json.dumps(out, allow_nan=False)
