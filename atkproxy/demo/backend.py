"""An in-memory "registrations" workflow with the REST shape Automatiko generates.

It plays the synchronous workflow backend in `atkproxy demo` and in the integration tests, so the
proxy can be shown and tested against every way an Automatiko call can end:

    POST   /registrations[?businessKey=]          start; the decisions, in order:
             body not a JSON object              -> 400 {"message"}
             businessKey of an active instance   -> 409 {"message"}
             name == "crash"                     -> 500 {"id", "failedNodeId", "message"}
             age < 18 (error end event)          -> 409 {"error": "underage", "message"}
             approval is true (user task opens)  -> 200 model, instance stays active
             otherwise (completes at once)       -> 200 model, instance removed
    GET    /registrations                         active models
    GET    /registrations/{id}                    model
    PUT    /registrations/{id}                    replace the variables -> model
    PATCH  /registrations/{id}                    merge into the variables -> model
    DELETE /registrations/{id}                    abort -> model, instance removed
    GET    /registrations/{id}/tasks              open user tasks
    POST   /registrations/{id}/approval/{taskId}  complete the task and the instance -> model
    POST   /registrations/{id}/{signal}           signal; its name is appended to "signals"

Every request accepts `?delay=<seconds>`, awaited before the answer, to show that the proxy's
202 does not wait for the backend.
"""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

JSONObject = dict[str, Any]

WORKFLOW = "registrations"
TASK = "approval"
MINIMUM_AGE = 18


@dataclass
class Instance:
    """An active workflow instance: its variables (the model) and its open user tasks."""

    model: JSONObject
    tasks: dict[str, str] = field(default_factory=dict)  # task id -> task name

    @property
    def id(self) -> str:
        return str(self.model["id"])


class Registry:
    """Active instances by id; completed and aborted ones are dropped, as Automatiko does."""

    def __init__(self) -> None:
        self._active: dict[str, Instance] = {}

    def __contains__(self, instance_id: object) -> bool:
        return instance_id in self._active

    def __iter__(self) -> Iterator[Instance]:
        return iter(list(self._active.values()))

    def add(self, instance: Instance) -> None:
        self._active[instance.id] = instance

    def get(self, instance_id: str) -> Instance:
        try:
            return self._active[instance_id]
        except KeyError:
            raise _error(web.HTTPNotFound, f"instance with id {instance_id} not found") from None

    def remove(self, instance_id: str) -> Instance:
        instance = self.get(instance_id)
        del self._active[instance_id]
        return instance


REGISTRY = web.AppKey("registry", Registry)


def create_backend() -> web.Application:
    """The example backend: a fresh application with an empty registry."""
    app = web.Application(middlewares=[_delay])
    app[REGISTRY] = Registry()
    base = f"/{WORKFLOW}"
    app.router.add_post(base, start)
    app.router.add_get(base, list_instances)
    app.router.add_get(base + "/{id}", get_instance)
    app.router.add_put(base + "/{id}", replace_variables)
    app.router.add_patch(base + "/{id}", merge_variables)
    app.router.add_delete(base + "/{id}", abort)
    app.router.add_get(base + "/{id}/tasks", list_tasks)
    app.router.add_post(base + "/{id}/" + TASK + "/{task_id}", complete_task)
    app.router.add_post(base + "/{id}/{signal}", signal)
    return app


# --- handlers: the body is read before the registry is touched, so no await splits a change ---


async def start(request: web.Request) -> web.Response:
    variables = await _json_object(request)
    registry = request.app[REGISTRY]
    instance_id = request.query.get("businessKey") or str(uuid.uuid4())
    if instance_id in registry:
        raise _error(web.HTTPConflict, f"instance with id {instance_id} exists")
    model = _with_id(instance_id, variables)
    _run_start_nodes(model)
    if model.get(TASK) is True:
        registry.add(Instance(model, tasks={str(uuid.uuid4()): TASK}))
    return web.json_response(model)


async def list_instances(request: web.Request) -> web.Response:
    return web.json_response([instance.model for instance in request.app[REGISTRY]])


