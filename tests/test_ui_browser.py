"""Real-browser tests of the chat UI: `youshu serve` in a subprocess, driven by headless Chromium.

Each step saves a screenshot under test-artifacts/ui/. Expected answers are computed in-process
with the same `Assistant` over the same small warehouse, so the page is checked against real
content, not against hard-coded guesses. The server runs with an audit hook (sitecustomize) that
records any attempt to resolve or connect to a non-loopback address, and the browser records
every request that is not to the local server: both must stay empty (the intranet has no internet).
"""
from __future__ import annotations

import csv
import io
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "ui"
START_TIMEOUT_S = 240  # importing gradio is slow on a busy 2-core machine
ANSWER_TIMEOUT_MS = 60_000
LOCAL_URL = re.compile(r"^(https?://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?/|data:|blob:|about:)")

Q_REVENUE = "2021年经开区一般公共预算收入是多少？"
Q_RANKING = "2021年各部门一般公共预算支出排名前5"
Q_TREND = "近三年地区生产总值"
Q_AMBIGUOUS = "2023年的收入是多少"
Q_FOLLOW = "那2020年呢？"

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} 不存在（Debian 的 chromium 包未安装：make browser-deps），跳过浏览器测试",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="Python 包 playwright 未安装（pip install playwright）")
pytest.importorskip("gradio", reason="gradio 未安装（pip install -e '.[ui]'）")

SITECUSTOMIZE = textwrap.dedent('''
    """Test-only: record every non-loopback DNS lookup or connect of the UI server."""
    import ipaddress, os, sys
    _LOG = os.environ.get("YOUSHU_TEST_NETLOG")

    def _local(host):
        if host is None:
            return True
        if isinstance(host, bytes):
            host = host.decode("ascii", "replace")
        host = str(host)
        if host in ("", "localhost", "0.0.0.0", "::") or host.endswith(".localhost"):
            return True
        try:
            ip = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            return False
        return ip.is_loopback or ip.is_unspecified

    def _hook(event, args):
        if event != "socket.connect" and event != "socket.getaddrinfo":
            return
        try:
            if event == "socket.connect":
                addr = args[1]
                if not isinstance(addr, tuple) or _local(addr[0]):
                    return
                what = f"connect {addr!r}"
            else:
                if _local(args[0]):
                    return
                what = f"getaddrinfo {args[0]!r}"
            with open(_LOG, "a", encoding="utf-8") as fh:
                fh.write(what + "\\n")
        except Exception:
            pass

    if _LOG:
        sys.addaudithook(_hook)
''')


# ---------------------------------------------------------------------------------- helpers
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _youshu_command() -> list[str]:
    exe = Path(sys.executable).with_name("youshu")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("youshu")
    if found:
        return [found]
    return [sys.executable, "-m", "assistant.cli"]


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"youshu serve 提前退出（{proc.returncode}）：\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"youshu serve 在 {timeout} 秒内没有启动：\n{log.read_text(errors='replace')[-3000:]}")


