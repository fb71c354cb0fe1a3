"""`mlp`: submit a folder of images as a batch job, follow its progress, download its results.

Exit codes: 0 success, 1 an error from the server (or a job that failed or was cancelled),
2 a usage error (bad arguments, no images, no credentials), 130 interrupted with Ctrl-C.

Credentials: an API key, or OAuth 2.0 client credentials, with which the access token is
fetched from the server and fetched again before it expires, or when the server refuses it.
"""

import argparse
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from mlplatform_client import __version__, rollouts
from mlplatform_client.api import (
    DEFAULT_URL,
    FINAL_STATUSES,
    RESULT_FORMATS,
    ApiError,
    Client,
    ClientCredentials,
    ClientError,
    Job,
    ResultFormat,
)
from mlplatform_client.transfer import UploadBar

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"})

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

BAR_WIDTH = 30


class UsageError(Exception):
    """A mistake in how mlp was called: reported without a traceback, exit code 2."""


# -- collecting the inputs ---------------------------------------------------------------------


def collect_images(folder: Path, *, recursive: bool = False) -> list[Path]:
    """The image files in `folder` (and its subfolders if `recursive`), sorted by relative path.

    Matches the extensions in IMAGE_EXTENSIONS, case-insensitively; skips hidden files and
    folders (a leading dot, such as macOS's `._photo.jpg` companions) and does not follow
    symlinked folders.
    """
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        if recursive:
            dirs[:] = [name for name in dirs if not name.startswith(".")]
        else:
            dirs[:] = []
        for name in files:
            path = Path(root, name)
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            if path.is_file():
                found.append(path)
    return sorted(found, key=lambda path: path.relative_to(folder).as_posix())


# -- progress ----------------------------------------------------------------------------------


def format_duration(seconds: float) -> str:
    total = max(0, round(seconds))
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def render_progress(job: Job, width: int = BAR_WIDTH) -> str:
    """One line, e.g. `[##########..........]  312/500   62%  41.3 img/s  ETA 5s`."""
    status = job.get("status", "?")
    progress: dict[str, Any] = dict(job.get("progress") or {})
    total = int(progress.get("total") or 0)
    done = int(progress.get("done") or 0)
    percent = progress.get("percent")
    if percent is None:
        percent = 100.0 * done / total if total else 0.0
    percent = min(max(float(percent), 0.0), 100.0)
    filled = min(width, round(width * percent / 100))
    parts = [
        f"[{'#' * filled}{'.' * (width - filled)}]",
        f"{done:>{len(str(total))}}/{total}",
        f"{percent:3.0f}%",
    ]
    if status == "running":
        if progress.get("items_per_second") is not None:
            parts.append(f"{float(progress['items_per_second']):.1f} img/s")
        if progress.get("eta_seconds") is not None:
            parts.append(f"ETA {format_duration(float(progress['eta_seconds']))}")
    if progress.get("failed"):
        parts.append(f"{progress['failed']} failed")
    if status != "running":
        parts.append(status)
    return "  ".join(parts)


class ProgressPrinter:
    """Draws render_progress() lines: rewritten in place with \\r on a terminal, otherwise one
    line per change of status or count (so logs stay readable)."""

    def __init__(self, stream: IO[str], *, tty: bool | None = None) -> None:
        self.stream = stream
        isatty = getattr(stream, "isatty", None)
        self.tty = tty if tty is not None else bool(isatty and isatty())
        self._last_key: tuple[Any, ...] | None = None
        self._last_length = 0
        self._line_open = False

    def update(self, job: Job) -> None:
        line = render_progress(job)
        if self.tty:
            line = line[: max(20, shutil.get_terminal_size().columns - 1)]
            padding = " " * max(0, self._last_length - len(line))
            self.stream.write("\r" + line + padding)
            self._last_length = len(line)
            self._line_open = True
        else:
            progress = job.get("progress") or {}
            key = (job.get("status"), progress.get("done"), progress.get("total"), progress.get("failed"))
            if key == self._last_key:
                return
            self._last_key = key
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self) -> None:
        """End the line being rewritten, if any, so what is printed next starts on a new one."""
        if self._line_open:
            self.stream.write("\n")
            self.stream.flush()
            self._line_open = False


def wait_for_job(client: Client, job: Job, *, poll_interval: float, printer: ProgressPrinter) -> Job:
    """Poll until the job reaches a final status, drawing its progress; returns the final job."""
    printer.update(job)
    while job["status"] not in FINAL_STATUSES:
        time.sleep(poll_interval)
        job = client.get_job(job["id"])
        printer.update(job)
    printer.finish()
    return job


