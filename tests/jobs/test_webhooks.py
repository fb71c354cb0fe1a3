import hashlib
import hmac
import json
import socket
import threading
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.exceptions import ImproperlyConfigured

from apps.core.exceptions import InvalidInput
from apps.jobs import webhook_signing
from apps.jobs.models import BatchJob, WebhookDelivery, WebhookSecret
from apps.jobs.webhook_signing import encode_secret, legacy_signature
from apps.jobs.webhook_signing import verify_legacy_signature as verify_signature
from apps.jobs.webhooks import (
    check_webhook_url,
    deliver,
    job_webhook_payload,
    max_attempts,
    retry_delay,
    secret_for,
)

pytestmark = pytest.mark.django_db

PAYLOAD = {"event": "job.finished", "job": {"id": "abc", "status": "succeeded", "done": 3}}
NOW = 1_800_000_000
PUBLIC_ADDRESS = "93.184.216.34"


@pytest.fixture
def make_job(user):
    def make(webhook_url: str) -> BatchJob:
        return BatchJob.objects.create(
            owner=user, model_name="m", version_number=1, kind="image", webhook_url=webhook_url
        )

    return make


@pytest.fixture
def no_allowed_networks(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = []


def resolve_to(monkeypatch, *addresses: str) -> None:
    """Make every host name resolve to `addresses` (the machine has no DNS for public names)."""

    def fake_getaddrinfo(host, port, *args, **kwargs):
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port or 80))
            for a in addresses
        ]

    monkeypatch.setattr("apps.jobs.webhooks.socket.getaddrinfo", fake_getaddrinfo)


# --- A real HTTP receiver on loopback ------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: Message
    body: bytes


@dataclass
class Receiver:
    url: str
    status: int = 200
    response_headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False
    requests: list[Received] = field(default_factory=list)
    received: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def receiver(settings, monkeypatch):
    """An HTTP server on 127.0.0.1 that records each POST and answers `status`; loopback allowed."""
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8", "::1/128"]
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests.append(Received(path=self.path, headers=self.headers, body=body))
            state.received.set()
            if state.hang:
                state.release.wait(timeout=10)
                return
            self.send_response(state.status)
            for name, value in state.response_headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}/hook")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


# --- Signatures ----------------------------------------------------------------------------------


def signature_header(*, secret: str, timestamp: int, body: bytes) -> str:
    """The legacy header as a delivery signed with `secret` (its legacy form) carries it."""
    return legacy_signature(secrets_=[encode_secret(secret)], timestamp=timestamp, body=body)


def test_signature_header_is_timestamp_and_hmac_of_timestamp_dot_body():
    body = b'{"a":1}'
    expected = hmac.new(b"s3cret", f"{NOW}.".encode() + body, hashlib.sha256).hexdigest()

    assert signature_header(secret="s3cret", timestamp=NOW, body=body) == f"t={NOW},v1={expected}"


def test_a_signature_verifies_with_the_same_secret_and_body():
    header = signature_header(secret="s3cret", timestamp=NOW, body=b"{}")

    assert verify_signature(secret="s3cret", header=header, body=b"{}", now=NOW + 10)


def test_a_tampered_body_fails_verification():
    header = signature_header(secret="s3cret", timestamp=NOW, body=b'{"ok":true}')

    assert not verify_signature(secret="s3cret", header=header, body=b'{"ok":false}', now=NOW)


def test_another_secret_fails_verification():
    header = signature_header(secret="s3cret", timestamp=NOW, body=b"{}")

    assert not verify_signature(secret="other", header=header, body=b"{}", now=NOW)


def test_an_old_timestamp_fails_verification():
    header = signature_header(secret="s3cret", timestamp=NOW, body=b"{}")

    assert verify_signature(secret="s3cret", header=header, body=b"{}", now=NOW + 300)
    assert not verify_signature(secret="s3cret", header=header, body=b"{}", now=NOW + 301)
    assert not verify_signature(
        secret="s3cret", header=header, body=b"{}", now=NOW + 61, tolerance_seconds=60
    )


def test_a_changed_timestamp_fails_verification():
    header = signature_header(secret="s3cret", timestamp=NOW, body=b"{}")
    moved = header.replace(f"t={NOW}", f"t={NOW + 100}")

    assert not verify_signature(secret="s3cret", header=moved, body=b"{}", now=NOW + 100)


@pytest.mark.parametrize("header", ["", "garbage", f"t={NOW}", "v1=abc", f"t=soon,v1={'0' * 64}"])
def test_a_malformed_signature_header_fails_verification(header):
    assert not verify_signature(secret="s3cret", header=header, body=b"{}", now=NOW)


def test_secret_for_creates_the_users_secret_once(user):
    first = secret_for(user).secret

    assert first.startswith("whsec_") and len(first) >= 32
    assert secret_for(user).secret == first
    assert WebhookSecret.objects.filter(user=user).count() == 1


# --- Which URLs are accepted ---------------------------------------------------------------------


