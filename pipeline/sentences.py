"""Sentence splitting for speech: a reply is spoken a sentence at a time, the first playing while the rest is made."""

from __future__ import annotations

import re

#: Characters that close a quotation or bracket after the end of a sentence; they stay with it.
_CLOSERS = "\"'”’」』）)\\]】》"
#: Where a sentence ends. Chinese (and full-width) marks always end one; the ASCII ones only before white space
#: or the end of the text, so ``3.5``, ``12.5℃``, ``v1.2`` and ``a.m.`` in the middle of a word stay whole.
#: A line break ends a sentence too: a list of items has no punctuation between them.
_BOUNDARY = re.compile(rf"[。！？；…]+[{_CLOSERS}]*|[.!?;]+[{_CLOSERS}]*(?=\s|$)|\n+")
#: A piece with fewer letters, digits or characters than this is merged into its neighbour: ``OK.`` or ``好的。``
#: alone would cost a synthesis call and a gap in the audio for almost no speech.
MIN_SPEAKABLE_CHARACTERS = 4


def split_sentences(text: str) -> list[str]:
    """``text`` cut into sentences to speak one by one, each keeping its punctuation; no empty ones."""
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        spans.append((start, match.end()))
        start = match.end()
    spans.append((start, len(text)))
    pieces = [(begin, end) for begin, end in spans if text[begin:end].strip()]
    if not any(_speakable(text, begin, end) for begin, end in pieces):
        # Punctuation alone ("……", "?!") says nothing.
        return []
    merged: list[tuple[int, int]] = []
    for begin, end in pieces:
        if merged and _speakable(text, *merged[-1]) < MIN_SPEAKABLE_CHARACTERS:
            # The previous piece is too short to stand alone: it runs on into this one.
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((begin, end))
    if len(merged) > 1 and _speakable(text, *merged[-1]) < MIN_SPEAKABLE_CHARACTERS:
        # A short last piece joins the one before it.
        last = merged.pop()
        merged[-1] = (merged[-1][0], last[1])
    return [re.sub(r"\s*\n\s*", " ", text[begin:end]).strip() for begin, end in merged]


def _speakable(text: str, begin: int, end: int) -> int:
    """Letters, digits and CJK characters in ``text[begin:end]``: what a voice actually says."""
    return sum(1 for char in text[begin:end] if char.isalnum())