# -- commands ----------------------------------------------------------------------------------


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _client(args: argparse.Namespace) -> Client:
    url = args.url or os.environ.get("MLP_URL") or DEFAULT_URL
    key, credentials = _credentials(args)
    try:
        return Client(url, key, credentials=credentials, timeout=args.timeout)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _credentials(args: argparse.Namespace) -> tuple[str | None, ClientCredentials | None]:
    """An API key, or OAuth 2.0 client credentials: options first, then the environment
    (MLP_API_KEY; MLP_CLIENT_ID and MLP_CLIENT_SECRET). Both kinds at one level is a mistake."""
    given = (args.key, args.client_id, args.client_secret)
    if not any(given):
        env = os.environ
        given = (env.get("MLP_API_KEY"), env.get("MLP_CLIENT_ID"), env.get("MLP_CLIENT_SECRET"))
    key, client_id, client_secret = given
    if key and (client_id or client_secret):
        raise UsageError("give an API key or client credentials, not both")
    if client_id or client_secret:
        if not (client_id and client_secret):
            raise UsageError("client credentials need both --client-id and --client-secret")
        return None, ClientCredentials(client_id, client_secret, scope=args.scope)
    if not key:
        raise UsageError(
            "no API key or client credentials: pass --key KEY (or set MLP_API_KEY), or "
            "--client-id and --client-secret (or set MLP_CLIENT_ID and MLP_CLIENT_SECRET)"
        )
    return key, None


def _output(job_id: str, out: str | None, fmt: ResultFormat | None) -> tuple[str, ResultFormat]:
    """The results file and format: --format wins, else the --out extension, else JSON Lines."""
    if fmt is None:
        fmt = "csv" if out and out.lower().endswith(".csv") else "jsonl"
    return out or f"{job_id}.{fmt}", fmt


def _download(client: Client, job_id: str, out: str, fmt: ResultFormat) -> int:
    if out == "-":
        sys.stdout.flush()
        written = client.stream_results(job_id, sys.stdout.buffer, fmt)
        sys.stdout.buffer.flush()
        return written
    return client.download_results(job_id, Path(out), fmt)


def _resume_hint(job_id: str) -> str:
    return (
        f"job {job_id} keeps running on the server (it was not cancelled).\n"
        f"  follow it:      mlp jobs status {job_id} --wait\n"
        f"  fetch results:  mlp jobs results {job_id}"
    )


def _follow(client: Client, job: Job, poll_interval: float) -> Job | None:
    """wait_for_job() with Ctrl-C and connection trouble explained; None when interrupted."""
    printer = ProgressPrinter(sys.stderr)
    try:
        return wait_for_job(client, job, poll_interval=poll_interval, printer=printer)
    except KeyboardInterrupt:
        printer.finish()
        _err("interrupted; " + _resume_hint(job["id"]))
        return None
    except ClientError:
        printer.finish()
        _err(_resume_hint(job["id"]))
        raise


def _conclude(client: Client, job: Job, out: str, fmt: ResultFormat) -> int:
    """Download the results of a finished job and print its summary; the exit code."""
    job_id, status = job["id"], job["status"]
    progress: dict[str, Any] = dict(job.get("progress") or {})
    error = job.get("error")
    if status != "succeeded" and error:
        _err(f"error {error.get('code')}: {error.get('message')}")
    saved = False
    # A failed or cancelled job may still have finished some items: fetch what there is.
    if status == "succeeded" or progress.get("done"):
        try:
            _download(client, job_id, out, fmt)
            saved = True
        except ApiError as exc:
            if status == "succeeded":
                raise
            _err(f"no results downloaded: error {exc.code}: {exc.message}")
        except KeyboardInterrupt:
            _err(f"interrupted; fetch the results with: mlp jobs results {job_id} --out {out}")
            return EXIT_INTERRUPTED
    summary = (
        f"job {job_id} {status}: {progress.get('succeeded', 0)} succeeded, "
        f"{progress.get('failed', 0)} failed of {progress.get('total', 0)}"
    )
    if saved and out != "-":
        summary += f"; results in {out}"
    print(summary, file=sys.stderr if out == "-" else sys.stdout, flush=True)
    return EXIT_OK if status == "succeeded" else EXIT_FAILED


