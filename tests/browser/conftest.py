"""Browser tests: Playwright driving Debian's Chromium (/usr/bin/chromium, never a
downloaded browser) against a live gunicorn and a Celery worker on the configured
PostgreSQL and Redis, as tests/e2e does.

Every page is watched: a console error, an uncaught exception, a failed request or a request
to any host but 127.0.0.1 fails the test. A failing test leaves a screenshot in
var/browser-failures/ (or BROWSER_FAILURES_DIR), which CI keeps as an artifact.
"""

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests import live
from tests.live import ROOT

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
FAILURES = Path(os.environ.get("BROWSER_FAILURES_DIR", ROOT / "var" / "browser-failures"))
PASSWORD = "browser-password"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Keep each phase's report on the test, so the page fixture knows whether it failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="module")
def stack(e2e_dir: Path, database_url: str) -> Iterator[dict]:
    """One gunicorn; the Celery worker starts when a test asks (`stack["start_worker"]()`),
    so that a test can watch a version wait in "pending" and then become ready."""
    env = live.production_env(
        e2e_dir,
        database_url,
        "browser",
        DJANGO_SETTINGS_MODULE="tests.browser.settings",  # production's, static files uncompressed
        # Validation measures less (the browser waits for it): 3 timed runs, no batch run.
        VALIDATION_LATENCY_RUNS="3",
        VALIDATION_THROUGHPUT_BATCH="1",
    )
    live.migrate(env)
    live.collectstatic(env)
    live.create_users(env, ["maintainer"], PASSWORD, superuser=True)
    web = live.start_web(env, e2e_dir / "browser-web.log", workers=2)
    workers: list[live.Live] = []

    def start_worker() -> None:
        if not workers:
            workers.append(live.start_worker(env, e2e_dir / "browser-worker.log", "validation,jobs,default"))

    try:
        web.wait_ready()
        yield {"url": web.url, "start_worker": start_worker, "dir": e2e_dir}
    finally:
        live.stop(web, *workers)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Watch:
    """What went wrong in the page: console errors, exceptions, failed or outside requests."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def console(self, message) -> None:
        if message.type == "error":
            self.problems.append(f"console error: {message.text} at {message.location.get('url')}")

    def request_failed(self, request) -> None:
        failure = request.failure or ""
        # ERR_ABORTED is the browser cancelling a load itself: a script or a poll still in
        # flight when the page navigates on. A refused, reset or timed-out request, or one
        # blocked by `route` below, has its own error.
        if failure == "net::ERR_ABORTED":
            return
        self.problems.append(f"request failed: {request.method} {request.url} ({failure})")

    def route(self, route) -> None:
        if urlsplit(route.request.url).hostname != "127.0.0.1":
            self.problems.append(f"request left 127.0.0.1: {route.request.url}")
            route.abort()
        else:
            route.continue_()


@pytest.fixture
def page(browser, stack: dict, request: pytest.FixtureRequest) -> Iterator:
    """A page in a fresh context (1400 x 900, the console's target width), watched."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, base_url=stack["url"])
    context.set_default_timeout(15_000)
    watch = Watch()
    context.route("**/*", watch.route)
    page = context.new_page()
    page.on("console", watch.console)
    page.on("pageerror", lambda error: watch.problems.append(f"uncaught exception: {error}"))
    page.on("requestfailed", watch.request_failed)
    page.watch = watch
    try:
        yield page
        assert not watch.problems, "\n".join(watch.problems)
    finally:
        report = getattr(request.node, "report_call", None)
        if report is None or report.failed or watch.problems:
            FAILURES.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(FAILURES / f"{request.node.name}.png"), full_page=True)
        context.close()


@pytest.fixture
def login(stack: dict) -> Callable:
    def log_in(page) -> None:
        page.goto("/admin/login/")
        page.fill("#id_username", "maintainer")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url("**/admin/")

    return log_in
