"""`embctl serve`'s listings and status codes, with real clients against one real server:

- the mirror answers huggingface_hub's ``HfApi(endpoint=...).list_models()`` (``GET
  /api/models``: ``search``, ``author``, ``filter``, ``limit``, pages by ``Link``), listing
  the models its cache holds, and a bad ``limit`` is the Hub's 400, not a 500;
- Ollama's ``GET /api/tags`` lists what ``GET /v1/models`` lists, and the older ``POST
  /api/embeddings`` answers ``{"embedding": [...]}`` (the vector ``/api/embed`` gives);
- an unknown route is a 404, a wrong method on a known one a 405 with ``Allow``, each in the
  error shape of the API the path belongs to (OpenAI's, Ollama's, the Hub's).

The server's cache holds two models, pulled from the test hub: all-MiniLM-L6-v2
(`pulled_home`) and ``embctl-test/minilm-noonnx`` (the same files under another id and
owner), so that ``search``, ``author`` and ``limit`` have something to leave out.  The pure
parts (query parsing, paging, shapes) also get in-process unit tests, at the end (they
import what they test: the e2e tests here run against any tree).
"""

from __future__ import annotations

import http.client
import json
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from support.hub import MINILM
from support.onnx_export_fixtures import NOONNX, build_minilm_noonnx_repo
from support.runner import Embctl, base_env, copy_home
from support.serve import output, start_serve, stop

from embctl.serve.openai_shapes import ApiError, Limits

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

MODEL = "all-MiniLM-L6-v2"
LIMITS = Limits(max_inputs=16, max_body_bytes=1 << 20)


def raw(url: str, method: str, path: str, body: bytes | dict | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """(status, lower-cased headers, body) of one raw request."""
    parts = urlsplit(url)
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    sent = {"Content-Type": "application/json"} if data is not None else {}
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    try:
        conn.request(method, path, body=data, headers={**sent, **(headers or {})})
        response = conn.getresponse()
        return (response.status, {k.lower(): v for k, v in response.getheaders()},
                response.read())
    finally:
        conn.close()


class Served:
    def __init__(self, home: Path, hub_url: str) -> None:
        self.embctl = Embctl.at(home, hub_url)
        self.proc, self.url = start_serve(self.embctl.env)

    def commit(self, repo_id: str) -> str:
        folder = self.embctl.cache / ("models--" + repo_id.replace("/", "--"))
        return (folder / "refs" / "main").read_text().strip()

    def request(self, method: str, path: str, body: bytes | dict | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        return raw(self.url, method, path, body, headers)

    def json(self, method: str, path: str, body: bytes | dict | None = None):
        status, headers, raw = self.request(method, path, body)
        return status, headers, json.loads(raw)


@pytest.fixture(scope="module")
def served(tmp_path_factory, pulled_home, hub_root, hub_server):
    home = copy_home(pulled_home, tmp_path_factory.mktemp("routes"))
    build_minilm_noonnx_repo(hub_root)
    Embctl.at(home, hub_server.url)("pull", f"st:{NOONNX}", "-q", check=True)
    server = Served(home, hub_server.url)
    yield server
    assert stop(server.proc) == 0, output(server.proc)[1]


def hf_api(served: Served, tmp_path: Path):
    """huggingface_hub's HfApi for the server, in a fresh home's environment (no HF_TOKEN,
    no HF_HUB_OFFLINE from the caller)."""
    from support.inprocess import environment

    return environment(base_env(tmp_path / "client", served.url))


# -- GET /api/models: huggingface_hub's list_models --------------------------------------------

@pytest.mark.e2e
def test_list_models_lists_the_cached_models(served, tmp_path):
    with hf_api(served, tmp_path):
        from huggingface_hub import HfApi

        api = HfApi(endpoint=served.url)
        models = list(api.list_models())
        info = api.model_info(MINILM)  # /api/models/{repo} is not shadowed by the listing
    assert [m.id for m in models] == [NOONNX, MINILM]  # by id, whole cache
    for m in models:
        assert m.sha == served.commit(m.id)
        assert m.author == m.id.split("/")[0]
        assert m.library_name == "sentence-transformers"
        assert "sentence-transformers" in m.tags and m.pipeline_tag == "sentence-similarity"
        assert m.siblings is None  # a listing, not model info
    assert info.id == MINILM and info.sha == served.commit(MINILM)
    assert "model.safetensors" in {s.rfilename for s in info.siblings}


@pytest.mark.e2e
@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"search": "minilm"}, [NOONNX, MINILM]),  # case-insensitive: "MiniLM" and "minilm"
    ({"search": "NOONNX"}, [NOONNX]),
    ({"search": "transformers/all"}, [MINILM]),  # a substring of the whole id
    ({"search": "no-such-model"}, []),
    ({"author": "sentence-transformers"}, [MINILM]),
    ({"author": "embctl-test"}, [NOONNX]),
    ({"author": "embctl"}, []),  # the namespace, not a prefix of it
    ({"limit": 1}, [NOONNX]),
    ({"limit": 5}, [NOONNX, MINILM]),
    ({"search": "minilm", "author": "sentence-transformers", "limit": 1}, [MINILM]),
    ({"filter": "sentence-transformers"}, [NOONNX, MINILM]),
    ({"filter": "gguf"}, []),
])
def test_list_models_filters(served, tmp_path, kwargs, expected):
    with hf_api(served, tmp_path):
        from huggingface_hub import HfApi

        got = [m.id for m in HfApi(endpoint=served.url).list_models(**kwargs)]
    assert got == expected