def _shows_upload_bar(args: argparse.Namespace) -> bool:
    """--progress / --no-progress, else a bar only on a terminal (never in a log or a pipe)."""
    return sys.stderr.isatty() if args.progress is None else args.progress


def cmd_submit(args: argparse.Namespace) -> int:
    folder = Path(args.folder)
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder")
    client = _client(args)
    images = collect_images(folder, recursive=args.recursive)
    if not images:
        extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
        hint = "" if args.recursive else "; add --recursive to look in subfolders"
        raise UsageError(f"no images in {folder} (looked for {extensions}{hint})")
    key = args.idempotency_key or str(uuid.uuid4())
    size = sum(path.stat().st_size for path in images)
    plural = "s" if len(images) != 1 else ""
    _err(f"uploading {len(images)} image{plural} ({format_size(size)}) to {args.model}")
    try:
        result = client.submit_job(
            args.model,
            images,
            filenames=[path.relative_to(folder).as_posix() for path in images],
            version=args.version,
            alias=args.alias,
            top_k=args.top_k,
            webhook_url=args.webhook_url,
            idempotency_key=key,
            # A bar on a terminal (or when asked), never in a log or a pipe unless asked.
            progress=UploadBar(sys.stderr) if _shows_upload_bar(args) else None,
        )
    except KeyboardInterrupt:
        _err(
            "\ninterrupted during the upload: the job may or may not have been created.\n"
            f"  to pick it up without creating a second one, rerun with --idempotency-key {key}"
        )
        return EXIT_INTERRUPTED
    job = result.job
    print(job["id"], flush=True)
    if not result.created:
        _err(f"idempotency key {key} was used before: this is the job it created")
    if args.no_wait:
        _err(f"follow it with: mlp jobs status {job['id']} --wait")
        return EXIT_OK
    out, fmt = _output(job["id"], args.out, args.format)
    final = _follow(client, job, args.poll_interval)
    if final is None:
        return EXIT_INTERRUPTED
    return _conclude(client, final, out, fmt)


def describe_job(job: Job) -> str:
    job_id = job["id"]
    lines = [
        f"job {job_id}: {job['status']}" + (" (cancel requested)" if job.get("cancel_requested") else "")
    ]
    model = str(job.get("model", "?"))
    if job.get("version") is not None:
        model += f" v{job['version']}"
    if job.get("alias"):
        model += f" (alias {job['alias']})"
    if job.get("top_k") is not None:
        model += f", top {job['top_k']}"
    lines.append(f"  model:     {model}")
    lines.append(f"  progress:  {render_progress(job)}")
    fields: dict[str, Any] = dict(job)
    for field in ("created_at", "started_at", "finished_at"):
        if fields.get(field):
            lines.append(f"  {field.removesuffix('_at') + ':':<10} {fields[field]}")
    error = job.get("error")
    if error:
        lines.append(f"  error:     {error.get('code')}: {error.get('message')}")
    if job["status"] in FINAL_STATUSES:
        lines.append(f"  results:   mlp jobs results {job_id}")
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    client = _client(args)
    job = client.get_job(args.job_id)
    if args.wait:
        final = _follow(client, job, args.poll_interval)
        if final is None:
            return EXIT_INTERRUPTED
        job = final
    print(json.dumps(job, indent=2) if args.json else describe_job(job), flush=True)
    if args.wait:
        return EXIT_OK if job["status"] == "succeeded" else EXIT_FAILED
    return EXIT_OK


def cmd_results(args: argparse.Namespace) -> int:
    client = _client(args)
    out, fmt = _output(args.job_id, args.out, args.format)
    written = _download(client, args.job_id, out, fmt)
    if out != "-":
        _err(f"wrote {format_size(written)} of results to {out}")
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    client = _client(args)
    job = client.cancel_job(args.job_id)
    note = "" if job["status"] in FINAL_STATUSES else " (cancel requested; it stops after the current items)"
    print(f"job {job['id']}: {job['status']}{note}", flush=True)
    return EXIT_OK


# -- the command line --------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more: {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0: {text!r}")
    return value


