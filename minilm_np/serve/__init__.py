"""``minilm-np serve``: an HTTP embedding and rerank service for OpenAI, Ollama, TEI and Cohere clients.

Needs the ``serve`` extra (``pip install "minilm-np[serve]"``). :func:`create_app` gives the
Starlette application, to run with any ASGI server or mount in another app;
:func:`minilm_np.serve.server.serve` runs it on uvicorn as the command line does.
"""
__all__ = ["create_app"]


def __getattr__(name):
    # lazy, so that the command line can read the serve options without the extra installed
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
