"""Exceptions that minilm-np raises on purpose; each message names the file, tensor or text at fault."""


class ModelNotFoundError(FileNotFoundError):
    """No model could be found where it was looked for; the message lists what was tried."""


class ModelFileError(ValueError):
    """A model file exists but is missing, truncated, corrupt or inconsistent with the others."""


class UnsupportedModelError(ValueError):
    """The model's architecture or a setting it asks for is not one minilm-np implements."""


class NonFiniteOutputError(FloatingPointError):
    """A text's output (embedding or token vectors) holds a NaN or an infinity; the message names the text."""
