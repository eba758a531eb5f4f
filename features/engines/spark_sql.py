"""DuckDB feature SQL to Spark SQL, with SQLGlot: the feature definitions stay the one source of truth.

Why SQLGlot and not Ibis: the definitions (:mod:`features.definitions`, :mod:`features.labels`) are SQL text
already, hashed into the feature-set version and edited by the team as SQL. Transpiling that text keeps one
definition per feature and needs no second expression language; an Ibis port would rewrite every definition
and make the DuckDB path depend on Ibis too. Transpiling the full feature query takes about half a second
(``benchmarks/spark_scaling.py`` prints it), nothing next to a Spark job.

SQLGlot's plain translation is not enough for equal values; four rewrites make Spark compute what DuckDB does:

* ``epoch(ts)`` becomes ``unix_micros(ts) / 1e6``: SQLGlot emits ``unix_timestamp``, which drops the
  fraction of a second that DuckDB's ``epoch`` keeps.
* A decimal literal (``1.0``, ``86400.0``) becomes a DOUBLE: in Spark ``avg`` over DECIMAL(2,1) keeps only 5
  decimals and integer/DECIMAL arithmetic stays DECIMAL, where DuckDB computes in DOUBLE.
* ``round(x, d)`` becomes ``round(x * 10^d) / 10^d``, DuckDB's own arithmetic for DOUBLE (Spark rounds the
  shortest decimal string half-up, which differs on ties such as 1.0428125).
* The ``main.`` schema that the DuckDB SQL uses to tell a table from a CTE of the same name is dropped: the
  Spark engine registers the tables as temporary views, which live in no database.
"""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def _rewrite() -> Any:
    import sqlglot.expressions as exp

    def rewrite(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.TimeToUnix):
            micros = exp.Anonymous(this="unix_micros", expressions=[exp.cast(node.this, "TIMESTAMP")])
            return exp.Div(this=micros, expression=exp.cast(exp.Literal.number(1_000_000), "DOUBLE"))
        if isinstance(node, exp.Literal) and not node.is_string and "." in node.this:
            return exp.cast(node.copy(), "DOUBLE")
        if isinstance(node, exp.Table | exp.Column) and node.args.get("db") and node.text("db") == "main":
            node = node.copy()
            node.set("db", None)
            return node
        return node

    return rewrite


@cache
def _rewrite_round() -> Any:
    import sqlglot.expressions as exp

    def rewrite(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Round) and node.args.get("decimals") is not None:
            # DuckDB rounds a DOUBLE as round(x * 10^d) / 10^d; Spark's round(x, d) rounds the decimal string.
            scale = exp.cast(exp.Literal.number(10 ** int(node.text("decimals"))), "DOUBLE")
            inner = exp.Round(this=exp.Mul(this=node.this.copy(), expression=scale.copy()))
            return exp.Div(this=inner, expression=scale)
        return node

    return rewrite


def to_spark_sql(sql: str) -> str:
    """Transpile one DuckDB query of the feature pipeline to Spark SQL.

    Args:
        sql: A query in DuckDB's dialect, as :mod:`features.definitions` writes it.

    Returns:
        The same query in Spark SQL, computing the same values (see the module docstring).

    Raises:
        sqlglot.errors.ParseError: ``sql`` is not one valid DuckDB statement.
    """
    import sqlglot

    (tree,) = sqlglot.parse(sql, read="duckdb")
    if tree is None:
        raise ValueError("empty SQL")
    return (
        tree.transform(_rewrite())
        .transform(_rewrite_round())
        .sql(dialect="spark", unsupported_level=sqlglot.ErrorLevel.RAISE)
    )
