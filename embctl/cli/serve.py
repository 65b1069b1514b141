"""embctl serve."""

from __future__ import annotations

from pathlib import Path

import click

from embctl.cli.options import cache_dir_option


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but loopback requires --token.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on; 0 picks a free one (the log says which).")
@click.option("--token", envvar="EMBCTL_SERVE_TOKEN", default=None, show_envvar=True,
              help="Require 'Authorization: Bearer TOKEN' on every route.")
@click.option("--upstream", default=None, metavar="URL",
              help="Fetch models missing from the cache through from this Hub "
              "(e.g. https://huggingface.co), then serve them from the cache.")
@click.option("--ssl-certfile", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="FILE", help="Serve HTTPS with this PEM certificate (chain); needs "
              "--ssl-keyfile. The token then never crosses the network in clear.")
@click.option("--ssl-keyfile", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="FILE", help="The certificate's private key, PEM, unencrypted.")
@cache_dir_option
@click.option("--no-access-log", is_flag=True, help="No access-log lines on stderr.")
@click.option("--metrics-public", is_flag=True,
              help="With --token: GET /metrics (Prometheus) answers without the token; every "
              "other route still requires it. Without --token it changes nothing.")
@click.option("--max-request-tokens", type=click.IntRange(min=1), default=None, metavar="N",
              help="The most tokens one embeddings request's inputs may sum to (each as the "
              "model computes it, truncated at its max_seq_length); more is a 413. Not "
              "given: EMBCTL_SERVE_MAX_REQUEST_TOKENS, else 1048576 (2048 inputs of 512 "
              "tokens).")
def command(host: str, port: int, token: str | None, upstream: str | None,
            ssl_certfile: Path | None, ssl_keyfile: Path | None, cache_dir: Path | None,
            no_access_log: bool, metrics_public: bool,
            max_request_tokens: int | None) -> None:
    """Serve this machine's cache: a Hub mirror and an OpenAI-compatible embeddings API.

    \b
    Examples:
      embctl serve                                     # http://127.0.0.1:8080
      HF_ENDPOINT=http://127.0.0.1:8080 embctl pull all-MiniLM-L6-v2   # from another shell
      curl localhost:8080/v1/embeddings -d '{"model": "all-MiniLM-L6-v2", "input": "hi"}'
      EMBCTL_SERVE_TOKEN=s3cret embctl serve --host 0.0.0.0   # on the LAN, with a token
      HF_TOKEN=s3cret HF_ENDPOINT=http://server:8080 embctl pull all-MiniLM-L6-v2
      embctl serve --upstream https://huggingface.co   # fetch what the cache lacks
      embctl serve --host 0.0.0.0 --token s3cret --ssl-certfile cert.pem --ssl-keyfile key.pem
      curl localhost:8080/metrics                      # Prometheus metrics

    The mirror serves what the Hugging Face cache holds, read-only (huggingface_hub,
    `hf download`, sentence-transformers and `embctl pull` work against it through
    HF_ENDPOINT): the files that were pulled, no others. A model or file that is not cached
    is the Hub's 404 unless --upstream is given. With a token, every route (/healthz too)
    requires it (/metrics unless --metrics-public). Logs on stderr; SIGTERM finishes the
    requests in flight (those still waiting for a model after 6 s get a 503) and exits 0
    within 10 s; a second signal answers them at once. Ctrl-C exits 130.
    """
    import sys

    from embctl.cli.options import resolve_cache_dir
    from embctl.errors import UsageError
    from embctl.serve.config import ServeConfig, check_exposure
    from embctl.serve.server import run
    from embctl.serve.tls import check_pair

    check_exposure(host, token)
    check_pair(ssl_certfile, ssl_keyfile)
    if upstream is not None and not upstream.startswith(("http://", "https://")):
        raise UsageError(f"--upstream {upstream}: give an http:// or https:// URL")
    config = ServeConfig(host=host, port=port, token=token, upstream=upstream,
                         cache_dir=resolve_cache_dir(cache_dir),
                         access_log=not no_access_log, metrics_public=metrics_public,
                         max_request_tokens=max_request_tokens, ssl_certfile=ssl_certfile,
                         ssl_keyfile=ssl_keyfile)
    sys.exit(run(config))
