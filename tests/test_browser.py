"""The public pages in a real browser: Debian's Chromium driven by Playwright, headless, with
every address but 127.0.0.1 unreachable. Volunteers sign up, attach a real `tessera` client
with the token the page shows, and see the leaderboard change when its results validate;
teams are made and joined; a scientist watches an image batch's picture. Screenshots of the
main pages are taken on every run; `make screenshots` keeps the ones in docs/screenshots/
current (TESSERA_SCREENSHOTS_DIR), so a plain test run changes no file in the repository.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tests.browser import CHAIN, PASSWORD, require_browser
from tests.coordinator_process import MAKE_SCIENTIST, MAKE_UNITS, PUBLISH_APP, CoordinatorProcess
from tests.volunteers import Tessera, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from tessera_batches import Batches  # a script, not a package

# The pages' queries run on both databases in coordinator/web/tests; the browser sees only HTML.
pytestmark = pytest.mark.sqlite_pass(
    "what the browser sees does not depend on the database, and these tests in both passes"
    " would take CI past its 30 minutes"
)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    require_browser("the browser tests")
    with CoordinatorProcess(tmp_path_factory.mktemp("site"), DEBUG="0") as running:
        yield running


def sign_up(page, site: CoordinatorProcess, name: str) -> str:
    """Sign up through the form; returns the account token the page shows once."""
    page.goto(f"{site.url}/signup")
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password, again").fill(PASSWORD)
    page.get_by_label("Show my name and credit on the leaderboards").check()  # as one who climbs them
    page.get_by_role("button", name="Make my account").click()
    page.wait_for_url(f"{site.url}/account")
    command = page.locator("#attach-command").inner_text()
    return re.search(r"--token (tsr_\S+)", command).group(1)


def test_a_volunteer_signs_up_attaches_and_climbs_the_leaderboard(site, page, tmp_path, shot):
    site.django(PUBLISH_APP, name="chain", folder=str(CHAIN))
    inputs = [f'{{"seed": "browser-{n}", "rounds": 20000}}' for n in range(4)]
    site.django(MAKE_UNITS, app="chain", inputs=inputs, policy={"min_quorum": 1, "target_nresults": 1})

    token = sign_up(page, site, "ada")
    assert "shown this once" in page.content()
    shot(page, "account")
    page.goto(f"{site.url}/leaderboards/volunteers")
    assert page.get_by_text("No one here yet").is_visible()

    client = Tessera(tmp_path / "ada-pc")
    attached = client("attach", site.url, "--token", token)
    assert attached.returncode == 0, attached.stdout + attached.stderr
    client.start("--exit-when-idle")
    assert client.wait(120) == 0, client.output()

    def ranked() -> bool:
        page.goto(f"{site.url}/leaderboards/volunteers")
        return page.locator("tr.mine").count() == 1

    wait_for(ranked, 60, "ada's results to validate and show")
    mine = page.locator("tr.mine")
    assert "ada" in mine.inner_text() and mine.locator("td").first.inner_text() == "1"
    shot(page, "leaderboard")
    page.goto(f"{site.url}/account")
    assert page.locator("svg[role=img]").count() == 1
    assert page.locator("#computers + div table tbody tr").count() == 1  # the computer just attached
    page.goto(f"{site.url}/status")
    shot(page, "status")


def test_teams_are_made_and_joined_and_bad_names_are_refused(site, page, chromium, shot):
    sign_up(page, site, "grace")
    page.goto(f"{site.url}/teams/new")
    page.get_by_label("Name").fill("<b>Night owls</b>")
    page.get_by_role("button", name="Make the team").click()
    assert page.locator("h1").inner_text() == "<b>Night owls</b>"  # shown as text, not markup

    other = chromium.new_context().new_page()
    sign_up(other, site, "hopper")
    other.goto(f"{site.url}/teams/new")
    other.get_by_label("Name").fill("<B>night OWLS</B>")
    other.get_by_role("button", name="Make the team").click()
    assert other.get_by_role("alert").first.inner_text().startswith("there is already a team called")
    other.goto(page.url)
    other.get_by_role("button", name="Join this team").click()
    assert other.get_by_role("button", name="Leave this team").is_visible()
    assert "hopper" in other.locator("table").last.inner_text()
    shot(other, "team")
    assert other.goto(f"{site.url}/teams/987654").status == 404


def test_the_pages_work_by_keyboard_and_on_a_phone(site, chromium, shot):
    phone = chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True).new_page()
    phone.goto(f"{site.url}/leaderboards/volunteers")
    phone.keyboard.press("Tab")
    assert phone.evaluate("document.activeElement.textContent") == "Skip to the content"
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, "nothing wider than the phone's screen"
    shot(phone, "leaderboard-phone")


def test_a_scientist_watches_the_picture_of_an_image_batch(site, page, tmp_path, shot):
    assert "published" in site.manage("publish_app", "mandelbrot")
    token = site.django(MAKE_SCIENTIST, username="marie")
    batches = Batches(site.url, token)
    picture = {"width": 192, "height": 128, "tile": 64, "max_iterations": 80, "span": 3.0}
    batch = batches.submit("mandelbrot", "browser tiles", parameters=picture, min_quorum=1, target_nresults=1)
    wait_for(lambda: batches.get(batch["id"])["state"] == "running", 30, "the batch to split")

    page.goto(f"{site.url}/signin?next=/batches/{batch['id']}")
    page.get_by_label("Username").fill("marie")
    page.get_by_label("Password").fill("long-enough-password-1842")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{site.url}/batches/{batch['id']}")
    assert page.locator("figure.picture img").is_visible()

    client = Tessera(tmp_path / "crunch-pc")
    volunteer_token = sign_up(page.context.browser.new_context().new_page(), site, "crunch")
    assert client("attach", site.url, "--token", volunteer_token).returncode == 0
    client.start("--exit-when-idle")
    assert client.wait(120) == 0, client.output()
    batches.wait(batch["id"], poll=0.5, timeout=60, progress=False)

    page.goto(f"{site.url}/batches/{batch['id']}")
    assert "Validated" in page.content()
    loaded = page.evaluate("document.querySelector('figure.picture img').naturalWidth")
    assert loaded == 192
    shot(page, "batch")


def test_unknown_pages_answer_404_and_private_ones_ask_to_sign_in(site, page):
    for path in ("/leaderboards/aliens", "/teams/0", "/teams/424242"):
        assert page.goto(f"{site.url}{path}").status == 404
    page.goto(f"{site.url}/batches/5")
    assert page.url.startswith(f"{site.url}/signin")