@pytest.mark.e2e
def test_list_models_pages_follow_the_link_header(served, tmp_path):
    status, headers, first = served.json("GET", "/api/models?limit=1&search=MiniLM")
    assert status == 200 and [m["id"] for m in first] == [NOONNX]
    link = headers["link"]
    assert link.startswith("<") and link.endswith('>; rel="next"')
    nxt = urlsplit(link[1:link.index(">")])
    assert f"{nxt.scheme}://{nxt.netloc}" == served.url
    assert sorted(nxt.query.split("&")) == ["limit=1", "search=MiniLM", "skip=1"]
    status, headers, second = served.json("GET", f"{nxt.path}?{nxt.query}")
    assert status == 200 and [m["id"] for m in second] == [MINILM]
    assert "link" not in headers  # the last page
    # huggingface_hub follows the link itself: page by page, one model each
    with hf_api(served, tmp_path):
        from huggingface_hub.utils._pagination import paginate

        pages = list(paginate(f"{served.url}/api/models", params={"limit": 1}, headers={}))
    assert [m["id"] for m in pages] == [NOONNX, MINILM]


@pytest.mark.e2e
@pytest.mark.parametrize("query", ["limit=abc", "limit=-1", "limit=0", "limit=1.5",
                                   "skip=-3", "skip=x"])
def test_a_bad_limit_is_the_hubs_400(served, query):
    status, headers, body = served.json("GET", f"/api/models?{query}")
    assert status == 400, body
    assert set(body) == {"error"} and query.split("=")[0] in body["error"]
    assert headers["x-error-message"] == body["error"]


@pytest.mark.e2e
def test_huggingface_hub_reads_a_bad_limit_as_a_bad_request(served, tmp_path):
    """HfApi.list_models cannot send a bad limit (it slices its results by it first): the
    request its pages go through can, and huggingface_hub raises the Hub's 400 for it."""
    with hf_api(served, tmp_path):
        from huggingface_hub.errors import BadRequestError
        from huggingface_hub.utils import get_session, hf_raise_for_status

        response = get_session().get(f"{served.url}/api/models", params={"limit": "ten"})
        with pytest.raises(BadRequestError) as info:
            hf_raise_for_status(response)
    assert info.value.response.status_code == 400
    assert "'limit'" in str(info.value)


