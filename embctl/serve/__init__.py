"""``embctl serve``: one machine's cache as a Hub mirror and an OpenAI-compatible endpoint.

    config.py      ServeConfig: what the command line decided
    app.py         build_app(config): the Starlette app, its auth and health routes
    server.py      run(config): uvicorn, signals, exit codes
    mirror.py      routes(config): the read-only Hub mirror over the HF cache
    cacheview.py   the cache seen as a Hub: revisions, servable files, their ETags
    hubapi.py      the JSON bodies of /api/models/... from a cached snapshot
    upstream.py    --upstream: fetching what the cache lacks, once, with the core's pull
    embeddings.py  routes(config): POST /v1/embeddings, GET /v1/models, the batcher

Nothing here is imported by ``embctl --help``; starlette and uvicorn are imported by the
modules that need them, which only ``embctl serve`` imports.
"""
