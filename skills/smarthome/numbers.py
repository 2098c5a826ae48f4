"""Chinese numerals said before a unit ("二十五度", "百分之三十") written as digits, which the templates read."""

from __future__ import annotations

import re

_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_NUMERAL = "[零〇一二两三四五六七八九十百]+"
#: Only numerals that are plainly amounts: before 度 / % / K, after 百分之, or ending a setting ("音量调到三十").
_AMOUNT = re.compile(
    rf"(?P<before>百分之)(?P<n>{_NUMERAL})(?:[点](?P<f>[零〇一二三四五六七八九]+))?"
    rf"|(?P<n2>{_NUMERAL})(?:[点](?P<f2>[零〇一二三四五六七八九]+))?(?P<unit>度|摄氏度|%|K|开尔文)"
    rf"|(?P<verb>调到|调成|调为|设为|设成|设置为|开到|调至|降到|升到)(?P<n3>{_NUMERAL})(?:[点](?P<f3>[零〇一二三四五六七八九]+))?(?P<end>[吧啊呀]?$)"
)


def integer(numeral: str) -> int | None:
    """二十五 → 25, 一百 → 100, 十 → 10, 三五 → 35 (digit by digit); None when it is not a number below 1000."""
    if all(ch in _DIGITS for ch in numeral):
        return int("".join(str(_DIGITS[ch]) for ch in numeral))
    value, current = 0, 0
    for ch in numeral:
        if ch in _DIGITS:
            current = _DIGITS[ch]
        elif ch == "十":
            value += (current or 1) * 10
            current = 0
        elif ch == "百":
            value += (current or 1) * 100
            current = 0
        else:
            return None
    return value + current


def digits_for_numerals(text: str) -> str:
    """``text`` with its amounts in digits: "把空调调到二十五度" → "把空调调到25度"."""

    def written(match: re.Match[str]) -> str:
        numeral = match.group("n") or match.group("n2") or match.group("n3")
        fraction = match.group("f") or match.group("f2") or match.group("f3")
        value = integer(numeral)
        if value is None:
            return match.group(0)
        number = str(value) + ("." + "".join(str(_DIGITS[ch]) for ch in fraction) if fraction else "")
        before = match.group("before") or match.group("verb") or ""
        return f"{before}{number}{match.group('unit') or match.group('end') or ''}"

    return _AMOUNT.sub(written, text)
