"""The GitLab fake, driven through the real python-gitlab client as Marvin drives it.

python-gitlab is synchronous; every call goes through ``asyncio.to_thread`` so the fake's
event loop keeps serving while the client waits.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

import gitlab
import gitlab.exceptions as glexc
import pytest
import requests

from tests.fakes.gitlab import FakeGitLab, GitLabGroup, GitLabProject, cron_valid

ADMIN, DEV, REP, GUEST, MAINT, OUTSIDER = (
    "admin-token",
    "dev-token",
    "reporter-token",
    "guest-token",
    "maint-token",
    "outsider-token",
)
PROJECT = "ops/platform/app"
ENCODED = quote(PROJECT, safe="")


async def run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A python-gitlab call off the event loop, as Marvin makes it. ``Any``: python-gitlab's
    ``http_*`` return unions (dict | Response, list | GitlabList) that tests index freely."""
    return await asyncio.to_thread(fn, *args, **kwargs)


def _msg(error: glexc.GitlabError) -> Any:
    """What GitLab put in ``message``/``error``: a string, a list or a dict (python-gitlab
    types it ``str``)."""
    return error.error_message


class World:
    def __init__(self, fake: FakeGitLab) -> None:
        self.fake = fake
        self.admin = fake.add_user("root", name="Administrator", token=ADMIN, admin=True)
        self.alice = fake.add_user("alice", name="Alice Liddell", token=DEV)
        self.bob = fake.add_user("bob", name="Bob Builder", token=REP, public_email="bob@pub.io")
        self.carol = fake.add_user("carol", name="Carol Danvers", token=GUEST)
        self.dave = fake.add_user("dave", name="Dave Grohl", token=MAINT)
        self.eve = fake.add_user("eve", name="Eve Online", token=OUTSIDER)
        self.ops: GitLabGroup = fake.add_group("ops", name="Operations")
        self.platform: GitLabGroup = fake.add_group("platform", parent=self.ops)
        self.project: GitLabProject = fake.add_project(PROJECT, branches=["staging"])
        fake.add_member(self.ops, self.dave, "maintainer")
        fake.add_member(self.ops, self.alice, "reporter")
        fake.add_member(self.platform, self.alice, "developer")  # inherited max wins
        fake.add_member(self.project, self.bob, "reporter")
        fake.add_member(self.project, self.carol, "guest")

    def gl(self, token: str = ADMIN, **kwargs: Any) -> gitlab.Gitlab:
        return gitlab.Gitlab(url=self.fake.url, private_token=token, **kwargs)


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with FakeGitLab() as fake:
        yield World(fake)
        assert fake.internal_errors == []  # every answer came from a modelled path


# ---------------------------------------------------------------------------- auth


async def test_unknown_token_is_401(world: World) -> None:
    with pytest.raises(glexc.GitlabAuthenticationError) as err:
        await run(world.gl("nope").auth)
    assert err.value.response_code == 401
    assert _msg(err.value) == "401 Unauthorized"


async def test_bearer_token_and_current_user(world: World) -> None:
    gl = gitlab.Gitlab(url=world.fake.url, oauth_token=DEV)
    await run(gl.auth)
    assert gl.user is not None and gl.user.username == "alice"
    assert world.fake.calls("GET /user")[0].username == "alice"


async def test_blocked_users_token_is_refused(world: World) -> None:
    world.fake.block_user("eve")
    with pytest.raises(glexc.GitlabAuthenticationError):
        await run(world.gl(OUTSIDER).auth)


# ---------------------------------------------------------------------------- instance features


async def test_feature_set_true_exact_answer(world: World) -> None:
    feature = await run(world.gl().features.set, "new_library", True)
    assert feature.asdict() == {
        "name": "new_library",
        "state": "on",
        "gates": [{"key": "boolean", "value": True}],
        "definition": None,
    }
    assert world.fake.calls("POST /features/new_library")[0].status == 201


async def test_feature_percentages(world: World) -> None:
    gl = world.gl()
    time_ = await run(gl.features.set, "by_time", 25)
    assert time_.state == "conditional"
    assert time_.gates == [
        {"key": "boolean", "value": False},
        {"key": "percentage_of_time", "value": 25},
    ]
    actors = await run(gl.features.set, "by_actors", 42, key="percentage_of_actors")
    assert actors.gates[1] == {"key": "percentage_of_actors", "value": 42}
    replaced = await run(gl.features.set, "by_actors", 7, key="percentage_of_actors")
    assert replaced.gates == [
        {"key": "boolean", "value": False},
        {"key": "percentage_of_actors", "value": 7},
    ]
    fractional = await run(gl.features.set, "tiny", "0.5")
    assert fractional.gates[1] == {"key": "percentage_of_time", "value": 0.5}
    hundred = await run(gl.features.set, "tiny", 100, key="percentage_of_actors")
    assert hundred.gates == [{"key": "boolean", "value": True}]  # 100 means enable


