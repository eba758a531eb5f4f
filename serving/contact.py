"""The contact policy inside every decision: holdout, opt-out and frequency cap applied to next-best-offer answers.

:class:`ContactGate` keeps the loaded ``policy.yaml`` (re-read when it or its opt-out file changes, checked at most
once per second) and, for a batch of answers, withholds the offers the policy forbids. Caps are counted from the
decision log at decision time, so every endpoint, channel and replica sharing the log shares the count. Two
requests for one customer decided at the same instant on two replicas can both pass a cap that has one contact left
(the count is read before either is logged): the cap is exact up to that race.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from features.policy import Policy, PolicyError, load_policy, policy_files_key, window_start
from serving.decision_log import DecisionLog

log = logging.getLogger(__name__)

CHECK_SECONDS = 1.0
#: What a withheld offer says beside its reason code.
DETAILS = {
    "holdout": "in the global holdout of the contact policy: never contacted, so that ROI can be measured",
    "opted_out": "the customer opted out of offers (contact policy opt-out file)",
    "contact_cap": "the contact policy's frequency cap is reached for this customer",
    "no_positive_value": "no eligible offer is expected to earn more than it costs: showing none is worth more",
}


class ContactGate:
    """The live contact policy of one process.

    Args:
        home: ``CXPREDICT_HOME`` (holds ``policy.yaml``).
        decisions: The decision log contacts are counted from.
        clock: Wall-clock seconds (tests).

    Raises:
        features.policy.PolicyError: the policy file is bad at start-up.
    """

    def __init__(self, home: Path, decisions: DecisionLog, clock: Callable[[], float] = time.time) -> None:
        self.home = Path(home)
        self.decisions = decisions
        self.clock = clock
        self.policy: Policy = load_policy(self.home)
        self._key = policy_files_key(self.home, self.policy)
        self._checked = time.monotonic()
        self._lock = threading.Lock()
        self.errors = 0

    def current(self) -> Policy:
        """The policy in force: re-read when its files changed (checked at most once per second).

        A file that fails to load is logged and counted; the last valid policy stays in force.
        """
        now = time.monotonic()
        if now - self._checked < CHECK_SECONDS or not self._lock.acquire(blocking=False):
            return self.policy
        try:
            self._checked = now
            key = policy_files_key(self.home, self.policy)
            if key != self._key:
                self._key = key
                try:
                    self.policy = load_policy(self.home)
                    self._key = policy_files_key(self.home, self.policy)
                    log.info("contact policy reloaded from %s", self.policy.source)
                except PolicyError as exc:
                    self.errors += 1
                    log.error("keeping the previous contact policy: %s", exc)
            return self.policy
        finally:
            self._lock.release()

    def apply(self, customer_ids: Sequence[str], offers: Sequence[MutableMapping[str, Any] | None]) -> None:
        """Withhold the offers the policy forbids, in place: ``offer_id`` null, ``reason`` and ``detail`` set.

        Args:
            customer_ids: One per answer.
            offers: Each answer's ``next_best_offer`` part (None or unavailable parts are left alone); ranking and
                expected values stay for the caller's information.
        """
        policy = self.current()
        reasons: dict[int, str | None] = {}
        pending: list[int] = []
        for i, (cid, part) in enumerate(zip(customer_ids, offers, strict=True)):
            if part is None or not part.get("available") or part.get("holdout"):
                continue
            first = policy.before_contacts(cid)
            if first is not None:
                reasons[i] = first
            elif part.get("offer_id") is not None:
                pending.append(i)
            else:
                reasons[i] = "no_positive_value"
        cap = policy.cap
        if cap is not None and pending:
            counted = self.decisions.contacts([customer_ids[i] for i in pending], window_start(self.clock(), cap))
            for i in pending:
                cid = customer_ids[i]
                if counted.get(cid, 0) >= cap.count:
                    reasons[i] = "contact_cap"
                else:
                    # A second answer for the same customer in this batch counts the first as a contact.
                    counted[cid] = counted.get(cid, 0) + 1
        for i, reason in reasons.items():
            part = offers[i]
            assert part is not None
            part["reason"] = reason
            part["detail"] = DETAILS[reason]  # type: ignore[index]
            if reason != "no_positive_value":
                part["offer_id"] = None
                part["expected_value"] = 0.0
