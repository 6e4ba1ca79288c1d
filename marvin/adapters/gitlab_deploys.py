"""What deploy scheduling needs of GitLab: a project's freeze periods and its pipelines.

Through python-gitlab, each call in a thread under GitLabClient's deadline, errors typed.
Creating a pipeline is a change: a call that got no answer is `OutcomeUnknown`, and the
scheduler looks for the pipeline by the slot's key (a pipeline variable) before it would
create another.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

from marvin.adapters.gitlab import ONCE, GitLabClient

# Retrying is decided by the scheduler (it looks for the pipeline first), not python-gitlab.
KEY_VARIABLE = "MARVIN_DEPLOY_KEY"


@dataclass(frozen=True)
class FreezePeriod:
    """GitLab's freeze period: cron expressions for its start and end, in a time zone."""

    id: int
    start: str
    end: str
    timezone: str


@dataclass(frozen=True)
class PipelineRun:
    id: int
    url: str
    status: str

    @property
    def finished(self) -> bool:
        return self.status in ("success", "failed", "canceled", "skipped")


class DeployBackend(Protocol):
    name: str

    async def freeze_periods(self) -> list[FreezePeriod]: ...

    async def trigger(self, *, ref: str, variables: dict[str, str]) -> PipelineRun: ...

    async def pipeline(self, pipeline_id: int) -> PipelineRun: ...

    async def find(self, *, ref: str, key: str) -> PipelineRun | None:
        """The pipeline on `ref` whose KEY_VARIABLE is `key`, if one was created."""
        ...


def _run(raw: Any) -> PipelineRun:
    return PipelineRun(id=int(raw.id), url=str(raw.web_url), status=str(raw.status))


class GitLabDeploys:
    name = "gitlab"

    def __init__(self, client: GitLabClient, project: str) -> None:
        self._client = client
        self._project = project

    def _proj(self) -> Any:
        return self._client.gl.projects.get(self._project, lazy=True)

    async def freeze_periods(self) -> list[FreezePeriod]:
        # python-gitlab (6.x) has no manager for freeze periods: its generic paginated
        # GET reads them, with the same session, errors and pagination.
        path = f"/projects/{quote(self._project, safe='')}/freeze_periods"

        def read() -> list[FreezePeriod]:
            rows = self._client.gl.http_list(path, get_all=True, **ONCE)
            assert isinstance(rows, list)
            return [
                FreezePeriod(
                    id=int(r["id"]),
                    start=str(r["freeze_start"]),
                    end=str(r["freeze_end"]),
                    timezone=str(r.get("cron_timezone") or "UTC"),
                )
                for r in rows
            ]

        return await self._client.call(read)

    async def trigger(self, *, ref: str, variables: dict[str, str]) -> PipelineRun:
        def create() -> PipelineRun:
            data = {"ref": ref, "variables": [{"key": k, "value": v} for k, v in variables.items()]}
            return _run(self._proj().pipelines.create(data, **ONCE))

        return await self._client.call(create, changes=True)

    async def pipeline(self, pipeline_id: int) -> PipelineRun:
        def read() -> PipelineRun:
            return _run(self._proj().pipelines.get(pipeline_id, **ONCE))

        return await self._client.call(read)

    async def find(self, *, ref: str, key: str) -> PipelineRun | None:
        def look() -> PipelineRun | None:
            project = self._proj()
            for row in project.pipelines.list(ref=ref, source="api", per_page=20, **ONCE):
                pipeline = project.pipelines.get(row.id, lazy=True)
                for var in pipeline.variables.list(get_all=True, **ONCE):
                    if var.key == KEY_VARIABLE and var.value == key:
                        return _run(project.pipelines.get(row.id, **ONCE))
            return None

        return await self._client.call(look)
