"""Static files shipped inside the package: the dashboard, the browser client, the icon,
and the assets of the API docs page.

The docs page (``/docs``) is Swagger UI, served from the package, not a CDN: a self-hosted
hub often runs where the internet is not reachable. Its assets come from
``fastapi-offline``, a small package (FastAPI is its only dependency) that bundles a recent
Swagger UI for this purpose.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.staticfiles import StaticFiles

__all__ = ["STATIC_DIR", "mount_static"]

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
SWAGGER_DIR = Path(str(files("fastapi_offline") / "static"))


def mount_static(app: FastAPI, *, openapi_url: str = "/openapi.json") -> None:
    @app.get("/", include_in_schema=False)
    async def dashboard() -> Response:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        # Browsers ask for it on every page: an answer, not a 404 in the console.
        return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title="tidings API",
            swagger_js_url=f"{root}/static/docs/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/static/docs/swagger-ui.css",
            swagger_favicon_url=f"{root}/static/favicon.svg",
        )

    app.mount("/static/docs", StaticFiles(directory=SWAGGER_DIR), name="swagger-ui")
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