async def test_feature_actors_accumulate_and_resolve(world: World) -> None:
    gl, fake = world.gl(), world.fake
    await run(gl.features.set, "ff", True, user="alice,bob")
    await run(gl.features.set, "ff", True, project=PROJECT, group="ops")
    await run(gl.features.set, "ff", True, feature_group="gitlab_team_members")
    answer = await run(
        gl.http_post, "/features/ff", post_data={"value": True, "namespace": "carol"}
    )
    assert answer["state"] == "conditional"
    assert answer["gates"] == [
        {"key": "boolean", "value": False},
        {
            "key": "actors",
            "value": [
                f"User:{world.alice.id}",
                f"User:{world.bob.id}",
                f"Project:{world.project.id}",
                f"Group:{world.ops.id}",
                f"Namespaces::UserNamespace:{world.carol.namespace_id}",
            ],
        },
        {"key": "groups", "value": ["gitlab_team_members"]},
    ]
    repo = await run(
        gl.http_post, "/features/ff", post_data={"value": "true", "repository": f"{PROJECT}.git"}
    )
    assert repo["gates"][1]["value"][-1].startswith("Repository:@hashed/")

    # false with actors removes only those actors
    after = await run(gl.features.set, "ff", False, user="bob")
    assert f"User:{world.bob.id}" not in after.gates[1]["value"]
    assert f"User:{world.alice.id}" in after.gates[1]["value"]
    # a percentage keeps the actors; true clears every other gate (Flipper)
    await run(gl.features.set, "ff", 30)
    assert fake.feature("ff") is not None and fake.feature("ff").actors  # type: ignore[union-attr]
    on = await run(gl.features.set, "ff", True)
    assert on.gates == [{"key": "boolean", "value": True}]
    # false without actors clears all gates but keeps the feature persisted
    await run(gl.features.set, "ff", True, user="alice")
    off = await run(gl.features.set, "ff", False)
    assert off.asdict() == {
        "name": "ff",
        "state": "off",
        "gates": [{"key": "boolean", "value": False}],
        "definition": None,
    }
    assert [f.name for f in await run(gl.features.list)] == ["ff"]


async def test_feature_unknown_actor_changes_nothing(world: World) -> None:
    gl = world.gl()
    with pytest.raises(glexc.GitlabSetError) as err:
        await run(gl.features.set, "ff", True, user="alice,nobody")
    assert err.value.response_code == 400
    assert _msg(err.value) == "400 Bad request - nobody is not found!"
    assert world.fake.feature("ff") is None
    with pytest.raises(glexc.GitlabSetError) as err:
        await run(gl.features.set, "ff", True, project="ops/missing")
    assert _msg(err.value) == "400 Bad request - ops/missing is not found!"


@pytest.mark.parametrize(
    ("value", "extra", "status", "message"),
    [
        ("abc", {}, 400, "400 Bad request - Cannot set 'ff' to \"abc\""),
        ("abc", {"key": "percentage_of_actors"}, 400, "400 Bad request - Not a percentage"),
        ("-5", {"key": "percentage_of_time"}, 400, "400 Bad request - Not a percentage"),
        ("50", {"key": "bogus"}, 400, '400 Bad request - Cannot set \'ff\' ("bogus") to "50"'),
        ("150", {}, 500, "500 Internal Server Error"),
        ("101", {"key": "percentage_of_actors"}, 500, "500 Internal Server Error"),
    ],
)
async def test_feature_bad_values(
    world: World, value: str, extra: dict[str, str], status: int, message: str
) -> None:
    with pytest.raises(glexc.GitlabSetError) as err:
        await run(world.gl().features.set, "ff", value, **extra)
    assert (err.value.response_code, _msg(err.value)) == (status, message)


async def test_feature_key_is_exclusive_with_actors_and_full_flag_refuses_percentage(
    world: World,
) -> None:
    gl = world.gl()
    with pytest.raises(glexc.GitlabHttpError) as err:
        await run(
            gl.http_post,
            "/features/ff",
            post_data={"value": "10", "key": "percentage_of_actors", "user": "alice"},
        )
    assert err.value.response_code == 400
    assert _msg(err.value) == "key, user are mutually exclusive"
    await run(gl.features.set, "ff", True)
    with pytest.raises(glexc.GitlabSetError) as err2:
        await run(gl.features.set, "ff", 10, key="percentage_of_actors")
    assert _msg(err2.value) == (
        "400 Bad request - Cannot enable percentage of actors for a fully-enabled flag"
    )


async def test_feature_delete_and_admin_only(world: World) -> None:
    gl = world.gl()
    world.fake.add_feature_definition("ff", default_enabled=False)
    created = await run(gl.features.set, "ff", True)
    assert created.definition["type"] == "development"
    await run(gl.features.delete, "ff")
    await run(gl.features.delete, "never_existed")  # same answer either way
    assert [c.status for c in world.fake.calls("DELETE /features/*")] == [204, 204]
    assert await run(gl.features.list) == []
    with pytest.raises(glexc.GitlabListError) as err:
        await run(world.gl(DEV).features.list)
    assert (err.value.response_code, _msg(err.value)) == (403, "403 Forbidden")
    with pytest.raises(glexc.GitlabSetError) as err2:
        await run(world.gl(DEV).features.set, "ff", True)
    assert err2.value.response_code == 403


# ---------------------------------------------------------------------------- project flags


def _flag(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "version": "new_version_flag", **extra}


