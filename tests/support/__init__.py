"""What the tests stand on: real local servers, test data, and embctl run as a subprocess.

- `support.hub`: a fault-injecting Hugging Face Hub server (`HubServer`) and the repos it serves.
- `support.openai_server`: a fault-injecting OpenAI-compatible embeddings server.
- `support.image_fixtures`, `support.matrix_fixtures`: repos and inputs for those backends.
- `support.runner`: `Embctl`, which runs ``python -m embctl`` in a test home, and checks on its
  output; `support.servers.fresh`: the per-test view of a shared server.

``tests/`` is on ``sys.path`` (conftest.py puts it there), so tests import ``support.<module>``.
"""