# -- Ollama: GET /api/tags, POST /api/embeddings ------------------------------------------------

@pytest.mark.e2e
def test_ollama_tags_list_what_v1_models_lists(served):
    status, _, listed = served.json("GET", "/v1/models")
    assert status == 200
    status, headers, tags = served.json("GET", "/api/tags")
    assert status == 200 and headers["content-type"] == "application/json"
    assert set(tags) == {"models"}
    assert [m["name"] for m in tags["models"]] == [row["id"] for row in listed["data"]]
    assert len(tags["models"]) == 2
    fields = {"name", "model", "modified_at", "size", "digest", "details"}
    for m in tags["models"]:
        assert set(m) == fields and m["model"] == m["name"]
        assert datetime.fromisoformat(m["modified_at"]).tzinfo is not None
        assert isinstance(m["size"], int) and m["size"] > 20_000_000  # the weights at least
        assert set(m["details"]) >= {"format", "family", "parameter_size",
                                     "quantization_level"}
    by_name = {m["name"]: m for m in tags["models"]}
    assert by_name[MODEL]["digest"] == served.commit(MINILM)
    # Each name is what Ollama's routes take as "model".
    for name in by_name:
        status, _, answer = served.json("POST", "/api/embeddings",
                                        {"model": name, "prompt": "a listed model"})
        assert status == 200 and len(answer["embedding"]) == 384, answer


@pytest.mark.e2e
def test_ollama_embeddings_gives_the_vector_api_embed_gives(served):
    text = "the legacy route computes this one first"  # before /api/embed caches it
    status, headers, legacy = served.json("POST", "/api/embeddings",
                                          {"model": MODEL, "prompt": text})
    assert status == 200 and set(legacy) == {"embedding"}
    assert headers["content-type"] == "application/json"
    status, _, current = served.json("POST", "/api/embed", {"model": MODEL, "input": text})
    assert status == 200
    a = np.array(legacy["embedding"], dtype=np.float64)
    b = np.array(current["embeddings"][0], dtype=np.float64)
    assert a.shape == b.shape == (384,)
    assert float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))) >= 0.9999
    # Ollama: an empty prompt loads the model and answers no vector.
    assert served.json("POST", "/api/embeddings", {"model": MODEL, "prompt": ""})[2] == {
        "embedding": []}