async def test_project_flag_create_get_and_shape(world: World) -> None:
    gl = world.gl(DEV)
    created = await run(
        gl.http_post,
        f"/projects/{ENCODED}/feature_flags",
        post_data=_flag(
            "checkout-v2",
            description="New checkout",
            strategies=[
                {
                    "name": "flexibleRollout",
                    "parameters": {"groupId": "default", "rollout": "25", "stickiness": "userId"},
                    "scopes": [{"environment_scope": "production"}],
                },
                {"name": "userWithId", "parameters": {"userIds": "u1,u2"}},
            ],
        ),
    )
    assert set(created) == {
        "name",
        "description",
        "active",
        "version",
        "created_at",
        "updated_at",
        "scopes",
        "strategies",
    }
    assert created["active"] is True and created["version"] == "new_version_flag"
    first = created["strategies"][0]
    assert first["parameters"] == {"groupId": "default", "rollout": "25", "stickiness": "userId"}
    assert first["scopes"][0]["environment_scope"] == "production"
    assert first["user_list"] is None and isinstance(first["id"], int)
    got = await run(gl.http_get, f"/projects/{world.project.id}/feature_flags/checkout-v2")
    assert got == created
    assert "checkout-v2" in world.fake.project_flags(PROJECT)


async def test_project_flag_list_pagination_and_scope(world: World) -> None:
    gl = world.gl(DEV)
    for i in range(25):
        await run(
            gl.http_post,
            f"/projects/{ENCODED}/feature_flags",
            post_data=_flag(f"flag-{i:02d}", active=i % 5 != 0),
        )
    first = await run(gl.http_list, f"/projects/{ENCODED}/feature_flags", get_all=False)
    assert [f["name"] for f in first] == [f"flag-{i:02d}" for i in range(20)]  # ordered by name
    everything = await run(gl.http_list, f"/projects/{ENCODED}/feature_flags", get_all=True)
    assert len(everything) == 25
    lazy = await run(gl.http_list, f"/projects/{ENCODED}/feature_flags", iterator=True)
    assert (lazy.total, lazy.total_pages, lazy.per_page, lazy.next_page) == (25, 2, 20, 2)
    disabled = await run(
        gl.http_list, f"/projects/{ENCODED}/feature_flags", query_data={"scope": "disabled"}
    )
    assert [f["name"] for f in disabled] == ["flag-00", "flag-05", "flag-10", "flag-15", "flag-20"]


async def test_project_flag_update_by_id_and_destroy(world: World) -> None:
    gl = world.gl(DEV)
    base = f"/projects/{ENCODED}/feature_flags"
    created = await run(
        gl.http_post,
        base,
        post_data=_flag(
            "search",
            strategies=[
                {"name": "default", "scopes": [{"environment_scope": "*"}]},
                {"name": "userWithId", "parameters": {"userIds": "a"}},
            ],
        ),
    )
    default_id = created["strategies"][0]["id"]
    scope_id = created["strategies"][0]["scopes"][0]["id"]
    users_id = created["strategies"][1]["id"]
    updated = await run(
        gl.http_put,
        f"{base}/search",
        post_data={
            "active": False,
            "strategies": [
                {
                    "id": default_id,
                    "name": "gradualRolloutUserId",
                    "parameters": {"groupId": "default", "percentage": "10"},
                    "scopes": [
                        {"id": scope_id, "environment_scope": "production"},
                        {"environment_scope": "staging"},
                    ],
                },
                {"id": users_id, "_destroy": True},
            ],
        },
    )
    assert updated["active"] is False
    assert len(updated["strategies"]) == 1
    strategy = updated["strategies"][0]
    assert strategy["id"] == default_id and strategy["name"] == "gradualRolloutUserId"
    assert [s["environment_scope"] for s in strategy["scopes"]] == ["production", "staging"]
    assert strategy["scopes"][0]["id"] == scope_id
    removed_scope = await run(
        gl.http_put,
        f"{base}/search",
        post_data={
            "name": "search-v2",
            "strategies": [{"id": default_id, "scopes": [{"id": scope_id, "_destroy": True}]}],
        },
    )
    assert removed_scope["name"] == "search-v2"
    assert [s["environment_scope"] for s in removed_scope["strategies"][0]["scopes"]] == ["staging"]
    deleted = await run(gl.http_delete, f"{base}/search-v2")
    assert deleted.status_code == 200 and deleted.json()["name"] == "search-v2"
    with pytest.raises(glexc.GitlabHttpError) as err:
        await run(gl.http_get, f"{base}/search-v2")
    assert (err.value.response_code, _msg(err.value)) == (404, "404 Not found")


@pytest.mark.parametrize(
    ("strategy", "messages"),
    [
        ({"name": "default", "parameters": {"extra": "1"}}, ["Strategies parameters are invalid"]),
        ({"name": "bogus"}, ["Strategies name strategy name is invalid"]),
        (
            {
                "name": "gradualRolloutUserId",
                "parameters": {"groupId": "UPPER", "percentage": "101"},
            },
            [
                "Strategies parameters percentage must be a string between 0 and 100 inclusive",
                "Strategies parameters groupId parameter is invalid",
            ],
        ),
        (
            {"name": "gradualRolloutUserId", "parameters": {"groupId": "a", "percentage": 50}},
            ["Strategies parameters percentage must be a string between 0 and 100 inclusive"],
        ),
        (
            {
                "name": "flexibleRollout",
                "parameters": {"groupId": "a" * 33, "rollout": "5%", "stickiness": "USERID"},
            },
            [
                "Strategies parameters stickiness parameter must be default, userId, sessionId, "
                "or random",
                "Strategies parameters groupId parameter is invalid",
                "Strategies parameters rollout must be a string between 0 and 100 inclusive",
            ],
        ),
        (
            {"name": "userWithId", "parameters": {"userIds": "a," + "x" * 257}},
            [
                "Strategies parameters userIds must be a string of unique comma separated "
                "values each 256 characters or less"
            ],
        ),
        ({"name": "userWithId", "parameters": {"userIds": "a,a"}}, None),
        ({"name": "gitlabUserList", "parameters": {}}, ["Strategies user list can't be blank"]),
    ],
)
async def test_project_flag_strategy_validation(
    world: World, strategy: dict[str, Any], messages: list[str] | None
) -> None:
    with pytest.raises(glexc.GitlabHttpError) as err:
        await run(
            world.gl(DEV).http_post,
            f"/projects/{ENCODED}/feature_flags",
            post_data=_flag("bad-flag", strategies=[strategy]),
        )
    assert err.value.response_code == 400
    if messages is not None:
        assert _msg(err.value) == messages
    assert world.fake.project_flags(PROJECT) == {}


