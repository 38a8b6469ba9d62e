"""Refuse scenario regexes that can take exponential (or huge polynomial) time.

Python's ``re`` backtracks, and holds the GIL while it does: a capture regex such
as ``(a+)+$`` run on a 64 KiB header stalls the whole worker, which is then
declared lost.  There is no safe way to stop a running ``re`` match (and a match
budget would need a clock in the sans-IO core), so ``sipload validate`` refuses
such patterns up front, with the scenario's line and column.

Theory of operation
===================

A backtracking matcher blows up when a repeated part can match the same text
in many ways.  The check walks the parsed pattern (``re._parser``) and, for each
repetition that can iterate without bound (``*``, ``+``, ``{n,}``) or whose body
can be arbitrarily long (``(.*a){20}``), asks:

1. Does one iteration of the body have a variable length?  If not (``(ab)+``),
   iterations cannot be split in more than one way.
2. If it does, is there a *separator*: a part of the body that must match at
   least one character, always the same number, from characters that none of
   the variable parts can match (``([^;]+;)*``: the ``;``)?  Then each iteration
   ends at a known place.
3. Or are the variable parts a single alternation whose branches each start with
   characters no other branch starts with (``(?:[^"\\\\]|\\\\.)*``)?  Then the first
   character picks the branch.

A repetition that passes none of these is refused (``(a+)+``, ``(\\w+\\s?)+``,
``(a|aa)+``, ``(.*a){20}``).  Possessive quantifiers (``*+``, ``++``) and atomic
groups (``(?>...)``) never backtrack, so they are accepted as written: the error
message suggests them.  Patterns that are only polynomial without nesting
(``.*x.*``) are accepted: their cost is bounded by the message size limit.
"""

from __future__ import annotations

from collections.abc import Callable
from re import _constants as C  # type: ignore[attr-defined]
from re import _parser as P  # type: ignore[attr-defined]
from typing import Any

_ASCII = frozenset(range(128))
_OTHER = 128  #: stands for every non-ASCII character
ALL = _ASCII | {_OTHER}
INF = 1 << 30

_CATEGORIES: dict[Any, frozenset[int]] = {}


def _category(cat: Any) -> frozenset[int]:
    if not _CATEGORIES:
        tests: dict[Any, Callable[[int], bool]] = {
            C.CATEGORY_DIGIT: lambda c: chr(c).isdigit(),
            C.CATEGORY_WORD: lambda c: chr(c).isalnum() or c == ord("_"),
            C.CATEGORY_SPACE: lambda c: chr(c).isspace(),
        }
        for positive, test in tests.items():
            chars = frozenset(c for c in range(128) if test(c))
            _CATEGORIES[positive] = chars | {_OTHER}  # Unicode digits, letters, spaces
            negative = getattr(C, str(positive).replace("CATEGORY_", "CATEGORY_NOT_"))
            _CATEGORIES[negative] = (_ASCII - chars) | {_OTHER}
    return _CATEGORIES.get(cat, ALL)


def _code(c: int) -> int:
    return c if c < 128 else _OTHER


def _in(items: list[Any]) -> frozenset[int]:
    out: set[int] = set()
    negate = False
    for op, av in items:
        if op is C.NEGATE:
            negate = True
        elif op is C.LITERAL:
            out.add(_code(av))
        elif op is C.RANGE:
            lo, hi = av
            out.update(range(lo, min(hi, 127) + 1))
            if hi >= 128:
                out.add(_OTHER)
        elif op is C.CATEGORY:
            out |= _category(av)
        else:
            out |= ALL
    return (ALL - out) | {_OTHER} if negate else frozenset(out)


class _Info:
    """What one piece of a pattern can match: characters, lengths, first characters."""

    __slots__ = ("chars", "first", "hi", "lo")

    def __init__(self, chars: frozenset[int], lo: int, hi: int, first: frozenset[int]) -> None:
        self.chars, self.lo, self.hi, self.first = chars, lo, hi, first


class RegexTooSlow(ValueError):
    """A pattern that can take exponential time (see the module docstring)."""


def _seq(items: Any) -> _Info:
    chars: frozenset[int] = frozenset()
    first: frozenset[int] = frozenset()
    lo = hi = 0
    nullable_so_far = True
    for item in items:
        info = _item(item)
        chars |= info.chars
        if nullable_so_far:
            first |= info.first
        nullable_so_far = nullable_so_far and info.lo == 0
        lo += info.lo
        hi = min(INF, hi + info.hi)
    return _Info(chars, lo, hi, first)


