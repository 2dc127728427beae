"""Password-reset mail over SMTP (``[plugins.auth.email]``), sent from a worker thread."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any


@dataclass(frozen=True, slots=True)
class EmailSettings:
    host: str = ""
    port: int = 587
    security: str = "starttls"  # "starttls" | "tls" (implicit, port 465) | "none"
    username: str = ""
    password: str = ""
    from_address: str = ""
    reset_url: str = ""  # e.g. "https://chat.example.com/reset?token={token}"
    timeout_seconds: float = 10.0

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> EmailSettings:
        return cls(**{k: v for k, v in cfg.items() if k in cls.__dataclass_fields__})

    @property
    def missing(self) -> str:
        """The setting that keeps mail from being sent, or "" when it can be sent."""
        if not self.host:
            return "[plugins.auth.email] host"
        if not self.from_address:
            return "[plugins.auth.email] from_address"
        return ""


def reset_message(settings: EmailSettings, to: str, token: str, minutes: int) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = settings.from_address
    msg["To"] = to
    msg["Subject"] = "Reset your password"
    if settings.reset_url:
        how = (
            f"Open this link to choose a new password:\n\n{settings.reset_url.format(token=token)}"
        )
    else:
        how = (
            "Your reset token is:\n\n"
            f"{token}\n\n"
            'Send it with POST /api/v1/auth/reset-password {"reset_token", "new_password"}.'
        )
    msg.set_content(
        "Someone asked to reset the password of your account.\n\n"
        f"{how}\n\n"
        f"It works once, within {minutes} minutes. If you did not ask for this, ignore this mail:"
        " your password stays as it is.\n"
    )
    return msg


def _send(settings: EmailSettings, msg: EmailMessage) -> None:
    timeout = settings.timeout_seconds
    smtp: smtplib.SMTP
    if settings.security == "tls":
        context = ssl.create_default_context()
        smtp = smtplib.SMTP_SSL(settings.host, settings.port, timeout=timeout, context=context)
    else:
        smtp = smtplib.SMTP(settings.host, settings.port, timeout=timeout)
    with smtp:
        if settings.security == "starttls":
            smtp.starttls(context=ssl.create_default_context())
        if settings.username:
            smtp.login(settings.username, settings.password)
        smtp.send_message(msg)


async def send(settings: EmailSettings, msg: EmailMessage) -> None:
    await asyncio.to_thread(_send, settings, msg)
