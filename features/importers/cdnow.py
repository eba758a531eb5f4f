"""Importer for the CDNOW master file (``CDNOW_master.txt``), the data set of the BTYD literature.

23,570 customers who made their first purchase at CDNOW in the first quarter of 1997, and every purchase they made
until the end of June 1998 (69,659 rows): Fader, Hardie & Lee (2005), "Counting Your Customers the Easy Way: An
Alternative to the Pareto/NBD Model". It is not among ``../shared/datasets``; the file is published by Bruce Hardie
(brucehardie.com) and ships in the ``lifetimes`` wheel on PyPI (``lifetimes/datasets/CDNOW_master.txt``).

Format: whitespace-separated ``customer id, date (YYYYMMDD), number of CDs, dollar value``, one purchase per line;
Hardie's copy has no header, the ``lifetimes`` copy has one (``customer_id date number_of_cds dollar_value``), and
both are read.

Mapping: ``transactions`` only (the file holds nothing else): ``customer_id`` as written (zero-padded, kept as a
string); ``ts`` = the date at midnight (the file has no time of day); ``amount`` = the dollar value (zero-value
purchases are kept: they make the customer known); ``quantity`` = the number of CDs; ``order_id`` =
``<customer>-<date>-<n>``, the ``n``-th purchase of that customer on that day in file order (the file has no order
number, and a customer can buy more than once a day); ``product_id``, ``category`` and ``channel`` are null.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

FILE_NAME = "CDNOW_master.txt"
COLUMNS = ["customer_id", "date", "quantity", "amount"]


def load(source: Path) -> dict[str, pd.DataFrame]:
    """Read the folder holding ``CDNOW_master.txt`` and return its canonical tables.

    Args:
        source: The folder holding ``CDNOW_master.txt``.

    Returns:
        ``{"transactions": ...}`` as a canonical table.

    Raises:
        FileNotFoundError: When the folder or ``CDNOW_master.txt`` is missing.
        ValueError: When the file holds no purchase, a line does not hold four fields, or a date, count or value
            does not parse (the message names the file and the line).
    """
    path = Path(source) / FILE_NAME
    if not path.is_file():
        raise FileNotFoundError(f"cdnow: expected file {path} does not exist")
    with path.open() as handle:
        first = handle.readline().split()
    header = 1 if first and not first[0].isdigit() else 0
    try:
        raw = pd.read_csv(path, sep=r"\s+", header=None, skiprows=header, names=COLUMNS, dtype=str, engine="python")
    except pd.errors.EmptyDataError:
        raw = pd.DataFrame(columns=COLUMNS)
    except pd.errors.ParserError as exc:  # more than four fields on a line: pandas names the line
        raise ValueError(f"cdnow: {path}: {str(exc).split('. ')[0]} (expected {', '.join(COLUMNS)})") from exc
    if raw.empty:
        raise ValueError(f"cdnow: {path} holds no purchases")
    # The line number in the file, for the messages (1-based, header included).
    line = raw.index.to_numpy() + 1 + header
    bad = raw[COLUMNS].isna().any(axis=1).to_numpy()
    if bad.any():
        raise ValueError(f"cdnow: {path} line {int(line[bad][0])}: expected 4 fields ({', '.join(COLUMNS)})")
    ts = pd.to_datetime(raw["date"], format="%Y%m%d", errors="coerce")
    quantity = pd.to_numeric(raw["quantity"], errors="coerce")
    amount = pd.to_numeric(raw["amount"], errors="coerce")
    for name, parsed in (("date", ts), ("quantity", quantity), ("amount", amount)):
        if (wrong := parsed.isna().to_numpy()).any():
            first_wrong = int(line[wrong][0])
            value = raw[name].iloc[first_wrong - 1 - header]
            raise ValueError(f"cdnow: {path} line {first_wrong}: {name} {value!r} does not parse")
    customer_id = raw["customer_id"].astype("string")
    nth = raw.groupby(["customer_id", "date"], sort=False).cumcount() + 1
    null = pd.Series(pd.NA, index=raw.index, dtype="string")
    transactions = pd.DataFrame(
        {
            "customer_id": customer_id,
            "ts": ts.astype("datetime64[ns]"),
            "amount": amount.astype("float64"),
            "order_id": (customer_id + "-" + raw["date"] + "-" + nth.astype(str)).astype("string"),
            "product_id": null,
            "category": null,
            "quantity": quantity.astype("float64"),
            "channel": null,
        }
    )
    return {"transactions": transactions}
