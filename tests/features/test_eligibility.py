import math

import pytest

from features.eligibility import RuleError, compile_rule


def test_rules():
    rule = compile_rule("tenure_days >= 180 and (monetary_365d > 100 or not frequency_365d < 3)")
    assert rule({"tenure_days": 200, "monetary_365d": 150, "frequency_365d": 0})
    assert rule({"tenure_days": 200, "monetary_365d": 50, "frequency_365d": 5})
    assert not rule({"tenure_days": 100, "monetary_365d": 150, "frequency_365d": 5})
    assert not rule({"tenure_days": math.nan, "monetary_365d": 150})  # unknown value: not eligible
    assert compile_rule(None)({}) and compile_rule("  ")({})
    assert compile_rule("0 < recency_days <= 30")({"recency_days": 10})
    assert compile_rule("recency_days > -1")({"recency_days": 0})


@pytest.mark.parametrize("bad", ["__import__('os')", "tenure_days >", "a.b > 1", "x in [1]", "'s' > 1"])
def test_rejects_code_and_garbage(bad):
    with pytest.raises(RuleError):
        compile_rule(bad)


def test_unknown_feature_rejected_when_names_known():
    with pytest.raises(RuleError, match="unknown feature 'tenure'"):
        compile_rule("tenure > 3", known_features={"tenure_days"})


def test_text_value_compared_with_a_number_is_false_not_an_error() -> None:
    rule = compile_rule("attr_region > 3 or tenure_days > 10")
    assert rule({"attr_region": "north", "tenure_days": 20.0}) is True
    assert rule({"attr_region": "north", "tenure_days": 5.0}) is False
    assert compile_rule("attr_region >= 1")({"attr_region": "north"}) is False


@pytest.mark.parametrize(
    "expression",
    [
        "(" * 200 + "tenure_days > 1" + ")" * 200,
        "not " * 5000 + "tenure_days > 1",
        " or ".join(["tenure_days > 1"] * 2000),
        "tenure_days > " + "9" * 400,
    ],
)
def test_hostile_rules_are_refused_with_a_named_error(expression: str) -> None:
    with pytest.raises(RuleError, match="eligible_if|out of range"):
        compile_rule(expression)


def test_many_shallow_parentheses_are_fine() -> None:
    rule = compile_rule(" and ".join(["(tenure_days > 1)"] * 40))
    assert rule({"tenure_days": 2.0}) is True
