"""Every hookspec has a section in docs/hooks.md (Datasette keeps its docs honest the same way)."""

from __future__ import annotations

import re

from sdk.hooks import HookSpecs
from tests.serverproc import ROOT


def test_every_hookspec_is_documented() -> None:
    text = (ROOT / "docs" / "hooks.md").read_text()
    documented = set(re.findall(r"^## (\w+)$", text, re.M))
    specs = {name for name in vars(HookSpecs) if not name.startswith("_")}
    assert specs, "no hookspecs found"
    assert specs - documented == set(), "hookspecs missing from docs/hooks.md"
    assert documented - specs == set(), "docs/hooks.md documents hooks that do not exist"


def test_every_hookspec_has_a_one_line_docstring() -> None:
    for name, fn in vars(HookSpecs).items():
        if name.startswith("_"):
            continue
        doc = (fn.__doc__ or "").strip()
        assert doc and "\n" not in doc, name
