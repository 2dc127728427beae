"""The rest of the app in a real browser: errors where the user looks for them, Stop,
a dropped socket, Japanese on a phone, the profile, administration, keyboard use."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from tests.serverproc import ServerProcess

from .conftest import ADMIN, PHONE, shot
from .test_flow import WATCH_STREAMING, send, sign_up, unique


def test_sign_up_and_login_errors_are_shown_where_they_belong(
    open_page: Any, server: ServerProcess
) -> None:
    w = open_page(client_ip="10.9.8.7")  # its own login limit (5/minute)
    w.expected_failures += ["/api/v1/auth/register", "/api/v1/auth/login"]
    page = w.page
    email = sign_up(page, server.url, "err")
    page.get_by_role("button", name="Log out").click()

    # 422: the weak password's message sits under the password field
    page.get_by_role("link", name=re.compile("Create an account")).click()
    username, other = unique("weak")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Email").fill(other)
    page.get_by_label("Password").fill("short")
    page.get_by_role("button", name="Sign up").click()
    password = page.get_by_label("Password")
    expect(password).to_have_attribute("aria-invalid", "true")
    error_id = password.get_attribute("aria-describedby").split()[0]
    expect(page.locator(f"#{error_id}")).not_to_be_empty()
    expect(password).to_be_focused()

    # 409: a taken email is said under the email field
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill("Correct-Horse-9")
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_label("Email")).to_have_attribute("aria-invalid", "true")
    expect(page.locator(".field-error").nth(1)).to_have_text("That email is already taken.")

    # 401 on a wrong password, then 429 with the time to wait (login is limited to 5/minute)
    page.get_by_role("link", name=re.compile("Log in")).click()
    page.get_by_label("Email").fill(email)
    for _ in range(5):
        page.get_by_label("Password").fill("Wrong-Password-1")
        page.get_by_role("button", name="Log in").click()
        expect(page.locator(".form-error")).to_have_text("The email or password is not correct.")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(".form-error")).to_contain_text(re.compile(r"Try again in \d+ s"))
    shot(page, "desktop-login-rate-limited")


# Records every state the connection indicator shows (a MutationObserver sees each one,
# however short), so a test can wait for "reconnecting" then "open".
WATCH_CONNECTION = """() => {
  const el = document.querySelector('.connection');
  window.__states = [el.dataset.state];
  new MutationObserver(() => window.__states.push(el.dataset.state))
    .observe(el, {attributes: true, attributeFilter: ['data-state']});
}"""
RECONNECTED = """(n) => {
  const s = window.__states, i = s.indexOf('reconnecting', n);
  return i >= 0 && s.indexOf('open', i) > i;
}"""


# Records the messages taken out of the list that were there before (by their class).
WATCH_REMOVALS = """() => {
  window.__removed = [];
  const before = new Set(document.querySelectorAll('.messages > li'));
  new MutationObserver((records) => {
    for (const r of records) for (const n of r.removedNodes)
      if (before.has(n)) window.__removed.push(n.className);
  }).observe(document.querySelector('.messages'), {childList: true});
}"""


def settled(page: Any) -> None:
    """Wait until no reply is streaming and the history has been read again."""
    expect(page.locator(".conversation")).to_have_attribute("aria-busy", "false")


def test_stop_a_reply(open_page: Any, server: ServerProcess) -> None:
    page = open_page().page
    sign_up(page, server.url, "stop")
    send(page, "tell me slowly")
    streaming = page.locator("li.msg.assistant.streaming")
    expect(streaming.locator(".body")).to_contain_text("word")
    page.get_by_role("button", name="Stop").click()
    # the server keeps a stopped reply with the text streamed so far (status "stopped"),
    # and the user's message: nothing on screen is unsaved
    expect(page.locator("li.msg.note")).to_have_text("Stopped.")
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    settled(page)
    expect(streaming).to_have_count(0)
    expect(page.locator("li.msg.user .body")).to_have_text(["tell me slowly"])
    expect(page.locator("li.msg.assistant .body")).to_contain_text(["word word"])
    shot(page, "desktop-chat-stopped")

    # the conversation goes on; the stopped part keeps its place before the new turn, and
    # stays put (a node taken out and put back is read out again by a screen reader)
    page.evaluate(WATCH_REMOVALS)
    send(page, "and now quickly")
    expect(page.locator("li.msg.assistant .body").last).to_have_text(
        "Hello! You said: and now quickly"
    )
    settled(page)
    order = page.locator(".messages > li:not(.typing)").evaluate_all(
        "(els) => els.map((e) => e.classList[1])"
    )
    assert order == ["user", "assistant", "note", "user", "assistant"], order
    assert page.evaluate("window.__removed") == [], "the stopped part was taken out"


def test_a_dropped_socket_loses_nothing(open_page: Any, server: ServerProcess) -> None:
    page = open_page().page
    sockets: list[Any] = []
    refuse = False

    def through(route: Any) -> None:
        if refuse:  # the server is unreachable: every attempt is closed at once
            route.close(code=1013, reason="test keeps the connection down")
            return
        route.connect_to_server()
        sockets.append(route)

    page.route_web_socket(re.compile(r"/ws/chat$"), through)
    sign_up(page, server.url, "drop")
    page.evaluate(WATCH_CONNECTION)
    page.evaluate(WATCH_STREAMING)

    # the socket drops mid-reply: the reply goes on on the server; the page keeps what it
    # had, reconnects, and shows the stored reply once
    send(page, "please reconnect")
    expect(page.locator("li.msg.assistant.streaming .body")).to_contain_text("Hello")
    seen = len(page.evaluate("window.__states"))
    sockets[-1].close(code=4000, reason="test drops the connection")
    page.wait_for_function(RECONNECTED, arg=seen)
    full = "Hello! You said: please reconnect " + " ".join(["again"] * 40)
    reply = page.locator("li.msg.assistant .body").filter(has_text="You said: please reconnect")
    expect(reply).to_have_text([full], timeout=40_000)
    settled(page)
    expect(reply).to_have_count(1)
    expect(page.locator("li.msg.user .body")).to_have_text(["please reconnect"])

    # a message written while the connection is down waits, goes out when it is back,
    # and its reply streams in as usual
    refuse = True
    seen = len(page.evaluate("window.__states"))
    sockets[-1].close(code=4000, reason="test drops the connection")
    expect(page.locator(".connection")).not_to_have_attribute("data-state", "open")
    send(page, "sent while offline")
    expect(page.locator("li.msg.user .body").last).to_have_text("sent while offline")
    expect(page.locator(".connection")).to_have_text("Connection lost — reconnecting…")
    shot(page, "desktop-chat-offline")
    refuse = False
    page.wait_for_function(RECONNECTED, arg=seen)
    expect(page.locator("li.msg.assistant .body").last).to_have_text(
        "Hello! You said: sent while offline"
    )
    settled(page)
    streamed = page.evaluate("window.__streamed")
    assert any(t.startswith("Hello! You said: sent") for t in streamed), streamed
    expect(page.locator("li.msg.user .body")).to_have_text(
        ["please reconnect", "sent while offline"]
    )


def sign_up_in_japanese(page: Any, name: str) -> Any:
    """From the Japanese login page: make an account; returns the message box."""
    page.get_by_role("link", name=re.compile("アカウントを作成")).click()
    username, email = unique(name)
    page.get_by_label("ユーザー名").fill(username)
    page.get_by_label("メールアドレス").fill(email)
    page.get_by_label("パスワード").fill("Correct-Horse-9")
    page.get_by_role("button", name="新規登録").click()
    return page.get_by_label("メッセージ", exact=True)


def test_japanese_on_a_phone(open_page: Any, server: ServerProcess) -> None:
    page = open_page(viewport=PHONE, locale="ja-JP").page
    page.goto(server.url + "/app/")
    expect(page.get_by_role("heading", name="ログイン")).to_be_visible()
    assert page.evaluate("document.documentElement.lang") == "ja"
    shot(page, "phone-login-ja")
    box = sign_up_in_japanese(page, "hanako")
    box.fill("ノクス、東京の天気は？")
    expect(page.locator(".nominee")).to_have_text("ノクスが答えます")
    box.press("Enter")
    expect(page.locator('li.msg.assistant[data-character="nox"]')).to_be_visible()
    expect(page.locator("li.msg.tool .card-weather")).to_contain_text("天気")
    expect(page.locator("li.msg.assistant.streaming")).to_have_count(0)
    shot(page, "phone-chat-ja")
    page.get_by_role("button", name="会話").click()
    expect(page.locator(".session-list .session")).to_have_count(1)
    shot(page, "phone-sessions-ja")
    page.keyboard.press("Escape")

    # switch to English: the choice sticks after a reload
    page.get_by_label("言語").select_option("en")
    expect(page.get_by_role("link", name="Memory")).to_be_visible()
    page.reload()
    expect(page.get_by_role("link", name="Memory")).to_be_visible()
    stored = page.evaluate("Object.keys(localStorage).sort()")
    assert stored == ["llmmc.access", "llmmc.expires", "llmmc.lang", "llmmc.refresh"]


def test_profile_quota_keys_and_password(open_page: Any, server: ServerProcess) -> None:
    w = open_page()
    w.expected_failures.append("/api/v1/auth/change-password")  # the weak password's 422
    page = w.page
    sign_up(page, server.url, "prof")
    send(page, "count my tokens")
    expect(page.locator("li.msg.assistant .body")).to_have_text("Hello! You said: count my tokens")
    # the quota counts a turn's tokens from the llm.usage event, a moment after the
    # reply; the profile reads it when opened, so open it again until it has
    meter = page.get_by_role("progressbar", name="Today's token use")
    for _ in range(50):
        page.get_by_role("link", name="Profile").click()
        expect(meter).to_have_attribute("aria-valuemax", "200000")
        if int(meter.get_attribute("aria-valuenow") or 0) > 0:
            break
        page.get_by_role("link", name="Chat", exact=True).click()
        page.wait_for_timeout(100)
    assert int(meter.get_attribute("aria-valuenow") or 0) > 0

    page.get_by_label("Key name").fill("laptop script")
    page.get_by_role("button", name="Make key").click()
    key = page.locator(".key-value")
    expect(key).to_have_value(re.compile(r".{20,}"))
    secret = key.input_value()
    expect(page.locator(".keys li.key")).to_have_count(1)
    shot(page, "desktop-profile")
    page.get_by_role("button", name="Close").click()
    assert secret not in page.content()  # shown once
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Revoke: laptop script").click()
    expect(page.locator(".keys")).to_contain_text("No API keys.")

    page.get_by_label("Current password").fill("Correct-Horse-9")
    page.get_by_label("New password").fill("x")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_label("New password")).to_have_attribute("aria-invalid", "true")
    page.get_by_label("New password").fill("Another-Horse-10")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("status").last).to_contain_text("Password changed")


def log_in(page: Any, base: str, email: str, password: str) -> None:
    page.goto(base + "/app/#/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_label("Message", exact=True)).to_be_visible()


def test_admin_sees_plugins_and_manages_users(open_page: Any, server: ServerProcess) -> None:
    # a user to manage, signed in in a browser of their own
    watched = open_page()
    watched.expected_failures.append("/api/v1/auth/refresh")  # refused once disabled
    member = watched.page
    email = sign_up(member, server.url, "member")
    name = email.split("@")[0]

    w = open_page()
    w.expected_failures.append("/api/v1/admin/users/")  # the last admin's 409
    page = w.page
    log_in(page, server.url, ADMIN["email"], ADMIN["password"])
    page.get_by_role("link", name="Admin").click()
    rows = page.locator("tr[data-plugin]")
    expect(rows).to_have_count(8)  # the enabled ones and the storage they require
    expect(page.locator('tr[data-plugin="webui"] .state')).to_have_text("RUNNING")

    # the users table, searched
    expect(page.locator("tr[data-user]").first).to_be_visible()
    page.get_by_label("Search", exact=True).fill(name)
    page.get_by_role("button", name="Search", exact=True).click()
    row = page.locator("tr[data-user]")
    expect(row).to_have_count(1)
    expect(row.locator("th")).to_have_text(name)
    expect(row.locator(".roles")).to_have_text("user")
    expect(row.locator(".account-state")).to_have_text("Active")

    # make them an admin, then take it back (asked first)
    page.get_by_role("button", name=f"Make admin: {name}").click()
    expect(row.locator(".roles")).to_have_text("user, admin")
    expect(page.get_by_role("button", name=f"Remove admin: {name}")).to_be_focused()
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name=f"Remove admin: {name}").click()
    expect(row.locator(".roles")).to_have_text("user")

    # disable: the row says so and their browser is logged out at once (its socket, back
    # after the role change, is told why)
    expect(member.locator(".connection")).to_have_attribute("data-state", "open")
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name=f"Disable: {name}").click()
    expect(row.locator(".account-state")).to_have_text("Disabled")
    page.locator("table.users").scroll_into_view_if_needed()
    shot(page, "desktop-admin")
    expect(member).to_have_url(re.compile(r"#/login$"))
    # told why, not only that the session ended
    expect(member.locator(".notice")).to_have_text("An administrator has disabled your account.")

    # enable: they can log in again
    page.get_by_role("button", name=f"Enable: {name}").click()
    expect(row.locator(".account-state")).to_have_text("Active")
    log_in(member, server.url, email, "Correct-Horse-9")

    # the last enabled admin cannot be disabled: the server's reason is shown
    page.get_by_label("Search", exact=True).fill(ADMIN["username"])
    page.get_by_role("button", name="Search", exact=True).click()
    expect(row).to_have_count(1)
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name=f"Disable: {ADMIN['username']}").click()
    expect(page.locator(".toast")).to_have_text(
        "This is the last enabled admin: make another admin first."
    )
    expect(row.locator(".account-state")).to_have_text("Active")


def test_dark_theme_is_chosen_and_kept(open_page: Any, server: ServerProcess) -> None:
    page = open_page().page  # the system is light
    sign_up(page, server.url, "dark")
    body = page.locator("body")
    expect(body).to_have_css("background-color", "rgb(246, 247, 251)")
    page.get_by_label("Theme").select_option("dark")
    expect(body).to_have_css("background-color", "rgb(18, 20, 27)")
    expect(body).to_have_css("color", "rgb(232, 234, 242)")
    send(page, "What is the weather in Tokyo?")
    expect(page.locator("li.msg.tool .card-weather")).to_be_visible()
    expect(page.locator("li.msg.assistant.streaming")).to_have_count(0)
    expect(page.locator(".conv-title")).to_have_text("What is the weather in Tokyo?")
    shot(page, "desktop-chat-dark")

    page.reload()
    expect(page.get_by_label("Theme")).to_have_value("dark")
    expect(body).to_have_css("background-color", "rgb(18, 20, 27)")
    # back to automatic: the system's light again, and nothing stored for it
    page.get_by_label("Theme").select_option("auto")
    expect(body).to_have_css("background-color", "rgb(246, 247, 251)")
    assert page.evaluate("localStorage.getItem('llmmc.theme')") is None


def test_the_theme_follows_the_system_until_chosen(open_page: Any, server: ServerProcess) -> None:
    page = open_page(viewport=PHONE, locale="ja-JP", color_scheme="dark").page
    page.goto(server.url + "/app/")
    body = page.locator("body")
    expect(body).to_have_css("background-color", "rgb(18, 20, 27)")
    expect(page.get_by_label("テーマ")).to_have_value("auto")
    shot(page, "phone-login-ja-dark")
    box = sign_up_in_japanese(page, "yami")
    box.fill("ノクス、東京の天気は？")
    box.press("Enter")
    expect(page.locator("li.msg.tool .card-weather")).to_contain_text("天気")
    expect(page.locator("li.msg.assistant.streaming")).to_have_count(0)
    expect(page.locator(".conv-title")).to_have_text("ノクス、東京の天気は？")
    shot(page, "phone-chat-ja-dark")
    # chosen light wins over the dark system
    page.get_by_label("テーマ").select_option("light")
    expect(body).to_have_css("background-color", "rgb(246, 247, 251)")


def test_english_follows_the_browser_and_switches_to_japanese(
    open_page: Any, server: ServerProcess
) -> None:
    page = open_page().page  # en-US
    sign_up(page, server.url, "lang")
    assert page.evaluate("document.documentElement.lang") == "en"
    send(page, "hello in two languages")
    reply = page.locator("li.msg.assistant .body")
    expect(reply).to_have_text(["Hello! You said: hello in two languages"])
    # The turn is over (stored), not only its text shown: a switch re-renders the view from
    # the stored history, which a reply still being stored is not yet in.
    expect(page.locator(".conversation")).to_have_attribute("aria-busy", "false")

    page.get_by_label("Language", exact=True).select_option("ja")
    expect(page.get_by_role("link", name="メモリ")).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "ja")
    expect(page.get_by_label("メッセージ", exact=True)).to_have_attribute(
        "placeholder", re.compile("Enterで送信")
    )
    expect(page.get_by_role("button", name="送信")).to_be_visible()
    expect(page.get_by_role("button", name="ログアウト")).to_be_visible()
    # the open conversation is still there, and the choice outlives a reload
    expect(reply).to_have_text(["Hello! You said: hello in two languages"])
    page.reload()
    expect(page.get_by_role("link", name="プロフィール")).to_be_visible()
    page.get_by_role("link", name="プロフィール").click()
    expect(page.get_by_role("heading", name="パスワードの変更")).to_be_visible()
    shot(page, "desktop-profile-ja")

    page.get_by_label("言語").select_option("en")
    expect(page.get_by_role("heading", name="Change password")).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "en")


def test_keyboard_only_and_every_control_is_labelled(open_page: Any, server: ServerProcess) -> None:
    page = open_page().page
    sign_up(page, server.url, "keys")
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea, button, a[href]')]
            .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                && !el.getAttribute('aria-labelledby') && !el.textContent.trim())
            .map((el) => el.outerHTML.slice(0, 80))"""
    )
    assert unlabelled == []
    # the composer has focus after sign-up; type and send with the keyboard only
    expect(page.get_by_label("Message", exact=True)).to_be_focused()
    page.keyboard.type("typed with keys")
    page.keyboard.press("Enter")
    expect(page.locator("li.msg.assistant .body")).to_have_text("Hello! You said: typed with keys")
    page.keyboard.press("Shift+Tab")
    expect(page.get_by_label("Who answers")).to_be_focused()
    page.keyboard.press("ArrowDown")  # Lumina
    expect(page.locator(".nominee")).to_have_text("Lumina will answer")
