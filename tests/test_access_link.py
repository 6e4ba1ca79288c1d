"""An account whose e-mail matched nobody in the registry asks to be linked to a GitLab
user; a production engineer confirms it."""

from __future__ import annotations

from marvin.store.tables import Account, AccountLink, OutboxMessage
from tests.harness import Bot


async def test_no_match_offers_account_link(bot: Bot) -> None:
    reply = await bot.say("zed", "whoami", dm=True)
    assert "say `account link <gitlab-username>`" in reply.text


async def test_a_link_confirmed_by_a_production_engineer(bot: Bot) -> None:
    await bot.say("zed", "whoami", dm=True)
    asked = await bot.say("zed", "account link frank", dm=True)
    assert asked.ok
    assert "confirm that you are GitLab user frank (request 1)" in asked.text
    announced = [m.payload["text"] for m in await bot.rows(OutboxMessage)]
    assert any("asks to be linked to GitLab user frank" in t for t in announced)
    # Nothing held until it is confirmed.
    assert "not linked" in (await bot.say("zed", "access mine")).text
    assert (await bot.say("bob", "account confirm 1")).denied_by == "roles"
    confirmed = await bot.say("alice", "account confirm 1")
    assert confirmed.ok and "Linked zed's account to GitLab user frank" in confirmed.text
    (account,) = await bot.rows(Account, Account.chat_user_id == "U-zed")
    assert (account.directory_handle, account.gitlab_username) == ("frank", "frank")
    (link,) = await bot.rows(AccountLink)
    assert link.confirmed_by == "alice"
    mine = await bot.say("zed", "access mine")
    assert "engineering-manager, through the roles file" in mine.text
    again = await bot.say("alice", "account confirm 1")
    assert "already confirmed by @alice" in again.text


async def test_link_refusals(bot: Bot) -> None:
    unknown = await bot.say("zed", "account link nobody")
    assert "GitLab user nobody is not in the roles registry" in unknown.text
    linked = await bot.say("carol", "account link frank")
    assert "You're already linked to GitLab user carol" in linked.text
    missing = await bot.say("alice", "account confirm 7")
    assert "There's no link request 7" in missing.text
    bad = await bot.say("zed", "account link bob;drop")
    assert not bad.ok and bad.kind == "usage"
