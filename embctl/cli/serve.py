"""embctl serve."""

from __future__ import annotations

from pathlib import Path

import click

from embctl.cli.options import cache_dir_option


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but loopback requires --token.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
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

    The mirror serves what the Hugging Face cache holds (huggingface_hub, `hf download`,
    sentence-transformers and `embctl pull` work against it through HF_ENDPOINT); a model
    that is not cached is a 404 unless --upstream is given. SIGTERM finishes the requests in
    flight and exits 0.
    """
    import sys

    from embctl.cli.options import resolve_cache_dir
    from embctl.serve.config import ServeConfig, check_exposure
    from embctl.serve.server import run

    check_exposure(host, token)
    config = ServeConfig(host=host, port=port, token=token, upstream=upstream,
                         cache_dir=resolve_cache_dir(cache_dir),
                         access_log=not no_access_log)
    sys.exit(run(config))
