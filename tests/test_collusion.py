"""Colluding hosts against the real stack: a coordinator on PostgreSQL, attacked over HTTP.

Each case starts a coordinator (``CoordinatorProcess``, the in-process worker, a database of
its own copied from a migrated template), gives 8 honest hosts the history of volunteers of
some weeks (established), then lets new colluding accounts in and submits a Monte Carlo
batch of 48 units. The hosts are those of
``bench/sim_hosts.py``: they sign every request, and each sends its own address as
``X-Forwarded-For`` (each in its own /24, colluders too, so that no network relates them,
unless a case says otherwise). The colluders burst: they ask for as much work as allowed,
one right after the other. Hosts keep crunching after the batch is done until the correction
sweep has nothing left to audit.

What must hold, checked against ground truth (every right answer computed again here):

- wrong results accepted before correction stay within the bound of docs/validation.md: a
  ring that crunched a share *d* of the batch's results gets all the replicas of about *d*
  to the quorum's power of the units, since placement is random; we allow twice that plus 3
  (small batches are noisy). *d* is measured, never taken below the ring's share *c* of the
  hosts: a bursting ring gets more than *c* while honest hosts hold only two tasks each;
- after the correction sweep, no wrong result remains, the batch's result is assimilated
  again from right answers only, and no credit stands for a wrong one (the ledger has a
  reversal for each such grant, the totals follow, and the export still verifies);
- no honest host is ever marked invalid;
- colluders related by a shared /24 or one sign-up burst never hold two replicas of a unit.

Runs in the PostgreSQL pass (``DATABASE_URL=postgres://…``); the SQLite pass skips it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from bench.books import BOOKS, ESTABLISH, Progress, registered_hosts
from bench.sim_hosts import Fleet, HostLog, Plan, address_of, right_answer
from tests.coordinator_process import MAKE_SCIENTIST, MAKE_VOLUNTEERS, CoordinatorProcess
from workunits import montecarlo_pi

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from tessera_batches import Batches

pytestmark = pytest.mark.postgres

HONEST = 8
UNITS = 48
TASK_SECONDS = 0.05
LAUNDER_AFTER = 4  # a laundering host's honest results before it lies
SETTLE_TIMEOUT = 60.0  # for the batch and its corrections (each takes about 10 s)


@dataclass(frozen=True)
class Attack:
    kind: str  # colluding (always lies), partner or laundering
    colluders: int
    quorum: int
    ring_network: bool = False  # the colluders share one /24
    burst_signup: bool = False  # the colluders signed up through the API in one burst

    @property
    def share(self) -> float:
        return self.colluders / (self.colluders + HONEST)

    def bound(self, ring_share: float) -> float:
        """Wrong results accepted before correction we tolerate, for a ring that crunched
        ``ring_share`` of the results: docs/validation.md expects about that share to the
        quorum's power of the units; twice that, plus 3 for a small batch's noise."""
        return 2 * max(self.share, ring_share) ** self.quorum * UNITS + 3

    def __str__(self) -> str:
        related = "-one-net" if self.ring_network else "-one-burst" if self.burst_signup else ""
        return f"{self.colluders}-{self.kind}-q{self.quorum}{related}"


ATTACKS = [
    Attack("colluding", 2, 2),
    Attack("partner", 2, 2),
    Attack("partner", 4, 2),
    Attack("colluding", 4, 3),
    Attack("partner", 4, 3),
    Attack("laundering", 2, 2),
]
RELATED = [Attack("partner", 4, 2, ring_network=True), Attack("partner", 4, 2, burst_signup=True)]
MOST_COLLUDERS = max(attack.colluders for attack in ATTACKS + RELATED)


@dataclass
class Outcome:
    attack: Attack
    books: dict[str, Any]
    logs: list[HostLog]
    wrong_seen: set[int]  # units seen done with a wrong canonical result at some point
    pending: dict[str, int]  # what the correction sweep still had to do at the end
    ledger: subprocess.CompletedProcess
    result: bytes  # the batch's assimilated result
    right_result: bytes  # the same, assimilated here from the right answers

    @property
    def wrong_before_correction(self) -> set[int]:
        return self.wrong_seen | set(self.books["corrected"]) | {u for u, _ in self.books["wrong"]}

    def ring(self) -> list[HostLog]:
        return [log for log in self.logs if log.kind == self.attack.kind]

    @property
    def ring_share(self) -> float:
        """*d*: the ring's share of the results crunched for the batch."""
        everyone = sum(log.results for log in self.logs)
        return sum(log.results for log in self.ring()) / everyone if everyone else 0.0

    def bound(self) -> float:
        return self.attack.bound(self.ring_share)


