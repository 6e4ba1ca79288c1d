"""The Slack fakes, driven by the real Slack clients, must answer like Slack does."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond, AsyncSay
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from tests.fakes import slack_requests
from tests.fakes.slack_api import FakeSlackAPI
from tests.fakes.slack_socket import FakeSocketModeServer

BOT = "xoxb-test"
APP = "xapp-test"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "*deploy* ready"}}]
MODAL = {
    "type": "modal",
    "title": {"type": "plain_text", "text": "Lock production"},
    "submit": {"type": "plain_text", "text": "Lock"},
    "blocks": [
        {
            "type": "input",
            "block_id": "reason",
            "label": {"type": "plain_text", "text": "Reason"},
            "element": {"type": "plain_text_input", "action_id": "reason"},
        }
    ],
}


@pytest.fixture
async def socket_server() -> AsyncIterator[FakeSocketModeServer]:
    async with FakeSocketModeServer() as server:
        yield server


@pytest.fixture
async def api(socket_server: FakeSocketModeServer) -> AsyncIterator[FakeSlackAPI]:
    async with FakeSlackAPI(socket=socket_server) as fake:
        fake.add_user(
            "U1",
            "alice",
            email="alice@example.com",
            real_name="Alice Liddell",
            display_name="alice",
            tz="Europe/Berlin",
            status_text="on call",
            status_emoji=":pager:",
            status_expiration=1_900_000_000,
        )
        fake.add_user(
            "U2",
            "bob",
            presence="away",
            dnd_enabled=True,
            next_dnd_start_ts=1_700_000_000,
            next_dnd_end_ts=1_700_030_000,
            snooze_enabled=True,
            snooze_endtime=int(time.time()) + 600,
        )
        fake.add_channel("C1", "production")
        fake.add_channel("C2", "general", is_member=False)
        fake.add_channel("G1", "secret", is_private=True, is_member=False)
        yield fake


@pytest.fixture
def client(api: FakeSlackAPI) -> AsyncWebClient:
    return AsyncWebClient(token=BOT, base_url=api.base_url)


async def api_error(call: Any) -> SlackApiError:
    with pytest.raises(SlackApiError) as info:
        await call
    return info.value


# ---------------------------------------------------------------- auth


async def test_auth_test_identifies_the_bot(client: AsyncWebClient) -> None:
    res = await client.auth_test()
    assert res.status_code == 200
    assert res["user_id"] == "UBOT"
    assert res["bot_id"] == "BBOT"
    assert res["team_id"] == "T1"
    assert res["url"] == "https://test.slack.com/"
    assert "chat:write" in res.headers["X-OAuth-Scopes"]


async def test_missing_and_wrong_tokens(api: FakeSlackAPI) -> None:
    no_token = await api_error(AsyncWebClient(base_url=api.base_url).auth_test())
    assert no_token.response.status_code == 200
    assert no_token.response["error"] == "not_authed"
    wrong = await api_error(AsyncWebClient(token="xoxb-nope", base_url=api.base_url).auth_test())
    assert wrong.response["error"] == "invalid_auth"


async def test_form_body_token_is_accepted_and_recorded(api: FakeSlackAPI) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(api.base_url + "auth.test", data={"token": BOT}) as res:
            assert res.status == 200
            assert (await res.json())["ok"] is True
    assert api.calls("auth.test")[0].token == BOT


async def test_token_types_are_enforced(api: FakeSlackAPI, client: AsyncWebClient) -> None:
    bot_on_socket = await api_error(client.apps_connections_open(app_token=BOT))
    assert bot_on_socket.response["error"] == "not_allowed_token_type"
    app_client = AsyncWebClient(token=APP, base_url=api.base_url)
    app_on_chat = await api_error(app_client.chat_postMessage(channel="C1", text="hi"))
    assert app_on_chat.response["error"] == "not_allowed_token_type"


async def test_unknown_method_is_http_404(client: AsyncWebClient) -> None:
    err = await api_error(client.api_call("chat.fly"))
    assert err.response.status_code == 404
    assert err.response["error"] == "unknown_method"


# ---------------------------------------------------------------- chat


async def test_post_message_shape_and_increasing_ts(
    api: FakeSlackAPI, client: AsyncWebClient
) -> None:
    first = await client.chat_postMessage(channel="C1", text="deploying", blocks=BLOCKS)
    second = await client.chat_postMessage(channel="#production", text="done")
    assert first["channel"] == "C1" and second["channel"] == "C1"
    assert float(second["ts"]) > float(first["ts"])
    message = first["message"]
    assert message["ts"] == first["ts"]
    assert message["text"] == "deploying"
    assert message["blocks"] == BLOCKS
    assert message["bot_id"] == "BBOT" and message["user"] == "UBOT"
    assert [m["text"] for m in api.messages("C1")] == ["deploying", "done"]
    recorded = api.calls("chat.postMessage")[0]
    assert recorded.params["blocks"] == BLOCKS
    assert recorded.token == BOT


async def test_form_encoded_blocks_are_decoded_in_the_record(
    api: FakeSlackAPI, client: AsyncWebClient
) -> None:
    res = await client.api_call(
        "chat.postMessage", data={"channel": "C1", "blocks": json.dumps(BLOCKS)}
    )
    assert res["message"]["blocks"] == BLOCKS
    assert api.calls("chat.postMessage")[0].params["blocks"] == BLOCKS


async def test_post_message_to_a_user_lands_in_a_dm(
    api: FakeSlackAPI, client: AsyncWebClient
) -> None:
    res = await client.chat_postMessage(channel="U1", text="psst")
    assert res["channel"].startswith("D")
    info = await client.conversations_info(channel=res["channel"])
    assert info["channel"]["is_im"] is True
    assert info["channel"]["user"] == "U1"
    assert "name" not in info["channel"]


async def test_post_message_errors(client: AsyncWebClient) -> None:
    assert (await api_error(client.chat_postMessage(channel="C404", text="x"))).response[
        "error"
    ] == "channel_not_found"
    # Raw api_call: chat_postMessage itself warns client-side about missing text.
    no_text = client.api_call("chat.postMessage", json={"channel": "C1"})
    assert (await api_error(no_text)).response["error"] == "no_text"
    assert (await api_error(client.chat_postMessage(channel="C2", text="x"))).response[
        "error"
    ] == "not_in_channel"
    assert (await api_error(client.chat_postMessage(channel="G1", text="x"))).response[
        "error"
    ] == "channel_not_found"
    bad_blocks = client.chat_postMessage(channel="C1", text="x", blocks=[{"text": "no type"}])
    assert (await api_error(bad_blocks)).response["error"] == "invalid_blocks"


async def test_post_ephemeral(api: FakeSlackAPI, client: AsyncWebClient) -> None:
    res = await client.chat_postEphemeral(channel="C1", user="U1", text="only you")
    assert float(res["message_ts"]) > 0
    assert api.messages("C1") == []
    err = await api_error(client.chat_postEphemeral(channel="C1", user="U404", text="x"))
    assert err.response["error"] == "user_not_found"


async def test_chat_update(api: FakeSlackAPI, client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(channel="C1", text="locking")
    updated = await client.chat_update(channel="C1", ts=posted["ts"], text="locked")
    assert updated["ts"] == posted["ts"]
    assert updated["text"] == "locked"
    assert updated["message"]["text"] == "locked"
    assert api.messages("C1")[0]["text"] == "locked"
    missing = await api_error(client.chat_update(channel="C1", ts="1.000001", text="x"))
    assert missing.response["error"] == "message_not_found"


# ---------------------------------------------------------------- users, presence, dnd


async def test_users_info(client: AsyncWebClient) -> None:
    user = (await client.users_info(user="U1"))["user"]
    assert user["id"] == "U1"
    assert user["name"] == "alice"
    assert user["real_name"] == "Alice Liddell"
    assert user["tz"] == "Europe/Berlin"
    assert user["tz_offset"] in (3600, 7200)
    assert user["is_bot"] is False and user["deleted"] is False
    profile = user["profile"]
    assert profile["email"] == "alice@example.com"
    assert profile["display_name"] == "alice"
    assert profile["real_name"] == "Alice Liddell"
    assert (profile["status_text"], profile["status_emoji"]) == ("on call", ":pager:")
    assert profile["status_expiration"] == 1_900_000_000
    err = await api_error(client.users_info(user="U404"))
    assert err.response["error"] == "user_not_found"


async def test_users_get_presence(client: AsyncWebClient) -> None:
    assert (await client.users_getPresence(user="U1"))["presence"] == "active"
    away = await client.users_getPresence(user="U2")
    assert away["presence"] == "away"
    assert "online" not in away  # details are only for the caller's own user
    err = await api_error(client.users_getPresence(user="U404"))
    assert err.response["error"] == "user_not_found"


async def test_dnd_info_hides_other_users_snooze(api: FakeSlackAPI, client: AsyncWebClient) -> None:
    other = await client.dnd_info(user="U2")
    assert other["dnd_enabled"] is True
    assert other["next_dnd_start_ts"] == 1_700_000_000
    assert other["next_dnd_end_ts"] == 1_700_030_000
    assert "snooze_enabled" not in other
    api.user("UBOT").snooze_enabled = True
    api.user("UBOT").snooze_endtime = int(time.time()) + 120
    own = await client.dnd_info()
    assert own["snooze_enabled"] is True
    assert 100 <= own["snooze_remaining"] <= 120
    err = await api_error(client.dnd_info(user="U404"))
    assert err.response["error"] == "user_not_found"


# ---------------------------------------------------------------- views, conversations


async def test_views_open_exchanges_a_trigger_once(
    api: FakeSlackAPI, client: AsyncWebClient
) -> None:
    trigger = api.new_trigger_id()
    view = (await client.views_open(trigger_id=trigger, view=MODAL))["view"]
    assert view["id"].startswith("V")
    assert view["title"] == MODAL["title"]
    assert view["blocks"] == MODAL["blocks"]
    again = await api_error(client.views_open(trigger_id=trigger, view=MODAL))
    assert again.response["error"] == "exchanged_trigger_id"
    unknown = await api_error(client.views_open(trigger_id="1.2.abc", view=MODAL))
    assert unknown.response["error"] == "invalid_trigger_id"


async def test_views_open_argument_errors(api: FakeSlackAPI, client: AsyncWebClient) -> None:
    no_view = await api_error(client.api_call("views.open", json={"trigger_id": "1.2.3"}))
    assert no_view.response["error"] == "invalid_arguments"
    long_title = {**MODAL, "title": {"type": "plain_text", "text": "x" * 25}}
    too_long = await api_error(client.views_open(trigger_id=api.new_trigger_id(), view=long_title))
    assert too_long.response["error"] == "invalid_arguments"
    assert "title" in too_long.response["response_metadata"]["messages"][0]


async def test_views_open_trigger_expires() -> None:
    async with FakeSlackAPI(trigger_ttl=0.05) as fake:
        fast = AsyncWebClient(token=BOT, base_url=fake.base_url)
        trigger = fake.new_trigger_id()
        await asyncio.sleep(0.1)
        err = await api_error(fast.views_open(trigger_id=trigger, view=MODAL))
        assert err.response["error"] == "expired_trigger_id"


async def test_conversations_info(client: AsyncWebClient) -> None:
    channel = (await client.conversations_info(channel="C1"))["channel"]
    assert (channel["id"], channel["name"], channel["is_im"]) == ("C1", "production", False)
    err = await api_error(client.conversations_info(channel="C404"))
    assert err.response["error"] == "channel_not_found"


# ---------------------------------------------------------------- failures and timing


async def test_rate_limit_is_a_real_429(api: FakeSlackAPI, client: AsyncWebClient) -> None:
    api.fail_next("chat.postMessage")
    err = await api_error(client.chat_postMessage(channel="C1", text="x"))
    assert err.response.status_code == 429
    assert err.response.headers["Retry-After"] == "1"
    assert err.response["error"] == "ratelimited"
    assert api.messages("C1") == []
    await client.chat_postMessage(channel="C1", text="x")  # only one failure was queued


async def test_rate_limit_retry_handler_waits_and_succeeds(api: FakeSlackAPI) -> None:
    retrying = AsyncWebClient(
        token=BOT, base_url=api.base_url, retry_handlers=[AsyncRateLimitErrorRetryHandler()]
    )
    api.fail_next("chat.postMessage", retry_after=1)
    res = await retrying.chat_postMessage(channel="C1", text="eventually")
    assert res["ok"] is True
    first, second = api.calls("chat.postMessage")
    assert second.at - first.at >= 1.0
    assert [m["text"] for m in api.messages("C1")] == ["eventually"]


async def test_server_error_injection(api: FakeSlackAPI, client: AsyncWebClient) -> None:
    api.fail_next("users.info", status=500, error="fatal_error", times=2)
    for _ in range(2):
        err = await api_error(client.users_info(user="U1"))
        assert err.response.status_code == 500
        assert err.response["error"] == "fatal_error"
        assert "Retry-After" not in err.response.headers
    assert (await client.users_info(user="U1"))["user"]["id"] == "U1"
    with pytest.raises(ValueError):
        api.fail_next("users.infoo")  # a typo must not silently inject nothing


async def test_delay_and_wait_for(api: FakeSlackAPI, client: AsyncWebClient) -> None:
    api.delay("auth.test", 0.3)
    started = time.monotonic()
    task = asyncio.create_task(client.auth_test())
    calls = await api.wait_for("auth.test", timeout=1.0)
    assert calls[0].at - started < 0.3  # recorded on arrival, before the delay
    await task
    assert time.monotonic() - started >= 0.3
    with pytest.raises(TimeoutError):
        await api.wait_for("auth.test", count=2, timeout=0.1)
    api.reset_calls()
    assert api.calls() == []


async def test_delayed_call_times_out_and_stop_is_prompt() -> None:
    fake = FakeSlackAPI()
    await fake.start()
    try:
        fake.delay("auth.test", 30)
        timeout = aiohttp.ClientTimeout(total=0.2)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            with pytest.raises(TimeoutError):
                await session.post(fake.base_url + "auth.test", data={"token": BOT})
    finally:
        started = time.monotonic()
        await fake.stop()
    assert time.monotonic() - started < 0.5


# ---------------------------------------------------------------- response_url


async def test_response_url_with_webhook_client(api: FakeSlackAPI) -> None:
    url = api.response_url("C1", "U1")
    assert "/commands/T1/" in url
    webhook = AsyncWebhookClient(url)
    res = await webhook.send(text="on it", response_type="in_channel")
    assert (res.status_code, res.body) == (200, "ok")
    call = (await api.wait_for("response_url"))[0]
    assert call.params == {"text": "on it", "response_type": "in_channel"}
    assert call.context["channel_id"] == "C1" and call.context["user_id"] == "U1"
    assert api.messages("C1")[0]["text"] == "on it"
    empty = await webhook.send_dict({"response_type": "ephemeral"})
    assert (empty.status_code, empty.body) == (400, "no_text")


async def test_response_url_limits(api: FakeSlackAPI) -> None:
    unknown = await AsyncWebhookClient(api.response_url("C1", "U1") + "x").send(text="hi")
    assert (unknown.status_code, unknown.body) == (404, "no_service")
    webhook = AsyncWebhookClient(api.response_url("C1", "U1"))
    for _ in range(5):
        assert (await webhook.send(text="again")).status_code == 200
    sixth = await webhook.send(text="again")
    assert sixth.status_code == 404


# ---------------------------------------------------------------- Socket Mode


async def test_socket_mode_client_connects_and_acks(
    api: FakeSlackAPI, socket_server: FakeSocketModeServer
) -> None:
    sm = SocketModeClient(app_token=APP, web_client=AsyncWebClient(base_url=api.base_url))
    messages: list[dict[str, Any]] = []

    async def on_message(_: AsyncBaseSocketModeClient, message: dict[str, Any], __: Any) -> None:
        messages.append(message)

    async def on_request(client: AsyncBaseSocketModeClient, req: SocketModeRequest) -> None:
        await client.send_socket_mode_response(
            SocketModeResponse(envelope_id=req.envelope_id, payload={"text": req.payload["text"]})
        )

    sm.message_listeners.append(on_message)
    sm.socket_mode_request_listeners.append(on_request)
    try:
        await sm.connect()  # type: ignore[no-untyped-call]
        opened = (await api.wait_for("apps.connections.open"))[0]
        assert opened.token == APP
        payload = {"command": "/marvin", "text": "status", "user_id": "U1"}
        envelope_id = await socket_server.send_envelope(
            "slash_commands", payload, accepts_response_payload=True
        )
        ack = await socket_server.wait_ack(envelope_id, timeout=3.0)
        assert ack == {"envelope_id": envelope_id, "payload": {"text": "status"}}
        assert messages[0]["type"] == "hello"
        assert messages[1]["payload"] == payload
        assert messages[1]["accepts_response_payload"] is True
        assert "retry_attempt" not in messages[1]
    finally:
        await sm.close()  # type: ignore[no-untyped-call]


async def test_socket_mode_disconnect_triggers_reconnect(
    api: FakeSlackAPI, socket_server: FakeSocketModeServer
) -> None:
    sm = SocketModeClient(app_token=APP, web_client=AsyncWebClient(base_url=api.base_url))
    try:
        await sm.connect()  # type: ignore[no-untyped-call]
        await socket_server.wait_connections(1)
        await socket_server.disconnect_all("refresh_requested")
        await socket_server.wait_connections(2, timeout=3.0)
        assert len(await api.wait_for("apps.connections.open", count=2)) == 2
        event = {"type": "app_mention", "text": "<@UBOT> hi", "user": "U1", "channel": "C1"}
        envelope_id = await socket_server.send_envelope(
            "events_api",
            {"type": "event_callback", "event": event},
            retry_attempt=1,
            retry_reason="timeout",
        )
        assert socket_server.sent[-1]["retry_attempt"] == 1
        with pytest.raises(TimeoutError):  # nobody listens, so nothing acks
            await socket_server.wait_ack(envelope_id, timeout=0.2)
    finally:
        await sm.close()  # type: ignore[no-untyped-call]


async def test_socket_rejects_urls_it_did_not_issue(socket_server: FakeSocketModeServer) -> None:
    async with aiohttp.ClientSession() as session:
        url = f"ws://127.0.0.1:{socket_server.port}/link/?ticket=forged"
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await session.ws_connect(url)


# ---------------------------------------------------------------- signed requests


def test_slash_command_is_signed_form_data() -> None:
    body, headers = slack_requests.slash_command(
        SECRET,
        text="lock prod",
        user_id="U1",
        user_name="alice",
        channel_id="C1",
        channel_name="production",
        response_url="http://127.0.0.1:1/commands/T1/1/x",
        trigger_id="1.2.abc",
    )
    verifier = SignatureVerifier(SECRET)
    assert verifier.is_valid_request(body, headers)
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    fields = {k: v[0] for k, v in parse_qs(body.decode()).items()}
    assert fields["command"] == "/marvin"
    assert fields["text"] == "lock prod"
    assert fields["team_id"] == "T1"
    assert not verifier.is_valid_request(body.replace(b"lock", b"unlock"), headers)
    assert not SignatureVerifier("other-secret").is_valid_request(body, headers)


def test_stale_requests_do_not_verify() -> None:
    body, headers = slack_requests.url_verification(SECRET, timestamp=int(time.time()) - 600)
    assert not SignatureVerifier(SECRET).is_valid_request(body, headers)
    fresh_body, fresh_headers = slack_requests.url_verification(SECRET, challenge="c")
    assert SignatureVerifier(SECRET).is_valid_request(fresh_body, fresh_headers)
    assert json.loads(fresh_body) == {
        "token": slack_requests.VERIFICATION_TOKEN,
        "challenge": "c",
        "type": "url_verification",
    }


def test_event_callback_retry_headers() -> None:
    event = {"type": "app_mention", "text": "<@UBOT> status", "user": "U1", "channel": "C1"}
    body, headers = slack_requests.event_callback(
        SECRET,
        event,
        event_id="Ev1",
        event_time=1_700_000_000,
        retry_num=2,
        retry_reason="http_error",
    )
    assert SignatureVerifier(SECRET).is_valid_request(body, headers)
    envelope = json.loads(body)
    assert (envelope["type"], envelope["event_id"], envelope["event"]) == (
        "event_callback",
        "Ev1",
        event,
    )
    assert headers["X-Slack-Retry-Num"] == "2"
    assert headers["X-Slack-Retry-Reason"] == "http_error"
    _, first_try = slack_requests.event_callback(SECRET, event, event_id="Ev1", event_time=1)
    assert "X-Slack-Retry-Num" not in first_try


def test_block_action_payload_is_form_encoded_json() -> None:
    body, headers = slack_requests.block_action(
        SECRET,
        user_id="U1",
        action_id="approve",
        value="deploy-42",
        channel_id="C1",
        response_url="http://127.0.0.1:1/actions/T1/1/x",
        message_ts="1700000000.000100",
    )
    assert SignatureVerifier(SECRET).is_valid_request(body, headers)
    payload = json.loads(parse_qs(body.decode())["payload"][0])
    assert payload["type"] == "block_actions"
    assert payload["actions"][0]["action_id"] == "approve"
    assert payload["actions"][0]["value"] == "deploy-42"
    assert payload["container"]["message_ts"] == "1700000000.000100"


async def test_bolt_app_end_to_end_over_http(api: FakeSlackAPI) -> None:
    app = AsyncApp(signing_secret=SECRET, client=AsyncWebClient(token=BOT, base_url=api.base_url))

    @app.command("/marvin")
    async def handle(ack: AsyncAck, respond: AsyncRespond, command: dict[str, Any]) -> None:
        await ack()
        await respond(f"you said {command['text']}")

    body, headers = slack_requests.slash_command(
        SECRET,
        text="status",
        user_id="U1",
        user_name="alice",
        channel_id="C1",
        channel_name="production",
        response_url=api.response_url("C1", "U1"),
        trigger_id=api.new_trigger_id(),
    )
    res = await app.async_dispatch(AsyncBoltRequest(body=body.decode(), headers=dict(headers)))
    assert res.status == 200
    call = (await api.wait_for("response_url"))[0]
    assert call.params["text"] == "you said status"
    assert len(api.calls("auth.test")) == 1

    stale_body, stale_headers = slack_requests.slash_command(
        SECRET,
        text="status",
        user_id="U1",
        user_name="alice",
        channel_id="C1",
        channel_name="production",
        response_url=api.response_url("C1", "U1"),
        trigger_id=api.new_trigger_id(),
        timestamp=int(time.time()) - 600,
    )
    stale = await app.async_dispatch(
        AsyncBoltRequest(body=stale_body.decode(), headers=dict(stale_headers))
    )
    assert stale.status == 401


async def test_bolt_app_over_socket_mode(
    api: FakeSlackAPI, socket_server: FakeSocketModeServer
) -> None:
    app = AsyncApp(client=AsyncWebClient(token=BOT, base_url=api.base_url))

    @app.command("/marvin")
    async def handle(ack: AsyncAck, say: AsyncSay, command: dict[str, Any]) -> None:
        await ack(f"working on {command['text']}")
        await say("done")

    handler = AsyncSocketModeHandler(app, APP)
    try:
        await handler.connect_async()  # type: ignore[no-untyped-call]
        payload = {
            "command": "/marvin",
            "text": "status",
            "user_id": "U1",
            "channel_id": "C1",
            "team_id": "T1",
            "api_app_id": "A1",
            "response_url": api.response_url("C1", "U1"),
            "trigger_id": api.new_trigger_id(),
        }
        envelope_id = await socket_server.send_envelope(
            "slash_commands", payload, accepts_response_payload=True
        )
        ack = await socket_server.wait_ack(envelope_id, timeout=3.0)
        assert ack["payload"] == {"text": "working on status"}
        posted = (await api.wait_for("chat.postMessage"))[0]
        assert (posted.params["channel"], posted.params["text"]) == ("C1", "done")
    finally:
        await handler.close_async()  # type: ignore[no-untyped-call]