@pytest.mark.e2e
@pytest.mark.parametrize(("body", "status", "words"), [
    ({"model": "nobody/nothing", "prompt": "x"}, 404, "not found"),
    ({"prompt": "x"}, 400, "'model' is required"),
    ({"model": MODEL, "prompt": ["a", "b"]}, 400, "'prompt' must be a string"),
    ({"model": MODEL, "prompt": 3}, 400, "'prompt' must be a string"),
    (b"{not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, "JSON object"),
])
def test_ollama_embeddings_errors_are_ollamas(served, body, status, words):
    got, _, answer = served.json("POST", "/api/embeddings", body)
    assert got == status
    assert set(answer) == {"error"} and isinstance(answer["error"], str)
    assert words in answer["error"]


# -- 404 and 405 --------------------------------------------------------------------------------

OPENAI, OLLAMA, HUB = "openai", "ollama", "hub"


@pytest.mark.e2e
@pytest.mark.parametrize(("method", "path", "status", "allow", "shape"), [
    ("GET", "/v1/embeddings", 405, "POST", OPENAI),
    ("PUT", "/v1/embeddings", 405, "POST", OPENAI),
    ("DELETE", "/v1/models", 405, "GET, HEAD", OPENAI),
    ("POST", "/v1/models", 405, "GET, HEAD", OPENAI),
    ("GET", "/api/embed", 405, "POST", OLLAMA),
    ("GET", "/api/embeddings", 405, "POST", OLLAMA),
    ("POST", "/api/tags", 405, "GET, HEAD", OLLAMA),
    ("POST", "/healthz", 405, "GET, HEAD", HUB),
    ("POST", "/api/models", 405, "GET, HEAD", HUB),
    ("DELETE", f"/api/models/{MINILM}", 405, "GET, HEAD", HUB),
    ("PUT", f"/api/models/{MINILM}/tree/main", 405, "GET, HEAD", HUB),
    ("GET", f"/api/models/{MINILM}/paths-info/main", 405, "POST", HUB),
    ("POST", f"/api/models/{MINILM}/refs", 405, "GET, HEAD", HUB),
    ("POST", f"/{MINILM}/resolve/main/config.json", 405, "GET, HEAD", HUB),
    ("DELETE", f"/{MINILM}/resolve/main/config.json", 405, "GET, HEAD", HUB),
    ("POST", "/nope", 404, None, HUB),
    ("GET", "/nope", 404, None, HUB),
    ("DELETE", "/nope/deeper/still", 404, None, HUB),
    ("POST", "/v1/nope", 404, None, OPENAI),
    ("GET", "/v1/embeddings/extra", 404, None, OPENAI),
    ("POST", "/v1/chat/completions", 404, None, OPENAI),
    ("GET", "/api/nope", 404, None, HUB),
    ("POST", "/api/generate", 404, None, HUB),
    ("POST", f"/api/models/{MINILM}/nope", 404, None, HUB),
])
def test_status_codes_and_allow(served, method, path, status, allow, shape):
    got, headers, raw = served.request(method, path, b"{}" if method != "GET" else None)
    assert got == status, raw[:300]
    assert headers.get("allow") == allow
    body = json.loads(raw)
    if shape == OPENAI:
        assert set(body) == {"error"}
        assert set(body["error"]) == {"message", "type", "param", "code"}
        assert body["error"]["type"] == "invalid_request_error"
        assert f"({method} {path})" in body["error"]["message"]
    else:
        assert set(body) == {"error"} and isinstance(body["error"], str)
        assert path in body["error"]
    if shape == HUB:
        assert headers["x-error-message"] == body["error"]
    else:
        assert "x-error-message" not in headers


@pytest.mark.e2e
def test_known_routes_still_answer(served):
    """What the 404/405 rework must not take: each route with its own method."""
    assert served.request("GET", "/healthz")[0] == 200
    assert served.request("HEAD", "/v1/models")[0] == 200
    assert served.request("HEAD", f"/{MINILM}/resolve/main/config.json")[0] == 200
    status, _, body = served.json("POST", f"/api/models/{MINILM}/paths-info/main",
                                  {"paths": ["config.json"]})
    assert status == 200 and [e["path"] for e in body] == ["config.json"]
    status, headers, _ = served.request("GET", "/api/models/nobody/nothing")
    assert (status, headers["x-error-code"]) == (404, "RepoNotFound")


@pytest.mark.e2e
def test_the_token_is_checked_before_the_route(served):
    """With a token, an unknown route and a wrong method are 401s like any other request:
    a client without the token learns nothing about the routes."""
    proc, url = start_serve(served.embctl.env, "--token", "routes-token")
    try:
        for method, path in (("POST", "/nope"), ("GET", "/v1/embeddings"), ("GET", "/api/tags"),
                             ("DELETE", f"/api/models/{MINILM}")):
            assert raw(url, method, path)[0] == 401, (method, path)
        auth = {"Authorization": "Bearer routes-token"}
        assert raw(url, "POST", "/nope", b"{}", auth)[0] == 404
        status, headers, _ = raw(url, "GET", "/v1/embeddings", None, auth)
        assert (status, headers["allow"]) == (405, "POST")
        assert raw(url, "GET", "/api/tags", None, auth)[0] == 200
    finally:
        assert stop(proc) == 0, output(proc)[1]


# -- the pure parts, in-process -----------------------------------------------------------------

@pytest.mark.parametrize(("query", "words"), [
    ({"limit": ["abc"]}, "'limit'"), ({"limit": ["-1"]}, "'limit'"), ({"limit": ["0"]}, "'limit'"),
    ({"skip": ["-1"]}, "'skip'"), ({"skip": ["1e3"]}, "'skip'"),
])
def test_parse_query_refuses_bad_counts(query, words):
    from embctl.serve import hublist

    with pytest.raises(ValueError, match=words):
        hublist.parse_query(query)


def test_parse_query_and_page():
    from embctl.serve import hublist

    q = hublist.parse_query({"search": [" MiniLM "], "author": ["Org"], "limit": ["5000"],
                             "skip": ["1"], "filter": ["a", "b"], "sort": ["downloads"]})
    assert (q.search, q.author, q.limit, q.skip, q.tags) == ("MiniLM", "Org", hublist.PAGE,
                                                             1, ("a", "b"))
    assert hublist.wanted_id("org/all-minilm-x", q) and not hublist.wanted_id("other/minilm", q)
    assert not hublist.wanted_id("org/bert", q)
    items = [{"id": str(i)} for i in range(5)]
    q = hublist.parse_query({"limit": ["2"], "skip": ["2"]})
    assert hublist.page(items, q) == (items[2:4], 4)
    assert hublist.page(items, hublist.parse_query({"limit": ["2"], "skip": ["4"]})) == (
        items[4:], None)
    assert hublist.next_link("http://h:1/api/models?limit=2&cursor=abc&skip=2&search=x", 4) == (
        '<http://h:1/api/models?limit=2&search=x&skip=4>; rel="next"')


def test_shapes_by_path():
    from embctl.serve import routing

    long = "/x" * 30_000
    assert len(routing.not_found("GET", long).headers["x-error-message"]) < 1100
    assert len(routing.not_found("GET", "/v1" + long).body) < 1200
    assert routing.shape_of("/v1/embeddings") == routing.shape_of("/v1/x/y") == "openai"
    assert routing.shape_of("/api/embed") == routing.shape_of("/api/tags/") == "ollama"
    assert routing.shape_of("/api/models") == routing.shape_of("/v1x") == "hub"
    assert routing.allow_header({"POST", "HEAD", "GET", "BREW"}) == "GET, HEAD, POST, BREW"


def test_parse_legacy():
    from embctl.serve import ollama

    req = ollama.parse_legacy(b'{"model": " m ", "prompt": "hi", "options": {}}', LIMITS)
    assert (req.model, req.texts) == ("m", ["hi"])
    assert ollama.parse_legacy(b'{"model": "m"}', LIMITS).texts == []
    for body, param in ((b'{"prompt": "x"}', "model"), (b'{"model": "m", "prompt": {}}',
                                                         "prompt")):
        with pytest.raises(ApiError) as info:
            ollama.parse_legacy(body, LIMITS)
        assert (info.value.status, info.value.param) == (400, param)
    vector = np.arange(3, dtype=np.float32)[None, :] / 4
    assert json.loads(ollama.legacy_response(vector)) == {"embedding": [0.0, 0.25, 0.5]}
    assert json.loads(ollama.legacy_response(None)) == {"embedding": []}


def test_tag_shape():
    from embctl.serve import ollama

    row = {"id": "st:org/m", "created": 86400, "backend": "st", "revision": "a" * 40,
           "size_bytes": 123, "dim": 8}
    assert ollama.tag(row) == {
        "name": "st:org/m", "model": "st:org/m", "modified_at": "1970-01-02T00:00:00Z",
        "size": 123, "digest": "a" * 40,
        "details": {"parent_model": "", "format": "st", "family": "", "families": None,
                    "parameter_size": "", "quantization_level": ""}}
    assert len(ollama.tag({"id": "x"})["digest"]) == 64
