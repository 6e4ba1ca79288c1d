"""Issue references as people paste them from GitLab: `#3`, `group/project#3`, the URL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from marvin.adapters.errors import Refused
from marvin.adapters.gitlab import GitLabClient
from marvin.adapters.gitlab_issues import GitLabIssueTracker
from marvin.adapters.issue_refs import IssueRef, parse_issue_ref
from tests.fakes.gitlab import FakeGitLab
from tests.harness import Bot

PROJECT = "gl-infra/production"
TOKEN = "glpat-marvin-bot"


@pytest.mark.parametrize(
    ("ref", "parsed"),
    [
        ("#3", IssueRef(None, 3)),
        ("3", IssueRef(None, 3)),
        (" gl-infra/production#3 ", IssueRef(PROJECT, 3)),
        ("gitlab-org/sub.group/my-project#12", IssueRef("gitlab-org/sub.group/my-project", 12)),
        ("https://gitlab.com/gl-infra/production/-/issues/3", IssueRef(PROJECT, 3)),
        ("https://gitlab.com/gl-infra/production/-/issues/3/", IssueRef(PROJECT, 3)),
        ("https://gitlab.com/gl-infra/production/-/issues/incident/3", IssueRef(PROJECT, 3)),
        ("https://gitlab.com/gl-infra/production/-/work_items/3", IssueRef(PROJECT, 3)),
        ("https://gitlab.example.com/gl-infra/production/issues/3", IssueRef(PROJECT, 3)),
    ],
)
def test_references_people_paste(ref: str, parsed: IssueRef) -> None:
    assert parse_issue_ref(ref) == parsed


@pytest.mark.parametrize(
    "ref",
    [
        "",
        "#",
        "three",
        "production#3",  # a project path has a namespace
        "gl-infra/production#",
        "#1234567890",
        "https://gitlab.com/gl-infra/production/-/merge_requests/3",
        "https://gitlab.com/gl-infra/production/-/issues/3?x=1",
        "https:///gl-infra/production/-/issues/3",
        "gl-infra/production#3; DROP TABLE issues",
    ],
)
def test_what_is_no_reference(ref: str) -> None:
    assert parse_issue_ref(ref) is None


def test_project_paths_compare_without_case() -> None:
    assert IssueRef("GL-Infra/Production", 3).in_project(PROJECT)
    assert not IssueRef("gl-infra/other", 3).in_project(PROJECT)
    assert IssueRef(None, 3).in_project(None)
    assert not IssueRef(PROJECT, 3).in_project(None)


@pytest.fixture
async def gitlab() -> AsyncIterator[FakeGitLab]:
    async with FakeGitLab() as fake:
        marvin = fake.add_user("marvin", token=TOKEN, bot=True)
        fake.add_user("alice")
        fake.add_group("gl-infra", visibility="public")
        project = fake.add_project(PROJECT, visibility="public")
        fake.add_member(project, marvin, "developer")
        yield fake


async def _tracker_of(bot: Bot) -> Any:
    return bot.services.issues


async def test_the_embedded_tracker_reads_its_own_project_path_and_refuses_another(
    bot_factory: Any,
) -> None:
    bot: Bot = bot_factory(issues={"project": PROJECT})
    ref = await bot.add_issue("Roll new_nav out", ["deviation::approved"])
    number = ref.lstrip("#")
    tracker = await _tracker_of(bot)
    for same in (ref, f"{PROJECT}#{number}", f"https://gitlab.com/{PROJECT}/-/issues/{number}"):
        assert (await tracker.get(same)).title == "Roll new_nav out"
    with pytest.raises(Refused) as raised:
        await tracker.get(f"gl-infra/other#{number}")
    assert "holds only its own issues" in raised.value.shown()
    assert f"{PROJECT}#{number}" in raised.value.shown()


async def test_without_a_project_the_embedded_tracker_takes_only_short_references(
    bot: Bot,
) -> None:
    ref = await bot.add_issue("Roll new_nav out", [])
    with pytest.raises(Refused) as raised:
        await (await _tracker_of(bot)).get(f"{PROJECT}{ref}")
    assert f"(use {ref})" in raised.value.shown()


async def test_the_gitlab_tracker_takes_its_issues_url(gitlab: FakeGitLab) -> None:
    tracker = GitLabIssueTracker(GitLabClient(gitlab.url, TOKEN, 1), PROJECT)
    made = await tracker.create(title="Roll out", description="d", labels=["x"], author="alice")
    iid = made.ref.lstrip("#")
    for ref in (made.ref, f"{PROJECT}#{iid}", f"{gitlab.url}/{PROJECT}/-/issues/{iid}"):
        assert (await tracker.get(ref)).title == "Roll out"
    with pytest.raises(Refused):
        await tracker.get(f"https://gitlab.com/gl-infra/other/-/issues/{iid}")
