"""Accessibility in a real browser: text contrast computed from the rendered colours in
both themes (every visible text, character names included, at least 4.5:1), landmarks
and headings, a skip link to the composer, and the conversation list as one tab stop
moved through with the arrow keys."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.serverproc import ServerProcess

from .conftest import DESKTOP, PHONE, shot
from .test_flow import send, sign_up
from .test_messages import WIDTHS, label
from .test_pages import settled

# Every element with its own visible text: its colour over the background it is painted
# on (ancestors' backgrounds composed, opacity included), as WCAG computes contrast.
CONTRAST = r"""() => {
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = 1;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  const rgba = (css) => {
    ctx.clearRect(0, 0, 1, 1);
    ctx.fillStyle = '#000'; ctx.fillStyle = css;
    ctx.fillRect(0, 0, 1, 1);
    const [r, g, b, a] = ctx.getImageData(0, 0, 1, 1).data;
    return [r, g, b, a / 255];
  };
  const over = (top, under) => {
    const a = top[3];
    return [0, 1, 2].map((i) => top[i] * a + under[i] * (1 - a)).concat([1]);
  };
  const lum = ([r, g, b]) => {
    const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const ratio = (x, y) => { const [a, b] = [lum(x), lum(y)].sort((p, q) => q - p); return (a + 0.05) / (b + 0.05); };
  const background = (el) => {
    const chain = [];
    for (let n = el; n; n = n.parentElement) chain.push(n);
    let bg = [255, 255, 255, 1];
    for (const n of chain.reverse()) {
      const c = rgba(getComputedStyle(n).backgroundColor);
      if (c[3] > 0) bg = over(c, bg);
    }
    return bg;
  };
  const opacity = (el) => { let o = 1; for (let n = el; n; n = n.parentElement) o *= Number(getComputedStyle(n).opacity); return o; };
  const out = [];
  for (const el of document.querySelectorAll('body *')) {
    const own = Array.from(el.childNodes).some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || el.closest('.visually-hidden, [hidden], [aria-hidden="true"], option, .boot, .skip')) continue;
    const box = el.getBoundingClientRect();
    if (!box.width || !box.height || el.closest('[disabled]')) continue;
    const st = getComputedStyle(el);
    if (st.visibility === 'hidden' || st.display === 'none') continue;
    const fg = rgba(st.color);
    fg[3] *= opacity(el);
    const bg = background(el);
    const r = ratio(over(fg, bg), bg);
    out.push({ text: el.textContent.trim().slice(0, 40), cls: el.className && String(el.className), ratio: Math.round(r * 100) / 100 });
  }
  return out;
}"""


def low_contrast(page: Any) -> list[dict[str, Any]]:
    return [x for x in page.evaluate(CONTRAST) if x["ratio"] < 4.5]


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("viewport", WIDTHS)
def test_text_contrast_in_both_themes(
    open_page: Any, server: ServerProcess, viewport: dict[str, int], scheme: str
) -> None:
    page = open_page(viewport=viewport, color_scheme=scheme).page
    page.goto(server.url + "/app/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    # the measure itself: grey on white (2.8:1), and half-transparent text, are caught
    page.evaluate(
        """() => document.body.append(Object.assign(document.createElement('p'),
            {id: 'probe', textContent: 'probe', style: 'color:#999;background:#fff'}),
          Object.assign(document.createElement('p'),
            {id: 'probe2', textContent: 'probe2', style: 'color:#000;background:#fff;opacity:0.3'}))"""
    )
    assert {x["text"] for x in low_contrast(page)} == {"probe", "probe2"}
    page.evaluate("() => { probe.remove(); probe2.remove(); }")
    assert low_contrast(page) == []
    sign_up(page, server.url, "contrast")
    # each character answers once: their names are on screen in their colours
    for name in ("Lumina", "Claris", "Nox"):
        send(page, f"{name}, hello")
        expect(page.locator(f'li.msg.assistant .name:text-is("{name}")')).to_have_count(1)
        settled(page)
    send(page, "What is the weather in Tokyo?")
    expect(page.locator("li.msg.tool .card-weather")).to_be_visible()
    settled(page)
    checked = page.evaluate(CONTRAST)
    names = [x for x in checked if "name" in (x["cls"] or "").split()]
    assert {x["text"] for x in names} >= {"Lumina", "Claris", "Nox"}, names
    assert [x for x in checked if x["ratio"] < 4.5] == []
    shot(page, f"{label(viewport)}-contrast-{scheme}")
    for where in ("Characters", "Memory", "Profile"):
        page.get_by_role("link", name=where, exact=True).click()
        expect(page.get_by_role("heading", level=1)).to_be_visible()
        page.wait_for_timeout(300)
        assert low_contrast(page) == [], where


@pytest.mark.parametrize("viewport", WIDTHS)
def test_landmarks_headings_and_skip_link(
    open_page: Any, server: ServerProcess, viewport: dict[str, int]
) -> None:
    page = open_page(viewport=viewport).page
    sign_up(page, server.url, "landmarks")
    expect(page.get_by_role("banner")).to_have_count(1)
    expect(page.get_by_role("navigation", name="Main")).to_have_count(1)
    expect(page.get_by_role("main")).to_have_count(1)
    expect(page.get_by_role("heading", level=1)).to_have_count(1)
    expect(page.get_by_role("heading", level=1)).to_have_text("New chat")
    # the skip link is the first stop (before the top bar) and goes to the composer
    page.locator("a.brand").focus()
    page.keyboard.press("Shift+Tab")
    skip = page.get_by_role("link", name="Skip to the message box")
    expect(skip).to_be_focused()
    expect(skip).to_be_visible()
    page.keyboard.press("Enter")
    expect(page.get_by_label("Message", exact=True)).to_be_focused()


def tabs_to_composer(page: Any) -> int:
    """Tabs from the skip link to the message box (the skip link itself not followed)."""
    composer = page.get_by_label("Message", exact=True)
    target = composer.get_attribute("id")
    page.locator("a.skip").focus()
    for tabs in range(1, 60):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == target:
            return tabs
    return 60


def test_the_conversation_list_is_one_tab_stop(open_page: Any, server: ServerProcess) -> None:
    page = open_page(viewport=DESKTOP).page
    sign_up(page, server.url, "tabs")
    counts = []
    for i in range(8):
        page.get_by_role("button", name="New chat").click()
        send(page, f"conversation {i}")
        expect(page.locator("li.msg.assistant .body")).to_have_text(
            [f"Hello! You said: conversation {i}"]
        )
        settled(page)
        expect(page.locator(".session-list .session")).to_have_count(i + 1)
        if i in (0, 7):
            counts.append(tabs_to_composer(page))
    # as many Tabs to the composer with eight conversations as with one, and few of them
    assert counts[0] == counts[1] and counts[1] < 26, counts
    # the arrow keys move through the conversations; Enter opens one
    current = page.locator(".session-list a.session-open[tabindex='0']")
    current.focus()
    first = page.evaluate("document.activeElement.textContent")
    page.keyboard.press("ArrowDown")
    second = page.evaluate("document.activeElement.textContent")
    assert second != first
    expect(page.locator(".session-list a.session-open[tabindex='0']")).to_have_count(1)
    page.keyboard.press("Home")
    page.keyboard.press("End")
    page.keyboard.press("Enter")
    expect(page.locator("li.msg.user .body")).to_have_text(["conversation 0"])
    shot(page, "desktop-conversation-list-keyboard")


def test_phone_new_chat_closes_the_drawer(open_page: Any, server: ServerProcess) -> None:
    page = open_page(viewport=PHONE).page
    sign_up(page, server.url, "drawer")
    send(page, "a first conversation")
    settled(page)
    page.get_by_role("button", name="Conversations").click()
    expect(page.locator(".chat")).to_have_class("chat drawer-open")
    page.get_by_role("button", name="New chat").click()
    expect(page.locator(".chat")).not_to_have_class("chat drawer-open")
    expect(page.get_by_label("Message", exact=True)).to_be_focused()
    # the bars around the conversation leave most of the screen to it
    bars = page.evaluate(
        """() => {
          const s = document.querySelector('.scroller').getBoundingClientRect();
          return 1 - s.height / window.innerHeight;
        }"""
    )
    assert bars < 0.37, bars
    shot(page, "phone-new-chat")
