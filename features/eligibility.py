"""Offer eligibility rules (``offer_catalog.eligible_if``): small boolean expressions over feature names.

A rule such as ``tenure_days >= 180 and monetary_365d > 100`` is parsed once into a closure; evaluating it is a
few comparisons. Only names, numbers, comparisons, ``and``/``or``/``not`` and parentheses are allowed, so a
catalog file can never run code. A comparison with a missing (NaN) or non-numeric value (a text attribute) is
false, so such a rule makes the offer ineligible rather than failing the answer. Rules longer than
:data:`MAX_RULE_CHARS` or nested deeper than :data:`MAX_RULE_DEPTH` are refused when the catalog is read.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping

Rule = Callable[[Mapping[str, float]], bool]

#: Longest accepted rule: a catalog cell, not a program.
MAX_RULE_CHARS = 2000
#: Deepest accepted nesting of the rule's syntax tree (keeps parsing and evaluation far from recursion limits).
MAX_RULE_DEPTH = 32

_COMPARE: dict[type, Callable[[float, float], bool]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}


class RuleError(ValueError):
    """An ``eligible_if`` expression that cannot be parsed or names an unknown feature."""


def _value(node: ast.expr, known: set[str] | None) -> Callable[[Mapping[str, float]], float]:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        try:
            const = float(node.value)
        except OverflowError as exc:
            raise RuleError(f"number {str(node.value)[:12]}... is out of range") from exc
        return lambda row: const
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _value(node.operand, known)
        return lambda row: -inner(row)
    if isinstance(node, ast.Name):
        name = node.id
        if known is not None and name not in known:
            raise RuleError(f"unknown feature '{name}'")

        def get(row: Mapping[str, float]) -> float:
            value = row.get(name)
            try:
                return math.nan if value is None else float(value)
            except (TypeError, ValueError, OverflowError):  # text where a number is compared: unknown, so false
                return math.nan

        return get
    raise RuleError(f"unsupported term {ast.unparse(node)!r}")


def _compile(node: ast.expr, known: set[str] | None) -> Rule:
    if isinstance(node, ast.BoolOp):
        parts = [_compile(v, known) for v in node.values]
        if isinstance(node.op, ast.And):
            return lambda row: all(p(row) for p in parts)
        return lambda row: any(p(row) for p in parts)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        inner = _compile(node.operand, known)
        return lambda row: not inner(row)
    if isinstance(node, ast.Compare):
        terms = [_value(node.left, known)] + [_value(c, known) for c in node.comparators]
        ops = []
        for op in node.ops:
            if type(op) not in _COMPARE:
                raise RuleError(f"unsupported comparison {type(op).__name__}")
            ops.append(_COMPARE[type(op)])

        def compare(row: Mapping[str, float]) -> bool:
            values = [t(row) for t in terms]
            # NaN compares false with everything, which is what "unknown feature value" should mean here.
            return all(op(a, b) for op, a, b in zip(ops, values, values[1:], strict=False))

        return compare
    raise RuleError(f"unsupported expression {ast.unparse(node)!r}")


def _paren_depth(text: str) -> int:
    """Deepest parenthesis nesting, checked before parsing (Python's parser recurses on it)."""
    deepest = depth = 0
    for char in text:
        depth += (char == "(") - (char == ")")
        deepest = max(deepest, depth)
    return deepest


def _depth(node: ast.AST) -> int:
    """Height of a syntax tree (iterative: a hostile rule must not exhaust the stack here either)."""
    deepest, stack = 0, [(node, 1)]
    while stack:
        current, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(current))
    return deepest


def compile_rule(expression: str | None, known_features: set[str] | None = None) -> Rule:
    """Parse an ``eligible_if`` expression into a predicate over a feature mapping.

    Args:
        expression: The rule; empty or None means "always eligible".
        known_features: When given, names outside this set are rejected.

    Returns:
        A function ``row -> bool``.

    Raises:
        RuleError: the expression is not a supported boolean rule.
    """
    if expression is None or (isinstance(expression, float) and math.isnan(expression)) or not str(expression).strip():
        return lambda row: True
    text = str(expression).strip()
    if len(text) > MAX_RULE_CHARS:
        raise RuleError(f"eligible_if is {len(text)} characters long; at most {MAX_RULE_CHARS} are accepted")
    if _paren_depth(text) > MAX_RULE_DEPTH:
        raise RuleError(f"eligible_if {text[:60]!r}... nests more than {MAX_RULE_DEPTH} parentheses")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, RecursionError, MemoryError) as exc:
        raise RuleError(f"cannot parse eligible_if {text[:200]!r}: {getattr(exc, 'msg', 'too deeply nested')}") from exc
    if _depth(tree.body) > MAX_RULE_DEPTH:
        raise RuleError(f"eligible_if {text[:60]!r}... nests deeper than {MAX_RULE_DEPTH} levels")
    try:
        return _compile(tree.body, known_features)
    except RuleError as exc:
        raise RuleError(f"eligible_if {expression!r}: {exc}") from exc
