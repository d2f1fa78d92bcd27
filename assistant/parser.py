"""The rule parser: a Chinese question → a StructuredQuery, a clarifying question, or a refusal.

It knows only the catalogue (through the Vocabulary) and general Chinese question forms; no rule
names a particular metric or member. Metric choice follows the catalogue: explicit metric words,
else the default metric of the members and dimensions mentioned; words meaning several metrics
that the rest of the question does not settle lead to a clarifying question.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

from semantic_layer.catalogue import Catalogue, DefaultMetricRule
from semantic_layer.query import Filter, Having, OrderBy, StructuredQuery, TimeRange

from .textnorm import UNIT_FACTORS, normalize, parse_percent_cn, to_unit
from .timeparse import parse_time
from .vocabulary import Sense, Vocabulary

MAX_QUESTION_CHARS = 500

WRITE = re.compile(
    r"(删除|删掉|删了|清空|清除|修改|篡改|改成|改为|改一下|插入|写入|覆盖|销毁|撤销|撤回|冲销|冲红|退回|"
    r"设为|设置为|设成|调为|调成|调整为|更改|取消掉|取消这|导出|批准|审批通过|翻倍|核减|追加|改到|转到.{0,6}名下|新增\d+(?:笔|条)|新增[一1](?:笔|条|项|个)|添加[一1](?:笔|条|项|个)|录入|登记[一1](?:笔|条)|补录|作废|撤销[一1](?:笔|条)|"
    r"(?<![a-z])(drop|delete|update|insert|truncate|alter|create|attach|copy|pragma|grant|revoke|merge)(?![a-z]))",
    re.I,
)
SENSITIVE = re.compile(r"(信用码|信用代码|组织机构代码|纳税人识别号|证件号|住址|身份证|手机号|电话号码|家庭住址|银行账号|银行卡号|(个人|自然人).{0,8}(姓名|名字|名单|是谁|有谁|有哪些|都是谁)|(姓名|名字).{0,4}(个人|自然人)|哪些个人|哪个人|哪位个人)")
NON_DATA = re.compile(r"(订|预订|预定|买)(一张|张|个)?.{0,6}(票|酒店|房间)|机票|火车票|天气|写(一首|首)?诗|写一篇|翻译|讲个?笑话|唱首?歌|菜谱|做饭|股票|彩票|算命|星座")
SQL_TEXT = re.compile(r"^\s*(select|with)\b", re.I)
INJECTION = re.compile(r"(忽略|无视).{0,10}(指令|提示|规则|限制)|ignore (all|previous|the above)|system prompt|系统提示词", re.I)
YOY = re.compile(r"同比|增长|增速|增幅|增加|减少|下降|下滑|回落|降低|比上年|较上年|比去年|较去年|涨|跌|降了|变化|变动|负增长|多花|少花|多收|少收|增收|减收|多了|少了")
MOM = re.compile(r"环比|比上月|较上月|比上个月|较上个月|比上季度|较上季度")
DIFF_ONLY = re.compile(r"多了多少|少了多少|多多少|少多少|差多少|相差|差额|增加了多少|减少了多少|多出|多花了多少|少花了多少|多收了多少|少收了多少")
SHARE = re.compile(r"占比|比重|占.{0,16}(比例|份额|多少|百分之几|几成|比)|所占|构成|结构")
EXECUTION = re.compile(r"执行率|执行进度|执行情况|执行得怎么样|执行得如何|完成率|完成进度|完成情况|预算完成|完成了?.{0,6}预算|序时进度|花出去.{0,4}(比例|多少|几成)|支出进度|用了(多少|几成)|花了(多少|几成)比例")
RANK_DESC = re.compile(r"最多|最高|最大|最快|第一|排名|排行|前(\d+)|[Tt][Oo][Pp]\s*(\d+)|领先|靠前|排前")
RANK_ASC = re.compile(r"最少|最低|最小|最慢|倒数|垫底|后(\d+)|末位|靠后")
WHICH = re.compile(r"哪个|哪家|哪一个|哪一家|哪项|哪一项|哪个是|谁")
WHICH_MANY = re.compile(r"哪些|哪几个|哪几家|都有谁|有哪些")
COUNT = re.compile(r"多少(家|个|笔|户|项|位|名)|几(家|个|笔|户|项)|数量|个数|户数|笔数|家数")
DECLINE = re.compile(r"下降|减少|下滑|回落|负增长|降低|降了|缩减|跌|减收|少了")
INCREASE = re.compile(r"增长了的|增加了的|上升|正增长|增长的")
BREAKDOWN_BEFORE = ("各", "分", "按", "每个", "分别", "不同", "各个", "逐", "按照", "每")
DATA_HINT = re.compile(r"收入|支出|税|预算|财政|经济|产值|GDP|gdp|企业|项目|支付|付款|部门|钱|多少|金额|数据|增长|花|排名|排行|前\d|最多|最高|最少|情况|怎么样|哪些")
DEICTIC = re.compile(r"(这个|那个|该|这家|那家|这些|那些|本)$")
COMPOSITION = re.compile(r"构成|结构|组成|明细|分项|按项目|各项")
PLAN_AFTER = re.compile(r"^(的)?(预算数|预算安排|预算|计划数|计划|任务数|任务)")
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
PERSON_MONEY = re.compile(rf"^[{SURNAMES}][\u4e00-\u9fff]{{1,2}}(去年|今年|前年|从|在|一共|总共|累计)?.{{0,6}}(领|收到|拿|获得|得到)(了)?")
GREETING = re.compile(r"^(你好|您好|hi|hello|在吗|谢谢|再见)[!！。.?？]*$", re.I)


@dataclass
class ParseResult:
    status: str  # ok | clarify | refuse
    query: StructuredQuery | None = None
    clarification: dict | None = None
    reason: str | None = None
    confidence: float = 1.0
    unmatched: list[str] = field(default_factory=list)
    terms: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Mention:
    start: int
    end: int
    term: str
    senses: list[Sense]

    def of(self, kind: str) -> list[Sense]:
        return [s for s in self.senses if s.kind == kind]


class RuleParser:
    def __init__(self, catalogue: Catalogue, vocabulary: Vocabulary, extents: dict[str, tuple[int, int]] | None = None):
        self.cat = catalogue
        self.vocab = vocabulary
        self.extents = extents or {}

    # ------------------------------------------------------------------ entry point
    def parse(self, question: str, as_of: date, context: StructuredQuery | None = None) -> ParseResult:
        if question is None or not question.strip():
            return ParseResult("refuse", reason="请输入您的问题，例如“2021年一般公共预算收入是多少？”")
        if len(question) > MAX_QUESTION_CHARS:
            return ParseResult("refuse", reason=f"问题太长（{len(question)}字），请控制在{MAX_QUESTION_CHARS}字以内，一次问一个问题。")
        text = parse_percent_cn(normalize(question))
        if not text:
            return ParseResult("refuse", reason="没有识别到文字内容，请用中文描述要查询的数据。")
        if SQL_TEXT.match(text):
            return ParseResult("refuse", reason="请用中文提问；如需直接运行 SQL，请使用分析师视图的 SQL 编辑器（仍会经过安全校验）。")
        if WRITE.search(text) or WRITE.search(question):
            return ParseResult("refuse", reason="有数只能查询数据，不能删除、修改或写入数据。")
        if INJECTION.search(text):
            return ParseResult("refuse", reason="问题中包含试图改变系统规则的指令，已拒绝。请直接描述要查询的数据。")
        if SENSITIVE.search(text) or PERSON_MONEY.search(text):
            return ParseResult("refuse", reason="该问题涉及个人或敏感信息，按数据安全规定不能查询。")
        if NON_DATA.search(text):
            return ParseResult("refuse", reason="抱歉，这不是数据查询问题，有数只回答经开区财政、税收、经济运行和各省预算收支等数据问题。")
        text, typo_notes = self.vocab.correct_typos(text)
        if not re.search(r"[\u4e00-\u9fff]", text) and re.search(r"[A-Za-z]{3,}", text):
            return ParseResult("refuse", reason="有数目前只支持中文提问，例如“2021年一般公共预算收入是多少？”")
        if GREETING.match(text):
            return ParseResult("refuse", reason="您好！我是有数，可以回答经开区财政经济数据问题，例如“去年财政收入增长了多少？”")

        tm = parse_time(text, as_of)
        masked = list(text)
        if tm:
            for a, b in tm.spans:
                for i in range(a, b):
                    masked[i] = "#"
        threshold = self._threshold(text, masked)
        top_n = self._top_n(text)
        mtext = "".join(masked)
        mentions = [Mention(a, b, t, s) for a, b, t, s in self.vocab.match(mtext)]
        terms = [{"term": m.term, "senses": [s.__dict__ for s in m.senses]} for m in mentions]
        unmatched = self._unmatched(mtext, mentions)

        if any(m.of("sensitive") for m in mentions):
            return ParseResult("refuse", reason="该问题涉及敏感字段（统一社会信用代码、个人收款人姓名等），按数据安全规定不能查询。", terms=terms)

        if context is not None:
            follow = self._follow_up(text, tm, mentions, top_n, context, as_of)
            if follow is not None:
                follow.terms = terms
                return follow

        content = [m for m in mentions if m.senses]
        if not content and tm is not None:
            return ParseResult("clarify", clarification=self._metric_menu(None), reason="只识别出时间，没有识别出指标",
                               unmatched=unmatched, confidence=0.2, terms=terms)
        if not content:
            if DATA_HINT.search(mtext):
                return ParseResult("clarify", clarification=self._metric_menu(None),
                                   reason="没有识别出要查询的指标", unmatched=unmatched, confidence=0.2, terms=terms)
            return ParseResult("refuse", reason="抱歉，这个问题不在有数能回答的范围内。有数回答经开区财政、税收、经济运行和各省预算收支等数据问题。",
                               unmatched=unmatched, confidence=0.0, terms=terms)
        deictic = self._deictic(mtext, mentions)
        if deictic:
            return ParseResult("clarify", clarification=deictic, reason=deictic["question"], terms=terms, confidence=0.3)
        try:
            result = self._build(text, mtext, tm, mentions, threshold, top_n, as_of, unmatched, terms)
            result.notes = typo_notes + result.notes
            return result
        except _Clarify as c:
            return ParseResult("clarify", clarification=c.payload, reason=c.payload["question"], unmatched=unmatched, terms=terms, confidence=0.3)

    # ------------------------------------------------------------------ pieces
    def _threshold(self, text: str, masked: list[str]) -> tuple[str, float, str] | None:
        """'超过1000万元' → ('>', 1e7 yuan, raw). Amount in 元; also 过百万, 上亿, 千万以上."""
        idiom = re.search(r"(过|超|超过|上|破)(百万|千万|亿|十万|万)(元)?", text)
        if idiom:
            value = {"百万": 1e6, "千万": 1e7, "亿": 1e8, "十万": 1e5, "万": 1e4}[idiom.group(2)]
            for i in range(*idiom.span()):
                masked[i] = "#"
            return ">", value, idiom.group(0)
        pat = re.compile(
            r"(超过|大于|高于|多于|不少于|不低于|不小于|达到|在|少于|小于|低于|不足|不超过|不到)?"
            r"(\d+(?:\.\d+)?)(百万元|千万元|百万|千万|万元|亿元|千元|万|亿|元)(以上|以下|及以上|以内|之上|之下)?"
        )
        for m in pat.finditer(text):
            before, num, unit, after = m.group(1), m.group(2), m.group(3), m.group(4)
            if not before and not after:
                continue
            if before in ("在", "达到") and not after:
                continue
            op = ">"
            if before in ("少于", "小于", "低于", "不足", "不到") or after in ("以下", "以内", "之下"):
                op = "<"
            elif before in ("不少于", "不低于", "不小于") or after == "及以上":
                op = ">="
            elif before == "不超过":
                op = "<="
            value = float(num) * UNIT_FACTORS.get(unit, 1.0)
            for i in range(*m.span()):
                masked[i] = "#"
            return op, value, m.group(0)
        return None

    def _top_n(self, text: str) -> int | None:
        m = re.search(r"(?:前|[Tt][Oo][Pp]\s*|后|最(?:多|高|大|少|低|小)的)(\d+)(?:名|个|位|家|项|强|笔)?", text)
        if m:
            n = int(m.group(1))
            return n if 0 < n <= 1000 else None
        m = re.search(r"(\d+)(?:大|强)", text)
        if m and int(m.group(1)) <= 100:
            return int(m.group(1))
        return None

    def _unmatched(self, mtext: str, mentions: list[Mention]) -> list[str]:
        covered = set()
        for m in mentions:
            covered.update(range(m.start, m.end))
        rest = "".join(ch if i not in covered else " " for i, ch in enumerate(mtext))
        rest = re.sub(r"[#?!。，,、；;：:（）()\"“”'‘’\s]+", " ", rest)
        stop = r"(是多少|有多少|多少|是|的|了|呢|吗|啊|呀|吧|请问|请|帮我|帮忙|看看|看一下|查一下|查询|查|一下|告诉我|我想知道|咱们|我们|区里|经开区|开发区|全区|本区|情况|怎么样|如何|同比|环比|增长|增速|增幅|增加|减少|下降|占比|比重|占|各|分别|按|排名|排行|最多|最高|最大|最少|最低|哪个|哪些|和|与|及|以及|中|其中|里|总共|一共|合计|总|共|年|月|有|在|为|给|把|都|去|那|这|个|家|笔|前|后|几|率|数|额|金额|比|较|上|同期|期间|累计|全年|目前|现在|到|至|总额|总量|规模|分|每|完成|进度|执行|得|怎样|咋样|多大|几成|比例|呀|嘛|哦|老板|领导|想知道|知道|了解|统计|一共有|共有|所有|全部|整体|具体|最快|最慢|最好|最差|最|快|慢)"
        rest = re.sub(stop, " ", rest)
        return [w for w in rest.split() if len(w) >= 2]

    def _metric_menu(self, metrics: list[str] | None, word: str | None = None) -> dict:
        names = metrics or ["general_budget_revenue", "tax_revenue_local", "general_budget_expenditure", "gdp", "enterprise_revenue"]
        opts = [self.cat.metrics[n].label for n in names]
        q = f"“{word}”可以指几个不同的指标，您要查询哪一个？" if word else "您想查询哪个指标？"
        return {"question": q, "options": opts, "word": word}

    # ------------------------------------------------------------------ interpretation
    def _build(self, text, mtext, tm, mentions, threshold, top_n, as_of, unmatched, terms) -> ParseResult:
        cat = self.cat
        notes: list[str] = []
        region_mode = any(s.target == "region" for m in mentions for s in m.senses if s.kind in ("member", "dimension"))

        dim_mentions_all = [m for m in mentions if m.of("dimension") and not m.of("metric")]
        metric_mentions: list[Mention] = []
        member_mentions: list[Mention] = []
        dim_mentions: list[Mention] = []
        flag_mentions: list[Mention] = []
        for m in mentions:
            if region_mode:
                keep = [s for s in m.senses if s.target in ("region", "budget_item") or (s.kind == "metric" and s.target == "region_budget_value")]
                if keep:
                    m = Mention(m.start, m.end, m.term, keep)
                elif m.of("metric"):
                    # a zone metric word in a provincial question: read it as a yearbook line if one matches
                    continue
            if m.of("metric"):
                metric_mentions.append(m)
            elif m.of("member"):
                member_mentions.append(m)
            elif m.of("flag"):
                flag_mentions.append(m)
            elif m.of("dimension"):
                dim_mentions.append(m)

        # --- metrics
        metrics: list[str] = []
        planned: set[str] = set()
        execution = bool(EXECUTION.search(mtext))
        for mm in metric_mentions:
            cands = [s.target for s in mm.of("metric")]
            if execution and all(cat.metrics[c].model == "budget_plan" for c in cands):
                continue  # "预算执行率": the plan comes with the actual metric
            if len(cands) > 1:
                compatible = [c for c in cands if self._compatible(c, member_mentions, flag_mentions)]
                cands = compatible or cands
            if len(cands) > 1:
                defaults = self._member_defaults(member_mentions + dim_mentions_all)
                implied = [c for c in cands if c in defaults]
                # "各税种收入": the dimension's own metric, when it lives in one of the candidates' models
                narrower = [d for d in defaults if cat.metrics[d].model in {cat.metrics[c].model for c in cands}]
                cands = implied or narrower[:1] or cands
            if len(cands) > 1 and metrics and any(c in metrics for c in cands):
                continue
            if len(cands) > 1:
                raise _Clarify(self._metric_menu(cands, mm.term))
            chosen = cands[0]
            plan = self.cat.metrics[chosen].plan_metric
            if plan and PLAN_AFTER.match(mtext[mm.end:]) and not EXECUTION.search(mtext):
                chosen = plan
                planned.add(chosen)
            elif chosen in planned or (self.cat.metrics[chosen].model == "budget_plan" and planned):
                continue
            if chosen not in metrics:
                metrics.append(chosen)

        if execution:
            actuals = {m.plan_metric: m.name for m in cat.metrics.values() if m.plan_metric}
            metrics = [actuals.get(m, m) for m in metrics]
            metrics = list(dict.fromkeys(metrics))
            if not metrics:
                metrics = ["general_budget_revenue"] if "收入" in mtext else ["general_budget_expenditure"]

        is_count = bool(COUNT.search(mtext))
        count_entity = None
        if is_count and not threshold and metrics and cat.metrics[metrics[0]].unit in ("元", "万元", "亿元"):
            count_entity = self._entity(mtext, [], metrics[:1])
        if not metrics:
            metrics = self._default_metrics(member_mentions, dim_mentions, flag_mentions, is_count, threshold, mtext)
        if not metrics:
            raise _Clarify(self._metric_menu(self._metrics_for_mentions(member_mentions + dim_mentions)))
        if region_mode:
            metrics = ["region_budget_value"]

        primary = metrics[0]

        # --- filters from members
        filters: dict[str, list] = {}
        for mm in list(member_mentions):
            sense = self._pick_sense(mm.of("member"), metrics)
            if sense is None and self._pick_sense(mm.of("dimension"), metrics):
                dim_mentions.append(mm)  # the word names a dimension here, not a member
                continue
            if sense is None and all(cat.dimensions[x.target].weak_members for x in mm.of("member")):
                notes.append(f"“{mm.term}”在此处不作为筛选条件")
                continue
            if sense is None:
                raise _Clarify({"question": f"“{mm.term}”不能用于“{cat.metrics[primary].label}”，您要查询哪个指标？",
                                "options": [cat.metrics[n].label for n in self._metrics_for_mentions([mm])][:6], "word": mm.term})
            vals = filters.setdefault(sense.target, [])
            if sense.value not in vals:
                vals.append(sense.value)
        for fm in flag_mentions:
            sense = self._pick_sense(fm.of("flag"), metrics)
            if sense:
                filters[sense.target] = [True]
        if region_mode and "budget_item" not in filters:
            item = "地方一般公共预算支出" if re.search(r"支出|花", mtext) else ("地方一般公共预算收入" if "收入" in mtext else None)
            if item is None:
                raise _Clarify({"question": "您要查询各省的哪项预算收支？",
                                "options": ["地方一般公共预算收入", "税收收入", "地方一般公共预算支出", "教育支出", "科学技术支出"], "word": None})
            filters["budget_item"] = [item]

        # --- dimensions (breakdowns)
        dims: list[str] = []
        ranking = bool(RANK_DESC.search(mtext) or RANK_ASC.search(mtext) or WHICH.search(mtext) or WHICH_MANY.search(mtext))
        for dm in dim_mentions:
            sense = self._pick_sense(dm.of("dimension"), metrics)
            if sense is None:
                continue
            before = mtext[max(0, dm.start - 2):dm.start]
            after = mtext[dm.end:dm.end + 3]
            explicit = dm.term.startswith("各") or any(before.endswith(w) for w in BREAKDOWN_BEFORE) or after.startswith(("排名", "排行", "分布", "结构", "构成"))
            which = bool(re.search(r"(哪个|哪些|哪家|哪几个|哪一个|哪几家)$", mtext[max(0, dm.start - 4):dm.start]))
            if explicit or which or ranking or (is_count and threshold):
                d = sense.target
                if d not in dims:
                    dims.append(d)
        for fm in flag_mentions:
            before = mtext[max(0, fm.start - 2):fm.start]
            d = cat.dimensions[fm.of("flag")[0].target]
            if d.breakdown_as and (fm.term.startswith("各") or any(before.endswith(w) for w in BREAKDOWN_BEFORE) or ranking):
                if cat.supports(primary, d.breakdown_as) and d.breakdown_as not in dims:
                    dims.append(d.breakdown_as)
        if COMPOSITION.search(mtext) and not dims and len(metrics) == 1:
            level_dim = self._next_level(metrics[0], filters)
            if level_dim:
                dims.append(level_dim)
        # members listed together ("公安分局和建设局") → compare them side by side
        for dim, vals in filters.items():
            if len(vals) > 1 and dim not in dims and dim != "budget_item":
                dims.append(dim)
        if region_mode and len(filters.get("budget_item", [])) > 1 and "budget_item" not in dims:
            dims.append("budget_item")

        # --- time
        time = self._time(tm, metrics, as_of, notes)

        # --- comparisons
        compare = None
        share_of = None
        denominator: list[Filter] = []
        change = None
        if execution:
            compare = "execution"
        elif SHARE.search(mtext):
            compare = "share"
            if len(metrics) >= 2:
                metrics = self._share_order(mtext, metric_mentions, metrics)[:2]
            elif any(len(v) == 2 for d, v in filters.items() if d in ("budget_item", "subject", "region")) and "占" in mtext:
                d = next(d for d, v in filters.items() if len(v) == 2 and d in ("budget_item", "subject", "region"))
                part, whole = filters[d]
                totals = {t.value for m in cat.models.values() for t in m.totals if t.dimension == d}
                if part in totals:  # "广东占全国": the total row is the denominator
                    part, whole = whole, part
                filters[d] = [part]
                denominator = [Filter(dimension=d, values=[whole])]
                dims = [x for x in dims if x != d]
            elif dims:
                pass
            elif filters:
                share_of = self._share_dimension(filters, primary)
                if share_of is None:
                    raise _Clarify({"question": "请说明占哪个总量的比重？", "options": [cat.metrics[primary].label], "word": None})
            else:
                raise _Clarify({"question": "请说明占哪个总量的比重，例如“税收收入占一般公共预算收入的比重”。", "options": [], "word": None})
        elif MOM.search(mtext):
            compare = "mom"
        elif DIFF_ONLY.search(mtext) and not re.search(r"增长|增速|增幅|同比", mtext):
            compare = "diff"
        elif YOY.search(mtext) or DIFF_ONLY.search(mtext):
            compare = "yoy"
        if compare in ("yoy", "mom", "diff") and dims and (WHICH_MANY.search(mtext) or re.search(r"(哪些|有没有|是否).{0,8}$", mtext)):
            if DECLINE.search(mtext):
                change = "decline"
            elif INCREASE.search(mtext) or re.search(r"增长|增加|上升", mtext):
                change = "increase"
        offset = None
        if tm is not None and tm.compare_year and time is not None:
            diff = int(time.start[:4]) - tm.compare_year
            if diff > 0:
                compare = compare if compare in ("yoy", "diff") else "yoy"
                offset = diff * 12 if diff != 1 else None
        if time is None and compare in ("yoy", "mom", "diff"):
            time = self._time(None, metrics, as_of, notes, force=True)
        if len(metrics) > 1 and compare not in ("share",):
            models = {cat.metrics[m].model for m in metrics}
            if compare == "execution" or len(models) > 1 and time and time.grain is None and any(cat.model_of(m).time.grain == "none" for m in metrics):
                metrics = metrics[:1]

        # --- thresholds, ranking, counts
        having: list[Having] = []
        count_groups = False
        if count_entity and not threshold:
            dims = [count_entity] + [d for d in dims if d != count_entity]
            count_groups = True
        if threshold:
            op, value_yuan, raw = threshold
            entity = self._entity(mtext, dims, metrics)
            if entity is None:
                raise _Clarify({"question": f"“{raw}”指的是哪类对象（企业、项目还是支付）？", "options": ["企业", "项目", "支付"], "word": raw})
            target = metrics[0]
            if cat.metrics[target].unit in ("家", "笔", "个"):
                default = cat.dimensions[entity].default_metric
                target = default if isinstance(default, str) else target
                metrics = [target]
            unit = cat.metrics[target].unit
            having.append(Having(metric=target, op=op, value=to_unit(value_yuan, unit)))
            if entity not in dims:
                dims.insert(0, entity)
            count_groups = is_count
            primary = target

        order_by: list[OrderBy] = []
        limit = None
        if dims and not count_groups:
            asc = bool(RANK_ASC.search(mtext)) and not RANK_DESC.search(mtext.replace("排名", ""))
            field_name = primary
            if compare in ("yoy", "mom", "diff") and re.search(r"(增长|增速|增幅)最(快|高|大|慢|低|小)|增长率最|增速排|增幅排", mtext):
                field_name = "growth_pct"
            elif compare == "share" and re.search(r"占比最|比重最", mtext):
                field_name = "share"
            elif compare == "execution" and re.search(r"执行率最|执行进度最|完成率最", mtext):
                field_name = "execution"
            if ranking or top_n:
                order_by.append(OrderBy(field=field_name, desc=not asc))
                if top_n:
                    limit = top_n
                elif WHICH.search(mtext) and not WHICH_MANY.search(mtext):
                    limit = 1
                elif re.search(r"最(多|高|大|少|低|小)", mtext) and not WHICH_MANY.search(mtext) \
                        and not re.search(r"排名|排行|排序", mtext):
                    limit = 1
        elif top_n and not dims:
            notes.append("没有识别到要排名的对象")

        query = StructuredQuery(metrics=metrics, dimensions=dims,
                                filters=[Filter(dimension=d, values=v) for d, v in filters.items()],
                                time=time, compare=compare, share_of=share_of, change=change,
                                denominator=denominator, offset_months=offset,
                                having=having, count_groups=count_groups, order_by=order_by, limit=limit)
        confidence = 1.0 if not unmatched else max(0.4, 1.0 - 0.2 * len(unmatched))
        return ParseResult("ok", query=query, confidence=confidence, unmatched=unmatched, terms=terms, notes=notes)

    # ------------------------------------------------------------------ helpers
    def _compatible(self, metric: str, members: list[Mention], flags: list[Mention]) -> bool:
        for mm in members + flags:
            if mm.of("metric"):
                continue
            if not any(self.cat.supports(metric, s.target) for s in mm.senses if s.kind in ("member", "flag")):
                return False
        return True

    def _deictic(self, mtext: str, mentions: list[Mention]) -> dict | None:
        """"这个部门…" with no member named: ask which one, listing the members."""
        for m in mentions:
            dims = [s.target for s in m.of("dimension")]
            if dims and DEICTIC.search(mtext[max(0, m.start - 2):m.start]):
                d = dims[0]
                if any(s.kind == "member" and s.target == d for x in mentions for s in x.senses):
                    return None
                names = [mem.name for mem in self.vocab.members if mem.dimension == d][:8]
                return {"question": f"请问是哪个{self.cat.dimensions[d].label}？", "options": names, "word": m.term}
        return None

    def _next_level(self, metric: str, filters: dict[str, list]) -> str | None:
        """The hierarchy level below what the metric or filter already fixes (类 → 款)."""
        cat = self.cat
        if not cat.supports(metric, "subject_item"):
            return None
        codes = [str(v) for v in filters.get("subject", [])]
        codes += re.findall(r"LIKE '(\d+)%'", " ".join(cat.metrics[metric].filters))
        if any(len(c) == 3 for c in codes):
            return "subject_item"
        if not codes and cat.supports(metric, "subject_class"):
            return "subject_class"
        return "subject_item" if not codes else None

    def _member_defaults(self, members: list[Mention]) -> list[str]:
        """The default metrics the mentioned members imply (增值税 → 一般公共预算收入)."""
        out = []
        for m in members:
            for s in m.of("dimension"):
                rule = self.cat.dimensions[s.target].default_metric
                if isinstance(rule, str):
                    out.append(rule)
            for s in m.of("member"):
                rule = self.cat.dimensions[s.target].default_metric
                if isinstance(rule, DefaultMetricRule):
                    attrs = self.vocab.member_attrs.get((s.target, s.value), {})
                    name = rule.map.get("|".join(str(attrs.get(b, "")) for b in rule.by))
                    if name:
                        out.append(name)
                elif isinstance(rule, str):
                    out.append(rule)
        return out

    def _pick_sense(self, senses: list[Sense], metrics: list[str]) -> Sense | None:
        for s in senses:
            if all(self.cat.supports(m, s.target) for m in metrics):
                return s
        return None

    def _metrics_for_mentions(self, mentions: list[Mention]) -> list[str]:
        dims = {s.target for m in mentions for s in m.senses if s.kind in ("member", "dimension", "flag")}
        out = [m.name for m in self.cat.metrics.values() if all(self.cat.supports(m.name, d) for d in dims) and not m.requires]
        return out[:6] if dims else []

    def _default_metrics(self, members, dims, flags, is_count, threshold, mtext) -> list[str]:
        cat = self.cat
        if is_count and not threshold:
            counted = [d for d in cat.dimensions.values() if d.count_metric and (d.label in mtext or any(w in mtext for w in d.synonyms if not w.startswith("各")))]
            for d in counted:
                cm = d.count_metric
                if all(any(cat.supports(cm, s.target) for s in m.senses if s.kind in ("member", "flag")) for m in members + flags):
                    return [cm]
            for m in members + dims:
                for s in m.senses:
                    if s.kind in ("dimension", "member"):
                        cm = cat.dimensions[s.target].count_metric
                        if cm and s.kind == "dimension":
                            return [cm]
        for m in members:
            for s in m.of("member"):
                rule = cat.dimensions[s.target].default_metric
                if isinstance(rule, DefaultMetricRule):
                    attrs = self.vocab.member_attrs.get((s.target, s.value), {})
                    key = "|".join(str(attrs.get(b, "")) for b in rule.by)
                    if key in rule.map:
                        return [rule.map[key]]
        if re.search(r"花|支出|开支|用了|用于", mtext):
            for m in members + dims:
                for s in m.senses:
                    if s.kind in ("member", "dimension") and cat.supports("general_budget_expenditure", s.target):
                        return ["general_budget_expenditure"]
        for m in members + flags + dims:
            for s in m.senses:
                d = cat.dimensions.get(s.target)
                if d is None:
                    continue
                target = d.breakdown_as and cat.dimensions[d.breakdown_as] or d
                rule = target.default_metric
                if isinstance(rule, str):
                    if is_count and target.count_metric and s.kind == "dimension":
                        return [target.count_metric]
                    return [rule]
        if threshold or is_count:
            for m in dims:
                for s in m.of("dimension"):
                    rule = cat.dimensions[s.target].default_metric
                    if isinstance(rule, str):
                        return [rule]
        return []

    def _time(self, tm, metrics: list[str], as_of: date, notes: list[str], force: bool = False) -> TimeRange | None:
        cat = self.cat
        models = [cat.model_of(m) for m in metrics]
        if all(m.time.grain == "none" for m in models):
            return None
        latest = [self.extents.get(m.name) for m in models if self.extents.get(m.name)]
        end_cap = min(latest) if latest else None  # (year, month) of the latest data
        if tm is None:
            y = as_of.year
            if end_cap and end_cap[0] < y:
                y = end_cap[0]
            tr = TimeRange(start=f"{y}-01", end=f"{y}-12", label=f"{y}年")
            notes.append(f"未指定时间，默认{y}年")
        else:
            tr = tm.range
        if end_cap:
            cap = end_cap[0] * 12 + end_cap[1]
            (y2, m2) = tr.end_ym
            (y1, m1) = tr.start_ym
            if y2 * 12 + m2 > cap and y1 * 12 + m1 <= cap:
                ey, em = divmod(cap - 1, 12)
                label = tr.label
                tr = TimeRange(start=tr.start, end=f"{ey}-{em + 1:02d}", grain=tr.grain, label=label)
                notes.append(f"数据截至{ey}年{em + 1}月，{label}按{tr.start[:4]}年{int(tr.start[5:])}月至{ey}年{em + 1}月统计")
        return tr

    def _share_order(self, mtext: str, metric_mentions: list[Mention], metrics: list[str]) -> list[str]:
        order = [s.target for m in metric_mentions for s in m.of("metric") if s.target in metrics]
        order = list(dict.fromkeys(order))
        i = mtext.find("占")
        if i >= 0:
            before = [s.target for m in metric_mentions if m.end <= i for s in m.of("metric") if s.target in metrics]
            after = [s.target for m in metric_mentions if m.start > i for s in m.of("metric") if s.target in metrics]
            if before and after:
                return [before[-1], after[0]]
            if after and not before:  # "A中B占比" has 占 after both
                pass
        if re.search(r"中|里|当中|其中", mtext):
            return [order[-1], order[0]]
        return order

    def _share_dimension(self, filters: dict[str, list], metric: str) -> str | None:
        for d in filters:
            if self.cat.supports(metric, d):
                return d
        return None

    def _entity(self, mtext: str, dims: list[str], metrics: list[str]) -> str | None:
        cat = self.cat
        for d in dims:
            if cat.dimensions[d].count_unit:
                return d
        for word, unit in (("家", "家"), ("笔", "笔"), ("项目", "个"), ("个", "个")):
            if word in mtext:
                for d in cat.dimensions.values():
                    if d.count_unit == unit and all(cat.supports(m, d.name) for m in metrics):
                        return d.name
        for d in cat.dimensions.values():
            if d.count_unit and all(cat.supports(m, d.name) for m in metrics) and any(w in mtext for w in [d.label, *d.synonyms]):
                return d.name
        return None

    # ------------------------------------------------------------------ follow-ups
    def _follow_up(self, text, tm, mentions, top_n, ctx: StructuredQuery, as_of) -> ParseResult | None:
        """Rewrite the previous query with what a follow-up names (time, breakdown, top N, a member)."""
        has_metric = any(m.of("metric") for m in mentions)
        is_follow = bool(re.match(r"^(那|那么|那如果|如果是|换成|改成|只看|其中|再|按|分|还有|那就)", text)) or (
            not has_metric and len(text) <= 14)
        if not is_follow or has_metric and not re.match(r"^(那|其中|换成|只看)", text):
            return None
        update: dict = {}
        notes = []
        if tm:
            update["time"] = tm.range if not tm.explicit_grain or tm.range.grain else tm.range
            if tm.explicit_grain and not tm.spans:
                update["time"] = (ctx.time or tm.range).model_copy(update={"grain": tm.explicit_grain})
        dims = list(ctx.dimensions)
        filters = {f.dimension: list(f.values) for f in ctx.filters}
        metrics = list(ctx.metrics)
        for m in mentions:
            if m.of("metric"):
                metrics = [m.of("metric")[0].target]
                continue
            member = self._pick_sense(m.of("member"), metrics)
            if member:
                filters[member.target] = [member.value]
                continue
            dim = self._pick_sense(m.of("dimension"), metrics)
            if dim and dim.target not in dims:
                dims.append(dim.target)
        flag = [m for m in mentions if m.of("flag")]
        for fm in flag:
            s = self._pick_sense(fm.of("flag"), metrics)
            if s:
                filters[s.target] = [True]
        update["metrics"] = metrics
        update["dimensions"] = dims
        update["filters"] = [Filter(dimension=d, values=v) for d, v in filters.items()]
        ranked = RANK_DESC.search(text) or RANK_ASC.search(text) or WHICH.search(text)
        if (top_n or ranked) and (dims or ctx.dimensions):
            update["order_by"] = [OrderBy(field=metrics[0], desc=not RANK_ASC.search(text))]
            update["limit"] = top_n or (1 if not WHICH_MANY.search(text) else None)
        if YOY.search(text) and not ctx.compare:
            update["compare"] = "yoy"
        if SHARE.search(text):
            update["compare"] = "share"
        if len(update) <= 3 and update.get("metrics") == ctx.metrics and update.get("dimensions") == ctx.dimensions \
                and update.get("filters") == ctx.filters and "time" not in update and "limit" not in update and "compare" not in update:
            return None
        try:
            q = ctx.model_copy(update=update)
            q = StructuredQuery.model_validate(q.model_dump())
        except ValueError:
            return None
        notes.append("根据上一轮问题补全")
        return ParseResult("ok", query=q, confidence=0.9, notes=notes)


class _Clarify(Exception):
    def __init__(self, payload: dict):
        super().__init__(payload.get("question"))
        self.payload = payload