async def test_project_flag_name_rules_and_user_list(world: World) -> None:
    gl, base = world.gl(DEV), f"/projects/{world.project.id}/feature_flags"
    await run(gl.http_post, base, post_data=_flag("dup"))
    with pytest.raises(glexc.GitlabHttpError) as err:
        await run(gl.http_post, base, post_data=_flag("dup"))
    assert _msg(err.value) == ["Name has already been taken"]
    with pytest.raises(glexc.GitlabHttpError) as err:
        await run(gl.http_post, base, post_data=_flag("Bad_"))
    assert _msg(err.value) == [
        "Name can contain only lowercase letters, digits, '_' and '-'. "
        "Must start with a letter, and cannot end with '-' or '_'"
    ]
    with pytest.raises(glexc.GitlabHttpError) as err:
        await run(gl.http_post, base, post_data={"name": "ok-name", "version": "legacy_flag"})
    assert _msg(err.value) == "Version is invalid"
    with pytest.raises(glexc.GitlabHttpError) as err:
        await run(gl.http_post, base, post_data={"description": "no name"})
    assert _msg(err.value) == "name is missing"
    user_list = world.fake.add_user_list(PROJECT, "beta", "u1,u2")
    created = await run(
        gl.http_post,
        base,
        post_data=_flag(
            "listed",
            strategies=[{"name": "gitlabUserList", "parameters": {}, "user_list_id": user_list.id}],
        ),
    )
    assert created["strategies"][0]["user_list"] == {
        "id": user_list.id,
        "iid": 1,
        "name": "beta",
        "user_xids": "u1,u2",
    }


async def test_project_flag_roles(world: World) -> None:
    path = f"/projects/{ENCODED}/feature_flags"
    with pytest.raises(glexc.GitlabHttpError) as err:
        await run(world.gl(REP).http_list, path, get_all=True)
    assert (err.value.response_code, _msg(err.value)) == (403, "403 Forbidden")
    with pytest.raises(glexc.GitlabHttpError) as err:
        await run(world.gl(OUTSIDER).http_post, path, post_data=_flag("x1"))
    assert (err.value.response_code, _msg(err.value)) == (404, "404 Project Not Found")
    with pytest.raises(glexc.GitlabHttpError) as err:
        await run(world.gl(DEV).http_get, "/projects/ops%2Fnope/feature_flags")
    assert err.value.response_code == 404
    assert await run(world.gl(MAINT).http_list, path, get_all=True) == []  # inherited from ops


# ---------------------------------------------------------------------------- issues


async def test_issue_create_shape(world: World) -> None:
    project = await run(world.gl(DEV).projects.get, PROJECT)
    issue = await run(
        project.issues.create,
        {
            "title": "Checkout is down",
            "description": "500s everywhere",
            "labels": ["incident", "sev::1"],
            "confidential": True,
            "assignee_ids": [world.alice.id, world.bob.id, 9999],
            "issue_type": "incident",
        },
    )
    assert issue.iid == 1 and issue.project_id == world.project.id
    assert issue.state == "opened" and issue.issue_type == "incident" and issue.type == "INCIDENT"
    assert issue.labels == ["incident", "sev::1"]
    assert [a["username"] for a in issue.assignees] == ["alice", "bob"]
    assert issue.author["username"] == "alice" and issue.confidential is True
    assert issue.web_url == f"{world.fake.url}/{PROJECT}/-/issues/incident/1"
    assert issue.references == {"short": "#1", "relative": "#1", "full": f"{PROJECT}#1"}
    assert issue.closed_at is None and issue.created_at.endswith("Z")
    assert set(world.fake.labels(PROJECT)) == {"incident", "sev::1"}  # unknown labels created
    stored = world.fake.issue(PROJECT, 1)
    assert stored.title == "Checkout is down" and stored.confidential


async def test_issue_create_errors(world: World) -> None:
    gl = world.gl(DEV)
    project = await run(gl.projects.get, world.project.id, lazy=True)
    with pytest.raises(glexc.GitlabCreateError) as err:
        await run(project.issues.create, {"title": "t", "description": "x" * 1_048_577})
    assert err.value.response_code == 400
    assert _msg(err.value) == {"description": ["is too long (maximum is 1048576 characters)"]}
    with pytest.raises(glexc.GitlabHttpError) as err2:
        await run(gl.http_post, f"/projects/{ENCODED}/issues", post_data={"description": "d"})
    assert _msg(err2.value) == "title is missing"
    with pytest.raises(glexc.GitlabCreateError) as err3:
        await run(project.issues.create, {"title": "t", "issue_type": "epic"})
    assert _msg(err3.value) == "issue_type does not have a valid value"
    with pytest.raises(glexc.GitlabAuthenticationError) as err4:  # 401 is never a CreateError
        await run(
            world.gl("bad").projects.get(world.project.id, lazy=True).issues.create, {"title": "t"}
        )
    assert err4.value.response_code == 401


