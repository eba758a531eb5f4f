"""The canonical input tables (CONTRACT §1) and the fixed vocabularies features are defined over.

Everything that reads, writes or generates data agrees on these specs: the loader validates against them,
importers and the synthetic generator write them, and the feature definitions name their columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ColumnKind = Literal["string", "timestamp", "number", "bool"]


@dataclass(frozen=True)
class Column:
    """One column of a canonical table.

    Attributes:
        name: Column name as it appears in the file.
        kind: Logical type the loader casts to.
        required: Whether a file without this column is rejected.
    """

    name: str
    kind: ColumnKind
    required: bool = False


@dataclass(frozen=True)
class TableSpec:
    """A canonical table: its name, its known columns and whether other columns are kept.

    Attributes:
        name: Table name, also the file stem (``transactions.parquet``).
        columns: Known columns in canonical order.
        required: Whether a data directory must contain this table.
        keep_extra: Whether unknown columns are kept (static attributes on ``customers``).
    """

    name: str
    columns: tuple[Column, ...]
    required: bool = False
    keep_extra: bool = False

    @property
    def required_columns(self) -> tuple[str, ...]:
        """Names of the columns a file must have."""
        return tuple(c.name for c in self.columns if c.required)

    def column(self, name: str) -> Column | None:
        """The spec of ``name``, or None when the table does not define it."""
        return next((c for c in self.columns if c.name == name), None)


TRANSACTIONS = TableSpec(
    "transactions",
    (
        Column("customer_id", "string", True),
        Column("ts", "timestamp", True),
        Column("amount", "number", True),
        Column("order_id", "string"),
        Column("product_id", "string"),
        Column("category", "string"),
        Column("quantity", "number"),
        Column("channel", "string"),
    ),
    required=True,
)
CUSTOMERS = TableSpec(
    "customers",
    (
        Column("customer_id", "string", True),
        Column("signup_ts", "timestamp"),
        Column("churn_ts", "timestamp"),
    ),
    keep_extra=True,
)
INTERACTIONS = TableSpec(
    "interactions",
    (
        Column("customer_id", "string", True),
        Column("ts", "timestamp", True),
        Column("channel", "string", True),
        Column("event_type", "string", True),
        Column("value", "number"),
    ),
)
SURVEYS = TableSpec(
    "surveys",
    (
        Column("customer_id", "string", True),
        Column("ts", "timestamp", True),
        Column("kind", "string", True),
        Column("score", "number", True),
    ),
)
OFFERS = TableSpec(
    "offers",
    (
        Column("customer_id", "string", True),
        Column("ts", "timestamp", True),
        Column("offer_id", "string", True),
        Column("accepted", "bool"),
        Column("revenue", "number"),
        Column("responded_ts", "timestamp"),
        Column("channel", "string"),
        Column("propensity", "number"),
    ),
)
OFFER_CATALOG = TableSpec(
    "offer_catalog",
    (
        Column("offer_id", "string", True),
        Column("value", "number"),
        Column("cost", "number"),
        Column("eligible_if", "string"),
    ),
)

TABLES: dict[str, TableSpec] = {
    t.name: t for t in (TRANSACTIONS, CUSTOMERS, INTERACTIONS, SURVEYS, OFFERS, OFFER_CATALOG)
}

#: Offer id of the control arm (customer deliberately not contacted).
CONTROL_OFFER = "none"

# Fixed vocabularies keep the feature set independent of the data: a value outside them counts as "other".
TRANSACTION_CHANNELS: tuple[str, ...] = ("web", "app", "store", "phone")
INTERACTION_CHANNELS: tuple[str, ...] = ("web", "app", "email", "store", "support", "phone")
EVENT_TYPES: tuple[str, ...] = ("session", "open", "click", "visit", "ticket", "call", "complaint")
#: Interactions that count as a support contact (besides anything on the ``support`` channel).
SUPPORT_EVENT_TYPES: tuple[str, ...] = ("ticket", "call", "complaint")
SURVEY_KINDS: dict[str, tuple[float, float]] = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}
