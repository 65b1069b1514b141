"""``GET /metrics`` of a real ``embctl serve``: requests through the ``openai`` client and raw
HTTP, then the exposition parsed with prometheus_client's own parser; every counter must move
by exactly what was sent (texts computed the first time, hits the second time).  The token
rules (``--token``, ``--metrics-public``) against dedicated servers.  The route label and the
per-app registry are also tested in-process."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest
from support.runner import Embctl, copy_home
from support.serve import serving, start_serve, stop

pytest.importorskip("uvicorn")

MODEL = "all-MiniLM-L6-v2"
TOKEN = "metrics-token-3c9e"
#: Texts no other test embeds: the served home's vector cache has none of them.
TEXTS = [f"metrics probe {i}: a parcel left the {i}th depot on a rainy tuesday"
         for i in range(7)]

Samples = dict[tuple[str, frozenset], float]


def get(url: str, token: str | None = None) -> tuple[int, str, str]:
    """GET -> (status, content type, body)."""
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def scrape(url: str, token: str | None = None) -> tuple[Samples, dict[str, str]]:
    """Every sample of ``GET /metrics`` -> value, and each family's type, parsed by
    prometheus_client's parser (which raises on anything that is not the text format)."""
    from prometheus_client.parser import text_string_to_metric_families

    status, kind, body = get(url + "/metrics", token)
    assert status == 200, body
    assert kind.startswith("text/plain"), kind
    samples: Samples = {}
    types = {}
    for family in text_string_to_metric_families(body):
        types[family.name] = family.type
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in samples, f"duplicate series {key}"
            samples[key] = s.value
    return samples, types


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 when the series does not exist yet (a counter not moved)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


class Served:
    def __init__(self, home: Path, hub_url: str) -> None:
        self.embctl = Embctl.at(home, hub_url)
        self.log = home / "serve.log"
        self.proc, self.url = start_serve(self.embctl.env, log=self.log)

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key="anything", max_retries=0)


@pytest.fixture(scope="module")
def served(tmp_path_factory, pulled_home, hub_server):
    server = Served(copy_home(pulled_home, tmp_path_factory.mktemp("metrics")),
                    hub_server.url)
    yield server
    assert stop(server.proc) == 0, server.log.read_text()


# -- a real server, real clients ---------------------------------------------------------------


@pytest.mark.e2e
def test_embedded_texts_are_counted_computed_then_as_hits(served):
    client = served.client()
    before, types = scrape(served.url)
    assert types["embctl_queue_depth"] == "gauge"
    assert types["embctl_requests"] == "counter"
    assert types["embctl_embedded_texts"] == "counter"
    assert types["embctl_request_seconds"] == "histogram"
    assert types["embctl_batch_size"] == "histogram"

    # First time: every distinct text computed; the repeat within the request is a hit.
    first = client.embeddings.create(model=MODEL, input=TEXTS + [TEXTS[0]])
    assert len(first.data) == len(TEXTS) + 1
    middle, _ = scrape(served.url)
    assert delta(before, middle, "embctl_embedded_texts_total", model=MODEL,
                 cache="computed") == len(TEXTS)
    assert delta(before, middle, "embctl_embedded_texts_total", model=MODEL, cache="hit") == 1
    # The model computed exactly those texts, in one or more calls.
    assert delta(before, middle, "embctl_batch_size_sum") == len(TEXTS)
    assert delta(before, middle, "embctl_batch_size_count") >= 1
    assert value(middle, "embctl_model_loaded", model=MODEL) == 1
    assert value(middle, "embctl_queue_depth") == 0  # nothing in flight now

    # Second time: all hits from the vector cache, nothing computed, no model call.
    second = client.embeddings.create(model=MODEL, input=TEXTS)
    assert [d.embedding for d in second.data] == [d.embedding for d in first.data[:-1]]
    after, _ = scrape(served.url)
    assert delta(middle, after, "embctl_embedded_texts_total", model=MODEL,
                 cache="hit") == len(TEXTS)
    assert delta(middle, after, "embctl_embedded_texts_total", model=MODEL,
                 cache="computed") == 0
    assert delta(middle, after, "embctl_batch_size_count") == 0

    # Each embeddings request counted once, by its route template and status, and timed.
    for a, b in ((before, middle), (middle, after)):
        assert delta(a, b, "embctl_requests_total", route="/v1/embeddings", status="200") == 1
        assert delta(a, b, "embctl_request_seconds_count", route="/v1/embeddings") == 1
        assert delta(a, b, "embctl_request_seconds_sum", route="/v1/embeddings") > 0
    # The scrapes themselves are requests too.
    assert delta(before, after, "embctl_requests_total", route="/metrics", status="200") == 2


@pytest.mark.e2e
def test_client_errors_are_counted_with_their_status(served):
    client = served.client()
    before, _ = scrape(served.url)
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-model-anywhere", input="hi")
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=MODEL, input=[[101, 2023, 102]])  # token arrays: 400
    status, _, _ = get(served.url + "/wp-admin/setup-config.php")
    assert status == 404
    after, _ = scrape(served.url)

    assert delta(before, after, "embctl_requests_total", route="/v1/embeddings",
                 status="404") == 1
    assert delta(before, after, "embctl_requests_total", route="/v1/embeddings",
                 status="400") == 1
    assert delta(before, after, "embctl_requests_total", route="other", status="404") == 1
    assert delta(before, after, "embctl_request_seconds_count", route="/v1/embeddings") == 2
    # Nothing was embedded for them.
    for cache in ("hit", "computed"):
        assert delta(before, after, "embctl_embedded_texts_total", model=MODEL,
                     cache=cache) == 0


