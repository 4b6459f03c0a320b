"""The dashboard's listener: the running client's own web page, on 127.0.0.1 only.

A fresh secret is drawn at each start and is part of every address the dashboard answers
(``http://127.0.0.1:PORT/SECRET/``); the address is written, for the owner only, to
:attr:`DataDir.dashboard_file`, where ``tessera dashboard`` finds it. One thread waits in
``select`` on the listening socket with no timeout, so a client whose dashboard is closed
spends no CPU on it; each connection gets a short-lived thread, at most
:data:`MAX_CONNECTIONS` at once, and the HTTP code is imported only at the first one.

Anything that reads or changes the daemon's state runs on the daemon's own loop
(:meth:`DashboardServer.on_loop`): the request waits while the loop, woken at once, runs it
between two looks, so the dashboard never races the daemon.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import selectors
import socket
import threading
import time
from typing import Any, Callable

from tessera_client.files import write_atomic
from tessera_client.state import DataDir

MAX_CONNECTIONS = 8  # more at once are closed unanswered: a local flood cannot pile up threads
CONNECTION_TIMEOUT = 10.0  # seconds a connection may take to send its request
LOOP_TIMEOUT = 20.0  # seconds a request waits for the loop (busy with a slow project, say)


class LoopBusy(Exception):
    """The daemon's loop did not get to the request in time, or has stopped."""


class _Job:
    """A call for the daemon's loop to run, and its answer for the waiting request."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.call = call
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.call()
        except Exception as error:  # handed to the request's thread, which answers with it
            self.error = error
        finally:
            self.done.set()


class DashboardServer:
    """Listens on 127.0.0.1:``port`` (0: any free port) for the dashboard of ``backend``."""

    def __init__(self, data: DataDir, backend: Any, *, port: int = 0, wake: Callable[[], None]) -> None:
        self.data, self.backend, self.wake = data, backend, wake
        self.secret = secrets.token_urlsafe(32)
        self.listener = socket.create_server(("127.0.0.1", port))
        self.port = int(self.listener.getsockname()[1])
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._stop_read, self._stop_write = socket.socketpair()
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="tessera-dashboard", daemon=True)
        self._thread.start()
        self._publish()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{self.secret}/"

    def _publish(self) -> None:
        """Write the address for ``tessera dashboard``: readable by the owner only."""
        path = self.data.dashboard_file
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps({"url": self.url, "pid": os.getpid()}).encode(), mode=0o600)

    # -- the listening thread -----------------------------------------------------------
    def _accept(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self.listener, selectors.EVENT_READ)
            selector.register(self._stop_read, selectors.EVENT_READ)
            while not self._closed:
                for key, _ in selector.select():
                    if key.fileobj is self._stop_read:
                        return
                    self._take_connection()

    def _take_connection(self) -> None:
        try:
            connection, _ = self.listener.accept()
        except OSError:  # out of descriptors, say: wait rather than spin on a ready socket
            time.sleep(0.1)
            return
        if not self._slots.acquire(blocking=False):
            connection.close()
            return
        threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        try:
            connection.settimeout(CONNECTION_TIMEOUT)
            from tessera_client.dashboard_http import answer  # only once the dashboard is opened

            answer(connection, self)
        except OSError:
            pass  # the browser went away mid-request
        finally:
            connection.close()
            self._slots.release()

    # -- the daemon's loop ----------------------------------------------------------------
    def on_loop(self, call: Callable[[], Any]) -> Any:
        """Run ``call`` on the daemon's loop and return its result (or raise its error)."""
        if self._closed:
            raise LoopBusy("the client is stopping")
        job = _Job(call)
        self._jobs.put(job)
        self.wake()
        if not job.done.wait(LOOP_TIMEOUT):
            raise LoopBusy("the client is busy (talking to a project, say); try again in a moment")
        if job.error is not None:
            raise job.error
        return job.result

    def serve_pending(self) -> None:
        """Run the requests' calls that are waiting; called by the daemon's loop."""
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            job.run()

    def close(self) -> None:
        """Stop listening, answer what waits, and remove the address (if it is still ours)."""
        self._closed = True
        self._stop_write.send(b"x")
        self._thread.join(timeout=5)
        self.listener.close()
        self.serve_pending()
        for end in (self._stop_read, self._stop_write):
            end.close()
        try:
            if self.secret in self.data.dashboard_file.read_text():
                self.data.dashboard_file.unlink()
        except OSError:
            pass
