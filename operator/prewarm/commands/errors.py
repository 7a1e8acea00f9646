"""The CLI's exit codes and the one line it prints for each failure.

The codes are stable (docs/reference/settings.md, "CLI"): scripts may rely on
them. Every failure is one line on stderr, `prewarm COMMAND: ...`, never a
traceback.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prewarm.k8s.client import ApiError


class Exit(IntEnum):
    OK = 0
    FAILED = 1  # the answer is no (a claim Failed or not settled in time), or anything else
    USAGE = 2  # bad flags (argparse), no kubeconfig or unknown context, no ledger URL
    UNREACHABLE = 3  # the API server did not answer (refused, DNS, TLS, timeout)
    FORBIDDEN = 4  # the API server said 401 or 403
    NOT_FOUND = 5  # the API server said 404 (a namespace, a preset)
    REFUSED = 6  # any other error answer of the API server (400, 409, 422, 5xx)
    LEDGER_UNREACHABLE = 7  # PostgreSQL did not answer
    INTERRUPTED = 130  # Ctrl-C
    TERMINATED = 143  # SIGTERM


class CliError(Exception):
    """A failure to print as one line and exit with `code`."""

    def __init__(self, message: str, code: Exit) -> None:
        super().__init__(" ".join(message.split()))
        self.code = code


def _api_error(error: ApiError) -> CliError:
    message = " ".join(error.message.split()) or error.reason
    if error.status in (401, 403):
        return CliError(f"forbidden ({error.status}): {message}", Exit.FORBIDDEN)
    if error.status == 404:
        return CliError(f"not found: {message}", Exit.NOT_FOUND)
    return CliError(
        f"the API server refused ({error.status} {error.reason}): {message}", Exit.REFUSED
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def classify(error: BaseException) -> CliError | None:
    """The one line and exit code of a failure; None if it is not one we know."""
    # Imported here: `prewarm run` and `prewarm agent` need only Exit.
    from prewarm.k8s.client import UNREACHABLE, ApiError, ClusterConfigError
    from prewarm.ledger.migrate import MigrationError
    from prewarm.ledger.repository import LedgerUnavailable

    if isinstance(error, CliError):
        return error
    if isinstance(error, ApiError):
        return _api_error(error)
    if isinstance(error, ClusterConfigError):
        return CliError(
            f"no cluster to talk to: {error} (use --kubeconfig, --context or KUBECONFIG)",
            Exit.USAGE,
        )
    if isinstance(error, LedgerUnavailable):
        return CliError(
            f"the ledger (PostgreSQL) is unreachable: {error}. If it is only reachable "
            "inside the cluster: kubectl exec deploy/prewarm -n NAMESPACE -- prewarm ...",
            Exit.LEDGER_UNREACHABLE,
        )
    if isinstance(error, MigrationError):
        return CliError(f"the ledger's migrations disagree: {error}", Exit.FAILED)
    if isinstance(error, UNREACHABLE):
        return CliError(f"cannot reach the API server: {_first_line(error)}", Exit.UNREACHABLE)
    return None
