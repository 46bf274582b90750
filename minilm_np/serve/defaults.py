"""The server's default limits (create_app()'s and the command line's)."""

DEFAULTS = {"max_batch_tokens": 16384, "max_wait_ms": 2.0, "max_concurrent_requests": 512,
            "max_client_batch_size": 2048, "payload_limit": 2_000_000}
