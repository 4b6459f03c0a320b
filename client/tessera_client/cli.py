"""``tessera``: attach this computer to projects, crunch their work, and see how it goes."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from tessera_client import __version__, attaching, control, dashboard_link, notices, service
from tessera_client.benchmark import run_benchmark
from tessera_client.daemon import Daemon
from tessera_client.journal import Journal
from tessera_client.prefs import FIELDS, PreferenceError, PreferenceStore
from tessera_client.protocol import ProtocolError
from tessera_client.state import DataDir, Project, StateError, default_data_dir, suggested_preferences
from tessera_client.status_view import notices_table, plain_row, projects_table, tasks_table


class CliError(Exception):
    """A mistake the volunteer can fix; printed without a traceback."""


# -- attach / detach / share ----------------------------------------------------------------


def attach(args: argparse.Namespace, data: DataDir, out: Console) -> int:
    """``tessera attach``: register a host key with the project and pin its code-signing key."""
    project, info = attaching.attach(
        data,
        attaching.AttachRequest(
            url=args.url,
            token=args.token,
            name=args.name,
            host_name=args.host_name,
            resource_share=args.resource_share,
            fingerprint=args.fingerprint,
        ),
    )
    out.print(
        f"Attached to {escape(str(info.get('name') or project.url))} as [bold]{project.name}[/bold]"
        f" (host {project.host_id})."
    )
    out.print(f"Pinned the project's code-signing key: [bold]{project.fingerprint}[/bold]")
    out.print("Compare it with the one the project publishes; only apps signed by it will run.")
    return 0


def detach(args: argparse.Namespace, data: DataDir, out: Console) -> int:
    """``tessera detach``: forget the project and its tasks (unreported ones only with --yes)."""
    project = data.project(args.name)
    journal = Journal(data.tasks)
    unfinished = [r for r in journal.records(project=project.name) if r.state != "reported"]
    if unfinished and not args.yes:
        raise CliError(
            f"{project.name} has {len(unfinished)} task(s) not yet reported; they would be abandoned. "
            "Let `tessera run` finish them, or detach with --yes"
        )
    data.remove_project(project.name)
    journal.forget_project(project.name)
    out.print(f"Detached from {project.name}.")
    return 0


def share(args: argparse.Namespace, data: DataDir, out: Console) -> int:
    """``tessera share``: set a project's resource share."""
    if not 0 < args.share <= 1_000_000:
        raise CliError("a resource share is a positive number (BOINC's default is 100)")
    project = data.project(args.name)
    project.resource_share = args.share
    data.save_project(project)
    out.print(f"{project.name}: resource share {args.share:g}")
    return 0


# -- run / status ---------------------------------------------------------------------------


def run(args: argparse.Namespace, data: DataDir, out: Console) -> int:
    """``tessera run``: crunch in the foreground (see :class:`Daemon`)."""
    if args.dashboard_port is not None and not 0 <= args.dashboard_port <= 65535:
        raise CliError("--dashboard-port is a port number, 0 to 65535 (0: any free port)")
    daemon = Daemon(
        data,
        console=out,
        exit_when_idle=args.exit_when_idle,
        isolate_network=not args.allow_network,
        backoff_base=args.backoff_base,
        dashboard_port=None if args.no_dashboard else args.dashboard_port or 0,
    )
    return daemon.run()


def suspend(args: argparse.Namespace, data: DataDir, out: Console) -> int:
    """``tessera suspend [PROJECT]``: pause all work, or one project's (see :mod:`control`)."""
    out.print(control.suspend(data, args.project), markup=False)
    return 0


def resume(args: argparse.Namespace, data: DataDir, out: Console) -> int:
    """``tessera resume [PROJECT]``: undo ``tessera suspend``."""
    out.print(control.resume(data, args.project), markup=False)
    return 0


def dashboard(args: argparse.Namespace, data: DataDir, out: Console) -> int:
    """``tessera dashboard``: open the running client's dashboard (see :mod:`dashboard_link`)."""
    url = dashboard_link.address(data)
    out.print(url, markup=False, highlight=False)
    if args.no_browser or not dashboard_link.open_in_browser(url):
        out.print("Open that address in a browser on this computer; it works only while the client runs.")
    return 0


