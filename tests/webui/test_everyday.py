"""What a person noticed in everyday use, in a real browser at desktop and phone widths:
the conversation list's search, date groups and plain titles; export; a draft and the
picker's choice kept over a reload; whole words in tables; the memory page (add, edit,
delete with a count that follows, where a memory came from); Chinese and Korean chosen
from the browser's language; Japanese names, weather and admin words."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.serverproc import ServerProcess

from .conftest import ADMIN, DESKTOP, PHONE, shot
from .test_flow import send, sign_up
from .test_messages import WIDTHS, label
from .test_pages import log_in, settled, sign_up_in_japanese


def open_list(page: Any, viewport: dict[str, int]) -> None:
    if viewport["width"] < 500:
        page.get_by_role("button", name="Conversations").click()


@pytest.mark.parametrize("viewport", WIDTHS)
def test_conversations_search_groups_titles_and_export(
    open_page: Any, server: ServerProcess, viewport: dict[str, int]
) -> None:
    page = open_page(viewport=viewport).page
    sign_up(page, server.url, "lists")
    send(page, "**Pancakes** and `syrup`")
    expect(page.locator("li.msg.assistant .body")).to_contain_text(["Pancakes"])
    settled(page)
    # the title is plain text, without the Markdown
    expect(page.locator(".conv-title")).to_have_text("Pancakes and syrup")
    open_list(page, viewport)
    page.get_by_role("button", name="New chat").click()
    send(page, "Waffles please")
    expect(page.locator("li.msg.assistant .body")).to_contain_text(["Waffles"])
    settled(page)

    open_list(page, viewport)
    expect(page.locator(".session-group").first).to_have_text("Today")
    expect(page.locator(".session .session-title")).to_have_text(
        ["Waffles please", "Pancakes and syrup"]
    )
    page.get_by_label("Search conversations").fill("pancake")
    expect(page.locator(".session .session-title")).to_have_text(["Pancakes and syrup"])
    shot(page, f"{label(viewport)}-conversation-search")
    page.locator(".session .session-open").first.click()
    expect(page.locator("li.msg.user .body")).to_have_text(["**Pancakes** and `syrup`"])

    # export as Markdown: a file with the conversation
    page.get_by_text("Export", exact=True).click()
    with page.expect_download() as info:
        page.get_by_role("button", name="Markdown (.md)").click()
    download = info.value
    assert download.suggested_filename == "Pancakes and syrup.md"
    text = open(download.path(), encoding="utf-8").read()
    assert "Pancakes" in text and "Hello! You said:" in text


@pytest.mark.parametrize("viewport", WIDTHS)
def test_a_draft_and_the_pick_survive_a_reload_and_tables_keep_words_whole(
    open_page: Any, server: ServerProcess, viewport: dict[str, int]
) -> None:
    page = open_page(viewport=viewport).page
    sign_up(page, server.url, "draft")
    send(page, "code please")
    table = page.locator("li.msg.assistant .body table")
    expect(table).to_be_visible()
    settled(page)
    # every cell's words stay whole: "Tokyo" on one line
    lines = page.evaluate(
        """() => {
          const cell = [...document.querySelectorAll('.body td')].find((c) => c.textContent === 'Tokyo');
          const range = document.createRange();
          range.selectNodeContents(cell);
          return range.getClientRects().length;
        }"""
    )
    assert lines == 1, lines
    page.get_by_label("Who answers").select_option("claris")
    page.get_by_label("Message", exact=True).fill("a draft I have not sent")
    page.reload()
    expect(page.get_by_label("Message", exact=True)).to_have_value("a draft I have not sent")
    expect(page.get_by_label("Who answers")).to_have_value("claris")
    expect(page.locator(".nominee")).to_have_text("Claris will answer")
    shot(page, f"{label(viewport)}-draft-kept")


@pytest.mark.parametrize("viewport", WIDTHS)
def test_memory_page_add_edit_delete(
    open_page: Any, server: ServerProcess, viewport: dict[str, int]
) -> None:
    page = open_page(viewport=viewport).page
    sign_up(page, server.url, "mem")
    send(page, "Lumina, my dog is called Pochi")
    expect(page.locator("li.msg.assistant .body")).to_contain_text(["Pochi"])
    settled(page)
    page.get_by_role("link", name="Memory").click()
    page.get_by_label("Something the characters should remember about you").fill("I like green tea")
    page.get_by_role("button", name="Remember").click()
    facts = page.locator('.tab[data-tier="long_term"]')
    expect(facts).to_have_attribute("aria-pressed", "true")
    item = page.locator("li.memory").filter(has_text="I like green tea")
    expect(item).to_have_count(1)
    count = page.locator(".results-title")
    expect(count).to_have_text(re.compile(r"Facts about you · \d+ memor"))

    # edit it
    item.get_by_role("button", name=re.compile("^Edit memory")).click()
    page.get_by_label("Edit memory", exact=True).fill("I like genmaicha")
    page.get_by_role("button", name="Save").click()
    item = page.locator("li.memory").filter(has_text="I like genmaicha")
    expect(item).to_have_count(1)
    expect(page.locator("li.memory").filter(has_text="green tea")).to_have_count(0)

    # delete it: the count follows and the tab stays chosen
    before = count.text_content() or ""
    n = int(re.search(r"· (\d+)", before).group(1))
    page.once("dialog", lambda d: d.accept())
    item.get_by_role("button", name=re.compile("^Delete")).click()
    expect(page.locator("li.memory").filter(has_text="genmaicha")).to_have_count(0)
    expected = f"{n - 1} memory" if n - 1 == 1 else f"{n - 1} memories"
    expect(count).to_have_text(f"Facts about you · {expected}")
    expect(facts).to_have_attribute("aria-pressed", "true")

    # the recent turns say which conversation and which character they came from
    page.locator('.tab[data-tier="short_term"]').click()
    turn = page.locator("li.memory").filter(has_text="Pochi").first
    expect(turn.locator(".memory-session")).to_have_text(re.compile(r"^from “.*Pochi"))
    shot(page, f"{label(viewport)}-memory")


@pytest.mark.parametrize(
    ("locale", "heading", "placeholder"),
    [
        ("zh-CN", "登录", "输入消息"),
        ("ko-KR", "로그인", "메시지를 입력하세요"),
    ],
)
def test_chinese_and_korean_from_the_browser(
    open_page: Any, server: ServerProcess, locale: str, heading: str, placeholder: str
) -> None:
    page = open_page(viewport=PHONE, locale=locale).page
    page.goto(server.url + "/app/")
    expect(page.get_by_role("heading", name=heading)).to_be_visible()
    lang = locale.split("-")[0]
    assert page.evaluate("document.documentElement.lang") == lang
    shot(page, f"phone-login-{lang}")
    # sign up through the English page, then back to the browser's language
    page.get_by_label(re.compile("语言|언어")).select_option("en")
    sign_up(page, server.url, lang)
    page.get_by_label("Language", exact=True).select_option(lang)
    box = page.locator("textarea.composer-input, .composer textarea").first
    expect(box).to_have_attribute("placeholder", re.compile(placeholder))
    # nothing left in English on the chat page's controls
    texts = page.evaluate(
        """() => [...document.querySelectorAll('button, a, label, h1, h2, option, summary')]
            .map((e) => e.textContent.trim()).filter(Boolean)"""
    )
    english = [x for x in texts if re.fullmatch(r"[A-Za-z ,.'()…-]{4,}", x)]
    # names, the product and the languages' own names are not translated
    kept = re.compile(r"LlmMultiChat|English|Lumina|Claris|Nox|Markdown|JSON")
    assert [x for x in english if not kept.search(x)] == [], english
    shot(page, f"phone-chat-{lang}")


def test_japanese_names_weather_and_admin_words(open_page: Any, server: ServerProcess) -> None:
    page = open_page(viewport=DESKTOP, locale="ja-JP").page
    page.goto(server.url + "/app/")
    box = sign_up_in_japanese(page, "kana")
    box.fill("クラリス、こんにちは")
    expect(page.locator(".nominee")).to_have_text("クラリスが答えます")
    box.press("Enter")
    expect(page.locator('li.msg.assistant[data-character="claris"] .name')).to_have_text("クラリス")
    box.fill("東京の天気は？")
    box.press("Enter")
    expect(page.locator("li.msg.tool .weather-desc")).to_have_text("小雨")
    settled(page)
    shot(page, "desktop-chat-ja-names")

    admin = open_page(viewport=DESKTOP, locale="ja-JP").page
    log_in_ja(admin, server.url)
    admin.get_by_role("link", name="管理").click()
    expect(admin.locator('tr[data-plugin="webui"] .state')).to_have_text("稼働中")
    expect(admin.get_by_role("columnheader", name="プラグイン")).to_be_visible()
    expect(admin.get_by_role("navigation", name="メイン")).to_be_visible()


def log_in_ja(page: Any, base: str) -> None:
    page.goto(base + "/app/#/login")
    page.get_by_label("メールアドレス").fill(ADMIN["email"])
    page.get_by_label("パスワード").fill(ADMIN["password"])
    page.get_by_role("button", name="ログイン").click()
    expect(page.get_by_label("メッセージ", exact=True)).to_be_visible()


__all__ = ["log_in"]
