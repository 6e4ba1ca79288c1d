"""The GitLab side of the access tests: groups for the demo roles, members direct and
inherited, a blocked one, a project for access-request issues; and a bot that uses them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from marvin.access import sync
from tests.fakes.gitlab import FakeGitLab
from tests.harness import Bot

TOKEN = "glpat-marvin-access"
TRACKER = "gl-infra/infrastructure"
GROUPS = {
    "production": "gl-infra/production-engineers",
    "support": "gl-infra/support",
    "release-manager": "gl-infra/delivery",
}
# Enough members in one group that python-gitlab must follow a second page (100 a page).
MANY = 105


def seed(fake: FakeGitLab) -> None:
    fake.add_user("marvin", token=TOKEN, admin=True, bot=True)
    for name in ("alice", "bob", "carol", "dave", "erin", "frank", "mallory", "zed"):
        fake.add_user(name)
    infra = fake.add_group("gl-infra")
    production = fake.add_group("production-engineers", parent=infra)
    support = fake.add_group("support", parent=infra)
    delivery = fake.add_group("delivery", parent=infra)
    fake.add_member(production, "alice", "maintainer")
    fake.add_member(production, "mallory", "developer")
    fake.block_user("mallory")  # blocked: holds nothing through the group
    fake.add_member(infra, "zed", "reporter")  # inherited by every subgroup
    fake.add_member(delivery, "dave", "developer")
    fake.add_member(support, "erin", "developer")
    for i in range(MANY):
        fake.add_user(f"support{i:03d}")
        fake.add_member(support, f"support{i:03d}", "reporter")
    fake.add_project(TRACKER, visibility="private")


def sections(fake: FakeGitLab, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "directory": {"backend": "gitlab", "groups": GROUPS},
        "gitlab": {"url": fake.url, "timeout_seconds": 2},
    }
    for key, value in extra.items():
        out[key] = {**out.get(key, {}), **value}
    return out


@pytest.fixture
async def gitlab() -> AsyncIterator[FakeGitLab]:
    async with FakeGitLab() as fake:
        seed(fake)
        yield fake


@pytest.fixture
def make(bot_factory: Callable[..., Bot], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Bot]:
    """`bot_factory`, with Marvin's token in the environment, where GitLab's is read from."""
    monkeypatch.setenv("GITLAB_TOKEN", TOKEN)
    return bot_factory


@pytest.fixture
async def gitlab_bot(make: Callable[..., Bot], gitlab: FakeGitLab) -> Bot:
    """A bot on the gitlab registry, its mirror synced once (as the job does at start)."""
    bot = make(**sections(gitlab))
    await sync.run(bot.services)
    return bot