def parameters(seed: int) -> dict[str, int]:
    return {"seed": seed, "units": UNITS, "samples_per_unit": 100}


def right_result(seed: int) -> bytes:
    """The batch's result assimilated here from every unit's right answer."""
    inputs = montecarlo_pi.split(parameters(seed))
    return montecarlo_pi.assimilate((i, right_answer(data)) for i, data in enumerate(inputs))


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def sign_up_in_one_burst(url: str, attack: Attack, plan: Plan) -> list[str]:
    """The colluders' accounts, made through the API one after the other, each from its
    host's own address: the burst relates them, not the network."""
    tokens = []
    for k in range(attack.colluders):
        reply = requests.post(
            f"{url}/api/v1/volunteers",
            json={"username": f"burst{k}", "password": "long-enough-password-1842"},
            headers={"X-Forwarded-For": address_of(HONEST + k, attack.kind, plan)},
            timeout=30,
        )
        assert reply.status_code == 201, reply.text
        tokens.append(reply.json()["account_token"])
    return tokens


@dataclass(frozen=True)
class Project:
    """A migrated database with the app published, honest volunteers and a scientist, never
    served: each case's coordinator starts on a copy (PostgreSQL's CREATE DATABASE …
    TEMPLATE), which saves the migrations and the setup every time."""

    template: CoordinatorProcess
    honest_tokens: list[str]
    ring_tokens: list[str]
    scientist: str

    @contextmanager
    def coordinator(self, root: Path, **settings: str) -> Iterator[CoordinatorProcess]:
        """A coordinator serving a copy of the template, with these settings."""
        copy = CoordinatorProcess(root, postgres_server=self.template.postgres_server, **settings)
        with psycopg.connect(f"{copy.postgres_server}/postgres", autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{copy.database_name}" TEMPLATE "{self.template.database_name}"')
        try:
            shutil.copy(self.template.root / "project-signing.key", copy.root / "project-signing.key")
            shutil.copytree(self.template.root / "media", copy.root / "media", dirs_exist_ok=True)
            yield copy.start()
        finally:
            copy.destroy()


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Iterator[Project]:
    server = os.environ["DATABASE_URL"].rsplit("/", 1)[0]
    template = CoordinatorProcess(tmp_path_factory.mktemp("template"), postgres_server=server).create()
    try:
        template.manage("publish_app", "montecarlo_pi")
        yield Project(
            template,
            template.django(MAKE_VOLUNTEERS, count=HONEST, prefix="honest"),
            template.django(MAKE_VOLUNTEERS, count=MOST_COLLUDERS, prefix="ring"),
            template.django(MAKE_SCIENTIST, username="scientist"),
        )
    finally:
        template.destroy()


def watch_until_settled(db: Any, progress: Progress, clock: dict[str, float]) -> tuple[set[int], dict]:
    """While the hosts crunch: the units seen done with a wrong result, until the batch is
    finished and the correction sweep has had nothing left to do for three looks in a row
    (or SETTLE_TIMEOUT); returns them and what was still to do at the last look."""
    wrong_seen: set[int] = set()
    pending: dict[str, int] = {}
    quiet, deadline = 0, time.monotonic() + SETTLE_TIMEOUT
    while time.monotonic() < deadline and quiet < 3:
        time.sleep(0.5)
        wrong_seen |= progress.wrong_now(db).keys()
        states, pending = progress.states(db), progress.pending(db)
        finished = states.get("done", 0) + states.get("failed", 0) == UNITS
        quiet = quiet + 1 if finished and not any(pending.values()) else 0
        if finished:
            clock.setdefault("batch", time.monotonic())
    clock["settled"] = time.monotonic()
    return wrong_seen, pending


def run_attack(attack: Attack, project: Project, root: Path) -> Outcome:
    settings = {
        "FORWARDED_ALLOW_IPS": "127.0.0.1",  # the hosts' X-Forwarded-For names their networks
        "THROTTLE_HOST": "100000/minute",
        "SIGNUP_BURST_SECONDS": "3600" if attack.burst_signup else "0",
        "ESTABLISHED_AGE_SECONDS": "86400",  # no colluder becomes established in a test's time
    }
    plan = Plan(
        task_seconds=TASK_SECONDS,
        slow_factor=1.0,
        delay_bound=60,
        vanish_within=0,
        seed=sum(map(ord, str(attack))),
        launder_after=LAUNDER_AFTER,
        ring_network=attack.ring_network,
    )
    clock = {"start": time.monotonic()}
    with (
        project.coordinator(root, **settings) as coordinator,
        psycopg.connect(coordinator.env["DATABASE_URL"], autocommit=True) as db,
    ):
        tokens = project.honest_tokens
        honest = Fleet([coordinator.url], [(i, "honest", t) for i, t in enumerate(tokens)], plan).start()
        fleets = [honest]
        try:
            wait_for(lambda: registered_hosts(db) == HONEST, 60, "the honest hosts")
            assert coordinator.django(ESTABLISH, age_days=30, independent_valid=20) == HONEST
            if attack.burst_signup:
                tokens = sign_up_in_one_burst(coordinator.url, attack, plan)
            else:
                tokens = project.ring_tokens[: attack.colluders]
            ring = [(HONEST + k, attack.kind, token) for k, token in enumerate(tokens)]
            fleets.append(Fleet([coordinator.url], ring, plan).start())
            wait_for(lambda: registered_hosts(db) == HONEST + attack.colluders, 60, "the colluders")

            batches = Batches(coordinator.url, project.scientist)
            clock["setup"] = time.monotonic()
            batch = batches.submit(
                "montecarlo_pi",
                str(attack),
                parameters=parameters(plan.seed),
                min_quorum=attack.quorum,
                target_nresults=attack.quorum,
                max_error_results=4,
                max_total_results=4 * attack.quorum + 2,
                delay_bound=60,
            )
            progress = Progress(batch["id"])
            wrong_seen, pending = watch_until_settled(db, progress, clock)
        finally:
            logs = [log for fleet in fleets for log in fleet.stop()]
        wrong_seen |= progress.wrong_now(db).keys()
        books = coordinator.django(
            BOOKS,
            batch=batch["id"],
            acked=[],
            honest=[log.host_id for log in logs if log.kind == "honest"],
            ring=[log.host_id for log in logs if log.kind == attack.kind],
        )
        result = batches.result(batch["id"])
        exported = root / "ledger.jsonl"
        coordinator.manage("ledger", "export", "--output", str(exported))
        verified = subprocess.run(
            [sys.executable, "-m", "tessera_client.ledger", "verify", str(exported)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    outcome = Outcome(attack, books, logs, wrong_seen, pending, verified, result, right_result(plan.seed))
    clock["end"] = time.monotonic()
    times = {phase: round(at - clock["start"], 1) for phase, at in clock.items()}
    print(f"\n{attack}: {summary(outcome)} seconds since the start: {times}")
    return outcome


def summary(outcome: Outcome) -> str:
    books, ring = outcome.books, outcome.ring()
    return json.dumps(
        {
            "states": books["states"],
            "wrong_before_correction": len(outcome.wrong_before_correction),
            "ring_share": round(outcome.ring_share, 3),
            "bound": round(outcome.bound(), 1),
            "wrong_remaining": len(books["wrong"]),
            "pending": outcome.pending,
            "ring_results": sum(log.results for log in ring),
            "ring_lies": sum(log.lies for log in ring),
            "ring_caught": books["ring_caught"],
            "reversals": books["reversals"],
            "wrong_credit": books["wrong_credit"],
            "honest_marked_invalid": books["honest_marked_invalid"],
        }
    )


@pytest.fixture(scope="module", params=ATTACKS, ids=str)
def outcome(request, project, tmp_path_factory) -> Outcome:
    return run_attack(request.param, project, tmp_path_factory.mktemp(str(request.param)))


@pytest.fixture(scope="module", params=RELATED, ids=str)
def related(request, project, tmp_path_factory) -> Outcome:
    return run_attack(request.param, project, tmp_path_factory.mktemp(str(request.param)))


def test_every_unit_ends_done_and_the_correction_sweep_finishes(outcome):
    assert outcome.books["states"] == {"done": UNITS}
    assert not any(outcome.pending.values()), f"still to correct: {outcome.pending}"


def test_wrong_results_accepted_before_correction_stay_within_the_bound(outcome):
    wrong = outcome.wrong_before_correction
    assert len(wrong) <= outcome.bound(), (
        f"{len(wrong)} of {UNITS} units accepted a wrong result; the bound is {outcome.bound():.1f}"
        f" for a ring share of {outcome.ring_share:.3f}"
    )


def test_after_the_correction_sweep_no_wrong_result_remains(outcome):
    assert outcome.books["wrong"] == []
    assert outcome.books["bad_canonical"] == 0
    assert set(outcome.books["corrected"]) >= outcome.wrong_seen, "a unit seen wrong is marked corrected"
    assert outcome.result == outcome.right_result, "the scientist's result is the right one"


def test_colluders_lied_and_were_caught(outcome):
    """The attack happened: otherwise the other assertions prove nothing."""
    ring = outcome.ring()
    assert len(ring) == outcome.attack.colluders and all(log.host_id for log in ring)
    assert sum(log.results for log in ring) > 0, "the colluders got work"
    if outcome.attack.kind != "partner":  # a partner lies only with a partner, maybe never
        assert sum(log.lies for log in ring) > 0
        assert outcome.books["ring_caught"] > 0


def test_honest_hosts_are_never_marked_invalid(outcome):
    assert outcome.books["honest_marked_invalid"] == 0
    assert outcome.books["right_marked_invalid"] == []
    assert outcome.books["honest_caught"] == 0


def test_no_credit_stands_for_a_wrong_answer_and_the_ledger_adds_up(outcome):
    books = outcome.books
    assert books["wrong_credit"] == {}, "net credit (grants minus reversals) for wrong answers"
    assert books["granted_not_valid"] == 0 and books["reversed_but_valid"] == 0
    assert books["grants"] == books["granted_replicas"], "no replica granted twice"
    assert books["credited_replicas"] == books["grants"] - books["reversals"]
    assert books["volunteers_off"] == 0 and books["hosts_off"] == 0
    if outcome.wrong_before_correction:  # its grants were taken back
        assert books["reversals"] > 0 and Decimal(books["reversed_credit"]) > 0


def test_the_exported_ledger_verifies(outcome):
    assert outcome.ledger.returncode == 0, outcome.ledger.stdout + outcome.ledger.stderr
    assert "verified" in outcome.ledger.stdout.lower()


def test_related_colluders_never_hold_two_replicas_of_one_unit(related):
    """Colluders on one /24, or signed up in one burst, are related: none of them gets a unit
    another holds, so they can never agree on a lie, nor vouch for one another."""
    assert sum(log.results for log in related.ring()) >= related.attack.colluders
    assert related.books["units_with_two_ring_replicas"] == 0
    assert not related.wrong_before_correction and related.books["ring_caught"] == 0
    assert related.books["states"] == {"done": UNITS} and not any(related.pending.values())
    assert related.books["honest_marked_invalid"] == 0 and related.books["wrong_credit"] == {}
    assert related.ledger.returncode == 0, related.ledger.stdout + related.ledger.stderr