async def test_issue_update_labels_and_state(world: World) -> None:
    project = await run(world.gl(DEV).projects.get, world.project.id, lazy=True)
    await run(project.issues.create, {"title": "Deploy", "labels": "a,b"})
    updated = await run(project.issues.update, 1, {"add_labels": "c", "remove_labels": "a"})
    assert updated["labels"] == ["b", "c"]
    closed = await run(project.issues.update, 1, {"state_event": "close"})
    assert closed["state"] == "closed" and closed["closed_at"]
    assert closed["closed_by"]["username"] == "alice"
    issue = await run(project.issues.get, 1)
    issue.title = "Deploy (done)"
    issue.state_event = "reopen"
    await run(issue.save)
    assert issue.state == "opened" and issue.closed_at is None and issue.title == "Deploy (done)"
    replaced = await run(project.issues.update, 1, {"labels": ["x"]})
    assert replaced["labels"] == ["x"]
    with pytest.raises(glexc.GitlabUpdateError) as err:
        await run(project.issues.update, 1, {"unknown": "1"})
    assert _msg(err.value).endswith("are missing, at least one parameter must be provided")
    with pytest.raises(glexc.GitlabGetError) as err2:
        await run(project.issues.get, 42)
    assert (err2.value.response_code, _msg(err2.value)) == (404, "404 Not found")


async def test_issue_guest_rules(world: World) -> None:
    project = await run(world.gl(GUEST).projects.get, world.project.id, lazy=True)
    issue = await run(
        project.issues.create,
        {"title": "From a guest", "labels": "secret", "issue_type": "incident"},
    )
    assert issue.labels == [] and issue.issue_type == "issue"  # filtered for guests
    dev = await run(world.gl(DEV).projects.get, world.project.id, lazy=True)
    await run(dev.issues.create, {"title": "Hidden", "confidential": True})
    listed = await run(project.issues.list, get_all=True)
    assert [i.title for i in listed] == ["From a guest"]
    with pytest.raises(glexc.GitlabGetError):
        await run(project.issues.get, 2)


async def test_issue_list_filters_and_pagination(world: World) -> None:
    project = await run(world.gl(DEV).projects.get, world.project.id, lazy=True)
    for i in range(1, 26):
        labels = "deploy" if i % 2 else "deploy,prod"
        await run(
            project.issues.create,
            {"title": f"Issue {i}", "description": "needle" if i == 7 else "hay", "labels": labels},
        )
    await run(project.issues.update, 3, {"state_event": "close"})
    page1 = await run(project.issues.list, per_page=10, page=1)
    assert [i.iid for i in page1] == list(range(25, 15, -1))  # created_at desc
    response = await run(
        world.gl(DEV).http_get,
        f"/projects/{ENCODED}/issues",
        query_data={"per_page": 10, "page": 2, "labels": "deploy"},
        raw=True,
    )
    headers = response.headers
    assert (headers["X-Total"], headers["X-Total-Pages"], headers["X-Page"]) == ("25", "3", "2")
    assert (headers["X-Next-Page"], headers["X-Prev-Page"], headers["X-Per-Page"]) == (
        "3",
        "1",
        "10",
    )
    assert 'rel="next"' in headers["Link"] and "labels=deploy" in response.links["next"]["url"]
    everything = await run(project.issues.list, get_all=True, per_page=7)
    assert len(everything) == 25 and len(world.fake.calls("GET /projects/*/issues")) == 1 + 1 + 4
    lazy = await run(project.issues.list, iterator=True, labels=["deploy", "prod"])
    assert lazy.total == 12
    assert [i.iid for i in await run(project.issues.list, search="NEEDLE", get_all=True)] == [7]
    closed = await run(project.issues.list, state="closed", get_all=True)
    assert [i.iid for i in closed] == [3]
    opened = await run(project.issues.list, state="opened", get_all=True, sort="asc")
    assert opened[0].iid == 1 and len(opened) == 24
    assert await run(project.issues.list, labels="None", get_all=True) == []


async def test_notes_create_list_and_limits(world: World) -> None:
    project = await run(world.gl(DEV).projects.get, world.project.id, lazy=True)
    issue = await run(project.issues.create, {"title": "Outage", "issue_type": "incident"})
    note = await run(issue.notes.create, {"body": "Rolling back"})
    assert note.body == "Rolling back" and note.noteable_iid == issue.iid
    assert note.internal is False and note.author["username"] == "alice"
    await run(issue.notes.create, {"body": "Only staff", "internal": True})
    notes = await run(issue.notes.list, get_all=True)
    assert [n.body for n in notes] == ["Only staff", "Rolling back"]  # newest first
    guest_issue = (await run(world.gl(GUEST).projects.get, world.project.id, lazy=True)).issues
    guest_notes = await run((await run(guest_issue.get, issue.iid)).notes.list, get_all=True)
    assert [n.body for n in guest_notes] == ["Rolling back"]
    with pytest.raises(glexc.GitlabCreateError) as err:
        await run(issue.notes.create, {"body": "x" * 1_000_001})
    assert _msg(err.value) == (
        '400 Bad request - Note {:note=>["is too long (maximum is 1000000 characters)"]}'
    )
    # A timeline quick action on an incident: command-only, 202, nothing stored as a note.
    answer = await run(
        world.gl(DEV).http_post,
        f"/projects/{ENCODED}/issues/{issue.iid}/notes",
        post_data={"body": "/timeline Rolled back | 2024-03-01 10:15"},
    )
    assert answer == {"commands_changes": {}, "summary": ["Timeline event added successfully."]}
    assert world.fake.calls("POST /projects/*/issues/*/notes")[-1].status == 202
    stored = world.fake.issue(PROJECT, issue.iid)
    assert [(e.note, e.occurred_at) for e in stored.timeline_events] == [
        ("Rolled back", "2024-03-01T10:15:00.000Z")
    ]
    assert len(stored.notes) == 2