@pytest.mark.e2e
def test_a_scanner_adds_no_series(served):
    """Raw paths never become label values: 40 distinct junk paths add at most one series
    (route="other", status="404") to the request counter."""
    before, _ = scrape(served.url)
    for i in range(40):
        get(f"{served.url}/scan-{i}/probe-{i}.php?x={i}")
        get(f"{served.url}/scan-{i}/a/b/c/{i}")
    after, _ = scrape(served.url)
    routes = {dict(labels)["route"] for name, labels in after
              if name == "embctl_requests_total"}
    assert not [r for r in routes if "scan" in r], routes
    new = {key for key in after if key[0] == "embctl_requests_total"} - set(before)
    assert new <= {("embctl_requests_total",
                    frozenset({"route": "other", "status": "404"}.items()))}, new
    assert delta(before, after, "embctl_requests_total", route="other", status="404") == 80


@pytest.mark.e2e
def test_the_token_guards_metrics_too(pulled):
    with serving(pulled.env, "--token", TOKEN) as (_, url):
        status, _, body = get(url + "/metrics")
        assert status == 401, body
        assert get(url + "/metrics", "wrong-token")[0] == 401
        samples, _ = scrape(url, TOKEN)
        # The refusals were counted too (the metrics middleware is outside the token check).
        assert value(samples, "embctl_requests_total", route="/metrics", status="401") == 2


@pytest.mark.e2e
def test_metrics_public_opens_metrics_alone(pulled):
    with serving(pulled.env, "--token", TOKEN, "--metrics-public") as (_, url):
        samples, _ = scrape(url)  # no token
        assert ("embctl_queue_depth", frozenset()) in samples
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url + "/v1", api_key="anything",
                          max_retries=0).models.list()
        assert get(url + "/v1/models")[0] == 401
        assert get(url + "/healthz")[0] == 401
        models = openai.OpenAI(base_url=url + "/v1", api_key=TOKEN, max_retries=0).models.list()
        assert MODEL in {m.id for m in models.data}
        samples, _ = scrape(url)
        assert value(samples, "embctl_requests_total", route="/v1/models", status="401") == 2


# -- in-process: the route label and the registry ---------------------------------------------


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from embctl.serve.app import build_app
    from embctl.serve.config import ServeConfig

    return build_app(ServeConfig(cache_dir=tmp_path_factory.mktemp("hub")))


def label(app, method: str, path: str) -> str:
    from embctl.serve.metrics import route_label

    return route_label(app.router.routes, {"type": "http", "method": method, "path": path,
                                           "root_path": "", "headers": []})


@pytest.mark.parametrize(("method", "path", "expected"), [
    ("POST", "/v1/embeddings", "/v1/embeddings"),
    ("GET", "/v1/embeddings", "/v1/embeddings"),  # a 405: still the route's label
    ("GET", "/v1/models", "/v1/models"),
    ("POST", "/api/embed", "/api/embed"),
    ("GET", "/healthz", "/healthz"),
    ("GET", "/metrics", "/metrics"),
    ("GET", "/sentence-transformers/all-MiniLM-L6-v2/resolve/main/config.json",
     "/{repo}/resolve/{revision}/{path}"),
    ("HEAD", "/gpt2/resolve/0123abcd/onnx/model.onnx", "/{repo}/resolve/{revision}/{path}"),
    ("GET", "/api/models/org/name", "/api/models/{repo}"),
    ("GET", "/api/models/org/name/revision/main", "/api/models/{repo}/revision/{revision}"),
    ("GET", "/api/models/org/name/tree/main/onnx", "/api/models/{repo}/tree/{revision}"),
    ("POST", "/api/models/org/name/paths-info/main",
     "/api/models/{repo}/paths-info/{revision}"),
    ("GET", "/api/models/org/name/refs", "/api/models/{repo}/refs"),
    ("GET", "/wp-login.php", "other"),
    ("GET", "/a/b/c/d/e", "other"),
    ("GET", "/", "other"),
    ("POST", "/.env", "other"),
    ("GET", "/api/nothing/here", "other"),
])
def test_route_label_is_the_template_never_the_path(app, method, path, expected):
    assert label(app, method, path) == expected


def test_route_label_of_many_paths_is_a_small_fixed_set(app):
    import random

    rng = random.Random(7)
    parts = ["api", "models", "resolve", "main", "x", "..", "%2e", "v1", "tree", "a.b", ""]
    labels = {label(app, rng.choice(["GET", "POST", "HEAD", "PUT"]),
                    "/" + "/".join(rng.choice(parts) for _ in range(rng.randint(0, 7))))
              for _ in range(2000)}
    templates = {getattr(r, "path", "") for r in app.router.routes}
    from embctl.serve.metrics import MIRROR_SHAPES, OTHER

    assert labels <= templates | {lbl for _, lbl in MIRROR_SHAPES} | {OTHER}, labels


def test_each_app_has_its_own_registry(tmp_path):
    """Two apps in one process: what one records never shows in the other's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    from embctl.serve.app import build_app
    from embctl.serve.config import ServeConfig

    one = build_app(ServeConfig(cache_dir=tmp_path))
    two = build_app(ServeConfig(cache_dir=tmp_path))
    one.state.metrics.request("/v1/embeddings", 200, 0.01)
    one.state.metrics.window(MODEL, 5, 3, [2, 1])

    def total(app, name: str) -> float:
        text = app.state.metrics.exposition([])[0].decode()
        return sum(s.value for f in text_string_to_metric_families(text)
                   for s in f.samples if s.name == name)

    assert total(one, "embctl_requests_total") == 1
    assert total(one, "embctl_embedded_texts_total") == 5
    assert total(one, "embctl_batch_size_sum") == 3
    assert total(two, "embctl_requests_total") == 0
    assert total(two, "embctl_embedded_texts_total") == 0
    assert total(two, "embctl_batch_size_count") == 0
