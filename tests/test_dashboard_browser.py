"""The client's dashboard in a real browser: a volunteer's `tessera run` crunches a real
coordinator's work, and `tessera dashboard` opens its page in Chromium. The page shows the
project with its credit and chart, the tasks with their progress, the project's notices as
text, and its buttons work; a page on another origin, even one that knows the address, can
change nothing. The screenshot docs/screenshots/dashboard.png is taken here."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.browser import CHAIN, require_browser
from tests.coordinator_process import MAKE_UNITS, PUBLISH_APP, CoordinatorProcess
from tests.volunteers import attach, wait_for

pytestmark = pytest.mark.sqlite_pass(
    "the dashboard is the client's page; the coordinator's database does not change what it shows"
)
TRAP = "<img src=x onerror=\"document.title='pwned'\">"
POST_NOTICE = """
from coordinator.community.models import Notice
Notice.objects.create(title=values["title"], body=values["body"])
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    require_browser("the dashboard's browser tests")
    with CoordinatorProcess(tmp_path_factory.mktemp("project"), DEBUG="0") as running:
        running.django(PUBLISH_APP, name="chain", folder=str(CHAIN))
        # Two short units earn credit early; the long ones are still running when we look.
        rounds = [1_000_000, 1_000_000, 60_000_000, 60_000_000, 60_000_000]
        inputs = [json.dumps({"seed": f"dash-{n}", "rounds": r}) for n, r in enumerate(rounds)]
        running.django(MAKE_UNITS, app="chain", inputs=inputs, policy={"min_quorum": 1, "target_nresults": 1})
        running.django(POST_NOTICE, title=f"New app {TRAP}", body="<script>document.title='pwned'</script>")
        yield running


class EvilSite:
    """A web page on another port of 127.0.0.1 that knows the dashboard's address and tries to
    suspend the volunteer's work: a cross-origin fetch of each kind and a form that posts."""

    def __init__(self, dashboard: str) -> None:
        page = f"""<!doctype html><title>evil</title>
<form id="f" method="POST" action="{dashboard}api/suspend" enctype="text/plain">
<input name='{{"x":"' value='"}}'></form>
<script>
const target = "{dashboard}api/suspend";
Promise.allSettled([
  fetch(target, {{method: "POST", mode: "no-cors", headers: {{"Content-Type": "text/plain"}}, body: "{{}}"}}),
  fetch(target, {{method: "POST", headers: {{"Content-Type": "application/json"}}, body: "{{}}"}}),
]).then(() => {{ document.title = "sent"; setTimeout(() => document.getElementById("f").submit(), 100); }});
</script>""".encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def row_state(page, workunit: str) -> str:
    return page.locator("#task-rows tr", has_text=workunit).locator("td").nth(3).inner_text()


def test_the_dashboard_shows_the_client_and_its_buttons_work(project, page, chromium, tmp_path, shot):
    client = attach(project, tmp_path, "linus")
    client.start()
    try:
        wait_for(lambda: (client.data / "keys" / "dashboard.json").exists(), 30, "the dashboard")
        opened = client("dashboard", "--no-browser")
        assert opened.returncode == 0, opened.stdout + opened.stderr
        url = opened.stdout.split()[0]
        dashboard_is_used(page, url, client)
        shot(page, "dashboard")
        nothing_from_another_origin(chromium, url, client)
        buttons_work(page, client)
    finally:
        if client.process and client.process.poll() is None:
            client.process.terminate()
            client.wait(30)


def dashboard_is_used(page, url: str, client) -> None:
    page.goto(url)
    page.wait_for_selector("#project-rows tr[data-project]")

    def earned_and_running() -> bool:
        credit = page.locator("#project-rows tr td.number").first.inner_text()
        running = page.locator("#task-rows tr", has_text="running").count()
        return credit != "0.00" and running > 0 and page.locator("#credit-chart path").count() == 1

    wait_for(earned_and_running, 120, "credit for the short units while a long one runs")
    bar = page.locator("#task-rows tr", has_text="running").first.locator("progress")
    wait_for(lambda: float(bar.get_attribute("value")) > 0, 60, "a running task's progress")
    assert page.locator("#run-state").inner_text() == "Running"
    # The project's words are text: the trap shows as written and never runs.
    notice = page.locator("#notice-list li").first
    assert TRAP in notice.inner_text() and "<script>" in notice.inner_text()
    assert page.locator("#notice-list img, #notice-list script").count() == 0
    assert page.title() == "Tessera dashboard"


def nothing_from_another_origin(chromium, url: str, client) -> None:
    evil = EvilSite(url)
    context = chromium.new_context()
    try:
        tab = context.new_page()
        tab.goto(evil.url)
        tab.wait_for_url(f"{url}api/suspend", timeout=15_000)  # the form went; its answer is a refusal
        refusal = tab.content()
        assert "answers no other site" in refusal or "only from the dashboard's own page" in refusal
    finally:
        context.close()
        evil.close()
    assert not (client.data / "suspended").exists()
    assert "dashboard: All work is suspended" not in client.output()


def project_settings(client) -> dict:
    folder = client.data / "projects"
    [settings] = [p for p in folder.glob("*.json") if not p.name.endswith(".runtime.json")]
    return json.loads(settings.read_text())


def buttons_work(page, client) -> None:
    page.get_by_role("button", name="Suspend all work").click()
    page.wait_for_selector("#run-state.suspended")
    assert (client.data / "suspended").exists()
    wait_for(lambda: page.locator("#task-rows tr", has_text="suspended").count() > 0, 15, "held tasks")
    page.get_by_role("button", name="Resume all work").click()
    wait_for(lambda: page.locator("#run-state").inner_text() == "Running", 15, "work to resume")

    page.locator("#project-rows").get_by_role("button", name="Suspend").click()
    wait_for(lambda: page.locator("#task-rows tr", has_text="project suspended").count() > 0, 15, "a stop")
    page.locator("#project-rows").get_by_role("button", name="Resume").click()
    wait_for(lambda: page.locator("#task-rows tr", has_text="project suspended").count() == 0, 15, "go")

    page.fill("#pref-cpu_percent", "60")
    page.get_by_role("button", name="Save preferences").click()
    wait_for(lambda: (client.data / "prefs.json").exists(), 10, "the preferences file")
    assert json.loads((client.data / "prefs.json").read_text()) == {"cpu_percent": 60}
    source = page.locator("#pref-rows tr", has_text="cpu_percent").locator("td").nth(2)
    wait_for(lambda: source.inner_text() == "local", 10, "the preference to show as the volunteer's")

    share = page.locator("#project-rows input[type=number]")
    share.fill("150")
    page.wait_for_timeout(2500)  # a poll or more: what is being typed is not redrawn away
    assert share.input_value() == "150"
    share.press("Tab")
    wait_for(lambda: project_settings(client)["resource_share"] == 150.0, 10, "the new share")

    page.get_by_role("button", name="Mark all as read").click()
    wait_for(lambda: page.locator("#notice-list li.unread").count() == 0, 10, "notices read")

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#project-rows").get_by_role("button", name="Detach").click()
    wait_for(lambda: page.locator("#project-rows tr").count() == 0, 15, "the project to go")
    assert not list((client.data / "projects").glob("*.json"))
