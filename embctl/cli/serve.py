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
@cache_dir_option
@click.option("--no-access-log", is_flag=True, help="No access-log lines on stderr.")
def command(host: str, port: int, token: str | None, upstream: str | None,
            cache_dir: Path | None, no_access_log: bool) -> None:
    """Serve this machine's cache: a Hub mirror and an OpenAI-compatible embeddings API.

    \b
    Examples:
      embctl serve                                     # http://127.0.0.1:8080
      HF_ENDPOINT=http://127.0.0.1:8080 embctl pull all-MiniLM-L6-v2   # from another shell
      curl localhost:8080/v1/embeddings -d '{"model": "all-MiniLM-L6-v2", "input": "hi"}'
      EMBCTL_SERVE_TOKEN=s3cret embctl serve --host 0.0.0.0   # on the LAN, with a token
      HF_TOKEN=s3cret HF_ENDPOINT=http://server:8080 embctl pull all-MiniLM-L6-v2
      embctl serve --upstream https://huggingface.co   # fetch what the cache lacks

    The mirror serves what the Hugging Face cache holds, read-only (huggingface_hub,
    `hf download`, sentence-transformers and `embctl pull` work against it through
    HF_ENDPOINT): the files that were pulled, no others. A model or file that is not cached
    is the Hub's 404 unless --upstream is given. With a token, every route (/healthz too)
    requires it. Logs on stderr; SIGTERM finishes the requests in flight and exits 0.
    """
    import sys

    from embctl.cli.options import resolve_cache_dir
    from embctl.errors import UsageError
    from embctl.serve.config import ServeConfig, check_exposure
    from embctl.serve.server import run

    check_exposure(host, token)
    if upstream is not None and not upstream.startswith(("http://", "https://")):
        raise UsageError(f"--upstream {upstream}: give an http:// or https:// URL")
    config = ServeConfig(host=host, port=port, token=token, upstream=upstream,
                         cache_dir=resolve_cache_dir(cache_dir),
                         access_log=not no_access_log)
    sys.exit(run(config))
