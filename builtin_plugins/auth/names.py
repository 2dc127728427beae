"""When two account names are the same name.

Usernames and emails are compared after NFKC normalisation and Unicode case folding, so
a fullwidth ``ａｌｉｃｅ``, ``ALICE`` and ``alice`` are one name, and so are the NFC and
NFD spellings of ``josé@example.com``. What the user typed is kept for display; only the
folded key (``*_norm`` columns) is unique and looked up.
"""

from __future__ import annotations

import unicodedata


def fold(name: str) -> str:
    # NFKC, fold, NFKC again: folding can undo a composition (Unicode's NFKC_Casefold).
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
