"""`enclavekit demo` renders the scenario's events: each kind as the demo has always shown it,
text from the library escaped (never read as rich markup)."""

from __future__ import annotations

import io

from rich.console import Console

from enclavekit.cli.demo import render
from enclavekit.jointstats.events import HostSaw, Say, SideBySide, Step, Title


def _shown(*events: object) -> str:
    out = io.StringIO()
    console = Console(file=out, width=100, highlight=False, soft_wrap=True)
    for event in events:
        render(console, event)  # type: ignore[arg-type]
    return out.getvalue()


def test_each_event_kind_is_rendered() -> None:
    text = _shown(Step("1. Owners encrypt"), Say("a fact"), Say("held", "ok"),
                  Say("careful", "warn"), Say("broke", "fail"), Say("a point", "item"),
                  Say("about the run", "note"), HostSaw("records alice/0", 1865, "aa…bb"))
    assert text.splitlines() == ["", "▸ 1. Owners encrypt", "  a fact", "  ✓ held",
                                 "  ! careful", "FAIL: broke", "▸ a point", "about the run",
                                 "  host saw  records alice/0                    1865 B  aa…bb"]


def test_titles_and_the_table() -> None:
    text = _shown(Title("enclavekit demo"), SideBySide("side by side", ("host", "Alice"),
                                                       ("70 B", "540 records")),
                  Title("demo complete in 1.0 s", final=True))
    assert "enclavekit demo" in text.splitlines()[0] and "─" in text.splitlines()[0]
    assert "side by side" in text and "540 records" in text and "┃ host" in text
    assert "demo complete in 1.0 s" in text.splitlines()[-1]


def test_library_text_is_not_markup() -> None:
    assert _shown(Say("policy [{\"claim\": 1}] [red]x[/]")) == \
        '  policy [{"claim": 1}] [red]x[/]\n'
