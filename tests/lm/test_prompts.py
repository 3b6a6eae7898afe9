import pytest

from medmm.errors import ConfigError
from medmm.lm.prompts import NO_FINDING, diagnoses_named, guided_prompt, impression_text, qa_pairs


def test_impression_orders_diagnoses_and_names_evidence():
    text = impression_text(["sepsis", "pneumonia"], {"pneumonia": ["image", "notes"], "sepsis": ["vitals"]})
    assert (
        text
        == "pneumonia (focal consolidation; productive cough and crackles), sepsis (fever, tachycardia and hypotension)."
    )
    assert diagnoses_named(text) == {"pneumonia", "sepsis"}


def test_impression_follows_a_given_order_then_the_fixed_one():
    labels, evidence = ["sepsis", "pneumonia", "heart_failure"], {"sepsis": ["vitals"]}
    assert (
        impression_text(labels, evidence, order=["sepsis", "pneumothorax"])
        == (
            "sepsis (fever, tachycardia and hypotension), pneumonia, heart failure."  # a guided name not in labels is skipped
        )
    )
    assert impression_text(labels, {}, order=["heart_failure", "sepsis"]) == "heart failure, sepsis, pneumonia."


def test_impression_of_normal_case_names_nothing():
    text = impression_text([])
    assert text == f"{NO_FINDING}."
    assert diagnoses_named(text) == set()


def test_negated_mentions_are_not_named():
    assert diagnoses_named("no pneumothorax. heart failure likely.") == {"heart_failure"}
    assert diagnoses_named("negative for sepsis, pleural effusion present.") == {"pleural_effusion"}


def test_qa_pairs_answer_from_truth():
    pairs = {p.question: p.answer for p in qa_pairs(["heart_failure"], {"heart_failure": ["image", "vitals"]})}
    assert pairs["Is there heart failure?"] == "Yes, heart failure is likely."
    assert pairs["Is there sepsis?"] == "No, sepsis is unlikely."
    assert (
        pairs["What supports heart failure?"]
        == "Cardiomegaly in the radiograph; weight gain and falling oxygen saturation in the vital signs."
    )
    assert (
        pairs["Summarise the findings."] == "heart failure (cardiomegaly; weight gain and falling oxygen saturation)."
    )
    assert "What supports sepsis?" not in pairs


def test_guided_prompt_names_the_suspected_diagnoses_in_the_given_order():
    assert (
        guided_prompt(["sepsis", "heart_failure", "pneumonia"])
        == "Impression: [suspected: sepsis; heart failure; pneumonia]"
    )
    assert guided_prompt(["sepsis", "sepsis"]) == "Impression: [suspected: sepsis]"
    assert guided_prompt(["pleural_effusion"]) == "Impression: [suspected: pleural effusion]"
    assert guided_prompt([]) == "Impression: [suspected: none]"
    with pytest.raises(ConfigError, match="unknown diagnosis"):
        guided_prompt(["asthma"])


def test_a_not_ruled_out_list_names_possibilities_not_assertions():
    text = "pneumonia (focal consolidation). not ruled out (prediction set at 90% coverage): heart failure (71%), sepsis (20%)."
    assert diagnoses_named(text) == {"pneumonia"}
    assert diagnoses_named("not ruled out (prediction set at 90% coverage): heart failure (71%).") == set()
