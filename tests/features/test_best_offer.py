"""Which offer to show from a ranking: the top one, unless showing none is worth more."""

from __future__ import annotations

from features.kinds.next_best_offer import best_offer


def ranking(*values: float) -> list[dict]:
    return [{"offer_id": f"o{i}", "expected_value": v} for i, v in enumerate(values)]


def test_the_top_offer_is_shown_when_it_pays() -> None:
    assert best_offer(ranking(2.5, -1.0), has_control=True)["offer_id"] == "o0"
    assert best_offer(ranking(1e-9), has_control=True)["offer_id"] == "o0"


def test_with_a_control_arm_an_offer_that_does_not_pay_is_not_shown() -> None:
    # Expected values are incremental over no contact: 0 or less means no offer beats it.
    assert best_offer(ranking(0.0, -3.0), has_control=True) is None
    assert best_offer(ranking(-0.5), has_control=True) is None
    assert best_offer([], has_control=True) is None


def test_without_a_control_arm_the_top_eligible_offer_is_shown() -> None:
    # Propensity x value - cost is not incremental: it cannot say that no contact is worth more.
    assert best_offer(ranking(-0.5, -2.0), has_control=False)["offer_id"] == "o0"
    assert best_offer([], has_control=False) is None
