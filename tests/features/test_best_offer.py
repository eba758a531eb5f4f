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


def test_effect_boosters_are_exactly_what_effect_uplift_reads() -> None:
    import numpy as np

    from features.kinds.next_best_offer import EFFECT_BOOSTERS, effect_boosters, effect_uplift

    for learner in EFFECT_BOOSTERS:
        read: list[str] = []

        def record(name: str, x: np.ndarray, read: list[str] = read) -> np.ndarray:
            read.append(name)
            return np.zeros(x.shape[0])

        effect_uplift(learner, [0.5, 0.5, 0.5], 3, np.zeros((2, 4), np.float32), record)
        assert sorted(effect_boosters(learner, 3)) == sorted(read), learner
