"""A scenario run's figures from what the hosts and the coordinator's books say, the
guarantees they must show, and the table ``python -m bench.scenario`` prints."""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from bench.sim_hosts import CHEATING_KINDS, RING_KINDS, SPENT_ON, Plan

if TYPE_CHECKING:
    from bench.scenario import Watch


def figures(
    opts: argparse.Namespace,
    kinds: list[str],
    plan: Plan,
    host_logs: list[dict[str, Any]],
    books: dict[str, Any],
    watch: Watch,
    makespan: float,
    state: str,
    settled_at: float | None,
) -> dict[str, Any]:
    kind_of = {log["host_id"]: log["kind"] for log in host_logs}
    states = Counter(books["states"])
    completed = states.pop("done", 0)
    credit, wrong_credit = Counter(), Counter()
    for host, total in books["host_credit"].items():
        credit[kind_of.get(int(host), "?")] += Decimal(total)
    for host, total in books["wrong_credit"].items():
        wrong_credit[kind_of.get(int(host), "?")] += Decimal(total)
    # Units done with a wrong canonical result at some moment, and whose result it was.
    wrong_before = set(watch.wrong_seen) | set(books["corrected"]) | {unit for unit, _ in books["wrong"]}
    wrong_by_kind = Counter(kind_of.get(host, "?") for hosts in watch.wrong_seen.values() for host in hosts)
    wrong_by_kind.update(
        kind_of.get(host, "?") for unit, host in books["wrong"] if unit not in watch.wrong_seen
    )
    detection: dict[str, dict[str, Any]] = {}
    for kind in sorted(CHEATING_KINDS):
        delays = sorted(
            watch.detected[log["host_id"]] - log["first_report"]
            for log in host_logs
            if log["kind"] == kind and log["first_report"] and log["host_id"] in watch.detected
        )
        detection[kind] = {
            "hosts": kinds.count(kind),
            "detected": len(delays),
            "median_s": round(statistics.median(delays), 1) if delays else None,
            "max_s": round(delays[-1], 1) if delays else None,
            "each_s": [round(delay, 1) for delay in delays],
        }
    speed = {"slow": 1 / plan.slow_factor, "vanishing": 0.0, **dict.fromkeys(CHEATING_KINDS, 0.0)}
    capacity = sum(speed.get(kind, 1.0) for kind in kinds)  # tasks per task-length, right and staying
    ideal = opts.units * opts.quorum * opts.task_seconds / capacity if capacity else float("inf")
    total = lambda key: sum(log[key] for log in host_logs)  # noqa: E731
    failed_calls = Counter()
    for log in host_logs:
        failed_calls.update(log["failed_calls"])
    honest_unreported = sum(log["unreported"] for log in host_logs if log["kind"] not in CHEATING_KINDS)
    ring_hosts = sum(kind in RING_KINDS for kind in kinds)
    kinds_seen = sorted(set(kinds))
    results = sum(log["results"] for log in host_logs)
    ring_results = sum(log["results"] for log in host_logs if log["kind"] in RING_KINDS) / max(1, results)
    ring_share, ring_cores = ring_hosts / len(kinds), ring_hosts * plan.ring_cpus
    result: dict[str, Any] = {
        "benchmark": "scenario",
        "batch_state": state,
        "units_total": opts.units,
        "units_completed": completed,
        "units_failed": sum(n for s, n in states.items() if s.startswith("failed")),
        "failure_reasons": {s: n for s, n in states.items() if s.startswith("failed")},
        "units_unfinished": states.get("active", 0),
        "wrong_accepted_before_correction": len(wrong_before),
        "wrong_expected": round(ring_share**opts.quorum * opts.units, 1),  # c ** quorum of the units
        # ... with c the colluders' share of the results crunched, not of the hosts
        "wrong_expected_by_results": round(ring_results**opts.quorum * opts.units, 1),
        "wrong_by_kind": dict(wrong_by_kind),
        "wrong_remaining": len(books["wrong"]),
        "wrong_accepted": len(books["wrong"]),  # at the end, as before corrections existed
        "wrong_accepted_colluding": sum(wrong_by_kind[kind] for kind in RING_KINDS),
        "wrong_accepted_random": wrong_by_kind["random"],
        "units_corrected": len(books["corrected"]),
        "colluding_fraction": round(ring_share, 3),
        "colluding_capacity_fraction": round(ring_cores / (ring_cores + len(kinds) - ring_hosts), 3),
        "colluding_results_fraction": round(ring_results, 3),
        "ring_caught": books["ring_caught"],
        "results_by_kind": {
            kind: sum(log["results"] for log in host_logs if log["kind"] == kind) for kind in kinds_seen
        },
        "lies_by_kind": {
            kind: sum(log["lies"] for log in host_logs if log["kind"] == kind) for kind in kinds_seen
        },
        "units_with_two_ring_replicas": books["units_with_two_ring_replicas"],
        "credit_to_cheaters": {kind: float(wrong_credit[kind]) for kind in sorted(CHEATING_KINDS)},
        "credit_to_cheaters_total": float(sum(wrong_credit.values())),
        "credit_by_kind": {kind: float(amount) for kind, amount in sorted(credit.items())},
        "credit_total": float(sum(credit.values())),
        "credit_reversed": float(Decimal(books["reversed_credit"])),
        "reversals": books["reversals"],
        "honest_marked_invalid": books["honest_marked_invalid"],
        "right_answers_marked_invalid": len(books["right_marked_invalid"]),
        "honest_caught": books["honest_caught"],
        "double_credits": books["grants"]
        - books["granted_replicas"]
        + abs(books["credited_replicas"] - (books["grants"] - books["reversals"])),
        "ledger_totals_match": books["volunteers_off"] == 0 and books["hosts_off"] == 0,
        "lost_results": len(books["lost"]) + honest_unreported,
        "results_acknowledged": sum(len(log["accepted"]) for log in host_logs),
        "duplicate_acks": total("duplicates"),
        "replays": total("replays"),
        "replays_accepted": total("replays_accepted"),
        "foreign_reports": total("foreign_reports"),
        "foreign_accepted": total("foreign_accepted"),
        "crashes": total("crashes"),
        "vanished": sum(log["vanished"] for log in host_logs),
        "replicas_sent": books["replicas_sent"],
        "batch_revision": books["batch_revision"],
        "detect": detection,
        "failed_calls": dict(failed_calls),
        "makespan_s": round(makespan, 1),
        "ideal_s": round(ideal, 1),
        "makespan_ratio": round(makespan / ideal, 2),
        "settled_at_s": round(settled_at, 1) if settled_at is not None else None,
        "pending_corrections": watch.pending,
        "hosts": dict(Counter(kinds)),
        "task_seconds": opts.task_seconds,
        "quorum": opts.quorum,
        "delay_bound": opts.delay_bound,
        "burst": plan.burst,
        "ring_network": plan.ring_network,
        "ring_cpus": plan.ring_cpus,
    }
    result["guarantees"] = {
        "every_unit_ends_with_a_reason": result["units_unfinished"] == 0
        and books["without_reason"] == 0
        and books["bad_canonical"] == 0,
        "corrections_finished": settled_at is not None,
        "no_double_credit": result["double_credits"] == 0
        and books["granted_not_valid"] == 0
        and books["reversed_but_valid"] == 0,
        "no_credit_for_wrong_answers": result["credit_to_cheaters_total"] == 0,
        "ledger_totals_match": result["ledger_totals_match"],
        "random_cheaters_never_canonical": result["wrong_accepted_random"] == 0 and credit["random"] == 0,
        "no_wrong_result_remains": result["wrong_remaining"] == 0,
        "honest_never_marked_invalid": result["honest_marked_invalid"] == 0
        and result["right_answers_marked_invalid"] == 0,
        "no_honest_result_lost": result["lost_results"] == 0,
        "no_replay_or_foreign_report_accepted": result["replays_accepted"] == 0
        and result["foreign_accepted"] == 0,
    }
    return result


