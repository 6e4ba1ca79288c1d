"""Two people changing one flag at once: the lock makes them take turns.

Each change and the checks that decide it run in one transaction holding the flag's rows,
so no change is decided on state another change is about to replace.
"""

from __future__ import annotations

import asyncio

from marvin.store.tables import FlagChange, LocalFlag
from marvin.wiring import build_pipeline
from tests.harness import Bot


async def test_concurrent_gate_additions_are_all_kept(any_bot: Bot) -> None:
    bot = any_bot
    assert (await bot.say("alice", "feature set gates true --staging")).ok
    users = [f"user{i}" for i in range(8)]
    for who in ("alice", "bob"):
        await bot.say(who, "whoami")  # accounts exist before the race
    invocations = [
        bot.invocation("alice" if i % 2 else "bob", f"feature set gates true --user {u}")
        for i, u in enumerate(users)
    ]
    # Separate pipelines, as separate workers or replicas would be.
    replies = await asyncio.gather(*(build_pipeline(bot.services).handle(i) for i in invocations))
    assert all(r.ok for r in replies), [r.text for r in replies]
    [flag] = await bot.rows(
        LocalFlag, LocalFlag.name == "gates", LocalFlag.environment == "production"
    )
    assert sorted(flag.actors) == sorted(f"user:{u}" for u in users)


async def test_a_raise_never_slips_in_after_a_concurrent_switch_off(any_bot: Bot) -> None:
    """Off resets the soak. A raise decided on the old (soaked) state must not land after it."""
    bot = any_bot
    for round_ in range(4):
        flag = f"race{round_}"
        assert (await bot.say("alice", f"feature set {flag} true --staging")).ok
        assert (await bot.say("bob", f"feature set {flag} 1 --actors")).ok
        bot.clock.advance(hours=25)
        off = bot.invocation("alice", f"feature set {flag} false")
        up = bot.invocation("bob", f"feature set {flag} 50 --actors")
        first, second = (off, up) if round_ % 2 else (up, off)
        replies = await asyncio.gather(
            build_pipeline(bot.services).handle(first), build_pipeline(bot.services).handle(second)
        )
        by_id = {r.request_id: r for r in replies}
        assert by_id[off.request_id].ok
        changes = sorted(
            await bot.rows(
                FlagChange, FlagChange.name == flag, FlagChange.environment == "production"
            ),
            key=lambda c: c.id,
        )
        if by_id[up.request_id].ok:
            # The raise won the race, so it must come before the switch-off.
            assert [c.exposure_after for c in changes][-2:] == [50, 0]
        else:
            assert by_id[up.request_id].denied_by == "ceiling"
        [state] = await bot.rows(
            LocalFlag, LocalFlag.name == flag, LocalFlag.environment == "production"
        )
        assert state.percentage_of_actors is None and not state.enabled
