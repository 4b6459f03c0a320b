"""The BOINC benchmark's load generator: simulated stock BOINC clients, threads in child processes.

Each client loops until the run's end as BOINC 7.20 does on a host that finishes its tasks:
upload every output of the batch it holds to ``/boinc/file_upload_handler`` (the header and
the bytes; a size query first only for a file of 8,192 bytes or more, as the client's
``FILE_XFER::init_upload`` does, ``FILE_SIZE_CHECK_THRESHOLD``), then one scheduler request to
``/boinc/cgi`` that reports them as ``<result>`` elements (exit status 0, state 5: uploaded),
names the tasks it still holds in ``<other_results>`` (none), and asks for
``work_req_seconds`` of work that come to one batch. Its first request has hostid 0; the
reply's ``<hostid>`` is sent from then on, with an increasing ``rpc_seqno``. Every body is
labelled form-urlencoded, as the client labels it.

In the ``boinc-rpc`` mode (the headline) the outputs go where a separate upload server would
put them, the coordinator's storage, so the coordinator serves only the scheduler requests, as
a BOINC project that runs its upload handler on a data server of its own. What each client saw
comes back as a :class:`BoincRecord`: a ``HostRecord`` per scheduler request, and the uploads
beside them.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
import xml.etree.ElementTree as ET
from array import array
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

from bench.boinc_seed import BOINC_PLATFORM, BoincClient
from bench.dispatch_hosts import ERROR_STREAK_LIMIT, RPC_TIMEOUT, HostRecord, output_for
from bench.report import percentile

# The work request: the dispatch seed's units are 1e12 flops each (INSERT_UNITS), a client
# says it has 4 cores of 1e10 flops, so a task fills 25 s of the host and a batch of n tasks
# is asked for as (n - 1/2) x 25 s (the scheduler stops once the seconds are filled). Each
# result says it took the 100 s that speed implies: the scheduler measures the host's speed
# from what it reports, and a faster measured speed would pack more tasks in those seconds.
UNIT_FPOPS = 1e12
P_FPOPS = 1e10
N_CPUS = 4
TASK_SECONDS = UNIT_FPOPS / P_FPOPS
RESULT_ID = re.compile(r"_r(\d+)$")
FORM = {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "BOINC client (7.20.5)"}


def work_seconds(batch: int) -> float:
    """The ``work_req_seconds`` that make the scheduler send ``batch`` tasks."""
    return (batch - 0.5) * UNIT_FPOPS / P_FPOPS / N_CPUS


@dataclass(frozen=True)
class ClientOptions:
    pinned_key: str  # the code-signing key the clients hold (so the reply does not repeat it)
    size_query: bool = False  # ask the file's size first even when BOINC would not (small files)
    # Where a separate upload server would put the outputs (the coordinator's MEDIA_ROOT): set,
    # each output is written there instead of going through /boinc/file_upload_handler.
    upload_server_root: str = ""


@dataclass(frozen=True)
class Task:
    """A task as the reply describes it: its result name, replica and output's upload token."""

    name: str
    replica_id: int
    unit_id: int
    output: str
    token: str
    max_nbytes: int


@dataclass
class BoincRecord(HostRecord):
    """A ``HostRecord`` of the scheduler requests, and each output upload's start and latency."""

    upload_started: array = field(default_factory=lambda: array("d"))
    upload_latency: array = field(default_factory=lambda: array("d"))
    upload_requests: array = field(default_factory=lambda: array("i"))  # HTTP requests per upload

    def upload(self, began: float, finished: float, made: int) -> None:
        self.upload_started.append(began)
        self.upload_latency.append(finished - began)
        self.upload_requests.append(made)

    def merge(self, other: HostRecord) -> None:
        super().merge(other)
        if isinstance(other, BoincRecord):
            for name in ("upload_started", "upload_latency", "upload_requests"):
                getattr(self, name).extend(getattr(other, name))

    def window_figures(self, measure_from: float, end: float) -> dict[str, Any]:
        """Uploads completed inside the measured window: their rate and latency."""
        done = [
            i
            for i, began in enumerate(self.upload_started)
            if measure_from <= began + self.upload_latency[i] < end
        ]
        seconds = end - measure_from
        latencies = sorted(self.upload_latency[i] * 1000 for i in done)
        return {
            "uploads_per_s": round(len(done) / seconds, 1),
            "upload_requests_per_s": round(sum(self.upload_requests[i] for i in done) / seconds, 1),
            "upload_p50_ms": round(percentile(latencies, 0.50), 2) if done else None,
            "upload_p99_ms": round(percentile(latencies, 0.99), 2) if done else None,
        }


