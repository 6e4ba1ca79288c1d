"""Identity follows the registry: an account whose chat e-mail stops being the linked
person's loses the link, and every role and grant with it, until it is linked again."""

from __future__ import annotations

from marvin.store.tables import Account, AuditRecord, OutboxMessage
from tests.harness import Bot


async def say_as(bot: Bot, who: str, email: str, text: str) -> str:
    inv = bot.invocation(who, text).model_copy(update={"user_email": email})
    reply = await bot.pipeline.handle(inv)
    return f"{reply.denied_by or 'ok'}: {reply.text}"


async def test_an_email_changed_to_someone_elses_drops_the_link(any_bot: Bot) -> None:
    bot = any_bot
    assert (await bot.say("bob", "feature set new_nav true --staging")).ok
    said = await say_as(bot, "bob", "mallory@evil.example", "feature set new_nav false --staging")
    assert said.startswith("registration:") and "mallory@evil.example" in said
    [account] = await bot.rows(Account)
    assert (account.email, account.directory_handle, account.gitlab_username) == (
        "mallory@evil.example",
        None,
        None,
    )
    [unlinked] = await bot.rows(AuditRecord, AuditRecord.outcome == "unlinked")
    assert unlinked.details["was"] == "bob"
    texts = [m.payload["text"] for m in await bot.rows(OutboxMessage)]
    assert any(
        "its link to @bob, and every role and grant with it, is suspended" in t for t in texts
    )
    whoami = await say_as(bot, "bob", "mallory@evil.example", "whoami")
    assert "Roles: none." in whoami and "Grants: none." in whoami


async def test_an_email_changed_to_another_known_person_is_not_relinked_silently(
    bot: Bot,
) -> None:
    await bot.say("bob", "whoami")
    said = await say_as(bot, "bob", "alice@example.com", "feature delete x --staging")
    assert said.startswith("registration:")
    [account] = await bot.rows(Account)
    assert account.directory_handle is None  # not alice's rights either


async def test_the_same_email_keeps_the_link(bot: Bot) -> None:
    await bot.say("bob", "whoami")
    said = await say_as(bot, "bob", "bob@example.com", "feature set new_nav true --staging")
    assert said.startswith("ok:")
    assert await bot.rows(AuditRecord, AuditRecord.outcome == "unlinked") == []