def _item(item: Any) -> _Info:
    op, av = item
    if op is C.LITERAL:
        one = frozenset({_code(av)})
        return _Info(one, 1, 1, one)
    if op is C.NOT_LITERAL:
        one = ALL - {_code(av)}
        return _Info(one, 1, 1, one)
    if op is C.ANY:
        return _Info(ALL, 1, 1, ALL)
    if op is C.IN:
        one = _in(av)
        return _Info(one, 1, 1, one)
    if op is C.SUBPATTERN:
        return _seq(av[-1])
    if op is C.ATOMIC_GROUP:
        return _seq(av)
    if op is C.BRANCH:
        alts = [_seq(a) for a in av[1]]
        return _Info(frozenset().union(*(a.chars for a in alts)), min(a.lo for a in alts),
                     max(a.hi for a in alts), frozenset().union(*(a.first for a in alts)))
    if op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT):
        lo, hi, body = av
        b = _seq(body)
        top = INF if hi == C.MAXREPEAT else min(INF, hi * b.hi)
        return _Info(b.chars, lo * b.lo, top, b.first)
    if op is C.GROUPREF_EXISTS:
        yes, no = av[1], av[2]
        a, b = _seq(yes), _seq(no or [])
        return _Info(a.chars | b.chars, min(a.lo, b.lo), max(a.hi, b.hi), a.first | b.first)
    if op is C.GROUPREF:
        return _Info(ALL, 0, INF, ALL)
    return _Info(frozenset(), 0, 0, frozenset())  # AT, ASSERT, ASSERT_NOT: zero-width


def _parts(body: Any) -> list[Any]:
    """The top-level pieces of a repeat's body (a lone group is opened)."""
    items = list(body)
    while len(items) == 1 and items[0][0] is C.SUBPATTERN:
        items = list(items[0][1][-1])
    return items


def _atomic(item: Any) -> bool:
    """A possessive repeat or an atomic group (perhaps inside a plain group)."""
    op, av = item
    while op is C.SUBPATTERN and len(av[-1]) == 1:
        op, av = av[-1][0]
    return op in (C.POSSESSIVE_REPEAT, C.ATOMIC_GROUP)


def _deterministic_branch(item: Any) -> bool:
    op, av = item
    while op is C.SUBPATTERN and len(av[-1]) == 1:
        op, av = av[-1][0]
    if op is not C.BRANCH:
        return False
    alts = [_seq(a) for a in av[1]]
    if any(a.lo == 0 for a in alts):
        return False
    seen: set[int] = set()
    for a in alts:
        if seen & a.first:
            return False
        seen |= a.first
    return True


def _check_repeat(av: Any) -> str | None:
    _, hi, body = av
    b = _seq(body)
    if hi == C.MAXREPEAT or (hi > 1 and b.hi >= INF):
        if b.lo == b.hi:
            return None  # 1: fixed-length iterations
        parts = [(p, _item(p)) for p in _parts(body)]
        variable = [(p, i) for p, i in parts if i.lo != i.hi and not _atomic(p)]
        if not variable:
            return None  # what varies never gives back what it matched
        var_chars = frozenset().union(*(i.chars for _, i in variable))
        for _, i in parts:
            if i.lo == i.hi and i.lo > 0 and not (i.chars & var_chars):
                return None  # 2: a separator
        if len(variable) == 1 and _deterministic_branch(variable[0][0]):
            return None  # 3: the first character picks the branch
        return "a repeated group can match the same text in many ways"
    return None


def _walk(items: Any) -> str | None:
    for op, av in items:
        if op in (C.MAX_REPEAT, C.MIN_REPEAT):
            why = _check_repeat(av) or _walk(av[2])
        elif op is C.SUBPATTERN:
            why = _walk(av[-1])
        elif op is C.BRANCH:
            why = next((w for w in (_walk(a) for a in av[1]) if w), None)
        elif op in (C.ASSERT, C.ASSERT_NOT):
            why = _walk(av[1])
        elif op is C.GROUPREF_EXISTS:
            why = _walk(av[1]) or (_walk(av[2]) if av[2] else None)
        else:  # possessive repeats and atomic groups never backtrack
            why = None
        if why:
            return why
    return None


def check_regex(pattern: str) -> None:
    """Accept ``pattern`` or say why it can take exponential time.

    Raises:
        re.error: not a regular expression.
        RegexTooSlow: a repetition that can backtrack without bound.
    """
    why = _walk(P.parse(pattern))
    if why:
        raise RegexTooSlow(f"{why}: matching can take exponential time (catastrophic "
                           "backtracking); give each repetition a separator it cannot "
                           "match, or use a possessive quantifier (*+, ++) or an atomic "
                           "group (?>...)")


__all__ = ["RegexTooSlow", "check_regex"]