def time_split(
    host_logs: list[dict[str, Any]], start: float, end: float, windows: int = 10
) -> dict[str, Any]:
    """Where the correct, staying hosts' time went from the batch's submission to its end:
    the share of their time in each of SPENT_ON (``other``: the rest, the host's own loop),
    and the share crunching in each tenth of that time (a fault or a tail shows as a dip)."""
    logs = [log for log in host_logs if log["kind"] not in CHEATING_KINDS and not log["vanished"]]
    length = (end - start) / windows
    if not logs or length <= 0:
        return {}
    total = Counter()
    crunching = [0.0] * windows
    for log in logs:
        for what, begin, finish in log["spent"]:
            begin, finish = max(begin, start), min(finish, end)
            if finish <= begin:
                continue
            total[what] += finish - begin
            if what != "crunch":
                continue
            for window in range(
                int((begin - start) // length), min(windows, int((finish - start) // length) + 1)
            ):
                low = start + window * length
                crunching[window] += max(0.0, min(finish, low + length) - max(begin, low))
    whole = (end - start) * len(logs)
    split = {what: round(total[what] / whole, 3) for what in SPENT_ON}
    split["other"] = round(1 - sum(total.values()) / whole, 3)
    return {
        "hosts": len(logs),
        "share": split,
        "crunching_by_tenth": [round(c / (length * len(logs)), 2) for c in crunching],
    }


def broken(figures: dict[str, Any]) -> list[str]:
    """The guarantees that did not hold (the ledger's verification among them)."""
    failed = [name for name, held in figures["guarantees"].items() if not held]
    failed += [] if figures.get("ledger_verified") else ["ledger_verifies"]
    return failed + (["services_came_back"] if any(f["trouble"] for f in figures.get("faults", [])) else [])


def table(figures: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        ("units (quorum)", f"{figures['units_total']:,} ({figures['quorum']}), hosts {figures['hosts']}"),
        (
            "completed / failed / unfinished",
            f"{figures['units_completed']} / {figures['units_failed']} / {figures['units_unfinished']}",
        ),
        (
            "wrong accepted before correction",
            f"{figures['wrong_accepted_before_correction']} {figures['wrong_by_kind']}"
            f" (c^q x units = {figures['wrong_expected']}, by results"
            f" {figures['wrong_expected_by_results']}); colluders are {figures['colluding_fraction']:.0%}"
            f" of hosts, crunched {figures['colluding_results_fraction']:.0%} of the results,"
            f" {figures['ring_caught']} caught;"
            f" lies told {figures['lies_by_kind']}",
        ),
        (
            "wrong at batch end / remaining",
            f"{figures['wrong_at_batch_end']} / {figures['wrong_remaining']},"
            f" {figures['units_corrected']} units corrected, settled at {figures['settled_at_s']} s",
        ),
        (
            "credit to wrong answers (net)",
            f"{figures['credit_to_cheaters_total']} of {figures['credit_total']:.1f};"
            f" reversed {figures['credit_reversed']:.3f} in {figures['reversals']} entries",
        ),
        (
            "honest marked invalid",
            f"{figures['honest_marked_invalid']} (right answers {figures['right_answers_marked_invalid']})",
        ),
        ("double credits, lost results", f"{figures['double_credits']}, {figures['lost_results']}"),
        (
            "replays / foreign reports accepted",
            f"{figures['replays_accepted']} of {figures['replays']} / "
            f"{figures['foreign_accepted']} of {figures['foreign_reports']}",
        ),
        (
            "cheaters detected (first invalid)",
            "; ".join(
                f"{kind} {d['detected']} of {d['hosts']}, median {d['median_s']} s, max {d['max_s']} s"
                for kind, d in figures["detect"].items()
                if d["hosts"]
            ),
        ),
        (
            "units finished at",
            ", ".join(f"{share} {at} s" for share, at in figures["finished_at_s"].items()),
        ),
        (
            "makespan / ideal",
            f"{figures['makespan_s']} s / {figures['ideal_s']} s = {figures['makespan_ratio']}",
        ),
        (
            "faults",
            "; ".join(
                f"{f['fault']} at {f['at_s']} s (back in {f['back_in_s']} s{f['trouble'] and ': NOT READY'})"
                for f in figures["faults"]
            ),
        ),
        ("failed calls (retried)", json.dumps(figures["failed_calls"])),
        (
            "correct hosts' time to the end",
            ", ".join(f"{what} {share:.0%}" for what, share in figures["time_split"].get("share", {}).items())
            + "; crunching by tenth "
            + " ".join(f"{share:.0%}" for share in figures["time_split"].get("crunching_by_tenth", [])),
        ),
        ("guarantees", "all held" if not broken(figures) else "BROKEN: " + ", ".join(broken(figures))),
    ]
