"""Rules for the names people choose, volunteers' and teams': nothing hidden, no look-alikes.

A name is read by other people (leaderboards, team pages), so what counts is how it looks,
not which code points it holds. Two rules follow:

- no invisible format characters (Unicode category Cf, the bidirectional controls among
  them): they change how a name, or the text beside it, is drawn without being seen
  themselves (control characters, Cc, are refused by each kind of name's own pattern);
- no name that looks like one already taken: two names look alike when their confusable
  skeletons (Unicode UTS #39, section 4) are equal once case is ignored, so "ada" spelt
  with a Cyrillic "a" (U+0430) is refused beside "ada".

The functions are pure. The services keep :func:`name_skeleton` in a unique, indexed column,
so the look-alike check is one index look-up, and of two look-alike names sent at the same
moment the database lets one in.
"""

from __future__ import annotations

import hashlib
import unicodedata
from functools import lru_cache

import icu

from coordinator.core.errors import Conflict, InvalidInput

# The bidirectional controls (all of them Cf), named apart for a sharper message: they
# reorder the text that follows them, so a name could make a page read backwards.
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Skeleton and case folding each can feed the other a new mapping ("Ω" folds to "ω", whose
# skeleton is "w"); three rounds reach the fixed point for every single character, and
# eight leave room for names.
MAX_ROUNDS = 8
SHOWN_IN_MESSAGE = 3
NOTHING_SHOWN = hashlib.sha256(b"").hexdigest()  # the digest of an empty skeleton


def hidden_characters(name: str) -> list[str]:
    """The format characters (Cf) of ``name``, each once, in order."""
    return list(dict.fromkeys(c for c in name if c in BIDI_CONTROLS or unicodedata.category(c) == "Cf"))


def refuse_hidden_characters(name: str) -> None:
    """Refuse a name holding a character no one sees; the message names the characters, not
    the name, which would carry them into the reply."""
    hidden = hidden_characters(name)
    if not hidden:
        return
    listed = ", ".join(f"U+{ord(c):04X} {unicodedata.name(c, 'unnamed')}" for c in hidden[:SHOWN_IN_MESSAGE])
    if any(c in BIDI_CONTROLS for c in hidden):
        raise InvalidInput(
            f"a name may not hold characters that change the direction of text ({listed})",
            code="bidi_control",
        )
    raise InvalidInput(f"a name may not hold invisible characters ({listed})", code="invisible_character")


@lru_cache(maxsize=1)
def _spoof_checker() -> icu.SpoofChecker:
    # ICU's checker is read-only once made; its skeleton is safe to take from many threads.
    return icu.SpoofChecker()


def skeleton(name: str) -> str:
    """The UTS #39 skeleton of ``name``, case-folded: equal for names that look alike.

    ICU computes it from Unicode's confusables.txt (NFD, ignorable characters removed,
    each confusable replaced by its prototype, NFD again). NFKC comes first, as in Django's
    username field, because confusables.txt leaves some compatibility forms out (the
    fullwidth d, U+FF44). Folding case after the skeleton makes "ADA", "Ada" and "ada" with
    a Cyrillic "a" one skeleton, while taking the skeleton first keeps a capital "I" with
    the "l" it looks like. Only for comparing: a skeleton mixes scripts and is never shown.
    """
    checker = _spoof_checker()
    current = unicodedata.normalize("NFKC", name)
    for _ in range(MAX_ROUNDS):
        following = checker.getSkeleton(0, current).casefold()
        if following == current:
            break
        current = following
    return current


def skeleton_digest(name: str) -> str:
    """The SHA-256 of :func:`skeleton`, hex: what the ``name_skeleton`` columns hold.

    A digest, not the skeleton itself: a 150-character name's skeleton can outgrow what a
    PostgreSQL index entry may hold, and equal digests mean equal skeletons.
    """
    return hashlib.sha256(skeleton(name).encode("utf-8")).hexdigest()


def name_skeleton(name: str) -> str:
    """The :func:`skeleton_digest` of a new name, once it passes the rules a name alone can
    break: no hidden characters, and something to see (a name made only of ignorable
    characters such as U+3164 HANGUL FILLER has an empty skeleton and shows nothing)."""
    refuse_hidden_characters(name)
    digest = skeleton_digest(name)
    if digest == NOTHING_SHOWN:
        raise InvalidInput("a name must show something: this one is invisible", code="invisible_name")
    return digest


def look_alike(name: str, existing: str) -> Conflict:
    """The refusal of ``name`` beside the public name it could pass for."""
    return Conflict(f"the name {name!r} looks like the existing name {existing!r}", code="name_look_alike")
