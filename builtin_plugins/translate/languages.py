"""Language codes: how a client's code is matched against a provider's list, and the
list the ``llm`` provider offers."""

from __future__ import annotations

from dataclasses import dataclass

from sdk import errors

# A BCP 47-ish code: "en", "pt-BR", "zh-Hans"; "auto" is allowed for source_lang only.
CODE_PATTERN = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$"
SOURCE_PATTERN = r"^(auto|[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3})$"

# When a client names a language without its variant and the provider only has variants
# (DeepL's targets), this variant is used; otherwise the provider's first.
PREFERRED_VARIANT = {"en": "en-us", "pt": "pt-pt", "zh": "zh-hans"}


@dataclass(frozen=True, slots=True)
class Language:
    code: str  # as this API shows it: "en", "pt-BR", "zh-Hans"
    name: str
    source: bool = True
    target: bool = True
    upstream: str = ""  # as the provider spells it ("EN-US"); defaults to code

    @property
    def provider_code(self) -> str:
        return self.upstream or self.code

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "name": self.name, "source": self.source, "target": self.target}


def canonical(code: str) -> str:
    """``"EN-US"`` -> ``"en-US"``, ``"ZH-HANS"`` -> ``"zh-Hans"``, ``"pt"`` -> ``"pt"``."""
    parts = code.split("-")
    out = [parts[0].lower()]
    for part in parts[1:]:
        if len(part) == 2:
            out.append(part.upper())
        elif len(part) == 4:
            out.append(part.title())
        else:
            out.append(part.lower())
    return "-".join(out)


def match(code: str, languages: list[Language], side: str, provider: str) -> Language:
    """The provider's language for a client's ``code`` on ``side`` ("source"/"target").

    Case-insensitive; ``pt-BR`` falls back to ``pt`` when only that exists, and ``en``
    to a variant (``en-US``) when only variants exist. Otherwise 422 with the list.
    """
    usable = [lang for lang in languages if getattr(lang, side)]
    wanted = code.lower()
    by_code = {lang.code.lower(): lang for lang in usable}
    if wanted in by_code:
        return by_code[wanted]
    primary = wanted.split("-")[0]
    if primary in by_code:
        return by_code[primary]
    variants = [lang for lang in usable if lang.code.lower().split("-")[0] == primary]
    if variants:
        preferred = PREFERRED_VARIANT.get(primary)
        return next((v for v in variants if v.code.lower() == preferred), variants[0])
    field = "target_lang" if side == "target" else "source_lang"
    supported = sorted(lang.code for lang in usable)
    raise errors.ValidationFailed(
        f"The {side} language {code!r} is not supported by the {provider} provider",
        code="UNSUPPORTED_LANGUAGE",
        errors=[
            {
                "path": f"/{field}",
                "message": f"{code!r} is not one of the supported {side} languages: "
                + ", ".join(supported),
            }
        ],
        extra={"supported": supported},
    )


def same_language(a: Language, b: Language) -> bool:
    """True when translating from ``a`` into ``b`` would change nothing."""
    if a.code.lower() == b.code.lower():
        return True
    # "en" -> "en-US": same language, and the source has no variant to convert from
    return "-" not in a.code and b.code.lower().split("-")[0] == a.code.lower()


# What the ``llm`` provider offers: languages a general chat model handles (ISO 639-1).
LLM_LANGUAGES: dict[str, str] = {
    "ar": "Arabic",
    "bg": "Bulgarian",
    "cs": "Czech",
    "da": "Danish",
    "de": "German",
    "el": "Greek",
    "en": "English",
    "es": "Spanish",
    "et": "Estonian",
    "fa": "Persian",
    "fi": "Finnish",
    "fr": "French",
    "he": "Hebrew",
    "hi": "Hindi",
    "hu": "Hungarian",
    "id": "Indonesian",
    "it": "Italian",
    "ja": "Japanese",
    "ko": "Korean",
    "lt": "Lithuanian",
    "lv": "Latvian",
    "nl": "Dutch",
    "no": "Norwegian",
    "pl": "Polish",
    "pt": "Portuguese",
    "ro": "Romanian",
    "ru": "Russian",
    "sk": "Slovak",
    "sl": "Slovenian",
    "sv": "Swedish",
    "th": "Thai",
    "tr": "Turkish",
    "uk": "Ukrainian",
    "vi": "Vietnamese",
    "zh": "Chinese",
}
