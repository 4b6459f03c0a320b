"""Debian's stock BOINC client (``boinc``, ``boinccmd``) run as a plain process for tests.

It runs in its own data folder with its own GUI RPC port and password, one CPU, no GPUs and no
benchmarks, and with the preferences that would otherwise suspend it on a busy machine turned
off. It stops by itself: ``stop`` asks it to quit, then kills it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.volunteers import wait_for

BOINC, BOINCCMD = shutil.which("boinc"), shutil.which("boinccmd")
PASSWORD = "tessera-test"
CC_CONFIG = """<cc_config>
  <log_flags><task>1</task><file_xfer>1</file_xfer><sched_ops>1</sched_ops><sched_op_debug>1</sched_op_debug></log_flags>
  <options><ncpus>1</ncpus><no_gpus>1</no_gpus><report_results_immediately>1</report_results_immediately></options>
</cc_config>
"""
# Crunch whatever the machine does: a shared test machine's load or an idle keyboard must not
# suspend the tasks under test. A suspended task stays in memory (BOINC's default quits one
# that has checkpointed, which the suspend test would see as its process gone).
PREFS = """<global_preferences>
  <leave_apps_in_memory>1</leave_apps_in_memory>
  <run_on_batteries>1</run_on_batteries><run_if_user_active>1</run_if_user_active>
  <run_gpu_if_user_active>1</run_gpu_if_user_active><suspend_cpu_usage>0</suspend_cpu_usage>
  <cpu_usage_limit>100</cpu_usage_limit><max_ncpus_pct>100</max_ncpus_pct>
  <work_buf_min_days>0.001</work_buf_min_days><work_buf_additional_days>0</work_buf_additional_days>
  <disk_max_used_gb>10</disk_max_used_gb><disk_min_free_gb>0.1</disk_min_free_gb><disk_max_used_pct>90</disk_max_used_pct>
</global_preferences>
"""


def need_boinc() -> None:
    """Skip saying why when Debian's boinc-client is missing (``make test`` installs it as root);
    under CI, fail instead."""
    if BOINC is None or BOINCCMD is None:
        why = (
            "Debian's boinc-client is not installed (apt-get install boinc-client; `make test` does as root)"
        )
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class BoincClient:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        (self.root / "cc_config.xml").write_text(CC_CONFIG)
        (self.root / "global_prefs_override.xml").write_text(PREFS)
        (self.root / "gui_rpc_auth.cfg").write_text(PASSWORD)
        self.log = self.root / "client.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> BoincClient:
        handle = self.log.open("ab")
        self.process = subprocess.Popen(
            [BOINC, "--dir", str(self.root), "--gui_rpc_port", str(self.port), "--skip_cpu_benchmarks",
             "--no_info_fetch", "--no_gpus", "--abort_jobs_on_exit"],
            stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.cmd("--get_cc_status", check=False).returncode == 0:
                return self
            time.sleep(0.3)
        raise AssertionError(f"the BOINC client did not answer its GUI RPC:\n{self.output()}")

    def cmd(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [BOINCCMD, "--host", f"127.0.0.1:{self.port}", "--passwd", PASSWORD, *args],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise AssertionError(f"boinccmd {' '.join(args)} failed: {done.stdout}{done.stderr}")
        return done

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def messages(self) -> str:
        return self.cmd("--get_messages", "0", check=False).stdout

    def wait_for(self, check, timeout: float, what: str):  # type: ignore[no-untyped-def]
        """``tests.volunteers.wait_for``, saying on a timeout what the client logged."""
        try:
            return wait_for(check, timeout, what)
        except AssertionError as error:
            raise AssertionError(f"{error}; the client said:\n{self.messages()[-6000:]}") from None

    def stop(self) -> None:
        if self.process is None:
            return
        self.cmd("--quit", check=False)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        self.process = None


def app_processes(root: Path, name: str = "tessera_app") -> list[int]:
    """Pids of the processes running ``name`` from this client's slots."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            exe = os.readlink(entry / "exe")
        except OSError:
            continue
        if exe.startswith(str(Path(root).resolve() / "slots")) and exe.endswith("/" + name):
            found.append(int(entry.name))
    return found


def cpu_seconds(pid: int) -> float:
    """The process's user and system CPU time, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
