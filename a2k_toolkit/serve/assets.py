"""The files ``a2k serve`` serves over HTTP: the browser page (``serve/page/``: ``index.html``, ``app.js``, the
capture worklet; docs/serve.md, "The browser page") and the bundled sample face. Package data, read per request."""

from __future__ import annotations

from importlib import resources

#: the page loads nothing from elsewhere: scripts, images and the WebSocket are this server's (photos as data: URLs)
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
JS, HTML = "text/javascript; charset=utf-8", "text/html; charset=utf-8"
#: URL path -> (file under a2k_toolkit/, media type, extra headers)
FILES: dict[str, tuple[str, str, dict[str, str]]] = {
    "/": ("serve/page/index.html", HTML, PAGE_HEADERS),
    "/app.js": ("serve/page/app.js", JS, PAGE_HEADERS),
    "/capture-worklet.js": ("serve/page/capture-worklet.js", JS, PAGE_HEADERS),
    "/sample.jpg": ("samples/astronaut.jpg", "image/jpeg", {}),
}


def read(name: str) -> bytes:
    """The package file ``a2k_toolkit/<name>``."""
    return resources.files("a2k_toolkit").joinpath(name).read_bytes()


def routes() -> list:
    """Starlette routes serving :data:`FILES`."""
    from starlette.responses import Response
    from starlette.routing import Route

    def route(name: str, media_type: str, headers: dict[str, str]):
        async def endpoint(request):
            return Response(read(name), media_type=media_type, headers={"Cache-Control": "no-cache", **headers})

        return endpoint

    return [Route(path, route(*spec)) for path, spec in FILES.items()]