def status(args: argparse.Namespace, data: DataDir, out: Console) -> int:
    """Print the client's version, the attached projects, then every task in the journal."""
    out.print(f"tessera {__version__}")
    projects = data.projects()
    if not projects:
        out.print("No project attached. `tessera attach URL --token TOKEN` attaches one.")
        return 0
    if control.all_suspended(data):
        out.print("[bold]All work is suspended[/bold] (`tessera resume` resumes it).")
    out.print(projects_table(data, projects))
    show_notices(data, projects, out, only_unread=True)
    journal = Journal(data.tasks)
    records = journal.records()
    out.print(tasks_table(journal, records) if records else "No tasks.")
    return 0


def show_notices(data: DataDir, projects: list[Project], out: Console, *, only_unread: bool) -> None:
    """The projects' notices (those not read yet, or all kept), then mark them read."""
    rows = []
    for project in projects:
        runtime = data.runtime(project.name)
        shown = notices.unread(data, project.name, runtime) if only_unread else runtime.notices
        rows += [(project.name, notice) for notice in shown]
        notices.mark_read(data, project.name, shown)
    if rows:
        out.print(notices_table(rows, "Unread notices" if only_unread else "Notices"))
    elif not only_unread:
        out.print("No notices.")


def notices_command(args: argparse.Namespace, data: DataDir, out: Console) -> int:
    """``tessera notices``: every notice kept from the attached projects, read or not."""
    show_notices(data, data.projects(), out, only_unread=False)
    return 0


# -- prefs / benchmark ----------------------------------------------------------------------


def prefs(args: argparse.Namespace, data: DataDir, out: Console) -> int:
    """``tessera prefs``: show the effective preferences, after setting or unsetting one."""
    store = PreferenceStore(data.prefs_file)
    if args.action == "set":
        store.set(args.key, args.value)
    elif args.action == "unset":
        store.unset(args.key)
    suggested = suggested_preferences(data.projects())
    effective = store.effective(suggested)
    sources = store.sources(suggested)
    table = Table(title="Preferences")
    for column in ("key", "value", "from", "meaning"):
        table.add_column(column)
    for key, meaning in FIELDS.items():
        plain_row(table, key, str(getattr(effective, key)), sources.get(key, "default"), meaning)
    out.print(table)
    return 0


def benchmark(args: argparse.Namespace, data: DataDir, out: Console) -> int:
    """``tessera benchmark``: measure this computer's speed and keep it for the projects."""
    with Progress(
        SpinnerColumn(), TextColumn("measuring this computer's speed"), TimeElapsedColumn(), console=out
    ) as progress:
        progress.add_task("benchmark", total=None)
        figures = run_benchmark(args.seconds)
    figures["measured_at"] = time.time()
    data.ensure().save_host_info(figures)
    out.print(f"floating point: {figures['flops'] / 1e6:,.1f} million operations per second per core")
    out.print(f"integer:        {figures['iops'] / 1e6:,.1f} million operations per second per core")
    out.print("Attached projects hear of it at the next contact (it sizes work and credit claims).")
    return 0


# -- service -------------------------------------------------------------------------------


def service_command(args: argparse.Namespace, data: DataDir, out: Console) -> int:
    """``tessera service install|uninstall|status``: the client as a per-user service."""
    plan = service.plan_for(sys.platform, data.root, Path.home())
    where = f" ({plan.path})" if plan.path is not None else ""
    if args.action == "install":
        if not data.projects():
            raise CliError("attach a project first: `tessera attach URL --token TOKEN`")
        service.install(plan)
        out.print(
            f"Installed the {plan.manager} service{where}: `tessera run` runs by itself now. {plan.note}"
        )
    elif args.action == "uninstall":
        removed = service.uninstall(plan)
        out.print(f"Removed the {plan.manager} service{where}." if removed else "No service was installed.")
    else:
        out.print(f"{plan.manager} service{where}: {service.state(plan)}")
    return 0