@pytest.mark.usefixtures("no_allowed_networks")
@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://127.0.0.1/x", id="loopback"),
        pytest.param("http://localhost/x", id="localhost"),
        pytest.param("http://2130706433/x", id="loopback-as-decimal"),
        pytest.param("http://10.0.0.5/", id="private-10"),
        pytest.param("http://192.168.1.1/", id="private-192.168"),
        pytest.param("http://169.254.169.254/latest/meta-data", id="link-local-cloud-metadata"),
        pytest.param("http://0.0.0.0/", id="unspecified"),
        pytest.param("http://100.64.0.1/", id="carrier-grade-nat"),
        pytest.param("http://224.0.0.1/", id="multicast"),
        pytest.param("http://240.0.0.1/", id="reserved"),
        pytest.param("http://[::1]/", id="ipv6-loopback"),
        pytest.param("http://[::ffff:127.0.0.1]/", id="ipv4-mapped-loopback"),
        pytest.param("http://[fe80::1]/", id="ipv6-link-local"),
        pytest.param("http://[fd00::1]/", id="ipv6-unique-local"),
        pytest.param("http://[2002:7f00:1::]/", id="6to4-for-loopback"),
        pytest.param("ftp://example.com/", id="ftp-scheme"),
        pytest.param("file:///etc/passwd", id="file-scheme"),
        pytest.param("http://user:pw@example.com/", id="userinfo"),
        pytest.param("http://@example.com/", id="empty-userinfo"),
        pytest.param("http:///no-host", id="no-host"),
        pytest.param("http://example.com:99999/", id="bad-port"),
        pytest.param("http://example.com/\n", id="newline"),
        pytest.param("http://nonexistent.invalid/", id="does-not-resolve"),
        pytest.param("http://example.com/" + "a" * 2000, id="too-long"),
    ],
)
def test_it_refuses_urls_that_are_not_public_http(url):
    with pytest.raises(InvalidInput) as refused:
        check_webhook_url(url)

    assert refused.value.code == "webhook_url_refused"
    assert refused.value.details["reason"]
    assert refused.value.message.startswith("Webhook URL refused: ")


@pytest.mark.usefixtures("no_allowed_networks")
def test_the_refusal_says_which_address_was_refused():
    with pytest.raises(InvalidInput) as refused:
        check_webhook_url("http://169.254.169.254/latest/meta-data")

    assert refused.value.details == {
        "url": "http://169.254.169.254/latest/meta-data",
        "reason": "the host 169.254.169.254 resolves to 169.254.169.254, which is a link-local address",
    }


@pytest.mark.usefixtures("no_allowed_networks")
def test_it_accepts_a_public_address_and_normalises_the_url(monkeypatch):
    resolve_to(monkeypatch, PUBLIC_ADDRESS)

    assert check_webhook_url("HTTPS://Example.COM:8443/hook?x=1#frag") == "https://example.com:8443/hook?x=1"
    assert check_webhook_url("http://example.com") == "http://example.com/"


@pytest.mark.usefixtures("no_allowed_networks")
def test_it_refuses_a_host_with_any_private_address(monkeypatch):
    resolve_to(monkeypatch, PUBLIC_ADDRESS, "10.0.0.5")

    with pytest.raises(InvalidInput, match=r"10\.0\.0\.5, which is a private address"):
        check_webhook_url("https://example.com/hook")


def test_it_allows_loopback_when_the_setting_lists_it(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]

    assert check_webhook_url("http://127.0.0.1:8080/x") == "http://127.0.0.1:8080/x"
    assert check_webhook_url("http://localhost/x") == "http://localhost/x"
    assert check_webhook_url("http://[::ffff:127.0.0.1]/") == "http://[::ffff:127.0.0.1]/"
    with pytest.raises(InvalidInput):
        check_webhook_url("http://10.0.0.5/")


