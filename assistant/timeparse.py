"""Time expressions resolved against an as-of date: 2021年, 2019年到2021年, 上半年, 第一季度,
前三季度, 1-10月, 今年, 去年, 上个月, 今年以来, 近三年 … → an inclusive month range."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from semantic_layer.query import TimeRange


@dataclass
class TimeMatch:
    range: TimeRange
    spans: list[tuple[int, int]]
    explicit_grain: str | None = None
    compare_year: int | None = None  # "比2024年多了多少": the explicit comparison year


REL_YEARS = {"今年": 0, "本年": 0, "当年": 0, "去年": -1, "上年": -1, "上一年": -1, "前年": -2, "大前年": -3, "明年": 1}
COMPARE_YEAR = re.compile(r"(?:比|较|相较于?|相比于?|与|同|跟)((?:19|20)\d{2}年?|今年|去年|上年|上一年|前年|大前年)")


def compare_year(text: str, as_of: date) -> tuple[int | None, tuple[int, int] | None]:
    """The year a question compares against ("比2024年", "比前年"), with its span."""
    m = COMPARE_YEAR.search(text)
    if not m:
        return None, None
    word = m.group(1)
    if word[:4].isdigit():
        return int(word[:4]), m.span()
    if word in ("上年", "上一年"):  # relative to the year asked about: the ordinary 同比
        return None, m.span()
    return as_of.year + REL_YEARS[word], m.span()


def _ym(y: int, m: int) -> str:
    return f"{y:04d}-{m:02d}"


def _year_word(text: str, as_of: date) -> tuple[int | None, list[tuple[int, int]], bool]:
    """The year a question refers to, its spans, and whether it is relative (今年/去年…)."""
    y = as_of.year
    spans: list[tuple[int, int]] = []
    year = None
    relative = False
    for m in re.finditer(r"(今年|本年|当年|去年|上年|上一年|前年|大前年|明年)(度)?", text):
        word = m.group(1)
        if m.start() > 0 and text[m.start() - 1] in "比较于与同和跟" or text[m.end():m.end() + 2] == "同期":
            continue  # the comparison period ("比上年多了多少"), not the period asked about
        year = y + REL_YEARS[word]
        spans.append(m.span())
        relative = True
        break
    return year, spans, relative


GRAIN_WORDS = [
    (re.compile(r"(各|每个|每|逐|分|按)月(份|度)?|月度|每月|各月份|月份?走势|月度趋势"), "month"),
    (re.compile(r"(各|每个|每|逐|分|按)季度?|季度走势|分季"), "quarter"),
    (re.compile(r"(各|每|逐|分|按)年(度)?|历年|年度走势|每一年|逐年|各年份"), "year"),
]


def detect_grain(text: str) -> tuple[str | None, list[tuple[int, int]]]:
    for pattern, grain in GRAIN_WORDS:
        m = pattern.search(text)
        if m:
            return grain, [m.span()]
    return None, []


def parse_time(text: str, as_of: date) -> TimeMatch | None:
    """Find the time range in a normalised question; None when it names no time."""
    cmp_year, cmp_span = compare_year(text, as_of)
    if cmp_span:  # keep the comparison year out of the period asked about
        text = text[:cmp_span[0]] + "#" * (cmp_span[1] - cmp_span[0]) + text[cmp_span[1]:]
    tm = _parse_time(text, as_of)
    if tm is not None and cmp_span:
        tm.spans.append(cmp_span)
        tm.compare_year = cmp_year
    return tm


def _parse_time(text: str, as_of: date) -> TimeMatch | None:
    spans: list[tuple[int, int]] = []
    grain, gspans = detect_grain(text)
    spans += gspans

    # ranges of years: 2019年到2021年, 2019-2021年, 2019至2021年
    m = re.search(r"((?:19|20)\d{2})年?(?:到|至|-|—|~|和)((?:19|20)\d{2})年?", text)
    if m:
        y1, y2 = sorted((int(m.group(1)), int(m.group(2))))
        spans.append(m.span())
        return TimeMatch(TimeRange(start=_ym(y1, 1), end=_ym(y2, 12), grain=grain or "year",
                                   label=f"{y1}—{y2}年"), spans, grain)

    # recent N years / months: 近三年, 最近5年, 过去三年, 近12个月
    m = re.search(r"(?:近|最近|过去|前)(\d+)(?:个)?年", text)
    if m and not re.search(r"前\d+(?:个)?年(?:度)?的?(排名|名)", text):
        n = int(m.group(1))
        spans.append(m.span())
        y = as_of.year
        return TimeMatch(TimeRange(start=_ym(y - n + 1, 1), end=_ym(y, 12), grain=grain or "year",
                                   label=f"近{n}年（{y - n + 1}—{y}年）"), spans, grain)
    m = re.search(r"(?:近|最近|过去)(\d+)个月", text)
    if m:
        n = int(m.group(1))
        spans.append(m.span())
        end = as_of.year * 12 + as_of.month - 2  # last complete month, 0-based index
        start = end - n + 1
        return TimeMatch(TimeRange(start=_ym(start // 12, start % 12 + 1), end=_ym(end // 12, end % 12 + 1),
                                   grain=grain or "month", label=f"近{n}个月"), spans, grain)

    year, yspans, relative = _year_word(text, as_of)
    spans += yspans
    m = re.search(r"((?:19|20)\d{2})\s*年(?:度)?", text) or re.search(r"(?<!\d)((?:19|20)\d{2})(?!\d)(?!万|亿|元|%)", text)
    if year is None and m:
        year = int(m.group(1))
        spans.append(m.span())

    # month ranges: 1-10月, 1至10月, 1月到10月, 1~10月份
    m = re.search(r"(\d{1,2})月?(?:到|至|-|—|~)(\d{1,2})月(?:份)?", text)
    if m:
        m1, m2 = int(m.group(1)), int(m.group(2))
        if 1 <= m1 <= m2 <= 12:
            spans.append(m.span())
            y = year if year is not None else as_of.year
            return TimeMatch(TimeRange(start=_ym(y, m1), end=_ym(y, m2), grain=grain,
                                       label=f"{y}年{m1}—{m2}月"), spans, grain)

    # quarters and halves
    y = year if year is not None else as_of.year
    patterns = [
        (r"前(\d)季度|前(\d)个季度", lambda g: (1, 3 * int(g)), "前{}季度"),
        (r"第?([1-4])季度|([1-4])季度|[Qq]([1-4])", lambda g: (3 * int(g) - 2, 3 * int(g)), "第{}季度"),
    ]
    for pat, fn, label in patterns:
        m = re.search(pat, text)
        if m:
            g = next(x for x in m.groups() if x)
            m1, m2 = fn(g)
            if 1 <= m1 <= m2 <= 12:
                spans.append(m.span())
                return TimeMatch(TimeRange(start=_ym(y, m1), end=_ym(y, m2), grain=grain,
                                           label=f"{y}年" + label.format("一二三四"[int(g) - 1])), spans, grain)
    for word, (m1, m2) in (("上半年", (1, 6)), ("下半年", (7, 12))):
        i = text.find(word)
        if i >= 0:
            spans.append((i, i + len(word)))
            return TimeMatch(TimeRange(start=_ym(y, m1), end=_ym(y, m2), grain=grain, label=f"{y}年{word}"), spans, grain)

    # the previous quarter, and "去年同期" (last year, up to the month before as_of)
    m = re.search(r"上个?季度", text)
    if m:
        q_now = (as_of.month - 1) // 3  # 0-based current quarter
        idx = as_of.year * 4 + q_now - 1
        yy, qq = idx // 4, idx % 4 + 1
        spans.append(m.span())
        return TimeMatch(TimeRange(start=_ym(yy, 3 * qq - 2), end=_ym(yy, 3 * qq), grain=grain,
                                   label=f"{yy}年第{'一二三四'[qq - 1]}季度"), spans, grain)
    m = re.search(r"去年同期", text)
    if m:
        end = max(as_of.month - 1, 1)
        spans.append(m.span())
        return TimeMatch(TimeRange(start=_ym(as_of.year - 1, 1), end=_ym(as_of.year - 1, end), grain=grain,
                                   label=f"{as_of.year - 1}年1—{end}月"), spans, grain)

    # relative months
    for word, delta in (("上个月", 1), ("上月", 1), ("本月", 0), ("这个月", 0), ("当月", 0)):
        i = text.find(word)
        if i >= 0:
            idx = as_of.year * 12 + as_of.month - 1 - delta
            yy, mm = idx // 12, idx % 12 + 1
            spans.append((i, i + len(word)))
            return TimeMatch(TimeRange(start=_ym(yy, mm), end=_ym(yy, mm), grain=grain, label=f"{yy}年{mm}月"), spans, grain)
    m = re.search(r"今年以来|年初以来|今年截至目前|年初至今|今年到现在", text)
    if m:
        spans.append(m.span())
        end = max(as_of.month - 1, 1)  # the current month is not complete yet
        return TimeMatch(TimeRange(start=_ym(as_of.year, 1), end=_ym(as_of.year, end), grain=grain,
                                   label=f"{as_of.year}年以来"), spans, grain)

    # a single month: 2021年3月, 3月份 (with a year or relative year)
    m = re.search(r"(?<![\d-])(\d{1,2})月(?:份)?", text)
    if m and 1 <= int(m.group(1)) <= 12 and (year is not None):
        mm = int(m.group(1))
        spans.append(m.span())
        return TimeMatch(TimeRange(start=_ym(y, mm), end=_ym(y, mm), grain=grain, label=f"{y}年{mm}月"), spans, grain)

    if year is not None:
        return TimeMatch(TimeRange(start=_ym(year, 1), end=_ym(year, 12), grain=grain, label=f"{year}年"), spans, grain)
    if grain:
        return TimeMatch(TimeRange(start=_ym(as_of.year, 1), end=_ym(as_of.year, 12), grain=grain,
                                   label=f"{as_of.year}年"), spans, grain)
    return None
