"""knowledge.fusion: the cost function that sets the answer and suggest bands."""

from __future__ import annotations

from knowledge.fusion import VALUE_WRONG, choose_thresholds, outcome_value


def row(answerable: bool, right: bool, in_top3: bool) -> dict[str, bool]:
    return {"answerable": answerable, "right": right, "in_top3": in_top3}


def test_a_wrong_answer_costs_more_than_a_right_one_earns() -> None:
    assert outcome_value(row(True, True, True), 0.9, 0.8, 0.4) == 1.0
    assert outcome_value(row(True, False, True), 0.9, 0.8, 0.4) == VALUE_WRONG < -1.0
    assert 0 < outcome_value(row(True, False, True), 0.5, 0.8, 0.4) < 1.0
    assert outcome_value(row(False, False, False), 0.9, 0.8, 0.4) == VALUE_WRONG
    assert outcome_value(row(False, False, False), 0.1, 0.8, 0.4) == 0.0


def test_the_answer_band_starts_where_answers_stop_being_right() -> None:
    confidences = [0.95, 0.9, 0.85, 0.8, 0.6, 0.55, 0.3]
    rows = [
        row(True, True, True),
        row(True, True, True),
        row(True, True, True),
        row(True, True, True),
        row(True, False, True),  # below 0.8 the top answer is wrong but the right title is close
        row(True, False, True),
        row(False, False, False),
    ]
    answer, suggest = choose_thresholds(confidences, rows)
    assert 0.6 < answer <= 0.8
    assert 0.3 < suggest <= 0.55


def test_none_questions_above_the_bar_are_capped_at_five_percent() -> None:
    # twenty `none` questions; two of them score as high as the right answers
    confidences = [0.9] * 10 + [0.9, 0.9] + [0.2] * 18
    rows = [row(True, True, True)] * 10 + [row(False, False, False)] * 20
    answer, _ = choose_thresholds(confidences, rows)
    assert answer > 0.9, "answering at 0.9 would answer 10% of the `none` questions"
