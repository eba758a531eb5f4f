"""serving.balance: the workers' connection counts in one shared file, and the fair share they imply."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.balance import STALE_SECONDS, WorkerShares


def test_the_fair_share_counts_only_live_workers(tmp_path: Path) -> None:
    path = tmp_path / "shares.bin"
    one, two, three = (WorkerShares(i, path) for i in (1, 2, 3))
    assert one.fair_share(now=10.0) is None  # nobody has written: no share to keep
    one.publish(6, now=10.0)
    assert one.fair_share(now=10.0) is None  # alone: a single worker has nothing to balance with
    two.publish(2, now=10.0)
    assert one.fair_share(now=10.5) == 4 and two.fair_share(now=10.5) == 4
    three.publish(1, now=10.0)
    assert one.fair_share(now=10.5) == 3  # ceil(9 / 3)
    two.publish(2, now=11.0)
    # Worker 3 (and 1) stopped writing: only fresh slots count.
    assert two.fair_share(now=10.0 + STALE_SECONDS + 0.5) is None
    for shares in (one, two, three):
        shares.close()


def test_worker_indices_outside_the_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="outside"):
        WorkerShares(0, tmp_path / "shares.bin")