async def test_labels_endpoints(world: World) -> None:
    project = await run(world.gl(DEV).projects.get, world.project.id, lazy=True)
    label = await run(project.labels.create, {"name": "sev::1", "color": "#FF0000"})
    assert label.name == "sev::1" and label.color == "#FF0000" and label.is_project_label
    with pytest.raises(glexc.GitlabCreateError) as err:
        await run(project.labels.create, {"name": "sev::1", "color": "#00FF00"})
    assert (err.value.response_code, _msg(err.value)) == (409, "Label already exists")
    with pytest.raises(glexc.GitlabCreateError) as err2:
        await run(project.labels.create, {"name": "bad", "color": "not a color"})
    assert _msg(err2.value) == {"color": ["must be a valid color code"]}
    await run(project.issues.create, {"title": "t", "labels": "auto"})
    names = [lbl.name for lbl in await run(project.labels.list, get_all=True)]
    assert names == ["auto", "sev::1"]
    with pytest.raises(glexc.GitlabCreateError) as err3:
        guest = await run(world.gl(GUEST).projects.get, world.project.id, lazy=True)
        await run(guest.labels.create, {"name": "x", "color": "#000000"})
    assert err3.value.response_code == 403


async def test_repository_files(world: World) -> None:
    template = "## Summary\n\n## Timeline\n"
    world.fake.add_file(PROJECT, ".gitlab/issue_templates/incident.md", template)
    project = await run(world.gl(REP).projects.get, PROJECT)
    f = await run(project.files.get, ".gitlab/issue_templates/incident.md", ref="main")
    assert f.encoding == "base64" and f.file_name == "incident.md"
    assert f.decode() == template.encode()
    assert base64.b64decode(f.content).decode() == template
    raw = await run(project.files.raw, ".gitlab/issue_templates/incident.md", ref="main")
    assert raw == template.encode()
    call = world.fake.calls("GET /projects/*/repository/files/*/raw")[0]
    assert call.path.endswith("/.gitlab%2Fissue_templates%2Fincident.md/raw")
    with pytest.raises(glexc.GitlabGetError) as err:
        await run(project.files.get, ".gitlab/issue_templates/missing.md", ref="main")
    assert (err.value.response_code, _msg(err.value)) == (404, "404 File Not Found")
    with pytest.raises(glexc.GitlabGetError) as err2:
        await run(project.files.get, ".gitlab/issue_templates/incident.md", ref="nope")
    assert _msg(err2.value) == "404 Commit Not Found"


# ---------------------------------------------------------------------------- users and groups


async def test_users_search(world: World) -> None:
    admin, dev = world.gl(ADMIN), world.gl(DEV)
    found = await run(admin.users.list, search="alice@example.com")
    assert [u.username for u in found] == ["alice"] and found[0].email == "alice@example.com"
    assert await run(dev.users.list, search="alice@example.com") == []  # private e-mail
    public = await run(dev.users.list, search="bob@pub.io")
    assert [u.username for u in public] == ["bob"] and not hasattr(public[0], "email")
    by_name = await run(dev.users.list, search="liddell")
    assert [u.username for u in by_name] == ["alice"]
    exact = await run(dev.users.list, username="CAROL")
    assert [u.id for u in exact] == [world.carol.id]
    world.fake.block_user("dave")
    assert await run(dev.users.list, username="dave") == []
    blocked = await run(admin.users.list, username="dave")
    assert blocked[0].state == "blocked"
    user = await run(dev.users.get, world.bob.id)
    assert user.username == "bob" and user.public_email == "bob@pub.io"
    with pytest.raises(glexc.GitlabGetError) as err:
        await run(dev.users.get, 9999)
    assert (err.value.response_code, _msg(err.value)) == (404, "404 User Not Found")


async def test_group_and_members_all(world: World) -> None:
    world.fake.add_member(world.ops, world.eve, "guest")
    world.fake.block_user("eve")
    admin_group = await run(world.gl(ADMIN).groups.get, "ops/platform")
    assert admin_group.full_path == "ops/platform" and admin_group.parent_id == world.ops.id
    members = await run(admin_group.members_all.list, get_all=True, per_page=2)
    by_name = {m.username: m for m in members}
    assert set(by_name) == {"alice", "dave", "eve"}
    assert by_name["alice"].access_level == 30  # developer here beats reporter above
    assert by_name["dave"].access_level == 40 and by_name["eve"].state == "blocked"
    # A member's primary e-mail is not in the member entity, even for an administrator,
    # who reads it from the user instead.
    assert not hasattr(by_name["alice"], "email") and by_name["alice"].public_email is None
    admin_alice = await run(world.gl(ADMIN).users.get, by_name["alice"].id)
    assert admin_alice.email == "alice@example.com"
    assert len(world.fake.calls("GET /groups/*/members/all")) == 2
    group = await run(world.gl(DEV).groups.get, world.platform.id)
    visible = await run(group.members_all.list, get_all=True)
    assert all(not hasattr(m, "email") for m in visible)
    # A member of a project inside a private group may read the group (GroupPolicy has_projects)
    assert (await run(world.gl(GUEST).groups.get, "ops")).id == world.ops.id
    world.fake.add_user("frank", token="frank-token")
    with pytest.raises(glexc.GitlabGetError) as err:
        await run(world.gl("frank-token").groups.get, "ops")
    assert (err.value.response_code, _msg(err.value)) == (404, "404 Group Not Found")