def request_xml(
    client: BoincClient, options: ClientOptions, *, hostid: int, seqno: int, seconds: float, results: str
) -> bytes:
    """A scheduler request as the 7.20 client writes one (the parts the coordinator reads, and some
    it does not), holding no other tasks than those it reports."""
    return f"""<scheduler_request>
    <authenticator>{escape(client.key)}</authenticator>
    <hostid>{hostid}</hostid>
    <rpc_seqno>{seqno}</rpc_seqno>
    <core_client_major_version>7</core_client_major_version>
    <core_client_minor_version>20</core_client_minor_version>
    <core_client_release>5</core_client_release>
    <resource_share_fraction>1.000000</resource_share_fraction>
    <work_req_seconds>{seconds:f}</work_req_seconds>
    <cpu_req_secs>{seconds:f}</cpu_req_secs>
    <cpu_req_instances>0.000000</cpu_req_instances>
    <estimated_delay>0.000000</estimated_delay>
    <platform_name>{BOINC_PLATFORM}</platform_name>
    <code_sign_key>
{options.pinned_key}</code_sign_key>
    <time_stats>
        <on_frac>0.990000</on_frac>
        <connected_frac>1.000000</connected_frac>
        <active_frac>0.990000</active_frac>
    </time_stats>
    <host_info>
        <host_cpid>{hashlib.md5(client.key.encode()).hexdigest()}</host_cpid>
        <p_ncpus>{N_CPUS}</p_ncpus>
        <p_vendor>GenuineIntel</p_vendor>
        <p_model>Intel(R) Xeon(R) CPU</p_model>
        <p_features>fpu vme sse2 avx2</p_features>
        <p_fpops>{P_FPOPS:f}</p_fpops>
        <p_iops>30000000000.000000</p_iops>
        <m_nbytes>8589934592.000000</m_nbytes>
        <d_free>50000000000.000000</d_free>
        <os_name>Linux Debian</os_name>
        <os_version>Debian GNU/Linux 12 (bookworm) [6.1.0]</os_version>
    </host_info>
    {results}
    <other_results>
    </other_results>
</scheduler_request>
""".encode()


def result_xml(task: Task, *, uploaded: bool) -> str:
    """One ``<result>``: finished and uploaded (exit 0, state 5), or failed (exit 1, state 3)."""
    exit_status, state = (0, 5) if uploaded else (1, 3)
    data = output_for(task.replica_id)
    return f"""<result>
        <name>{task.name}</name>
        <final_cpu_time>{TASK_SECONDS:f}</final_cpu_time>
        <final_elapsed_time>{TASK_SECONDS:f}</final_elapsed_time>
        <exit_status>{exit_status}</exit_status>
        <state>{state}</state>
        <platform>{BOINC_PLATFORM}</platform>
        <version_num>100</version_num>
        <stderr_out><core_client_version>7.20.5</core_client_version><![CDATA[it ran]]></stderr_out>
        <file_info><name>{task.output}</name><nbytes>{len(data)}</nbytes>
            <md5_cksum>{hashlib.md5(data).hexdigest()}</md5_cksum></file_info>
    </result>
"""


def upload_body(task: Task, data: bytes) -> bytes:
    """An upload of the whole file from offset 0: BOINC's header (its signed file_info, our
    token as ``xml_signature``), then the bytes."""
    header = (
        "<data_server_request>\n    <core_client_major_version>7</core_client_major_version>\n"
        "    <core_client_minor_version>20</core_client_minor_version>\n"
        "    <core_client_release>5</core_client_release>\n<file_upload>\n<file_info>\n"
        f"    <name>{task.output}</name>\n    <max_nbytes>{task.max_nbytes}</max_nbytes>\n"
        f"<xml_signature>\n{task.token}\n</xml_signature>\n</file_info>\n<nbytes>{len(data)}</nbytes>\n"
        f"<md5_cksum>{hashlib.md5(data).hexdigest()}</md5_cksum>\n<offset>0</offset>\n<data>\n"
    )
    return header.encode() + data


