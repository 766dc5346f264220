"""A generated message corpus for search tests and benchmarks (deterministic per seed).

Each message is a run of common engineering words with one distinctive made-up word in it,
so a query for that word, misspelt, has exactly one right answer.
"""

from __future__ import annotations

import random

_COMMON_WORDS = """the a to of and in is for on that with this it be as at by from we not are was
will have has should can need check test tests build deploy deployment release server client
database query index cache memory error errors failed failure timeout retry latency request
response api endpoint auth token session user agent review reviewer security performance
bug fix patch merge branch commit config configuration file files log logs metric metrics
update migration schema table row column write read lock transaction process thread queue
worker job task plan design docs documentation readme example note finding issue ticket
summary result results benchmark slow fast leak crash restart network port host container
image version upgrade dependency package module function class method variable input output
stream buffer parse parser json yaml sql python rust go javascript frontend backend service
services cluster node pod kubernetes docker pipeline ci cd stage staging production prod
incident alert monitor dashboard trace span profile profiler cpu disk"""
COMMON = _COMMON_WORDS.split()
_CONSONANTS = "bcdfghjklmnprstvwxz"
_VOWELS = "aeiou"
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def distinctive_word(rng: random.Random) -> str:
    """A pronounceable made-up word of 8-12 letters, e.g. 'luwunuma'."""
    syllables = "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(6))
    return syllables[: rng.randint(8, 12)]


def message_text(rng: random.Random, word: str) -> str:
    words = [rng.choice(COMMON) for _ in range(rng.randint(12, 40))]
    words.insert(rng.randrange(len(words) + 1), word)
    return " ".join(words).capitalize() + "."


def with_typo(rng: random.Random, word: str) -> str:
    """`word` with one edit inside it: a substitution, deletion, insertion or swap."""
    i = rng.randrange(1, len(word) - 2)
    kind = rng.choice(["substitute", "delete", "insert", "swap"])
    if kind == "substitute":
        return word[:i] + rng.choice([c for c in _LETTERS if c != word[i]]) + word[i + 1 :]
    if kind == "delete":
        return word[:i] + word[i + 1 :]
    if kind == "insert":
        return word[:i] + rng.choice(_LETTERS) + word[i:]
    if word[i] == word[i + 1]:
        return word[:i] + rng.choice([c for c in _LETTERS if c != word[i]]) + word[i + 1 :]
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def corpus(n: int, seed: int = 1) -> list[tuple[str, str]]:
    """`n` (distinctive word, message text) pairs; distinct words."""
    rng = random.Random(seed)
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    while len(out) < n:
        word = distinctive_word(rng)
        if word not in seen:
            seen.add(word)
            out.append((word, message_text(rng, word)))
    return out
