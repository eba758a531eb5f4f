"""The contact policy (CONTRACT §3): who may be sent an offer, shared by the service and ``cxpredict target``.

``$CXPREDICT_HOME/policy.yaml`` declares a global holdout (a stable hash share of customers never contacted), a
frequency cap (offers per customer per rolling window, counted from the decision log) and an opt-out file. The
rules apply in a fixed order, so one reason explains each withheld offer: ``holdout``, ``opted_out``,
``contact_cap``, then ``no_positive_value``. No ``policy.yaml`` means no policy: every offer that pays is shown.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

POLICY_FILE = "policy.yaml"
#: Fixed salt of the holdout hash: changing it would move customers in and out of the holdout.
HOLDOUT_SALT = "cxpredict-global-holdout-v1"
#: Why an offer was withheld, in the order the rules apply.
REASONS: tuple[str, ...] = ("holdout", "opted_out", "contact_cap", "no_positive_value")
WithheldReason = Literal["holdout", "opted_out", "contact_cap", "no_positive_value"]


class PolicyError(ValueError):
    """``policy.yaml`` or its opt-out file cannot be read or holds a bad field (the message names both)."""


class MaxContacts(BaseModel):
    """At most ``count`` offers per customer in any rolling ``days`` of wall-clock time, across channels."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(default=3, ge=0, description="offers per customer per window (0: never contact)")
    days: float = Field(default=30.0, gt=0, description="length of the rolling window in days")


class ContactPolicy(BaseModel):
    """The fields of ``policy.yaml``."""

    model_config = ConfigDict(extra="forbid")

    holdout_share: float = Field(
        default=0.05, ge=0.0, lt=1.0, description="stable share of customers never contacted (0 turns it off)"
    )
    max_contacts: MaxContacts | None = Field(
        default_factory=MaxContacts, description="frequency cap; null turns it off"
    )
    opt_out: str | None = Field(
        default=None, description="file of customer ids never contacted, one per line (relative to CXPREDICT_HOME)"
    )


def holdout_bucket(customer_id: str) -> float:
    """A stable number in [0, 1) per customer: sha256 of the salt and the id (the same in every process)."""
    digest = hashlib.sha256(f"{HOLDOUT_SALT}\0{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def in_holdout(customer_id: str, share: float) -> bool:
    """Whether the customer is in the global holdout of the given share."""
    return share > 0 and holdout_bucket(customer_id) < share


@dataclass(frozen=True)
class Policy:
    """A loaded contact policy: its rules and the opted-out ids.

    Attributes:
        rules: The declared fields (defaults when no file exists).
        opted_out: Ids never contacted.
        active: Whether a ``policy.yaml`` exists (without one, nothing is withheld but unprofitable offers).
        source: The file it was read from.
    """

    rules: ContactPolicy = field(default_factory=lambda: ContactPolicy(holdout_share=0.0, max_contacts=None))
    opted_out: frozenset[str] = frozenset()
    active: bool = False
    source: Path | None = None

    @property
    def cap(self) -> MaxContacts | None:
        """The frequency cap, if any."""
        return self.rules.max_contacts if self.active else None

    def holdout(self, customer_id: str) -> bool:
        """Whether the customer is in the global holdout."""
        return self.active and in_holdout(customer_id, self.rules.holdout_share)

    def before_contacts(self, customer_id: str) -> WithheldReason | None:
        """The reason that holds an offer back before any contact is counted: ``holdout`` or ``opted_out``."""
        if self.holdout(customer_id):
            return "holdout"
        if customer_id in self.opted_out:
            return "opted_out"
        return None

    def apply(self, customer_id: str, contacts: int, best_value: float | None) -> WithheldReason | None:
        """Why no offer may be made to this customer, or None when the best offer may be shown.

        Args:
            customer_id: The customer.
            contacts: Offers made to them within the cap's window (from the decision log).
            best_value: Expected incremental value of their best eligible offer (None: nothing eligible).

        Returns:
            The first rule that holds the offer back, in the contract's order.
        """
        first = self.before_contacts(customer_id)
        if first is not None:
            return first
        cap = self.cap
        if cap is not None and contacts >= cap.count:
            return "contact_cap"
        if best_value is None or not best_value > 0:
            return "no_positive_value"
        return None


def policy_path(home: Path) -> Path:
    """Where the policy lives under ``CXPREDICT_HOME``."""
    return Path(home) / POLICY_FILE


def _read_opt_out(path: Path, policy_file: Path) -> frozenset[str]:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError as exc:
        raise PolicyError(f"{policy_file}: field opt_out names {path}, which does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{policy_file}: opt-out file {path} cannot be read: {exc}") from exc
    return frozenset(s for s in (line.strip() for line in lines) if s and not s.startswith("#"))


def load_policy(home: Path) -> Policy:
    """The contact policy in ``home/policy.yaml``; an inactive policy when the file does not exist.

    Raises:
        PolicyError: the file is not valid YAML, has an unknown or bad field, or names a missing opt-out file.
    """
    path = policy_path(home)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return Policy()
    except OSError as exc:
        raise PolicyError(f"{path} cannot be read: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path} is not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise PolicyError(f"{path} must be a mapping of holdout_share, max_contacts and opt_out")
    try:
        rules = ContactPolicy.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"field {'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors())
        raise PolicyError(f"{path}: {problems}") from exc
    opted: frozenset[str] = frozenset()
    loaded = Policy(rules=rules, active=True, source=path)
    opt = opt_out_path(home, loaded)
    if opt is not None:
        opted = _read_opt_out(opt, path)
    return Policy(rules=rules, opted_out=opted, active=True, source=path)


def opt_out_path(home: Path, policy: Policy) -> Path | None:
    """The opt-out file a loaded policy names, resolved against ``home``."""
    if not policy.active or not policy.rules.opt_out:
        return None
    path = Path(policy.rules.opt_out)
    return path if path.is_absolute() else Path(home) / path


def policy_files_key(home: Path, current: Policy) -> tuple[tuple[int, int, int] | None, ...]:
    """Identity (inode, mtime, size) of ``policy.yaml`` and of the current opt-out file: a change means reload."""
    opt = opt_out_path(home, current)
    return (_stat_key(policy_path(home)), _stat_key(opt) if opt is not None else None)


def _stat_key(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def window_start(now: float, cap: MaxContacts) -> float:
    """Epoch seconds where the cap's rolling window begins."""
    return now - cap.days * 86400.0 if math.isfinite(cap.days) else 0.0
