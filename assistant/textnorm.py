"""Text normalisation and Chinese numbers: full-width forms, Chinese numerals, amounts with units."""
from __future__ import annotations

import re
import unicodedata

CN_DIGITS = {"零": 0, "〇": 0, "○": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
CN_UNITS = {"十": 10, "百": 100, "千": 1000}
CN_NUM = "零〇○一二两三四五六七八九十百千"
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u200b-\u200f\u2028-\u202e\ufeff]")


def cn_to_int(text: str) -> int | None:
    """'十' → 10, '二十三' → 23, '一百零五' → 105, '二〇二一' → 2021, '3' → 3."""
    if not text:
        return None
    if text.isdigit():
        return int(text)
    if all(ch in CN_DIGITS for ch in text):  # digit by digit: 二〇二一
        return int("".join(str(CN_DIGITS[ch]) for ch in text))
    total, current = 0, 0
    for ch in text:
        if ch in CN_DIGITS:
            current = CN_DIGITS[ch]
        elif ch in CN_UNITS:
            total += (current or 1) * CN_UNITS[ch]
            current = 0
        else:
            return None
    return total + current


def normalize(question: str) -> str:
    """NFKC (full-width → half-width), drop control characters and spaces, unify punctuation."""
    text = unicodedata.normalize("NFKC", question)
    text = _CONTROL.sub("", text)
    text = re.sub(r"\s+", "", text)
    text = text.replace("～", "-").replace("~", "-").replace("—", "-").replace("–", "-")
    # years written in Chinese digits: 二〇二一年 → 2021年
    text = re.sub(r"([零〇○一二三四五六七八九]{4})年", lambda m: f"{cn_to_int(m.group(1))}年", text)
    # months / quarters / counts written in Chinese: 十月 → 10月, 前十 → 前10
    text = re.sub(r"([一二两三四五六七八九十]{1,3})(?=(月|季度|个月|年|名|位|家|个|笔|项|大|强))",
                  lambda m: str(cn_to_int(m.group(1))), text)
    text = re.sub(r"(前|后|top|TOP|Top)([一二三四五六七八九十]{1,3})", lambda m: m.group(1) + str(cn_to_int(m.group(2))), text)
    return text


UNIT_FACTORS = {"元": 1.0, "万": 1e4, "万元": 1e4, "亿": 1e8, "亿元": 1e8, "千元": 1e3, "千": 1e3, "百万": 1e6, "百万元": 1e6, "千万": 1e7, "千万元": 1e7}
UNIT_TO_YUAN = {"元": 1.0, "万元": 1e4, "亿元": 1e8}


def to_unit(value_yuan: float, unit: str) -> float:
    """Convert an amount in 元 into a metric's stored unit (元, 万元, 亿元); other units unchanged."""
    factor = UNIT_TO_YUAN.get(unit)
    return value_yuan / factor if factor else value_yuan


PERCENT_CN = re.compile(r"百分之([零一二三四五六七八九十百点\d.]+)")


def parse_percent_cn(text: str) -> str:
    """百分之十五 → 15%."""
    def repl(m: re.Match) -> str:
        raw = m.group(1)
        if "点" in raw:
            a, b = raw.split("点", 1)
            whole = cn_to_int(a) if a else 0
            frac = "".join(str(CN_DIGITS.get(ch, ch)) for ch in b)
            return f"{whole}.{frac}%"
        n = cn_to_int(raw)
        return f"{n}%" if n is not None else m.group(0)
    return PERCENT_CN.sub(repl, text)
