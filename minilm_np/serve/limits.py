"""What every route goes through: the API key, the concurrency limit, the payload limit, JSON
parsing, errors in the route's own shape, and the request metrics."""
import hmac
import logging
import time

import orjson
from starlette.responses import Response
from starlette.routing import Route

from .errors import ApiError

log = logging.getLogger("minilm_np.serve")
RETRY_AFTER_S = "1"


def json_response(content, status=200):
    """A JSON response (orjson: a float is written in its shortest round-trip form)."""
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


class Limits:
    """The per-route checks and accounting.

    Parameters
    ----------
    api_key : str or None
        When set, every route but the open ones wants ``Authorization: Bearer <api_key>``.
    max_concurrent_requests : int
        Requests handled at once; one more is answered 429 with ``Retry-After``.
    payload_limit : int
        Largest request body in bytes (more: 413, read no further).
    metrics : minilm_np.serve.metrics.Metrics
    """

    def __init__(self, *, api_key, max_concurrent_requests, payload_limit, metrics):
        self._expected = f"Bearer {api_key}".encode() if api_key else None
        self.max_concurrent_requests = max_concurrent_requests
        self.payload_limit = payload_limit
        self.metrics = metrics
        self.in_flight = 0

    def _check_key(self, request):
        if self._expected is None:
            return
        given = request.headers.get("authorization", "").encode("utf-8", "replace")
        if not hmac.compare_digest(given, self._expected):  # constant time
            raise ApiError(401, "a valid API key is required: send the header `Authorization: Bearer <key>`",
                           code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

    async def read_json(self, request):
        """The request body as JSON, read up to the payload limit."""
        declared = request.headers.get("content-length", "")
        too_large = ApiError(413, f"the request body is larger than this server's --payload-limit of "
                                  f"{self.payload_limit} bytes", code="payload_too_large")
        if declared.isdigit() and int(declared) > self.payload_limit:
            raise too_large
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.payload_limit:
                raise too_large
            chunks.append(chunk)
        try:
            return orjson.loads(b"".join(chunks))
        except orjson.JSONDecodeError as error:
            raise ApiError(400, f"the request body is not valid JSON: {error}", code="invalid_json") from None

    def route(self, path, family, handler, methods=("POST",), *, open_route=False):
        """A Starlette route whose ``handler(request)`` runs behind the checks.

        Parameters
        ----------
        family : minilm_np.serve.errors.Family
            The API whose error shape the route answers in.
        open_route : bool
            No API key and no concurrency limit (``/health``, ``/metrics``).
        """
        async def endpoint(request):
            start = time.perf_counter()
            admitted = False
            try:
                if not open_route:
                    self._check_key(request)
                    if self.in_flight >= self.max_concurrent_requests:
                        raise ApiError(429, f"the server is handling its --max-concurrent-requests of "
                                            f"{self.max_concurrent_requests}; retry later",
                                       code="rate_limit_exceeded", headers={"Retry-After": RETRY_AFTER_S})
                    self.in_flight += 1
                    admitted = True
                response = await handler(request)
            except ApiError as error:
                response = family.response(error)
            except Exception as error:  # a bug: answered in the route's shape, logged with its traceback
                log.exception("%s %s failed", request.method, path)
                response = family.response(ApiError(500, f"internal error ({type(error).__name__})",
                                                    code="internal"))
            finally:
                if admitted:
                    self.in_flight -= 1
            self.metrics.request(path, response.status_code, time.perf_counter() - start)
            return response

        return Route(path, endpoint, methods=list(methods))
