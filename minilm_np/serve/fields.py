"""Reading a request's JSON fields with checks whose errors name the field (never a 500)."""
import numbers

from .errors import VALIDATION, ApiError


def require_object(body):
    """The request body must be a JSON object."""
    if not isinstance(body, dict):
        raise ApiError(VALIDATION, f"the request body must be a JSON object, got {type(body).__name__}")
    return body


def _int_like(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def texts(body, name, *, required=True, token_ids_hint=None):
    """Field ``name`` as a list of str (a str is one text).

    Parameters
    ----------
    token_ids_hint : str or None
        The message for an array of token ids (integers), which is refused.

    Returns
    -------
    (list of str, bool): the texts and whether the field was a single str.
    """
    value = body.get(name)
    if value is None:
        if required:
            raise ApiError(VALIDATION, f"`{name}` is required", param=name)
        return [], False
    if isinstance(value, str):
        return [value], True
    if not isinstance(value, list):
        raise ApiError(VALIDATION, f"`{name}` must be a string or an array of strings, got {type(value).__name__}",
                       param=name)
    for index, item in enumerate(value):
        if isinstance(item, str):
            continue
        if token_ids_hint and (_int_like(item) or (isinstance(item, list) and all(_int_like(i) for i in item))):
            raise ApiError(VALIDATION, f"`{name}[{index}]` is token ids: {token_ids_hint}", param=name)
        raise ApiError(VALIDATION, f"`{name}[{index}]` must be a string, got {type(item).__name__}", param=name)
    return value, False


def boolean(body, name, default):
    """Field ``name`` as a bool (absent or null: ``default``)."""
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ApiError(VALIDATION, f"`{name}` must be true or false, got {value!r:.40}", param=name)
    return value


def count(body, name, default=None, *, limit=None):
    """Field ``name`` as a positive integer (absent or null: ``default``), at most ``limit``."""
    value = body.get(name)
    if value is None:
        return default
    if not _int_like(value) or value < 1:
        raise ApiError(VALIDATION, f"`{name}` must be a positive integer, got {value!r:.40}", param=name)
    if limit is not None and value > limit:
        raise ApiError(VALIDATION, f"`{name}` is {value}, more than this model's {limit}", param=name)
    return int(value)


def string(body, name, default=None, *, choices=None):
    """Field ``name`` as a str (absent or null: ``default``), one of ``choices`` when given."""
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, str) or (choices is not None and value not in choices):
        wanted = f"one of {list(choices)}" if choices is not None else "a string"
        raise ApiError(VALIDATION, f"`{name}` must be {wanted}, got {value!r:.60}", param=name)
    return value
