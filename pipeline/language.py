"""Language detection and text normalization for Chinese and English."""

from __future__ import annotations

import unicodedata


def is_cjk(char: str) -> bool:
    """True for a CJK ideograph (the characters that make a message Chinese)."""
    code = ord(char)
    return 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0xF900 <= code <= 0xFAFF


def detect_language(text: str, hint: str | None = None) -> str:
    """``zh`` when the text holds any Chinese character, else ``en`` (or the hint for empty text)."""
    if any(is_cjk(ch) for ch in text):
        return "zh"
    if hint and not text.strip():
        return hint
    return "en"


def normalize(text: str) -> str:
    """Fold width and case so ``ＷＥＡＴＨＥＲ？`` matches ``weather?``: NFKC, then casefold."""
    return unicodedata.normalize("NFKC", text).casefold().strip()
