"""The contact policy file, the stable holdout hash and the order of the rules."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from features.policy import REASONS, PolicyError, holdout_bucket, in_holdout, load_policy

IDS = [f"cust-{i:06d}" for i in range(100_000)]


def test_holdout_share_holds_over_100000_ids() -> None:
    for share in (0.05, 0.2):
        held = sum(in_holdout(c, share) for c in IDS)
        # Binomial sampling error: within 4 standard deviations.
        sd = math.sqrt(len(IDS) * share * (1 - share))
        assert abs(held - share * len(IDS)) < 4 * sd
    assert not any(in_holdout(c, 0.0) for c in IDS[:1000])


def test_holdout_is_stable_across_processes_and_nested_by_share() -> None:
    # Python's hash() is salted per process; the holdout must not be.
    code = (
        "from features.policy import holdout_bucket; print(repr([holdout_bucket(f'cust-{i:06d}') for i in range(50)]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123", "PATH": ""},
        cwd=Path(__file__).resolve().parents[2],
    ).stdout
    assert eval(out) == [holdout_bucket(c) for c in IDS[:50]]  # noqa: S307 (our own repr of floats)
    # Raising the share only adds customers: nobody leaves the holdout.
    small = {c for c in IDS if in_holdout(c, 0.05)}
    large = {c for c in IDS if in_holdout(c, 0.10)}
    assert small < large


def test_missing_file_is_no_policy(tmp_path: Path) -> None:
    policy = load_policy(tmp_path)
    assert not policy.active and policy.cap is None
    assert policy.apply("anyone", contacts=99, best_value=1.0) is None
    assert policy.apply("anyone", contacts=0, best_value=-1.0) == "no_positive_value"


def test_defaults_and_rule_order(tmp_path: Path) -> None:
    held = next(c for c in IDS if in_holdout(c, 0.05))
    free = next(c for c in IDS if not in_holdout(c, 0.05))
    (tmp_path / "optout.txt").write_text(f"# ids\n{held}\n{free}\n")
    (tmp_path / "policy.yaml").write_text("opt_out: optout.txt\n")
    policy = load_policy(tmp_path)
    assert policy.rules.holdout_share == 0.05 and policy.cap is not None
    assert (policy.cap.count, policy.cap.days) == (3, 30)
    assert policy.opted_out == {held, free}
    # holdout before opted_out before contact_cap before no_positive_value
    assert policy.apply(held, contacts=10, best_value=-1) == "holdout"
    assert policy.apply(free, contacts=10, best_value=-1) == "opted_out"
    other = next(c for c in IDS if not in_holdout(c, 0.05) and c != free)
    assert policy.apply(other, contacts=3, best_value=-1) == "contact_cap"
    assert policy.apply(other, contacts=2, best_value=-1) == "no_positive_value"
    assert policy.apply(other, contacts=2, best_value=None) == "no_positive_value"
    assert policy.apply(other, contacts=2, best_value=0.5) is None
    assert REASONS == ("holdout", "opted_out", "contact_cap", "no_positive_value")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("holdout_share: [1\n", "not valid YAML"),
        ("holdout_share: 1.5\n", "field holdout_share"),
        ("max_contacts: {count: 3, dayz: 30}\n", "field max_contacts.dayz"),
        ("holdout: 0.1\n", "field holdout"),
        ("- 1\n- 2\n", "must be a mapping"),
        ("opt_out: nowhere.txt\n", "nowhere.txt, which does not exist"),
    ],
)
def test_bad_files_are_named_errors(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "policy.yaml").write_text(text)
    with pytest.raises(PolicyError, match=match) as info:
        load_policy(tmp_path)
    assert "policy.yaml" in str(info.value)