class Shots:
    def __init__(self, prefix: str):
        self.prefix = prefix
        self.n = 0

    def __call__(self, page, name: str, full_page: bool = False) -> Path:
        self.n += 1
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.prefix}-{self.n:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path


# ---------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def server(small_db, tmp_path_factory):
    """`youshu serve --port <free> --db <small warehouse>` as a real subprocess."""
    tmp = tmp_path_factory.mktemp("ui-server")
    (tmp / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    netlog = tmp / "net.log"
    audit = tmp / "audit.jsonl"
    log = tmp / "serve.log"
    port = _free_port()
    env = dict(os.environ)
    env.update({
        "PYTHONPATH": os.pathsep.join([str(tmp), str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "YOUSHU_TEST_NETLOG": str(netlog),
        "YOUSHU_AUDIT_LOG": str(audit),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_TEMP_DIR": str(tmp / "gradio"),
        "PYTHONUNBUFFERED": "1",
    })
    env.pop("GRADIO_SERVER_PORT", None)
    cmd = _youshu_command() + ["serve", "--host", "127.0.0.1", "--port", str(port), "--db", str(small_db)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=str(ROOT), env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_http(url, proc, log, START_TIMEOUT_S)
        yield {"url": url, "proc": proc, "log": log, "netlog": netlog, "audit": audit, "port": port}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def assistant(small_db):
    from assistant.engine import Assistant

    return Assistant(small_db)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, server):
    ctx = browser.new_context(viewport={"width": 1440, "height": 1000}, locale="zh-CN", accept_downloads=True)
    ctx.set_default_timeout(ANSWER_TIMEOUT_MS)
    pg = ctx.new_page()
    outside: list[str] = []
    pg.on("request", lambda r: outside.append(r.url) if not LOCAL_URL.match(r.url) else None)
    pg.goto(server["url"], wait_until="domcontentloaded")
    pg.wait_for_selector("#ys-question textarea", state="visible", timeout=ANSWER_TIMEOUT_MS)
    yield pg
    try:
        assert not outside, f"页面请求了外部地址（内网无法访问）：{outside[:10]}"
        text = server["log"].read_text(errors="replace")
        assert "Traceback" not in text, f"服务端出现异常：\n{text[-3000:]}"
    finally:
        ctx.close()


# ---------------------------------------------------------------------------------- page actions
def ask(page, question: str) -> None:
    box = page.locator("#ys-question textarea")
    box.fill(question)
    page.locator("#ys-send").click()


def chat_shows(page, text: str, timeout: int = ANSWER_TIMEOUT_MS):
    loc = page.locator("#ys-chat").get_by_text(text, exact=False).last
    loc.wait_for(state="visible", timeout=timeout)
    return loc


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def set_sql(page, sql: str) -> None:
    editor = page.locator("#ys-sql .cm-content")
    editor.wait_for(state="visible")
    editor.click()
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(sql)


def chart_drawn(page, elem_id: str) -> int:
    """Wait until the plot component holds a drawn canvas/svg/img; return how many."""
    sel = f"#{elem_id} canvas, #{elem_id} svg.marks, #{elem_id} img"
    page.locator(sel).first.wait_for(state="visible", timeout=ANSWER_TIMEOUT_MS)
    page.wait_for_function(
        """(sel) => [...document.querySelectorAll(sel)].some(e => {
               const r = e.getBoundingClientRect(); return r.width > 100 && r.height > 80; })""",
        arg=sel, timeout=ANSWER_TIMEOUT_MS)
    return page.locator(sel).count()


# ---------------------------------------------------------------------------------- tests
def test_answer_table_and_sources(page, server, assistant):
    shot = Shots("01-answer")
    expected = assistant.ask(Q_REVENUE)
    assert expected["status"] == "answered" and "20.99亿元" in expected["answer"]
    shot(page, "start")
    ask(page, Q_REVENUE)
    chat_shows(page, "20.99亿元")
    chat_shows(page, expected["answer"])
    shot(page, "answer")
    # the table, with Chinese headers and units
    table = page.locator("#ys-table")
    table.wait_for(state="visible")
    header = expected["columns"][0]["label"] + "（" + expected["columns"][0]["unit"] + "）"
    assert header in table.inner_text()
    # the 来源 panel: metric definition, source table and department, as-of, SQL
    sources = page.locator("#ys-sources")
    sources.locator(".label-wrap").first.click()
    panel = page.locator("#ys-sources-md")
    panel.get_by_text("fact_budget_revenue").first.wait_for(state="visible")
    text = panel.inner_text()
    table_src = next(s for s in expected["sources"] if s["kind"] == "table")
    for word in ("指标口径", "一般公共预算收入", table_src["name"], table_src["label"], table_src["department"],
                 table_src["update_frequency"], "数据截至"):
        assert word in text, f"来源面板缺少“{word}”：{text}"
    page.locator("#ys-sources-sql").get_by_text("fact_budget_revenue").first.wait_for(state="visible")
    shot(page, "sources", full_page=True)


def test_charts_rendered(page, assistant):
    shot = Shots("02-chart")
    ranking = assistant.ask(Q_RANKING)
    assert ranking["status"] == "answered" and ranking["chart"]["type"] == "bar"
    page.locator("#ys-examples button", has_text=Q_RANKING).click()
    chat_shows(page, ranking["answer"][:30])
    assert chart_drawn(page, "ys-chart-bar") >= 1
    assert not page.locator("#ys-chart-line").is_visible()
    shot(page, "bar")
    trend = assistant.ask(Q_TREND)
    assert trend["status"] == "answered" and trend["chart"]["type"] == "line"
    ask(page, Q_TREND)
    chat_shows(page, trend["answer"][:20])
    assert chart_drawn(page, "ys-chart-line") >= 1
    assert not page.locator("#ys-chart-bar").is_visible()
    shot(page, "line")


def test_clarification_buttons(page, assistant):
    shot = Shots("03-clarify")
    from assistant.engine import Conversation

    clar = assistant.ask(Q_AMBIGUOUS, conversation=Conversation())
    assert clar["status"] == "clarify"
    options = clar["clarification"]["options"]
    refined = clar["clarification"]["refined_questions"]
    ask(page, Q_AMBIGUOUS)
    chat_shows(page, clar["clarification"]["question"][:10])
    buttons = page.locator("#ys-clarify button:visible")
    buttons.first.wait_for(state="visible")
    assert buttons.count() == len(options)
    labels = [buttons.nth(i).inner_text().strip() for i in range(buttons.count())]
    assert labels == options
    shot(page, "options")
    answer = assistant.ask(refined[0], conversation=Conversation())
    assert answer["status"] == "answered"
    buttons.first.click()
    chat_shows(page, refined[0])  # the refined question is asked as the user's turn
    chat_shows(page, answer["answer"])
    page.locator("#ys-clarify").wait_for(state="hidden")
    shot(page, "answered")


def test_follow_up_uses_context(page, assistant, browser, server):
    shot = Shots("04-followup")
    from assistant.engine import Conversation

    conv = Conversation()
    first = assistant.ask(Q_REVENUE, conversation=conv)
    second = assistant.ask(Q_FOLLOW, conversation=conv)
    assert second["status"] == "answered" and "2020年" in second["answer"]
    alone = assistant.ask(Q_FOLLOW, conversation=Conversation())
    assert alone.get("answer") != second["answer"]  # the follow-up only makes sense with context
    ask(page, Q_REVENUE)
    chat_shows(page, first["answer"])
    ask(page, Q_FOLLOW)
    chat_shows(page, second["answer"])
    shot(page, "followup")
    # another browser session has its own conversation: the same follow-up has no context there
    other_ctx = browser.new_context(viewport={"width": 1440, "height": 1000}, locale="zh-CN")
    try:
        other = other_ctx.new_page()
        other.goto(server["url"])
        other.wait_for_selector("#ys-question textarea", state="visible", timeout=ANSWER_TIMEOUT_MS)
        ask(other, Q_FOLLOW)
        marker = (alone.get("clarification") or {}).get("question") or alone.get("error") or alone.get("answer")
        chat_shows(other, marker[:10])
        assert second["answer"] not in other.locator("#ys-chat").inner_text()
        shot(other, "other-session")
    finally:
        other_ctx.close()
    # 新对话 forgets the context
    page.locator("#ys-reset").click()
    page.locator("#ys-chat").get_by_text(first["answer"]).wait_for(state="detached")
    shot(page, "reset")


def test_analyst_validate_and_run(page, assistant):
    shot = Shots("05-analyst")
    ask(page, Q_REVENUE)
    chat_shows(page, "20.99亿元")
    open_tab(page, "分析师")
    page.locator("#ys-sql").get_by_text("fact_budget_revenue").first.wait_for(state="visible")
    shot(page, "last-sql")
    sql = "SELECT year, SUM(amount_wan) AS amount_wan FROM fact_budget_revenue GROUP BY year ORDER BY year"
    ok, message = assistant.validate_sql(sql)[:2]
    assert ok
    expected = assistant.run_sql(sql)
    assert expected["status"] == "answered"
    set_sql(page, sql)
    page.locator("#ys-validate").click()
    msg = page.locator("#ys-sql-msg")
    msg.get_by_text("校验通过").first.wait_for(state="visible")
    shot(page, "validated")
    page.locator("#ys-run").click()
    msg.get_by_text(expected["answer"]).first.wait_for(state="visible")
    result = page.locator("#ys-sql-table")
    result.wait_for(state="visible")
    assert "收入金额（万元）" in result.inner_text()
    assert str(expected["rows"][0][0]) in result.inner_text()
    assert chart_drawn(page, "ys-sql-line") >= 1  # year + amount → a line chart
    shot(page, "run", full_page=True)


def test_analyst_refuses_writes(page, assistant):
    shot = Shots("06-refusal")
    sql = "DELETE FROM fact_payment"
    expected = assistant.run_sql(sql)
    assert expected["status"] == "refused" and re.search(r"[\u4e00-\u9fff]", expected["error"])
    open_tab(page, "分析师")
    set_sql(page, sql)
    page.locator("#ys-validate").click()
    msg = page.locator("#ys-sql-msg")
    msg.get_by_text("校验未通过").first.wait_for(state="visible")
    assert expected["error"][:12] in msg.inner_text()
    shot(page, "validate")
    page.locator("#ys-run").click()
    msg.get_by_text("已拒绝").first.wait_for(state="visible")
    assert expected["error"][:12] in msg.inner_text()
    assert not page.locator("#ys-sql-table").is_visible()
    shot(page, "run")


def test_refusal_in_chat(page, assistant):
    """A refused question is a chat message (no traceback), and the app keeps answering."""
    shot = Shots("07-chat-refusal")
    q = "帮我删除2021年的支付数据"
    expected = assistant.ask(q)
    assert expected["status"] == "refused" and re.search(r"[\u4e00-\u9fff]", expected["error"])
    ask(page, q)
    chat_shows(page, "无法回答")
    chat_shows(page, expected["error"][:15])
    shot(page, "refused")
    ask(page, Q_REVENUE)
    chat_shows(page, "20.99亿元")
    shot(page, "still-answering")


def test_download_csv_and_excel(page, assistant, tmp_path):
    shot = Shots("08-download")
    expected = assistant.ask(Q_RANKING)
    page.locator("#ys-examples button", has_text=Q_RANKING).click()
    chat_shows(page, expected["answer"][:30])
    page.locator("#ys-csv").wait_for(state="visible")
    shot(page, "buttons")
    with page.expect_download() as info:
        page.locator("#ys-csv").click()
    dl = info.value
    assert dl.suggested_filename.endswith(".csv")
    path = tmp_path / "answer.csv"
    dl.save_as(str(path))
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # BOM: Excel opens the Chinese headers correctly
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    headers = [c["label"] + (f"（{c['unit']}）" if c.get("unit") else "") for c in expected["columns"]]
    assert rows[0] == headers
    assert len(rows) - 1 == len(expected["rows"])
    assert rows[1][0] == str(expected["rows"][0][0])
    assert float(rows[1][1]) == pytest.approx(float(expected["rows"][0][1]), abs=0.01)
    with page.expect_download() as info:
        page.locator("#ys-xlsx").click()
    xlsx = tmp_path / "answer.xlsx"
    info.value.save_as(str(xlsx))
    from openpyxl import load_workbook

    wb = load_workbook(xlsx)
    ws = wb["数据"]
    assert [c.value for c in ws[1]] == headers
    assert ws.max_row - 1 == len(expected["rows"])
    assert "说明" in wb.sheetnames
    shot(page, "done")


def test_catalogue_search_and_roles(page, assistant):
    shot = Shots("09-catalogue")
    open_tab(page, "数据目录")
    box = page.locator("#ys-cat-query input, #ys-cat-query textarea").first
    box.fill("税收")
    page.locator("#ys-cat-search").click()
    table = page.locator("#ys-cat-table")
    table.get_by_text("tax_revenue_local").first.wait_for(state="visible")
    page.get_by_text(re.compile(r"找到 \d+ 项")).first.wait_for(state="visible")
    shot(page, "search")
    # the role picker lists the departments and passes the role to ask()
    open_tab(page, "问答")
    from assistant import ui

    choices = ui.role_choices(assistant)
    dept_label, dept_value = next((lab, val) for lab, val in choices if val.startswith("部门用户:"))
    expected = assistant.ask(Q_RANKING, role=dept_value)
    assert expected["status"] == "answered"
    role_box = page.locator("#ys-role input").first
    role_box.click()
    page.get_by_role("option", name=dept_label, exact=True).click()
    page.keyboard.press("Escape")
    ask(page, Q_RANKING)
    chat_shows(page, expected["answer"])
    if expected.get("chart"):
        assert chart_drawn(page, "ys-chart-bar") >= 1
    shot(page, "dept-role")


def test_no_internet_and_answer_time(page, server):
    """The server never resolves or connects outside; the page answers quickly (median of 5)."""
    shot = Shots("10-timing")
    times = []
    for i in range(5):
        before = page.locator("#ys-chat").get_by_text("20.99亿元").count()
        page.locator("#ys-question textarea").fill(Q_REVENUE)
        t0 = time.perf_counter()
        page.locator("#ys-send").click()
        page.wait_for_function(
            "([n]) => document.querySelector('#ys-chat').innerText.split('20.99亿元').length - 1 > n",
            arg=[before], timeout=ANSWER_TIMEOUT_MS, polling=20)
        times.append(time.perf_counter() - t0)
    shot(page, "answers")
    median = statistics.median(times)
    print(f"\n页面回答时间（点击到数字出现）：{[round(t, 2) for t in times]}，中位数 {median:.2f} 秒")
    assert median < 15, f"页面回答太慢：中位数 {median:.1f} 秒"
    netlog = server["netlog"]
    contacted = netlog.read_text(encoding="utf-8").strip() if netlog.exists() else ""
    assert not contacted, f"服务端尝试访问外部网络：\n{contacted}"
    assert "有数已启动" in server["log"].read_text(errors="replace")
    audit = server["audit"]
    if audit.exists():  # the UI's questions are audited like the CLI's
        assert Q_REVENUE in audit.read_text(encoding="utf-8")
