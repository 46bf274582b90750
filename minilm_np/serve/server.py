"""Running the app on uvicorn for ``minilm-np serve``: options, socket, startup line, signals."""
import argparse
import contextlib
import logging
import os
import signal
import socket
import sys
import threading

from .defaults import DEFAULTS

API_KEY_ENV = "MINILM_NP_API_KEY"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
# What the command says when the serve extra is missing.
MISSING_EXTRA = "minilm-np serve needs the serve extra: pip install \"minilm-np[serve]\""


def add_arguments(p, positive_int):
    """The ``serve`` command's options (besides --model, --quantize, --threads, --backend)."""
    p.add_argument("--rerank-model", default=None, help="a cross-encoder for /rerank and /v1/rerank")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8080, help="port (default: 8080; 0 picks a free one)")
    p.add_argument("--served-model-name", action="append", default=[],
                   help="a name the embedding model answers to (repeatable; the first is listed)")
    p.add_argument("--api-key", default=None,
                   help=f"require `Authorization: Bearer KEY` (default: ${API_KEY_ENV}; none: no key)")
    p.add_argument("--max-batch-tokens", type=positive_int, default=DEFAULTS["max_batch_tokens"],
                   help="tokens coalesced from concurrent requests into one batch (default: %(default)s)")
    p.add_argument("--max-wait-ms", type=float, default=DEFAULTS["max_wait_ms"],
                   help="how long a batch waits for requests on their way (default: %(default)s)")
    p.add_argument("--max-concurrent-requests", type=positive_int, default=DEFAULTS["max_concurrent_requests"],
                   help="requests handled at once; more are answered 429 (default: %(default)s)")
    p.add_argument("--max-client-batch-size", type=positive_int, default=DEFAULTS["max_client_batch_size"],
                   help="texts one request may send; more are answered 413 (default: %(default)s)")
    p.add_argument("--payload-limit", type=positive_int, default=DEFAULTS["payload_limit"],
                   help="largest request body in bytes; larger are answered 413 (default: %(default)s)")
    p.add_argument("--auto-truncate", action=argparse.BooleanOptionalAction, default=True,
                   help="cut over-long texts at the model's maximum (default: on; off answers 422)")
    p.add_argument("--cors-allow-origin", action="append", default=[],
                   help="an origin allowed by CORS (repeatable; default: CORS off)")
    p.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="log level (default: info)")
    p.add_argument("--access-log", action="store_true", help="log every request (default: off)")


def _bind(host, port):
    """A listening-ready socket on ``host:port`` (port 0: a free one, read back for the startup line)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def _server_class():
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, with a startup line and a SIGTERM that ends in exit status 0."""

        banner = ""

        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            if self.started:
                print(self.banner, file=sys.stderr, flush=True)

        @contextlib.contextmanager
        def capture_signals(self):
            # uvicorn raises the signal again once it has drained, so SIGTERM would end the
            # process with status -15; a drained, orderly stop here is status 0.
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server


def serve(args):
    """Load the models, bind, print the startup line, serve until SIGTERM or SIGINT, drain."""
    try:
        import uvicorn

        from .app import create_app
    except ImportError as error:
        raise ImportError(f"{MISSING_EXTRA} ({error})") from None
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV) or None
    sock = _bind(args.host, args.port)
    app = create_app(args.model, rerank_model=args.rerank_model, threads=args.threads, backend=args.backend,
                     quantize=args.quantize, served_model_name=args.served_model_name, api_key=api_key,
                     cors_allow_origin=args.cors_allow_origin, auto_truncate=args.auto_truncate,
                     max_batch_tokens=args.max_batch_tokens, max_wait_ms=args.max_wait_ms,
                     max_concurrent_requests=args.max_concurrent_requests,
                     max_client_batch_size=args.max_client_batch_size, payload_limit=args.payload_limit)
    server = app.state.server
    model = server.embedder.model
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    rerank = f", rerank {server.names.rerank_names[0]}" if server.names.rerank_names else ""
    config = uvicorn.Config(app, log_level=args.log_level, access_log=args.access_log, lifespan="off",
                            timeout_graceful_shutdown=None)
    instance = _server_class()(config)
    instance.banner = (f"minilm-np serve: listening on http://{shown}:{port} (model {server.names.embed_names[0]}, "
                       f"{model.quantization or 'fp32'}, {model.threads} threads, {model.backend} backend{rerank}"
                       f"{', API key required' if api_key else ''})")
    if not api_key and host not in ("127.0.0.1", "::1", "localhost"):
        logging.getLogger("minilm_np.serve").warning("listening on %s without an API key", host)
    instance.run(sockets=[sock])