async def test_project_get(world: World) -> None:
    by_path = await run(world.gl(DEV).projects.get, PROJECT)
    assert by_path.id == world.project.id and by_path.path_with_namespace == PROJECT
    assert by_path.namespace["full_path"] == "ops/platform" and by_path.default_branch == "main"
    with pytest.raises(glexc.GitlabGetError) as err:
        await run(world.gl(OUTSIDER).projects.get, world.project.id)
    assert (err.value.response_code, _msg(err.value)) == (404, "404 Project Not Found")


# ---------------------------------------------------------------------------- pipelines


async def test_pipelines(world: World) -> None:
    project = await run(world.gl(DEV).projects.get, world.project.id, lazy=True)
    pipeline = await run(
        project.pipelines.create,
        {"ref": "main", "variables": [{"key": "FLAG", "value": "on", "variable_type": "env_var"}]},
    )
    assert pipeline.status == "pending" and pipeline.ref == "main" and pipeline.iid == 1
    assert pipeline.web_url == f"{world.fake.url}/{PROJECT}/-/pipelines/{pipeline.id}"
    assert world.fake.pipelines(PROJECT)[0].variables == [
        {"key": "FLAG", "value": "on", "variable_type": "env_var"}
    ]
    world.fake.set_pipeline_status(PROJECT, pipeline.id, "success")
    again = await run(project.pipelines.get, pipeline.id)
    assert again.status == "success" and again.finished_at is not None
    with pytest.raises(glexc.GitlabCreateError) as err:
        await run(project.pipelines.create, {"ref": "nope"})
    assert _msg(err.value) == {"base": ["Reference not found"]}
    reporter = await run(world.gl(REP).projects.get, world.project.id, lazy=True)
    with pytest.raises(glexc.GitlabCreateError) as err2:
        await run(reporter.pipelines.create, {"ref": "main"})
    assert err2.value.response_code == 403
    assert (await run(reporter.pipelines.get, pipeline.id)).status == "success"
    with pytest.raises(glexc.GitlabGetError) as err3:
        await run(reporter.pipelines.get, 999)
    assert _msg(err3.value) == "404 Not found"


# ---------------------------------------------------------------------------- freeze periods


async def test_freeze_periods_crud(world: World) -> None:
    gl, base = world.gl(MAINT), f"/projects/{world.project.id}/freeze_periods"
    created = await run(
        gl.http_post, base, post_data={"freeze_start": "0 23 * * 5", "freeze_end": "0 7 * * 1"}
    )
    assert created["cron_timezone"] == "UTC" and isinstance(created["id"], int)
    fid = created["id"]
    got = await run(world.gl(REP).http_get, f"{base}/{fid}")  # reporters may read
    assert got == created
    updated = await run(gl.http_put, f"{base}/{fid}", post_data={"cron_timezone": "Europe/Paris"})
    assert updated["cron_timezone"] == "Europe/Paris" and updated["freeze_start"] == "0 23 * * 5"
    assert [f["id"] for f in await run(gl.http_list, base, get_all=True)] == [fid]
    with pytest.raises(glexc.GitlabHttpError) as err:
        await run(
            gl.http_post, base, post_data={"freeze_start": "61 * * * *", "freeze_end": "0 7 * * 1"}
        )
    assert _msg(err.value) == {"freeze_start": [" is invalid syntax"]}
    with pytest.raises(glexc.GitlabHttpError) as err:
        await run(gl.http_put, f"{base}/{fid}", post_data={"cron_timezone": "Mars/Olympus"})
    assert _msg(err.value)["cron_timezone"] == [" is invalid syntax"]
    with pytest.raises(glexc.GitlabHttpError) as err:
        await run(
            world.gl(DEV).http_post,
            base,
            post_data={"freeze_start": "* * * * *", "freeze_end": "* * * * *"},
        )
    assert (err.value.response_code, _msg(err.value)) == (403, "403 Forbidden")
    with pytest.raises(glexc.GitlabHttpError) as err:
        await run(world.gl(GUEST).http_list, base, get_all=True)
    assert err.value.response_code == 403
    with pytest.raises(glexc.GitlabHttpError) as err:
        await run(gl.http_post, base, post_data={"freeze_end": "0 7 * * 1"})
    assert _msg(err.value) == "freeze_start is missing"
    deleted = await run(gl.http_delete, f"{base}/{fid}")
    assert deleted.status_code == 204
    with pytest.raises(glexc.GitlabHttpError) as err:
        await run(gl.http_get, f"{base}/{fid}")
    assert (err.value.response_code, _msg(err.value)) == (404, "404 Not found")
    assert world.fake.freeze_periods(PROJECT) == []


