"""Reading a model directory's JSON files, with errors that name the file."""
import json
import os

from .errors import ModelFileError


def read_json(path, required=True):
    """The parsed contents of ``path``; None when it is missing and not ``required``.

    Raises
    ------
    ModelFileError
        The file is missing (and ``required``) or not valid JSON.
    """
    if not os.path.exists(path):
        if required:
            raise ModelFileError(f"{path}: file is missing")
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelFileError(f"{path}: not valid JSON ({error})") from None


def read_json_object(path, required=True):
    """:func:`read_json` of a file that must hold a JSON object (a dict; None when missing and not
    ``required``)."""
    raw = read_json(path, required)
    if raw is not None and not isinstance(raw, dict):
        raise ModelFileError(f"{path}: expected a JSON object")
    return raw
