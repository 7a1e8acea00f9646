"""Which API errors are verdicts on the object (a ValidationFailed), and which
are the installation's, the quota's or the server's (retry, never a verdict)."""

from __future__ import annotations

import pytest

from prewarm.k8s.core import ApiError

RBAC = (
    'pods is forbidden: User "system:serviceaccount:prewarm:prewarm" cannot create '
    'resource "pods" in API group "" in the namespace "team-a"'
)
POD_SECURITY = (
    'pods "x" is forbidden: violates PodSecurity "restricted:latest": '
    "allowPrivilegeEscalation != false"
)
QUOTA = 'pods "x" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2'
WEBHOOK = 'admission webhook "policy.example.com" denied the request: no latest tags'

# (case, status, message, rejected)
CASES = {
    "invalid (422)": (422, "spec.containers[0].image: Required value", True),
    "bad request (400)": (400, "json: cannot unmarshal", True),
    "PodSecurity admission (403)": (403, POD_SECURITY, True),
    "a webhook's denial (403)": (403, WEBHOOK, True),
    "the operator lacks a permission (403)": (403, RBAC, False),
    "a full quota (403)": (403, QUOTA, False),
    "a conflict (409)": (409, "the object has been modified", False),
    "throttled (429)": (429, "too many requests", False),
    "a server error (500)": (500, "etcdserver: request timed out", False),
    "unavailable (503)": (503, "the server is currently unable", False),
}  # fmt: skip


@pytest.mark.parametrize(("status", "message", "rejected"), CASES.values(), ids=CASES.keys())
def test_only_verdicts_on_the_object_are_rejections(
    status: int, message: str, rejected: bool
) -> None:
    assert ApiError(status, "", message).rejected is rejected


def test_rbac_and_quota_are_told_apart() -> None:
    assert ApiError(403, "Forbidden", RBAC).forbidden_by_rbac
    assert not ApiError(403, "Forbidden", QUOTA).forbidden_by_rbac
    assert ApiError(403, "Forbidden", QUOTA).quota_exceeded
