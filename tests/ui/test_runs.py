"""One analysis at a time per page: the second is told which one is running."""

from __future__ import annotations

from ui.runs import RunGuard


def test_a_second_analysis_of_the_same_page_is_refused_until_the_first_ends():
    runs = RunGuard()
    admitted, first = runs.begin("page-1", "3 uploaded files")
    assert admitted and runs.running("page-1") is first
    refused, running = runs.begin("page-1", "2 uploaded files")
    assert not refused and running is first and running.what == "3 uploaded files"
    assert runs.begin("page-2", "a demo-cohort patient")[0]  # other pages are not held up
    runs.end("page-1", first)
    again, second = runs.begin("page-1", "2 uploaded files")
    assert again and second is not first
    runs.end("page-1", first)  # a stale end leaves the new run alone
    assert runs.running("page-1") is second