def size_query_body(task: Task) -> bytes:
    return (
        "<data_server_request>\n    <core_client_major_version>7</core_client_major_version>\n"
        "    <core_client_minor_version>20</core_client_minor_version>\n"
        "    <core_client_release>5</core_client_release>\n"
        f"    <get_file_size>{task.output}</get_file_size>\n</data_server_request>\n"
    ).encode()


def read_reply(body: bytes) -> tuple[int | None, list[Task], int, list[str]]:
    """The reply's new hostid (if any), its tasks, how many results it acknowledged, its messages."""
    root = ET.fromstring(body)
    outputs = {
        info.findtext("name", ""): info
        for info in root.iter("file_info")
        if info.find("xml_signature") is not None
    }
    inputs = {  # the unit's name: its input file, tin_<unit id>
        unit.findtext("name", ""): unit.find("file_ref").findtext("file_name", "")
        for unit in root.iter("workunit")
    }
    tasks = []
    for result in root.iter("result"):
        name = result.findtext("name", "")
        output = result.find("file_ref").findtext("file_name", "")
        info = outputs[output]
        tasks.append(
            Task(
                name=name,
                replica_id=int(RESULT_ID.search(name).group(1)),
                unit_id=int(inputs[result.findtext("wu_name", "")].removeprefix("tin_")),
                output=output,
                token=info.findtext("xml_signature", "").strip(),
                max_nbytes=int(info.findtext("max_nbytes", "0")),
            )
        )
    hostid = root.findtext("hostid")
    messages = [(node.text or "").strip() for node in root.iter("message")]
    return (int(hostid) if hostid else None), tasks, len(root.findall("result_ack")), messages


FILE_SIZE_CHECK_THRESHOLD = 8192  # BOINC's client/file_xfer.h: smaller uploads skip the size query


def _status(body: bytes) -> str:
    found = re.search(rb"<status>\s*(-?\d+)\s*</status>", body)
    return found.group(1).decode() if found else "?"


def upload_output(session: Any, url: str, task: Task, size_query: bool) -> tuple[bool, int, str]:
    """One output uploaded: (whole, HTTP requests made, why not)."""
    made = 0
    if size_query or len(output_for(task.replica_id)) >= FILE_SIZE_CHECK_THRESHOLD:
        answer = session.post(url, data=size_query_body(task), headers=FORM, timeout=RPC_TIMEOUT)
        made += 1
        if answer.status_code != 200 or _status(answer.content) != "0":
            return False, made, f"size query {answer.status_code} status {_status(answer.content)}"
    answer = session.post(
        url, data=upload_body(task, output_for(task.replica_id)), headers=FORM, timeout=RPC_TIMEOUT
    )
    made += 1
    if answer.status_code != 200 or _status(answer.content) != "0":
        return False, made, f"upload {answer.status_code} status {_status(answer.content)}"
    return True, made, ""


@dataclass
class ClientState:
    hostid: int = 0
    seqno: int = 0
    held: list[Task] = field(default_factory=list)
    streak: int = 0  # scheduler requests failed in a row


def store_output(root: str, task: Task) -> None:
    """The output where an upload server sharing the coordinator's storage would write it (the
    replica's upload key, ``scheduler.uploads.upload_key``)."""
    folder = os.path.join(root, "uploads", str(task.unit_id))
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, str(task.replica_id)), "wb") as handle:
        handle.write(output_for(task.replica_id))


def _upload_held(
    session: Any, base_url: str, state: ClientState, record: BoincRecord, options: ClientOptions
) -> str:
    """Upload every held task's output (to the coordinator, or as a separate upload server
    would); the ``<result>`` elements."""
    results = []
    for task in state.held:
        began = time.monotonic()
        try:
            if options.upload_server_root:
                store_output(options.upload_server_root, task)
                uploaded, made, why = True, 0, ""
            else:
                uploaded, made, why = upload_output(
                    session, f"{base_url}/boinc/file_upload_handler", task, options.size_query
                )
        except Exception as error:  # connection refused or reset, timeout: counted, never fatal
            uploaded, made, why = False, 1, type(error).__name__
        if not uploaded:
            record.errors.append((time.monotonic(), why))
        elif made:  # an upload to the coordinator (not one left to the upload server)
            record.upload(began, time.monotonic(), made)
        results.append(result_xml(task, uploaded=uploaded))
    return "".join(results)


