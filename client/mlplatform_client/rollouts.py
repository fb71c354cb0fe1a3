"""`mlp rollout start|status|promote|abort`: canary splits and shadows on a model's alias.

mlp rollout start resnet --canary 2:10 --shadow 3 --shadow-percent 100
mlp rollout status resnet            # the active rollout, with its comparison
mlp rollout promote resnet 7         # the alias moves to the candidate
mlp rollout abort resnet 7 --reason "p95 too high"
"""

import argparse
import json
import urllib.parse
from collections.abc import Callable
from typing import Any

from mlplatform_client.api import Client, ClientError

EXIT_OK = 0


def _path(model: str, suffix: str = "") -> str:
    return f"/api/v1/models/{urllib.parse.quote(model, safe='')}/rollouts/{suffix}"


def _candidate(text: str) -> dict[str, int]:
    """VERSION:WEIGHT, e.g. 2:10 (version 2 takes 10% of routing keys)."""
    version, sep, weight = text.partition(":")
    if not sep or not version.isdigit() or not weight.lstrip("-").isdigit():
        raise argparse.ArgumentTypeError(f"expected VERSION:WEIGHT, e.g. 2:10, not {text!r}")
    return {"version": int(version), "weight": int(weight)}


def start_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"alias": args.alias, "candidates": args.canary or []}
    if args.shadow is not None:
        body["shadow_version"] = args.shadow
        body["shadow_percent"] = args.shadow_percent
    options = (
        "max_error_rate",
        "max_latency_p95_ms",
        "min_requests",
        "max_shadow_disagreement",
        "shadow_min_pairs",
    )
    body.update({name: getattr(args, name) for name in options if getattr(args, name) is not None})
    return body


def describe(rollout: dict[str, Any], comparison: dict[str, Any] | None = None) -> str:
    """A rollout (and its comparison) as a few lines of text."""
    split = [f"v{rollout['primary']} {rollout['primary_weight']}% (primary)"]
    split += [f"v{c['version']} {c['weight']}% (canary)" for c in rollout["candidates"]]
    lines = [
        f"rollout {rollout['id']} of {rollout['model']}@{rollout['alias']}: {rollout['status']}"
        + (f" ({rollout['reason']})" if rollout.get("reason") else ""),
        "  split: " + ", ".join(split),
    ]
    if rollout.get("shadow") is not None:
        lines.append(
            f"  shadow: v{rollout['shadow']} at {rollout['shadow_percent']}%, {rollout['shadow_status']}, "
            f"{rollout['shadow_dropped']} dropped"
            + (f" ({rollout['shadow_reason']})" if rollout["shadow_reason"] else "")
        )
    for stats in (comparison or {}).get("versions", []):
        lines.append(
            f"  v{stats['version']} {stats['route']}: {stats['requests']} requests, error rate "
            f"{stats['error_rate']:.3f}, p50 {stats['latency_p50_ms']} ms, p95 {stats['latency_p95_ms']} ms"
        )
    pairs = (comparison or {}).get("shadow")
    if pairs:
        lines.append(
            f"  shadow vs primary: {pairs['comparable']} pairs, top-1 agreement {pairs['agreement']}, "
            f"mean |score diff| {pairs['mean_abs_score_diff']}"
        )
    return "\n".join(lines)


def cmd_start(client: Client, args: argparse.Namespace) -> int:
    rollout = client.request_json("POST", _path(args.model), start_body(args))
    print(describe(rollout), flush=True)
    return EXIT_OK


def cmd_status(client: Client, args: argparse.Namespace) -> int:
    rollout_id = args.rollout_id
    if rollout_id is None:
        listed = client.request_json("GET", _path(args.model), retry=True)
        active = [r for r in listed.get("results", []) if r["status"] == "active"]
        if not active:
            raise ClientError(f"{args.model} has no active rollout; name one by its id")
        rollout_id = active[0]["id"]
    rollout = client.request_json("GET", _path(args.model, f"{rollout_id}/"), retry=True)
    comparison = client.request_json("GET", _path(args.model, f"{rollout_id}/comparison"), retry=True)
    if args.json:
        print(json.dumps({"rollout": rollout, "comparison": comparison}, indent=2), flush=True)
    else:
        print(describe(rollout, comparison), flush=True)
    return EXIT_OK


def cmd_promote(client: Client, args: argparse.Namespace) -> int:
    body = {"version": args.version} if args.version is not None else {}
    rollout = client.request_json("POST", _path(args.model, f"{args.rollout_id}/promote"), body)
    print(describe(rollout), flush=True)
    return EXIT_OK


def cmd_abort(client: Client, args: argparse.Namespace) -> int:
    body = {"reason": args.reason} if args.reason else {}
    rollout = client.request_json("POST", _path(args.model, f"{args.rollout_id}/abort"), body)
    print(describe(rollout), flush=True)
    return EXIT_OK


def add_commands(
    groups: Any, common: argparse.ArgumentParser, make_client: Callable[[argparse.Namespace], Client]
) -> None:
    """Register `mlp rollout ...` under the top-level command group."""

    def handler(command: Callable[[Client, argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        return lambda args: command(make_client(args), args)

    rollout = groups.add_parser("rollout", parents=[common], help="canary splits and shadows on an alias")
    commands = rollout.add_subparsers(dest="command", required=True, metavar="COMMAND")
    start = commands.add_parser("start", parents=[common], help="start a rollout on an alias")
    start.add_argument("model", metavar="MODEL")
    start.add_argument("--alias", default="production", help="default: production")
    start.add_argument(
        "--canary",
        type=_candidate,
        action="append",
        metavar="VERSION:WEIGHT",
        help="a candidate (repeatable)",
    )
    start.add_argument(
        "--shadow", type=int, metavar="VERSION", help="a version that answers again, off the path"
    )
    start.add_argument("--shadow-percent", type=int, default=100, metavar="N", help="default: 100")
    start.add_argument("--max-error-rate", type=float, metavar="RATE", help="guard rail, 0-1")
    start.add_argument("--max-latency-p95-ms", type=float, metavar="MS", help="guard rail")
    start.add_argument("--min-requests", type=int, metavar="N", help="answers before the guard rails apply")
    start.add_argument("--max-shadow-disagreement", type=float, metavar="RATE", help="shadow guard rail, 0-1")
    start.add_argument("--shadow-min-pairs", type=int, metavar="N", help="pairs before it applies")
    start.set_defaults(handler=handler(cmd_start))

    status = commands.add_parser("status", parents=[common], help="show a rollout and its comparison")
    status.add_argument("model", metavar="MODEL")
    status.add_argument("rollout_id", metavar="ID", type=int, nargs="?", help="default: the active one")
    status.add_argument("--json", action="store_true", help="print the JSON")
    status.set_defaults(handler=handler(cmd_status))

    promote = commands.add_parser("promote", parents=[common], help="move the alias to the candidate")
    promote.add_argument("model", metavar="MODEL")
    promote.add_argument("rollout_id", metavar="ID", type=int)
    promote.add_argument("--version", type=int, help="the candidate to promote (if several)")
    promote.set_defaults(handler=handler(cmd_promote))

    abort = commands.add_parser("abort", parents=[common], help="end the rollout; the alias stays")
    abort.add_argument("model", metavar="MODEL")
    abort.add_argument("rollout_id", metavar="ID", type=int)
    abort.add_argument("--reason", help="recorded on the rollout")
    abort.set_defaults(handler=handler(cmd_abort))
