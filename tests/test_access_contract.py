"""One contract for the roles registry, run against both implementations: the demo roles
file, and GitLab groups holding the same people in the same roles, mirrored."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from marvin.access import sync
from marvin.adapters.directory import Directory
from tests.access_world import TOKEN, sections
from tests.fakes.gitlab import FakeGitLab
from tests.harness import Bot, example_data, make_bot

DEMO = example_data()["directory"]
MEMBERS: dict[str, list[str]] = {name: role["members"] for name, role in DEMO["roles"].items()}
NAMES = {p["handle"]: p["name"] for p in DEMO["people"]}


@pytest.fixture(params=["file", "gitlab"])
async def directory(
    request: pytest.FixtureRequest, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Directory]:
    if request.param == "file":
        bot = make_bot(sqlite_url)
        yield bot.services.directory
        await bot.services.store.dispose()
        return
    monkeypatch.setenv("GITLAB_TOKEN", TOKEN)
    async with FakeGitLab() as fake:
        fake.add_user("marvin", token=TOKEN, admin=True, bot=True)
        for handle, name in NAMES.items():
            fake.add_user(handle, name=name)
        fake.add_group("roles")
        for role, members in MEMBERS.items():
            group = fake.add_group(role, parent="roles")
            for who in members:
                fake.add_member(group, who)
        groups = {role: f"roles/{role}" for role in MEMBERS}
        bot: Bot = make_bot(sqlite_url, **sections(fake, directory={"groups": groups}))
        await sync.run(bot.services)
        yield bot.services.directory
        await bot.services.store.dispose()


async def test_by_email_and_handle(directory: Directory) -> None:
    alice = await directory.by_email("Alice@Example.com")
    assert alice is not None and alice.handle == "alice" and alice.name == "Alice Anders"
    assert set(alice.roles) == {"production", "ci-runner-access"}
    assert alice.environments == ("production", "staging", "runners")
    assert set(alice.grants) == {"feature_flags", "production_ssh", "production_db", "runner_ssh"}
    assert await directory.by_handle("alice") == alice
    assert await directory.by_gitlab_username("alice") == alice
    assert await directory.by_email("nobody@example.com") is None
    assert await directory.by_handle("nobody") is None


async def test_support_has_staging_as_production(directory: Directory) -> None:
    erin = await directory.by_handle("erin")
    assert erin is not None and erin.environments == ("production", "staging")
    assert erin.roles == ("support",)


async def test_role_members(directory: Directory) -> None:
    members = await directory.role_members("developer") or []
    assert sorted(p.handle for p in members) == ["bob", "carol"]
    assert await directory.role_members("nope") is None
    assert [r.name for r in directory.roles()] == list(MEMBERS)


async def test_everyone_holds_a_role_through_a_source(directory: Directory) -> None:
    people = {p.handle: p for p in await directory.people()}
    assert set(people) == set(NAMES)
    assert all(h.via for p in people.values() for h in p.holdings)
