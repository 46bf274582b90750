"""Request errors, and each API family's own shape for them (OpenAI, Ollama, TEI, Cohere)."""
from dataclasses import dataclass

from starlette.responses import JSONResponse

# What an ApiError with no status means: the request's content is wrong; each family has its code.
VALIDATION = None


class ApiError(Exception):
    """A request the server answers with an error instead of a result.

    Parameters
    ----------
    status : int or None
        HTTP status; None for a validation error, which each family sends with its own status
        (OpenAI, Ollama and Cohere 400, TEI 422).
    message : str
        What was wrong, naming the request field.
    param : str or None
        The request field at fault.
    code : str or None
        A machine-readable reason: ``model_not_found``, ``rate_limit_exceeded``, ``invalid_api_key``,
        ``context_length_exceeded``, ``payload_too_large``, ``batch_too_large``, ``empty``, ``internal``.
    headers : dict or None
        Extra response headers (``Retry-After``).
    """

    def __init__(self, status, message, *, param=None, code=None, headers=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers


def _openai_type(status):
    if status == 401:
        return "authentication_error"
    if status == 429:
        return "rate_limit_error"
    return "server_error" if status >= 500 else "invalid_request_error"


def _openai_body(error, status):
    return {"error": {"message": error.message, "type": _openai_type(status), "param": error.param,
                      "code": error.code}}


def _ollama_body(error, status):
    return {"error": error.message}


# TEI's ErrorType names (text-embeddings-inference's router)
def _tei_type(error, status):
    if status == 429:
        return "Overloaded"
    if status >= 500:
        return "Backend"
    if status == 401:
        return "Unhealthy"
    return "Empty" if error.code == "empty" else "Validation"


def _tei_body(error, status):
    return {"error": error.message, "error_type": _tei_type(error, status)}


def _cohere_body(error, status):
    return {"message": error.message}


@dataclass(frozen=True)
class Family:
    """An API family: its name, the status of its validation errors and its error body."""

    name: str
    validation_status: int
    body: object  # (ApiError, status) -> dict

    def response(self, error: ApiError) -> JSONResponse:
        """The family's JSON response for ``error``."""
        status = self.validation_status if error.status is VALIDATION else error.status
        return JSONResponse(self.body(error, status), status_code=status, headers=error.headers)


OPENAI = Family("openai", 400, _openai_body)
OLLAMA = Family("ollama", 400, _ollama_body)
TEI = Family("tei", 422, _tei_body)
COHERE = Family("cohere", 400, _cohere_body)
