"""What the tests stand on: real local servers, test data, test homes, and embctl run in-process
or as a subprocess.

- `support.hub`: a fault-injecting Hugging Face Hub server (`HubServer`) and the repos it serves.
- `support.openai_server`: a fault-injecting OpenAI-compatible embeddings server.
- `support.image_fixtures`, `support.matrix_fixtures`: repos and inputs for those backends.
- `support.runner`: `Embctl`, which runs embctl in a test home (in this process by default,
  `support.inprocess`; as ``python -m embctl`` for ``e2e`` tests), and checks on its output;
  `support.homes`: hard-linked test homes and `damage`; `support.servers.fresh`: the per-test
  view of a shared server.

``tests/`` is on ``sys.path`` (conftest.py puts it there), so tests import ``support.<module>``.
"""