# -- the parser -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``tessera`` command line: one subcommand per handler above."""
    parser = argparse.ArgumentParser(
        prog="tessera",
        description="Lend this computer's spare time to science: crunch work units for Tessera projects.",
    )
    parser.add_argument("--version", action="version", version=f"tessera {__version__}")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"where keys, projects and tasks are kept (default: {default_data_dir()}; or TESSERA_DATA_DIR)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_attach(commands)
    _add_run(commands)
    sub = commands.add_parser("status", help="attached projects, tasks in progress, credit")
    sub.set_defaults(handler=status)
    _add_detach_and_share(commands)
    _add_prefs(commands)
    for name, handler, words in (("suspend", suspend, "pause"), ("resume", resume, "resume")):
        sub = commands.add_parser(name, help=f"{words} all work, or one project's")
        sub.add_argument("project", nargs="?", help="a project's local name (default: all work)")
        sub.set_defaults(handler=handler)
    sub = commands.add_parser("dashboard", help="open the running client's dashboard in the browser")
    sub.add_argument("--no-browser", action="store_true", help="only print its address")
    sub.set_defaults(handler=dashboard)
    sub = commands.add_parser("notices", help="the projects' notices, read or not")
    sub.set_defaults(handler=notices_command)
    sub = commands.add_parser("service", help="run the client by itself at log-in (and boot), or stop that")
    sub.add_argument("action", choices=["install", "uninstall", "status"])
    sub.set_defaults(handler=service_command)
    sub = commands.add_parser("benchmark", help="measure this computer's speed and tell the projects")
    sub.add_argument("--seconds", type=float, default=2.0, help="how long each measurement runs")
    sub.set_defaults(handler=benchmark)
    return parser


def _add_attach(commands: Any) -> None:
    sub = commands.add_parser("attach", help="attach this computer to a project")
    sub.add_argument("url", help="the project's address, e.g. https://science.example.org")
    sub.add_argument("--token", required=True, help="your account token from the project (tsr_...)")
    sub.add_argument("--name", help="a local name for the project (default: from its address)")
    sub.add_argument("--host-name", help="how this computer appears on the project (default: its hostname)")
    sub.add_argument(
        "--resource-share", type=float, default=100.0, help="share of this computer (default 100)"
    )
    sub.add_argument(
        "--fingerprint", help="refuse to attach unless the project's signing key has this fingerprint"
    )
    sub.set_defaults(handler=attach)


def _add_run(commands: Any) -> None:
    sub = commands.add_parser("run", help="crunch in the foreground until Ctrl-C")
    sub.add_argument(
        "--exit-when-idle",
        action="store_true",
        help="stop once every result is reported and no work is offered",
    )
    sub.add_argument("--allow-network", action="store_true", help="do not cut tasks off from the network")
    sub.add_argument(
        "--dashboard-port",
        type=int,
        default=None,
        help="serve the dashboard on this port of 127.0.0.1 (default: any free port)",
    )
    sub.add_argument("--no-dashboard", action="store_true", help="serve no dashboard")
    sub.add_argument("--backoff-base", type=float, default=60.0, help=argparse.SUPPRESS)
    sub.set_defaults(handler=run)


def _add_detach_and_share(commands: Any) -> None:
    sub = commands.add_parser("detach", help="detach from a project (its unreported tasks are abandoned)")
    sub.add_argument("name", help="the project's local name, as `tessera status` shows it")
    sub.add_argument("--yes", action="store_true", help="detach even with tasks not yet reported")
    sub.set_defaults(handler=detach)

    sub = commands.add_parser("share", help="set a project's resource share")
    sub.add_argument("name")
    sub.add_argument("share", type=float)
    sub.set_defaults(handler=share)


def _add_prefs(commands: Any) -> None:
    sub = commands.add_parser("prefs", help="show preferences, or set and unset them")
    actions = sub.add_subparsers(dest="action", metavar="ACTION")
    setter = actions.add_parser("set", help="set a preference: tessera prefs set cpu_percent 50")
    setter.add_argument("key", choices=sorted(FIELDS))
    setter.add_argument("value")
    unsetter = actions.add_parser("unset", help="go back to the project's suggestion or the default")
    unsetter.add_argument("key", choices=sorted(FIELDS))
    sub.set_defaults(handler=prefs)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``tessera`` command: run one subcommand, printing the errors a volunteer can act on."""
    args = build_parser().parse_args(argv)
    root = args.data_dir or (
        Path(os.environ["TESSERA_DATA_DIR"]) if os.environ.get("TESSERA_DATA_DIR") else None
    )
    data = DataDir(root or default_data_dir())
    out = Console(soft_wrap=True)
    try:
        return args.handler(args, data, out)
    except (CliError, StateError, PreferenceError, service.ServiceError) as error:
        out.print(f"[red]error:[/red] {escape(str(error))}")
    except ProtocolError as error:
        out.print(
            f"[red]the project refused:[/red] {escape(f'{error.detail} ({error.status} {error.code})')}"
        )
    except requests.RequestException as error:
        out.print(f"[red]cannot reach the project:[/red] {escape(str(error))}")
    except KeyboardInterrupt:
        out.print("interrupted")
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