def _scheduler_request(
    session: Any,
    base_url: str,
    client: BoincClient,
    state: ClientState,
    record: BoincRecord,
    options: ClientOptions,
    seconds: float,
    counter: Any,
) -> None:
    """Report what the client holds and fetch the next batch; the state follows the reply."""
    results = _upload_held(session, base_url, state, record, options)
    state.seqno += 1
    body = request_xml(
        client, options, hostid=state.hostid, seqno=state.seqno, seconds=seconds, results=results
    )
    began = time.monotonic()
    try:
        answer = session.post(f"{base_url}/boinc/cgi", data=body, headers=FORM, timeout=RPC_TIMEOUT)
        if answer.status_code != 200:
            raise RuntimeError(f"HTTP {answer.status_code}")
        hostid, tasks, acks, messages = read_reply(answer.content)
    except Exception as error:  # connection refused or reset, timeout, a bad reply: counted
        record.errors.append((time.monotonic(), str(error)[:80] or type(error).__name__))
        state.streak += 1
        if state.streak >= ERROR_STREAK_LIMIT:
            state.held, state.streak = [], 0
        time.sleep(0.05)
        return
    finished = time.monotonic()
    if not tasks and messages:
        record.errors.append((finished, "no work: " + messages[0][:60]))
    state.hostid = hostid if hostid is not None else state.hostid
    record.rpc(began, finished, [task.replica_id for task in tasks], acks)
    _count(counter, len(tasks))
    state.held, state.streak = tasks, 0


def _count(counter: Any, amount: int) -> None:
    if amount:
        with counter.get_lock():
            counter.value += amount


def _boinc_client(
    base_url: str,
    client: BoincClient,
    batch: int,
    times: tuple[float, float],
    counter: Any,
    options: ClientOptions,
) -> BoincRecord:
    """One client's loop, each on a network of its own (as the proxy in front would say)."""
    import requests

    start, end = times
    record = BoincRecord()
    session = requests.Session()
    session.headers["X-Forwarded-For"] = f"198.19.{client.index % 250}.{1 + client.index // 250}"
    state = ClientState()
    seconds = work_seconds(batch)
    time.sleep(max(0.0, start - time.monotonic()))
    while time.monotonic() < end:
        _scheduler_request(session, base_url, client, state, record, options, seconds, counter)
    session.close()
    return record


def boinc_load_process(
    mode: str,
    target: str,
    clients: list[BoincClient],
    batch: int,
    version_id: int,
    candidates: int,
    ready: Any,
    go: Any,
    times: Any,
    counter: Any,
    results: Any,
    *,
    options: ClientOptions,
) -> None:
    """A child process of simulated BOINC clients, one thread each (``dispatch_hosts.load_process``'s
    arguments, the version and candidates unused); sends back one merged record."""
    import requests  # noqa: F401  (import before the clock starts)

    ready.put(os.getpid())
    if not go.wait(120):
        results.put(None)
        return
    window = (times[0], times[1])
    records = [BoincRecord() for _ in clients]

    def run(index: int, client: BoincClient) -> None:
        try:
            records[index] = _boinc_client(target, client, batch, window, counter, options)
        except Exception as error:
            records[index].errors.append((time.monotonic(), f"client crashed: {error!r}"))

    threads = [threading.Thread(target=run, args=(i, c), daemon=True) for i, c in enumerate(clients)]
    for thread in threads:
        thread.start()
    deadline = window[1] + RPC_TIMEOUT + 40  # before the parent stops waiting (RPC_TIMEOUT + 60)
    for thread in threads:
        thread.join(timeout=max(0.1, deadline - time.monotonic()))
    merged = BoincRecord()
    for record in records:
        merged.merge(record)
    results.put(merged)
