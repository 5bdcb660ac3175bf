"""OPTIONS for a path that serves several methods, answered with all of them.

Litestar (2.25) builds a path's automatic OPTIONS handler with the first handler registered
for it and keeps that one when another method joins the path, so OPTIONS on
/v1/session/{id} answered `Allow: DELETE, OPTIONS` without GET. RFC 9110 asks `Allow` to
list the methods the resource supports: this handler, registered before the others, reads
them from the app's route at request time.
"""

from collections.abc import Sequence
from typing import Any

from litestar import Request, Response, route
from litestar.enums import HttpMethod
from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute
from litestar.status_codes import HTTP_204_NO_CONTENT


def allow_every_method(paths: Sequence[str]) -> HTTPRouteHandler:
    @route(list(paths), http_method=HttpMethod.OPTIONS, include_in_schema=False)
    async def allowed(request: Request[Any, Any, Any]) -> Response[None]:
        template = request.scope["path_template"]
        methods = next(
            found.methods
            for found in request.app.routes
            if isinstance(found, HTTPRoute) and found.path_format == template
        )
        return Response(
            None, status_code=HTTP_204_NO_CONTENT, headers={"Allow": ", ".join(sorted(methods))}
        )

    return allowed
