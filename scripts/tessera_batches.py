#!/usr/bin/env python3
"""Submit, watch, cancel and fetch Tessera batches from a script, a notebook or the shell.

In a notebook::

    from tessera_batches import Batches
    batches = Batches("https://tessera.example.org", token="tss_…")
    batch = batches.submit("sir_sweep", "first sweep", parameter_file="sweep.csv",
                           parameters={"seed": 1, "population": 1000, "initial_infected": 5,
                                       "days": 120, "runs": 20})
    batches.wait(batch["id"])                  # a progress bar until it is done
    table = batches.result(batch["id"])        # the assimilated result, as bytes

From the shell (``TESSERA_URL`` and ``TESSERA_TOKEN`` in the environment, or ``--url`` and
``--token``)::

    python scripts/tessera_batches.py submit montecarlo_pi "pi" --parameters pi.json --wait --out pi.json
    python scripts/tessera_batches.py status 12
    python scripts/tessera_batches.py cancel 12

Needs only ``requests`` and ``rich`` (both come with the volunteer client, ``pip install ./client``).
The token comes from the admin site's "API token" page or ``manage.py scientist_token``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import requests
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

FINISHED = ("done", "cancelled")


class BatchError(Exception):
    """The coordinator refused a call; ``code`` is stable, ``detail`` is for people."""

    def __init__(self, status: int, code: str, detail: Any) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status, self.code, self.detail = status, code, detail


class Batches:
    """A scientist's view of one coordinator's batches."""

    def __init__(self, url: str, token: str, *, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        response = self.session.request(method, f"{self.url}{path}", timeout=self.timeout, **kwargs)
        if response.status_code < 400:
            return response
        try:
            body = response.json()
        except ValueError:
            raise BatchError(response.status_code, "error", response.text[:500]) from None
        raise BatchError(response.status_code, body.get("error", "error"), body.get("detail", body))

    def submit(
        self,
        app: str,
        name: str,
        *,
        parameters: dict[str, Any] | None = None,
        parameter_file: str | Path | None = None,
        **policy: int,
    ) -> dict[str, Any]:
        """A new batch from typed parameters, a .json/.csv file, or a CSV table plus the
        other parameters. ``policy``: min_quorum, target_nresults, max_error_results,
        max_total_results, delay_bound (seconds), priority."""
        if parameter_file is None:
            body = {"app": app, "name": name, "parameters": parameters, **policy}
            return self._call("POST", "/api/v1/batches", json=body).json()
        path = Path(parameter_file)
        form = {"app": app, "name": name, **{k: str(v) for k, v in policy.items()}}
        if parameters is not None:
            form["parameters"] = json.dumps(parameters)
        with path.open("rb") as handle:
            return self._call(
                "POST", "/api/v1/batches", data=form, files={"parameter_file": (path.name, handle)}
            ).json()

    def get(self, batch_id: int) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/batches/{batch_id}").json()

    def list(self, *, limit: int = 20, offset: int = 0) -> list[dict[str, Any]]:
        return self._call("GET", "/api/v1/batches", params={"limit": limit, "offset": offset}).json()[
            "results"
        ]

    def cancel(self, batch_id: int) -> dict[str, Any]:
        return self._call("POST", f"/api/v1/batches/{batch_id}/cancel").json()

    def failures(self, batch_id: int, *, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        return self._call(
            "GET", f"/api/v1/batches/{batch_id}/failures", params={"limit": limit, "offset": offset}
        ).json()

    def result(self, batch_id: int) -> bytes:
        return self._call("GET", f"/api/v1/batches/{batch_id}/result").content

    def wait(
        self, batch_id: int, *, poll: float = 5.0, timeout: float | None = None, progress: bool = True
    ) -> dict[str, Any]:
        """Poll until the batch is done or cancelled, with a progress bar; returns its last state."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[state]}"),
            TimeRemainingColumn(),
            disable=not progress,
        ) as bar:
            task = bar.add_task(f"batch {batch_id}", total=None, state="")
            while True:
                batch = self.get(batch_id)
                units = batch["units"]
                bar.update(
                    task,
                    total=units["planned"],
                    completed=units["validated"] + units["failed"],
                    state=f"{batch['state']}, {units['in_progress']} in progress, {units['failed']} failed",
                )
                if batch["state"] in FINISHED:
                    return batch
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"batch {batch_id} is still {batch['state']}")
                time.sleep(poll)


# --- the command line -----------------------------------------------------------------------


POLICY = (
    "min_quorum",
    "target_nresults",
    "max_error_results",
    "max_total_results",
    "delay_bound",
    "priority",
)


def _policy(args: argparse.Namespace) -> dict[str, int]:
    return {name: getattr(args, name) for name in POLICY if getattr(args, name) is not None}


def _submit(batches: Batches, args: argparse.Namespace) -> int:
    extra = json.loads(Path(args.with_parameters).read_text()) if args.with_parameters else None
    batch = batches.submit(
        args.app, args.name, parameter_file=Path(args.parameters), parameters=extra, **_policy(args)
    )
    print(f"batch {batch['id']}: {batch['units']['planned']} units, {batch['state']}")
    if args.wait or args.out:
        batch = batches.wait(batch["id"], poll=args.poll)
        print(f"batch {batch['id']}: {batch['state']}")
        if args.out and batch["result_url"]:
            Path(args.out).write_bytes(batches.result(batch["id"]))
            print(f"result written to {args.out}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Tessera batches from the shell.")
    parser.add_argument("--url", default=os.environ.get("TESSERA_URL"), help="the coordinator (TESSERA_URL)")
    parser.add_argument(
        "--token", default=os.environ.get("TESSERA_TOKEN"), help="scientist token (TESSERA_TOKEN)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    submit = commands.add_parser("submit", help="submit a batch from a .json or .csv parameter file")
    submit.add_argument("app")
    submit.add_argument("name")
    submit.add_argument("--parameters", required=True, help="a .json file, or a .csv table")
    submit.add_argument("--with-parameters", help="for a .csv table: a .json file of the other parameters")
    for name in POLICY:
        submit.add_argument(f"--{name.replace('_', '-')}", dest=name, type=int)
    submit.add_argument("--wait", action="store_true", help="show progress until the batch is done")
    submit.add_argument("--out", help="write the result here once done (implies --wait)")
    submit.add_argument("--poll", type=float, default=5.0, help="seconds between looks")
    for name, text in (
        ("status", "a batch's progress"),
        ("cancel", "cancel a batch"),
        ("failures", "failed units"),
    ):
        commands.add_parser(name, help=text).add_argument("batch", type=int)
    result = commands.add_parser("result", help="download a finished batch's result")
    result.add_argument("batch", type=int)
    result.add_argument("--out", required=True)
    commands.add_parser("list", help="your batches, newest first")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.url or not args.token:
        print("error: set TESSERA_URL and TESSERA_TOKEN (or --url and --token)", file=sys.stderr)
        return 2
    batches = Batches(args.url, args.token)
    try:
        if args.command == "submit":
            return _submit(batches, args)
        if args.command == "result":
            Path(args.out).write_bytes(batches.result(args.batch))
            print(f"result written to {args.out}")
            return 0
        shown = {
            "status": lambda: batches.get(args.batch),
            "cancel": lambda: batches.cancel(args.batch),
            "failures": lambda: batches.failures(args.batch),
            "list": lambda: batches.list(),
        }[args.command]()
        print(json.dumps(shown, indent=2))
        return 0
    except BatchError as error:
        print(f"error: {error.detail} ({error.code})", file=sys.stderr)
        return 1
    except (OSError, ValueError, requests.RequestException) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
