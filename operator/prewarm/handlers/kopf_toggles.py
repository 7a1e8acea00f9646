"""kopf's toggle sets wake their waiters only when the set's state changes.

kopf holds back every event handler until every index holds its initial list
(`operator_indexed`, a ToggleSet of `all`): each listed object gets a toggle
when its worker is spawned, drops it once indexed, then waits for the whole
set to be on. kopf 1.45's ToggleSet wakes every waiter on every toggle made
or dropped, although the set stays off until the last one goes: a fresh
operator over N objects wakes about N * N / 2 waiters, each re-checking the
set. With 10,000 workspaces and their pods that took minutes of CPU and
hundreds of MiB before the first decision (docs/benchmarks.md, "Restart").

A waiter waits for the set's state (`is_on()`), which depends only on its
toggles; making or dropping one leaves the state as it was except for the one
that flips it. So waking the waiters only then is the same behaviour at
O(N). Toggle.turn_to (a toggle of the set changing its own state) is left as
it is: it still wakes every waiter, as before.
"""

from __future__ import annotations

from collections.abc import Iterable

from kopf._cogs.aiokits import aiotoggles

_installed: dict[str, bool] = {}


async def _make_toggle(
    self: aiotoggles.ToggleSet, __val: bool = False, *, name: str | None = None
) -> aiotoggles.Toggle:
    toggle = aiotoggles.Toggle(__val, name=name, condition=self._condition)
    async with self._condition:
        before = self.is_on()
        self._toggles.add(toggle)
        if self.is_on() != before:
            self._condition.notify_all()
    return toggle


async def _drop_toggle(self: aiotoggles.ToggleSet, toggle: aiotoggles.Toggle) -> None:
    async with self._condition:
        before = self.is_on()
        self._toggles.discard(toggle)
        if self.is_on() != before:
            self._condition.notify_all()


async def _drop_toggles(self: aiotoggles.ToggleSet, toggles: Iterable[aiotoggles.Toggle]) -> None:
    async with self._condition:
        before = self.is_on()
        self._toggles.difference_update(toggles)
        if self.is_on() != before:
            self._condition.notify_all()


def install() -> None:
    """Replace the three methods on kopf's ToggleSet (once; every set, made
    before or after, uses them)."""
    if _installed.get("done"):
        return
    cls = aiotoggles.ToggleSet
    cls.make_toggle = _make_toggle  # type: ignore[method-assign]
    cls.drop_toggle = _drop_toggle  # type: ignore[method-assign]
    cls.drop_toggles = _drop_toggles  # type: ignore[method-assign]
    _installed["done"] = True