async def get_instance(request: web.Request) -> web.Response:
    return web.json_response(_active(request).model)


async def replace_variables(request: web.Request) -> web.Response:
    variables = await _json_object(request)
    instance = _active(request)
    instance.model = _with_id(instance.id, variables)
    return web.json_response(instance.model)


async def merge_variables(request: web.Request) -> web.Response:
    variables = await _json_object(request)
    instance = _active(request)
    instance.model = _with_id(instance.id, {**instance.model, **variables})
    return web.json_response(instance.model)


async def abort(request: web.Request) -> web.Response:
    instance = request.app[REGISTRY].remove(request.match_info["id"])
    return web.json_response(instance.model)


async def list_tasks(request: web.Request) -> web.Response:
    instance = _active(request)
    tasks = [_task_view(task_id, name) for task_id, name in instance.tasks.items()]
    return web.json_response(tasks)


async def complete_task(request: web.Request) -> web.Response:
    phase = request.query.get("phase", "complete")
    if phase != "complete":
        raise _error(web.HTTPBadRequest, f"phase {phase} is not supported, only complete")
    output = await _json_object(request, required=False)
    instance = _active(request)
    task_id = request.match_info["task_id"]
    if instance.tasks.get(task_id) != TASK:
        raise _error(web.HTTPNotFound, f"task {task_id} not found in instance {instance.id}")
    request.app[REGISTRY].remove(instance.id)
    return web.json_response(_with_id(instance.id, {**instance.model, **output}))


async def signal(request: web.Request) -> web.Response:
    instance = _active(request)
    signals = [*instance.model.get("signals", []), request.match_info["signal"]]
    instance.model = {**instance.model, "signals": signals}
    return web.json_response(instance.model)


# --- helpers ---


@web.middleware
async def _delay(request: web.Request, handler: Handler) -> web.StreamResponse:
    raw = request.query.get("delay")
    if raw is not None:
        await asyncio.sleep(_parse_delay(raw))
    return await handler(request)


def _parse_delay(raw: str) -> float:
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise _error(web.HTTPBadRequest, f"delay must be a non-negative number of seconds: {raw}")
    return seconds


def _run_start_nodes(model: JSONObject) -> None:
    """The workflow's logic up to its first wait state; an error ends the instance unkept."""
    if model.get("name") == "crash":
        raise _json_error(
            web.HTTPInternalServerError,
            {
                "id": model["id"],
                "failedNodeId": "ValidateRegistration",
                "message": "registration service crashed while validating",
            },
        )
    age = model.get("age")
    if age is None:
        return
    if isinstance(age, bool) or not isinstance(age, int | float):
        raise _error(web.HTTPBadRequest, "age must be a number")
    if age < MINIMUM_AGE:
        raise _json_error(
            web.HTTPConflict,
            {"error": "underage", "message": f"registrant must be {MINIMUM_AGE} or older"},
        )


def _active(request: web.Request) -> Instance:
    return request.app[REGISTRY].get(request.match_info["id"])


def _with_id(instance_id: str, variables: JSONObject) -> JSONObject:
    """The model as Automatiko returns it: the variables with the instance id first."""
    return {"id": instance_id, **{k: v for k, v in variables.items() if k != "id"}}


def _task_view(task_id: str, name: str) -> JSONObject:
    return {
        "id": task_id,
        "name": name,
        "formLink": f"/management/tasks/link/{task_id}",
        "reference": f"/{name}/{task_id}",
    }


async def _json_object(request: web.Request, *, required: bool = True) -> JSONObject:
    text = await request.text()
    if not required and not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise _error(web.HTTPBadRequest, "body is not valid JSON") from None
    if not isinstance(value, dict):
        raise _error(web.HTTPBadRequest, "body must be a JSON object")
    return value


def _error(kind: type[web.HTTPError], message: str) -> web.HTTPError:
    return _json_error(kind, {"message": message})


def _json_error(kind: type[web.HTTPError], body: JSONObject) -> web.HTTPError:
    return kind(text=json.dumps(body), content_type="application/json")