def _connection_options(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    # Accepted before or after the command; SUPPRESS keeps a subcommand from resetting what
    # was given at the top level.
    def default(value: Any) -> Any:
        return value if top_level else argparse.SUPPRESS

    parser.add_argument(
        "--url", default=default(None), help=f"server URL (default: $MLP_URL or {DEFAULT_URL})"
    )
    parser.add_argument("--key", default=default(None), help="API key (default: $MLP_API_KEY)")
    parser.add_argument(
        "--client-id",
        default=default(None),
        help="OAuth 2.0 client id, instead of an API key (default: $MLP_CLIENT_ID)",
    )
    parser.add_argument(
        "--client-secret",
        default=default(None),
        help="OAuth 2.0 client secret (default: $MLP_CLIENT_SECRET; prefer the variable: "
        "options show in the process list)",
    )
    parser.add_argument(
        "--scope",
        default=default(None),
        help="OAuth scopes to ask for, space-separated (default: all of the application's)",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=default(60.0),
        help="seconds to wait on the network per request (default: 60)",
    )


def _results_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        "-o",
        metavar="FILE",
        help="where to write the results (default: <job-id>.jsonl or .csv; - for stdout)",
    )
    parser.add_argument(
        "--format",
        choices=RESULT_FORMATS,
        help="results format (default: csv if --out ends in .csv, else jsonl)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlp",
        description="Command-line client for mlplatform batch jobs.",
        epilog="Exit codes: 0 ok, 1 server error or job failed/cancelled, 2 usage error, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _connection_options(parser, top_level=True)
    common = argparse.ArgumentParser(add_help=False)
    _connection_options(common, top_level=False)

    groups = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")
    jobs = groups.add_parser("jobs", parents=[common], help="batch prediction jobs")
    commands = jobs.add_subparsers(dest="command", required=True, metavar="COMMAND")

    submit = commands.add_parser(
        "submit",
        parents=[common],
        help="submit a folder of images as a job, follow it and download its results",
        description=(
            "Upload the images in FOLDER (.jpg .jpeg .png .webp .bmp .gif, any case; sorted by name) as "
            "one job, print its id, then follow its progress and download its results. A fresh "
            "Idempotency-Key is sent unless given, so retries after a network error never create a "
            "second job."
        ),
    )
    submit.add_argument("folder", metavar="FOLDER", help="folder of images")
    submit.add_argument("--model", "-m", required=True, help="model name")
    pinned = submit.add_mutually_exclusive_group()
    pinned.add_argument("--version", type=_positive_int, help="model version number")
    pinned.add_argument("--alias", help="model alias, e.g. production")
    submit.add_argument("--top-k", type=_positive_int, help="number of top classes per image")
    submit.add_argument("--webhook-url", metavar="URL", help="URL the server notifies when the job finishes")
    submit.add_argument("--idempotency-key", metavar="KEY", help="reuse a key to get back the job it created")
    submit.add_argument("--recursive", "-r", action="store_true", help="include images in subfolders")
    submit.add_argument("--no-wait", action="store_true", help="print the job id and return at once")
    submit.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show an upload progress bar on stderr (default: when stderr is a terminal)",
    )
    submit.add_argument(
        "--poll-interval", type=_positive_float, default=1.0, metavar="SECONDS", help="default: 1.0"
    )
    _results_options(submit)
    submit.set_defaults(handler=cmd_submit)

    status = commands.add_parser("status", parents=[common], help="show a job")
    status.add_argument("job_id", metavar="ID")
    status.add_argument("--wait", action="store_true", help="follow the job until it finishes")
    status.add_argument("--json", action="store_true", help="print the job's JSON")
    status.add_argument(
        "--poll-interval", type=_positive_float, default=1.0, metavar="SECONDS", help="default: 1.0"
    )
    status.set_defaults(handler=cmd_status)

    results = commands.add_parser("results", parents=[common], help="download a job's results")
    results.add_argument("job_id", metavar="ID")
    _results_options(results)
    results.set_defaults(handler=cmd_results)

    cancel = commands.add_parser("cancel", parents=[common], help="cancel a job")
    cancel.add_argument("job_id", metavar="ID")
    cancel.set_defaults(handler=cmd_cancel)
    rollouts.add_commands(groups, common, _client)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a bad argument (argparse printed why)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return args.handler(args)
    except UsageError as exc:
        _err(f"mlp: {exc}")
        return EXIT_USAGE
    except ApiError as exc:
        _err(f"error {exc.code}: {exc.message}")
        for field, problem in exc.details.items():
            _err(f"  {field}: {problem if isinstance(problem, str) else json.dumps(problem)}")
        if exc.request_id:
            _err(f"  (request id {exc.request_id})")
        return EXIT_FAILED
    except ClientError as exc:
        _err(f"error: {exc}")
        return EXIT_FAILED
    except OSError as exc:
        _err(f"error: {exc}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        _err("\ninterrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
