"""Both event routes fuzzed from the receiver's own OpenAPI schema (schemathesis strategies:
valid and invalid bodies, over real HTTP): no 5xx, only documented answers, and a refused
request leaves nothing in the queue."""

from __future__ import annotations

import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from winecrm.events.receiver import WebhookAuth, create_app

from tests.winecrm.events.test_receiver import running_receiver

TOKEN = "fuzz-token-0123456789abcdef"
EXAMPLES = 150


@pytest.mark.parametrize("path", ["/webhook/email", "/webhook/behavior"])
@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
                         ids=["valid", "invalid"])
def test_fuzzed_bodies_never_break_the_receiver_or_store_a_refused_request(warehouse_url, path, mode):
    app = create_app(WebhookAuth(token=TOKEN), warehouse_url)
    seen: dict[int, int] = {}
    with running_receiver(app) as base, psycopg.connect(warehouse_url, autocommit=True) as conn:
        operation = schemathesis.openapi.from_url(f"{base}/openapi.json")[path]["POST"]

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def one_request(case):
            before = conn.execute("SELECT count(*) FROM crm.webhook_events").fetchone()[0]
            response = case.call(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"})
            after = conn.execute("SELECT count(*) FROM crm.webhook_events").fetchone()[0]
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            assert response.status_code < 500, response.text[:500]
            assert response.status_code in (200, 400, 401, 413, 415, 422), response.status_code
            if response.status_code == 200:
                assert after - before == response.json()["stored"]
            else:
                assert after == before, f"a refused request ({response.status_code}) stored something"

        one_request()
    # the fuzzing reached both sides: accepted bodies (valid mode) and refusals (invalid mode)
    expected = 200 if mode == schemathesis.GenerationMode.POSITIVE else 422
    assert seen.get(expected, 0) > 0, seen
