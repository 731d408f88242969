"""`enclavekit demo`: two data owners, joint statistics in an enclave, the host sees ciphertext.

The scenario is :func:`enclavekit.jointstats.scenario.run` (``--nodes N``:
:func:`enclavekit.ray.demo.run_nodes`); this module renders the events it reports.
"""

from __future__ import annotations

import functools
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..jointstats.events import Event, HostSaw, Say, SideBySide, Step, Title
from ..jointstats.scenario import run
from ..ray.demo import run_nodes

_MARKS = {"": "  ", "ok": "  [green]✓[/] ", "warn": "  [yellow]![/] ", "item": "▸ "}


def render(console: Console, event: Event) -> None:
    """Print one event of the scenario."""
    if isinstance(event, Title):
        console.rule(f"[bold{' green' if event.final else ''}]{escape(event.text)}")
    elif isinstance(event, Step):
        console.print(f"\n[bold cyan]▸ {escape(event.text)}[/]")
    elif isinstance(event, Say) and event.mark == "fail":
        console.print(f"[red]FAIL: {escape(event.text)}[/]", highlight=False)
    elif isinstance(event, Say) and event.mark == "note":
        console.print(f"[dim]{escape(event.text)}[/]", highlight=False)
    elif isinstance(event, Say):
        console.print(f"{_MARKS[event.mark]}{escape(event.text)}", highlight=False)
    elif isinstance(event, HostSaw):
        console.print(f"  host saw  {event.label:<32} {event.size:>6} B  {event.snippet}",
                      highlight=False, markup=False)
    elif isinstance(event, SideBySide):
        table = Table(title=event.title, show_lines=True)
        table.add_column(event.columns[0], no_wrap=True)
        for column in event.columns[1:]:
            table.add_column(column)
        table.add_row(*event.cells)
        console.print(table)


@click.command("demo")
@click.option("--examples", type=click.Path(file_okay=False, exists=True, path_type=Path),
              default=None, help="The examples/ directory (default: the source checkout's).")
@click.option("--nodes", type=click.IntRange(1, 8), default=None,
              help="Run it partitioned over N local Ray nodes instead (see docs/ray.md).")
def demo(examples: Path | None, nodes: int | None) -> None:
    """Joint statistics over two owners' encrypted data in an attested enclave."""
    console = Console(highlight=False, soft_wrap=True)
    report = functools.partial(render, console)
    outcome = run(report, examples) if nodes is None else run_nodes(report, nodes, examples)
    if not outcome.ok:
        raise SystemExit(1)


def register(group: click.Group) -> None:
    """Add ``demo`` to the ``enclavekit`` group."""
    group.add_command(demo)