def test_a_malformed_allowed_network_is_a_configuration_error(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["not-a-network"]

    with pytest.raises(ImproperlyConfigured):
        check_webhook_url("http://127.0.0.1/")


# --- Delivery ------------------------------------------------------------------------------------


def test_it_delivers_a_signed_json_body(receiver, make_job, user):
    job = make_job(receiver.url)

    delivery = deliver(job=job, payload=PAYLOAD, attempt=1)

    assert receiver.received.wait(timeout=5)
    [request] = receiver.requests
    assert request.path == "/hook"
    assert json.loads(request.body) == PAYLOAD
    assert request.body == json.dumps(PAYLOAD, separators=(",", ":"), sort_keys=True).encode()
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == "mlplatform-webhooks/1"
    assert request.headers["X-MLPlatform-Event"] == "job.finished"
    assert request.headers["X-MLPlatform-Delivery"] == f"{job.id}:1"
    legacy = webhook_signing.legacy_secret(secret_for(user).secret)
    assert verify_signature(
        secret=legacy, header=request.headers["X-MLPlatform-Signature"], body=request.body
    )
    assert not verify_signature(
        secret="wrong", header=request.headers["X-MLPlatform-Signature"], body=request.body
    )
    stored = WebhookDelivery.objects.get(job=job)
    assert stored == delivery
    assert (stored.attempt, stored.url, stored.status_code, stored.succeeded, stored.error) == (
        1,
        receiver.url,
        200,
        True,
        "",
    )
    assert stored.duration_ms >= 0


def test_a_server_error_is_recorded_as_failed(receiver, make_job):
    receiver.status = 500
    job = make_job(receiver.url)

    delivery = deliver(job=job, payload=PAYLOAD, attempt=2)

    assert receiver.received.wait(timeout=5)
    delivery.refresh_from_db()
    assert (delivery.attempt, delivery.status_code, delivery.succeeded) == (2, 500, False)
    assert delivery.error == "HTTP 500"


def test_a_redirect_is_not_followed_and_counts_as_failed(receiver, make_job):
    receiver.status = 302
    receiver.response_headers = {"Location": receiver.url.replace("/hook", "/elsewhere")}
    job = make_job(receiver.url)

    delivery = deliver(job=job, payload=PAYLOAD, attempt=1)

    assert [request.path for request in receiver.requests] == ["/hook"]
    assert (delivery.status_code, delivery.succeeded) == (302, False)
    assert "redirects are not followed" in delivery.error
    assert "/elsewhere" in delivery.error


def closed_port_url(monkeypatch) -> str:
    """A loopback URL nothing listens on, reached directly (no proxy from the environment)."""
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


def test_a_closed_port_is_recorded_as_failed_without_raising(settings, make_job, monkeypatch):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    job = make_job(closed_port_url(monkeypatch))

    delivery = deliver(job=job, payload=PAYLOAD, attempt=1)

    assert (delivery.status_code, delivery.succeeded) == (None, False)
    assert delivery.error.startswith("ConnectionError")
    assert WebhookDelivery.objects.filter(job=job, succeeded=False).count() == 1


def test_a_receiver_that_does_not_answer_times_out(receiver, make_job, settings):
    settings.WEBHOOK_READ_TIMEOUT_SECONDS = 0.2
    receiver.hang = True
    job = make_job(receiver.url)

    delivery = deliver(job=job, payload=PAYLOAD, attempt=1)

    assert receiver.received.wait(timeout=5)
    assert (delivery.status_code, delivery.succeeded) == (None, False)
    assert "timed out" in delivery.error.lower()


def test_the_url_is_checked_again_before_sending(receiver, make_job, settings):
    job = make_job(receiver.url)
    settings.WEBHOOK_ALLOWED_NETWORKS = []  # as if the host now resolved somewhere internal

    delivery = deliver(job=job, payload=PAYLOAD, attempt=3)

    assert receiver.requests == []
    assert (delivery.attempt, delivery.status_code, delivery.succeeded) == (3, None, False)
    assert "loopback" in delivery.error
    assert delivery.url == receiver.url


def test_every_attempt_is_kept(receiver, make_job):
    receiver.status = 503
    job = make_job(receiver.url)
    deliver(job=job, payload=PAYLOAD, attempt=1)
    receiver.status = 204

    deliver(job=job, payload=PAYLOAD, attempt=2)

    assert list(job.webhook_deliveries.values_list("attempt", "status_code", "succeeded")) == [
        (1, 503, False),
        (2, 204, True),
    ]
    assert [r.headers["X-MLPlatform-Delivery"] for r in receiver.requests] == [f"{job.id}:1", f"{job.id}:2"]


# --- Retries -------------------------------------------------------------------------------------


def test_retry_delay_doubles_from_the_base_and_is_capped(settings):
    settings.WEBHOOK_RETRY_BASE_SECONDS = 10

    assert [retry_delay(attempt) for attempt in range(1, 7)] == [10, 20, 40, 80, 160, 320]
    assert retry_delay(9) == 2560
    assert retry_delay(10) == 3600
    assert retry_delay(1000) == 3600


def test_retry_delay_and_max_attempts_follow_the_settings(settings):
    settings.WEBHOOK_RETRY_BASE_SECONDS = 60
    settings.WEBHOOK_MAX_ATTEMPTS = 3

    assert [retry_delay(attempt) for attempt in range(1, 8)] == [60, 120, 240, 480, 960, 1920, 3600]
    assert max_attempts() == 3


def test_max_attempts_defaults_to_six(settings):
    if hasattr(settings, "WEBHOOK_MAX_ATTEMPTS"):
        del settings.WEBHOOK_MAX_ATTEMPTS

    assert max_attempts() == 6


def test_a_delivery_logs_with_the_jobs_request_id(settings, make_job, monkeypatch, log_records):
    from workers.jobs import deliver_job_webhook

    settings.WEBHOOK_MAX_ATTEMPTS = 1  # no retry to schedule
    job = make_job(closed_port_url(monkeypatch))
    BatchJob.objects.filter(pk=job.pk).update(request_id="submit-req-1")

    deliver_job_webhook(str(job.pk), 1)

    failed = [r for r in log_records if r.getMessage().startswith(f"webhook of job {job.pk}")]
    assert [r.request_id for r in failed] == ["submit-req-1"]


def test_the_payload_is_the_job_as_the_api_shows_it(make_job):
    job = make_job("https://hooks.example.com/done")
    payload = job_webhook_payload(job)
    assert payload["event"] == "job.finished"
    assert payload["job"]["id"] == str(job.pk)
    assert payload["job"]["status"] == job.status
