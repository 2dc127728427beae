"""A user's whole visit, in a real browser: sign up, chat, streaming, nominating a
character by name, a weather tool card, reload, memory search, log out."""

from __future__ import annotations

import re
import uuid
from typing import Any

from playwright.sync_api import expect

from tests.serverproc import ServerProcess

from .conftest import PHONE, shot

# Records every text a bubble shows while it is streaming, and every tool call announced
# while a reply runs (a MutationObserver sees each paint, however fast the reply is).
WATCH_STREAMING = """() => {
  window.__streamed = [];
  window.__liveTools = [];
  new MutationObserver(() => {
    for (const b of document.querySelectorAll('li.msg.assistant.streaming .body'))
      window.__streamed.push(b.textContent);
    for (const t of document.querySelectorAll('li.msg.calls.live'))
      window.__liveTools.push(t.textContent);
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def unique(name: str) -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"{name}{tag}", f"{name}{tag}@example.com"


def sign_up(page: Any, base: str, name: str) -> str:
    username, email = unique(name)
    page.goto(base + "/")  # a browser opening / is sent to the app
    expect(page).to_have_url(re.compile(r"/app/#/login$"))
    page.get_by_role("link", name=re.compile("Create an account")).click()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill("Correct-Horse-9")
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_label("Message", exact=True)).to_be_visible()
    expect(page.locator(".connection")).to_have_attribute("data-state", "open")
    return email


def send(page: Any, text: str) -> None:
    box = page.get_by_label("Message", exact=True)
    box.fill(text)
    box.press("Enter")


def test_a_whole_visit(open_page: Any, server: ServerProcess) -> None:
    w = open_page()
    page = w.page
    sign_up(page, server.url, "ann")
    shot(page, "desktop-empty-chat")

    # the reply streams in: the bubble is seen part-written before it is complete
    page.evaluate(WATCH_STREAMING)
    send(page, "hello there, my cat is called Mochi")
    final = "Hello! You said: hello there, my cat is called Mochi"
    bubble = page.locator("li.msg.assistant").last
    expect(bubble.locator(".body")).to_have_text(final)
    expect(page.locator("li.msg.assistant.streaming")).to_have_count(0)
    seen = page.evaluate("window.__streamed")
    partial = [t for t in seen if t and t != final]
    assert partial and all(final.startswith(t) for t in partial), seen
    expect(page).to_have_url(re.compile(r"#/chat/[\w-]+$"))
    session_url = page.url

    # naming a character nominates it: the chip says so and Claris answers
    page.get_by_label("Message", exact=True).fill("クラリス、why is the sky blue?")
    expect(page.locator(".nominee")).to_have_text("Claris will answer")
    page.get_by_label("Message", exact=True).press("Enter")
    claris = page.locator('li.msg.assistant[data-character="claris"]')
    expect(claris).to_have_count(1)
    expect(claris.locator(".name")).to_have_text("Claris")
    expect(claris.locator(".body")).to_contain_text("why is the sky blue?")

    # a tool call shows as a weather card, then the character's answer
    send(page, "What is the weather in Tokyo?")
    card = page.locator("li.msg.tool .card-weather")
    expect(card).to_be_visible()
    expect(card).to_contain_text("Tokyo")
    expect(card.locator(".weather-temp")).to_have_text("27 °C")
    expect(page.locator('li.msg.assistant[data-character="nox"] .body').last).to_contain_text(
        "It is 27.0 degrees in Tokyo"
    )
    expect(page.locator("li.msg.calls")).to_contain_text("Nox used weather")
    # the call was announced while the reply was running, before the stored history came
    assert any("Nox used weather" in t for t in page.evaluate("window.__liveTools"))
    shot(page, "desktop-chat")

    # rename the conversation in the list
    page.get_by_role("button", name=re.compile(r"^Rename: ")).click()
    page.get_by_label("New title").fill("Mochi and the weather")
    page.get_by_label("New title").press("Enter")
    expect(page.locator(".session.current .session-title")).to_have_text("Mochi and the weather")
    expect(page.locator(".conv-title")).to_have_text("Mochi and the weather")

    # reload keeps the session and its messages
    page.reload()
    expect(page).to_have_url(session_url)
    expect(page.locator("li.msg.tool .card-weather")).to_be_visible()
    expect(page.locator("li.msg.user").first).to_contain_text("my cat is called Mochi")
    expect(page.locator(".session.current .session-title")).to_have_text("Mochi and the weather")

    # memory search finds what was said
    page.get_by_role("link", name="Memory").click()
    page.get_by_label("Search your memories").fill("cat Mochi")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.locator("li.memory").first).to_contain_text("Mochi")
    shot(page, "desktop-memory")

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"#/login$"))
    expect(page.get_by_role("status").first).to_contain_text("logged out")
    page.goto(session_url)
    expect(page).to_have_url(re.compile(r"#/login$"))


def test_html_in_a_reply_is_only_text(open_page: Any, server: ServerProcess) -> None:
    page = open_page().page
    sign_up(page, server.url, "xss")
    send(page, "xss please")
    body = page.locator("li.msg.assistant .body").last
    expect(body).to_contain_text('<img src=x onerror="window.__xss=1">')
    expect(body).to_contain_text("<script>window.__xss=2</script>")
    expect(body.locator("strong")).to_have_text("still bold")
    assert body.locator("img, script").count() == 0
    assert page.evaluate("window.__xss") is None


def test_a_second_user_never_sees_the_first_users_sessions(
    open_page: Any, server: ServerProcess
) -> None:
    first = open_page().page
    sign_up(first, server.url, "first")
    send(first, "a secret about pancakes")
    expect(first.locator("li.msg.assistant .body")).to_contain_text("pancakes")
    expect(first).to_have_url(re.compile(r"#/chat/[\w-]+$"))
    theirs = first.url.split("#")[1]

    watched = open_page(viewport=PHONE)
    watched.expected_failures.append(f"/api/v1/chat/history/{theirs.rsplit('/', 1)[1]}")
    second = watched.page
    sign_up(second, server.url, "second")
    second.get_by_role("button", name="Conversations").click()
    expect(second.locator(".session-list")).to_contain_text("No conversations yet.")
    second.goto(server.url + "/app/#" + theirs)
    expect(second.locator(".messages")).to_contain_text("Not found.")
    assert "pancakes" not in second.content()
    second.get_by_role("link", name="Memory").click()
    second.get_by_label("Search your memories").fill("pancakes")
    second.get_by_role("button", name="Search", exact=True).click()
    expect(second.locator("li.empty")).to_have_text("Nothing found.")


def test_a_translation_card(open_page: Any, server: ServerProcess) -> None:
    page = open_page().page
    sign_up(page, server.url, "tr")
    box = page.get_by_label("Message", exact=True)
    box.fill("Claris, translate 'Thank you' into Japanese")
    expect(page.locator(".nominee")).to_have_text("Claris will answer")
    box.press("Enter")
    # the translate tool ran against the fake LibreTranslate: a card with both texts
    card = page.locator("li.msg.tool .card-translate")
    expect(card.locator(".card-title")).to_have_text("Translation · en → ja")
    expect(card.locator(".translate-original")).to_have_text("Thank you")
    expect(card.locator(".translate-result")).to_have_text("ありがとう")
    expect(card.locator(".translate-result")).to_have_attribute("lang", "ja")
    expect(card.locator(".card-source")).to_have_text("libretranslate")
    expect(page.locator("li.msg.calls")).to_contain_text("Claris used translate")
    expect(page.locator('li.msg.assistant[data-character="claris"] .body').last).to_have_text(
        "In Japanese that is ありがとう."
    )
    expect(page.locator("li.msg.assistant.streaming")).to_have_count(0)
    shot(page, "desktop-chat-translate")