@pytest.mark.parametrize(
    ("expression", "valid"),
    [
        ("0 23 * * 5", True),
        ("*/15 0-6 1,15 jan-mar mon-fri", True),
        ("@daily", True),
        ("0 0 * * mon#2", True),
        ("0 0 0 * * *", True),
        ("60 * * * *", False),
        ("* * *", False),
        ("0 24 * * *", False),
        ("0 0 * * funday", False),
    ],
)
def test_cron_syntax(expression: str, valid: bool) -> None:
    assert cron_valid(expression) is valid


# ---------------------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ("status", "exception", "message"),
    [
        (401, glexc.GitlabAuthenticationError, "401 Unauthorized"),
        (403, glexc.GitlabGetError, "403 Forbidden"),
        (404, glexc.GitlabGetError, "404 Not Found"),
        (409, glexc.GitlabGetError, "409 Conflict"),
        (422, glexc.GitlabGetError, "422 Unprocessable Entity"),
        (500, glexc.GitlabGetError, "500 Internal Server Error"),
        (502, glexc.GitlabGetError, None),
    ],
)
async def test_fail_next_statuses(
    world: World, status: int, exception: type[Exception], message: str | None
) -> None:
    world.fake.fail_next("GET /projects/*", status)
    gl = world.gl(DEV)
    with pytest.raises(exception) as err:
        await run(gl.projects.get, PROJECT)
    assert isinstance(err.value, glexc.GitlabError) and err.value.response_code == status
    if message is not None:
        assert _msg(err.value) == message
    else:
        assert b"GitLab is not responding" in (err.value.response_body or b"")
    assert (await run(gl.projects.get, PROJECT)).id == world.project.id  # only once
    assert [c.injected for c in world.fake.calls("GET /projects/*")] == [True, False]


async def test_fail_next_create_error_and_times(world: World) -> None:
    world.fake.fail_next("POST /projects/*/issues", 409, times=2, body={"message": "busy"})
    project = await run(world.gl(DEV).projects.get, world.project.id, lazy=True)
    for _ in range(2):
        with pytest.raises(glexc.GitlabCreateError) as err:
            await run(project.issues.create, {"title": "t"})
        assert (err.value.response_code, _msg(err.value)) == (409, "busy")
    assert world.fake.issues(PROJECT) == []  # refused before any change
    await run(project.issues.create, {"title": "t"})
    assert len(world.fake.issues(PROJECT)) == 1


async def test_rate_limit_retry_after(world: World) -> None:
    world.fake.fail_next("POST /features/*", 429, retry_after=1)
    started = time.monotonic()
    feature = await run(world.gl().features.set, "ff", True)  # obey_rate_limit retries
    assert feature.state == "on" and time.monotonic() - started >= 1.0
    assert [c.status for c in world.fake.calls("POST /features/ff")] == [429, 201]
    world.fake.fail_next("POST /features/*", 429, retry_after=30)
    with pytest.raises(glexc.GitlabSetError) as err:
        await run(world.gl().features.set, "ff", False, obey_rate_limit=False)
    assert err.value.response_code == 429
    assert world.fake.feature("ff") is not None and world.fake.feature("ff").state == "on"  # type: ignore[union-attr]


async def test_delay_makes_client_time_out(world: World) -> None:
    world.fake.delay("GET /projects/*", 1.0)
    with pytest.raises(requests.exceptions.ReadTimeout):
        await run(world.gl(DEV, timeout=0.2).projects.get, PROJECT)
    world.fake.delay("GET /projects/*", 0)
    assert (await run(world.gl(DEV, timeout=2).projects.get, PROJECT)).id == world.project.id


async def test_hang_after_apply_times_out_but_changes(world: World) -> None:
    world.fake.hang_after_apply("POST /projects/*/issues", 5.0)
    project = world.gl(DEV, timeout=0.3).projects.get(world.project.id, lazy=True)
    with pytest.raises(requests.exceptions.ReadTimeout):
        await run(project.issues.create, {"title": "Applied anyway"})
    assert [i.title for i in world.fake.issues(PROJECT)] == ["Applied anyway"]
    call = (await world.fake.wait_for("POST /projects/*/issues"))[0]
    assert call.status == 201 and call.body == {"title": "Applied anyway"}


async def test_down_refuses_then_up(world: World) -> None:
    gl = world.gl(DEV)
    await run(gl.projects.get, PROJECT)  # a keep-alive connection exists
    await world.fake.down()
    with pytest.raises(requests.exceptions.ConnectionError):
        await run(gl.projects.get, PROJECT)
    await world.fake.up()
    assert (await run(gl.projects.get, PROJECT)).id == world.project.id
    await world.fake.down("503")
    with pytest.raises(glexc.GitlabGetError) as err:
        await run(gl.projects.get, PROJECT)
    assert err.value.response_code == 503
    await world.fake.up()
    assert (await run(gl.projects.get, PROJECT)).id == world.project.id


async def test_unknown_route_and_method(world: World) -> None:
    gl = world.gl(DEV)
    with pytest.raises(glexc.GitlabHttpError) as err:
        await run(gl.http_get, "/nothing/here")
    assert (err.value.response_code, _msg(err.value)) == (404, "404 Not Found")
    with pytest.raises(glexc.GitlabHttpError) as err:
        await run(gl.http_post, f"/projects/{world.project.id}")
    assert (err.value.response_code, _msg(err.value)) == (405, "405 Not Allowed")
