"""ISP operations platform (SPEC §11, scenario 3): tenants, typed events, jobs you can
pause, resume and cancel from a React page.

Two ISPs (tenants ``acme`` and ``globex``) share one platform. Each operator's token
carries its tenant, so the hub confines it to ``tenant:<tenant>/…`` channels whatever
else it asks for. The platform publishes 24 typed event types (``events.py``) through
helpers (``publishers.py``); jobs report progress on ``tenant:<tenant>/jobs`` and obey
the ``job.pause`` / ``job.resume`` / ``job.cancel`` commands (``jobs.py``).

Run it from the repository root (React for the page comes from ``clients/js``'s
``npm ci``)::

    python -m examples.isp_platform.app      # or: uvicorn examples.isp_platform.app:app

Environment (read here, at the edge, and nowhere else): ``ISP_JWT_SECRET`` (signs the
demo tokens; default: a random one per start), ``ISP_JOB_TICK`` (seconds per job step,
default 0.5), ``ISP_JOB_STEPS`` (steps per job, default 40), ``ISP_HOST`` / ``ISP_PORT``
(for ``python -m``; default 127.0.0.1:8000).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from examples.isp_platform.events import FAMILIES, register
from examples.isp_platform.jobs import JobRunner
from examples.isp_platform.publishers import Publisher
from fastapi import Body, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from tidings import Hub, Identity, Settings
from tidings.auth.authenticator import credential_from
from tidings.auth.tokens import mint_token
from tidings.errors import Forbidden, TidingsError

HERE = Path(__file__).resolve().parent
CLIENT_DIR = HERE.parents[1] / "clients" / "js"

#: Demo operators: who they are, their tenant, the commands their token allows.
USERS: dict[str, dict[str, Any]] = {
    "ana": {"name": "Ana, NOC of acme", "tenant": "acme", "commands": ["job.*"]},
    "vic": {"name": "Vic, viewer at acme", "tenant": "acme", "commands": []},
    "gus": {"name": "Gus, NOC of globex", "tenant": "globex", "commands": ["job.*"]},
}

#: What the page loads, by name: the example's own files, the JS client and its React
#: hooks (clients/js), and React's UMD builds from clients/js/node_modules (`npm ci`).
ASSETS: dict[str, Path] = {
    "console.js": HERE / "static" / "console.js",
    "react-shim.js": HERE / "static" / "react-shim.js",
    "tidings.js": CLIENT_DIR / "tidings.js",
    "react.js": CLIENT_DIR / "react.js",
    "react.production.min.js": CLIENT_DIR / "node_modules/react/umd/react.production.min.js",
    "react-dom.production.min.js": (
        CLIENT_DIR / "node_modules/react-dom/umd/react-dom.production.min.js"
    ),
}


class LoginIn(BaseModel):
    user: str = Field(description="a demo user: ana, vic or gus")


class JobIn(BaseModel):
    kind: str = Field("firmware_upgrade", min_length=1, max_length=60)
    target: str = Field("OLT-1", min_length=1, max_length=60)


def create_app(
    *, jwt_secret: str | None = None, job_tick: float | None = None, job_steps: int | None = None
) -> FastAPI:
    """The platform: its API and page, with the hub mounted at ``/realtime``."""
    secret = jwt_secret or os.environ.get("ISP_JWT_SECRET") or secrets.token_urlsafe(32)
    hub = Hub(Settings(jwt_secret=secret, strict_types=True))
    register(hub)
    publisher = Publisher(hub)
    runner = JobRunner(
        publisher,
        tick=job_tick if job_tick is not None else float(os.environ.get("ISP_JOB_TICK", "0.5")),
        steps=job_steps if job_steps is not None else int(os.environ.get("ISP_JOB_STEPS", "40")),
    )
    runner.install(hub)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with hub:
            yield
            await runner.close()

    app = FastAPI(title="ISP operations platform", lifespan=lifespan)
    app.state.hub = hub
    app.state.publisher = publisher
    app.state.jobs = runner

    @app.exception_handler(TidingsError)
    async def tidings_error(request: Request, exc: TidingsError) -> Response:
        body = {"code": exc.code, "message": exc.message, **exc.details()}
        return JSONResponse({"error": body}, status_code=exc.status)

    def operator(request: Request) -> Identity:
        """The caller, from its token (``?token=``, ``Authorization`` or the cookie)."""
        credential = credential_from(request.scope["query_string"], request.scope["headers"])
        identity = hub.authenticator.authenticate(credential)
        if identity.tenant is None:
            raise Forbidden("this API is for the operators of a tenant")
        return identity

    @app.get("/api/users")
    def users() -> dict[str, Any]:
        return {"users": [{"user": key, **value} for key, value in USERS.items()]}

    @app.post("/api/login")
    def login(body: LoginIn, response: Response) -> dict[str, Any]:
        """A token for a demo user (a real platform asks its identity provider); also
        set as the ``access_token`` cookie, which the hub reads too."""
        user = USERS.get(body.user)
        if user is None:
            raise Forbidden(f"no demo user {body.user!r}")
        tenant = user["tenant"]
        token = mint_token(
            secret,
            sub=body.user,
            ttl=8 * 3600,
            tenant=tenant,
            channels=[f"tenant:{tenant}/*"],
            commands=user["commands"],
        )
        response.set_cookie("access_token", token, httponly=True, samesite="strict")
        return {"user": body.user, "token": token, **user}

    @app.get("/api/jobs")
    def jobs(request: Request) -> dict[str, Any]:
        return {"jobs": [job.describe() for job in runner.jobs(operator(request).tenant or "")]}

    @app.post("/api/jobs", status_code=201)
    async def start_job(request: Request, body: JobIn | None = None) -> dict[str, Any]:
        identity = operator(request)
        if not identity.may_command("job.cancel"):
            raise Forbidden("only operators who may run jobs start them")
        assert identity.tenant is not None
        body = body or JobIn()
        job = await runner.start(identity.tenant, body.kind, body.target, identity.client_id or "?")
        return job.describe()

    @app.post("/api/alerts", status_code=201)
    async def raise_alert(request: Request, body: dict[str, Any] = Body()) -> dict[str, Any]:
        """Raise an alert in the caller's tenant; the hub checks the fields
        (``alert.raised``'s model) and refuses a bad one with ``invalid_event``."""
        tenant = operator(request).tenant
        assert tenant is not None
        alert = {"alert_id": secrets.token_hex(4), "source": "manual", **body}
        event = await publisher.publish(tenant, "alert.raised", alert)
        return event.to_dict()

    @app.get("/", response_class=HTMLResponse)
    def console() -> FileResponse:
        return FileResponse(HERE / "static" / "index.html")

    @app.get("/assets/{name}")
    def asset(name: str) -> Response:
        path = ASSETS.get(name)
        if path is None:
            return JSONResponse({"error": {"code": "not_found"}}, status_code=404)
        if not path.is_file():  # React missing: `npm ci` was not run in clients/js
            return JSONResponse(
                {"error": {"code": "not_installed", "message": "run `npm ci` in clients/js"}},
                status_code=503,
            )
        return FileResponse(path, media_type="text/javascript")

    # One SSE stream per event family, at the platform's own paths; WebSocket for the
    # live sessions and jobs of a tenant. The path's tenant fills the channel, and the
    # token's tenant must be the same (else 403): no tenant reads another's.
    for family in FAMILIES:
        app.routes.append(
            hub.sse_route(
                f"/api/tenants/{{tenant}}/{family}/events", channels=[f"tenant:{{tenant}}/{family}"]
            )
        )
    app.routes.append(
        hub.websocket_route(
            "/ws/tenants/{tenant}/live",
            channels=["tenant:{tenant}/sessions", "tenant:{tenant}/jobs"],
        )
    )
    # The hub's own endpoints: /realtime/ws, /realtime/api/v1/…, /realtime/asyncapi.json.
    app.mount("/realtime", hub.asgi_app())
    return app


app = create_app()
#: The hub, for ``tidings schema typescript --hub examples.isp_platform.app:hub``.
hub: Hub = app.state.hub


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(
        app,
        host=os.environ.get("ISP_HOST", "127.0.0.1"),
        port=int(os.environ.get("ISP_PORT", "8000")),
        timeout_graceful_shutdown=3,
    )
