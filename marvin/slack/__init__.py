"""The Slack transport: a Bolt AsyncApp over HTTP (aiohttp) or Socket Mode.

It only converts: Slack payloads become Invocations, Replies become Slack messages. Every
decision is the pipeline's.
"""
