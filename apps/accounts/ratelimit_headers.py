"""The rate-limit headers of a throttled response: the IETF `RateLimit-Policy` and `RateLimit`
(draft-ietf-httpapi-ratelimit-headers, structured-field form) next to the legacy `X-RateLimit-*`.

    RateLimit-Policy: "predict";q=1200;w=60     the policy: quota q requests per window of w s
    RateLimit: "predict";r=1187;t=17           remaining r in this window, which ends in t s

The policy is named after the throttle scope. Its quota is the one the response counted
against: the user's rate, or the key's own `rate_limit_per_minute` when that is closer to
its limit (apps/accounts/throttling.py), as the legacy headers always did.
"""

from apps.accounts.ratelimit import Verdict


def sf_string(text: str) -> str:
    """`text` as a structured-field String (RFC 9651 §3.3.3): quoted, `\\` and `"` escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ratelimit_headers(verdict: Verdict, *, policy: str) -> dict[str, str]:
    """Every rate-limit header of a response in `policy`'s scope."""
    name = sf_string(policy)
    return {
        "X-RateLimit-Limit": str(verdict.limit),
        "X-RateLimit-Remaining": str(verdict.remaining),
        "X-RateLimit-Reset": str(verdict.reset),
        "RateLimit-Policy": f"{name};q={verdict.limit};w={verdict.window}",
        "RateLimit": f"{name};r={verdict.remaining};t={verdict.resets_in}",
    }
