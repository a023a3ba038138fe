"""The action server: rasa_sdk's app for `actions/`, open only to holders of ACTION_SERVER_TOKEN.

`rasa run actions` (rasa_sdk 3.6) has no authentication and listens on every interface, and an
action trusts the tracker it is sent: anyone who can reach it could opt a patient out, book or
cancel in their name. So every request must carry `Authorization: Bearer <token>` (Rasa sends
it from endpoints.yml), checked before any action runs; only /health stays open, for the
supervisor. It listens on ACTION_SERVER_HOST:ACTION_SERVER_PORT.
"""

from __future__ import annotations

import hmac
import logging
import sys

from rasa_sdk import utils
from rasa_sdk.endpoint import create_app
from sanic import Sanic, response
from sanic.request import Request
from sanic.response import HTTPResponse

from booking.settings import get_settings

ACTION_PACKAGE = "actions"
OPEN_PATHS = frozenset({"/health"})


def create_authenticated_app(token: str) -> Sanic:
    # No CORS origins: no browser has any business here.
    app = create_app(ACTION_PACKAGE, cors_origins=None)
    expected = f"Bearer {token}".encode()

    # sanic_cors still answers OPTIONS itself, before this runs: an empty 200 that runs nothing.
    @app.on_request
    async def require_token(request: Request) -> HTTPResponse | None:
        if request.path in OPEN_PATHS:
            return None
        given = request.headers.get("authorization", "").encode()
        if hmac.compare_digest(given, expected):
            return None
        return response.json({"error": "not authenticated"}, status=401)

    return app


def main() -> int:
    settings = get_settings()
    if not settings.action_server_token:
        print("error: ACTION_SERVER_TOKEN is not set; the action server does not run open",
              file=sys.stderr)
        return 2
    # As `rasa run actions` did: our actions log at INFO, Sanic only its errors.
    utils.configure_colored_logging(logging.INFO)
    utils.update_sanic_log_level()
    app = create_authenticated_app(settings.action_server_token)
    app.run(settings.action_server_host, settings.action_server_port,
            workers=utils.number_of_sanic_workers())
    return 0


if __name__ == "__main__":
    sys.exit(main())
