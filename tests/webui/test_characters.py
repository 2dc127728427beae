"""Characters in a real browser, at desktop and phone widths: made with the form, seen in
detail, edited, given a picture, imported from a Character Card V2 dropped on the page;
and forms that show every field error at once, in the user's language."""

from __future__ import annotations

import json
import re
import struct
import uuid
import zlib
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.serverproc import ServerProcess

from .conftest import DESKTOP, PHONE, shot
from .test_flow import sign_up, unique
from .test_messages import WIDTHS, label


def png(width: int = 8, height: int = 8, rgb: tuple[int, int, int] = (200, 60, 90)) -> bytes:
    """A small real PNG (one colour)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


DROP = """([selector, name, type, text]) => {
  const dt = new DataTransfer();
  dt.items.add(new File([text], name, {type}));
  const zone = document.querySelector(selector);
  zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: dt, bubbles: true, cancelable: true}));
  zone.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
}"""


@pytest.mark.parametrize("viewport", WIDTHS)
def test_make_edit_picture_and_import_characters(
    open_page: Any, server: ServerProcess, viewport: dict[str, int]
) -> None:
    w = open_page(viewport=viewport)
    w.expected_failures.append("/api/v1/chat/characters")  # the taken name's 409
    page = w.page
    sign_up(page, server.url, "maker")
    page.get_by_role("link", name="Characters").click()
    expect(page.get_by_role("heading", name="Characters", level=1)).to_be_visible()
    expect(page.locator(".character-card")).to_have_count(3)

    # a built-in one in detail
    page.locator('.character-card[data-character="claris"] a').click()
    expect(page.get_by_role("heading", name="Claris", level=2)).to_be_visible()
    expect(page.locator(".character-detail")).to_contain_text("クラリス")

    # make one: a name already taken is said under the name field
    page.get_by_role("button", name="New character").click()
    page.get_by_label("Name", exact=True).fill("Claris")
    page.get_by_role("button", name="Save").click()
    name_box = page.get_by_label("Name", exact=True)
    expect(name_box).to_have_attribute("aria-invalid", "true")
    expect(page.locator(".character-form .field-error").first).to_have_text(
        "A character already has this name or alias."
    )
    pip = f"Pip{uuid.uuid4().hex[:4]}"
    name_box.fill(pip)
    page.get_by_label("Other names").fill(f"ピップ{pip[3:]}")
    page.get_by_label("Description", exact=True).fill("A cheerful helper.")
    page.get_by_label("Persona (how it speaks and behaves)").fill("Speaks briefly.")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", name=pip, level=2)).to_be_visible()
    expect(page.locator(".character-card")).to_have_count(4)

    # edit it
    page.get_by_role("button", name="Edit", exact=True).click()
    page.get_by_label("Description", exact=True).fill("A cheerful helper who likes tea.")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".character-detail")).to_contain_text("likes tea")

    # a picture: the avatar shows it
    page.locator(".character-detail input[type=file]").set_input_files(
        {"name": "pip.png", "mimeType": "image/png", "buffer": png()}
    )
    expect(page.locator(".toast")).to_have_text("Picture saved.")
    expect(page.locator(".character-head svg.avatar image")).to_have_count(1)
    shot(page, f"{label(viewport)}-character-detail")

    # import a Card V2 by dropping it on the page
    card_name = f"Tavern{uuid.uuid4().hex[:4]}"
    card = {
        "spec": "chara_card_v2",
        "spec_version": "2.0",
        "data": {
            "name": card_name,
            "description": "Imported from a card.",
            "personality": "Warm.",
            "scenario": "",
            "first_mes": "Welcome!",
            "mes_example": "",
        },
    }
    page.evaluate(DROP, [".dropzone", "card.json", "application/json", json.dumps(card)])
    expect(page.get_by_role("heading", name=card_name, level=2)).to_be_visible()
    expect(page.locator(".character-card")).to_have_count(5)
    shot(page, f"{label(viewport)}-characters")

    # the new character is in the chat: named, it answers
    page.get_by_role("link", name="Chat", exact=True).click()
    box = page.get_by_label("Message", exact=True)
    box.fill(f"{pip}, hello")
    expect(page.locator(".nominee")).to_have_text(f"{pip} will answer")


def test_every_field_error_at_once_in_japanese(open_page: Any, server: ServerProcess) -> None:
    w = open_page(viewport=PHONE, locale="ja-JP")
    w.expected_failures.append("/api/v1/auth/register")
    page = w.page
    page.goto(server.url + "/app/#/register")
    page.get_by_label("ユーザー名").fill("a b")
    page.get_by_label("メールアドレス").fill("not-an-email")
    page.get_by_label("パスワード").fill("short")
    page.get_by_role("button", name="新規登録").click()
    errors = page.locator(".field-error")
    expect(errors).to_have_text(
        [
            re.compile("3〜32文字"),
            "name@example.com の形式でメールアドレスを入力してください。",
            "8文字以上にしてください。",
        ]
    )
    expect(page.get_by_label("ユーザー名")).to_be_focused()
    shot(page, "phone-register-errors-ja")

    # a taken email: the server's code, in Japanese, under the email field
    taken = sign_up_elsewhere(open_page, server)
    page.get_by_label("ユーザー名").fill(unique("again")[0])
    page.get_by_label("メールアドレス").fill(taken)
    page.get_by_label("パスワード").fill("Correct-Horse-9")
    page.get_by_role("button", name="新規登録").click()
    expect(page.get_by_label("メールアドレス")).to_have_attribute("aria-invalid", "true")
    expect(page.locator(".field-error").nth(1)).to_have_text(
        "このメールアドレスはすでに使われています。"
    )
    assert "already taken" not in page.content()


def sign_up_elsewhere(open_page: Any, server: ServerProcess) -> str:
    page = open_page(viewport=DESKTOP).page
    email = sign_up(page, server.url, "taken")
    page.get_by_role("button", name="Log out").click()
    return email


def test_forgot_password_link(open_page: Any, server: ServerProcess) -> None:
    page = open_page().page
    page.goto(server.url + "/app/#/login")
    page.get_by_role("link", name="Forgot your password?").click()
    expect(page.get_by_role("heading", name="Send a reset code")).to_be_visible()
    expect(page.get_by_label("Email")).to_be_focused()
