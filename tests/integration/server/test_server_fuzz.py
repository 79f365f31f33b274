"""Property-based fuzzing of every API endpoint from the server's own OpenAPI document
(schemathesis, on the real server): requests that fit the document and requests that
break it, never a server error. Path parameters are drawn by schemathesis; about half of
the cases are pointed at a real paused run, so the handlers behind the 404s are fuzzed
too."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

import master_sdk as ms
from tests.support.server import TOKENS, Server

EXAMPLES = 15  # per operation and mode (valid and invalid requests)


@pytest.fixture(scope="module")
def api_schema(server: Server) -> schemathesis.BaseSchema:
    """The OpenAPI document as the server serves it."""
    return schemathesis.openapi.from_url(f"{server.url}/api/v1/openapi.json")


@pytest.fixture(scope="module")
def real_runs(notebook: ms.Workbench) -> Iterator[str]:
    """An endless cycle over paused runs (for approval and for input)."""
    ids = []
    for i in range(6):
        run = notebook.run("hello_world/greet", {"text": f"fuzz {i}"}, by="sam")
        if i % 2:
            run.approve(by="nina")
        ids.append(run.id)
    return itertools.cycle(ids)


def test_no_request_makes_a_server_error(
    api_schema: schemathesis.BaseSchema, server: Server, real_runs: Iterator[str]
) -> None:
    """Whatever the request to whichever operation, the answer is not a 5xx (as the
    admin, who may call them all). Each operation gets its own derandomised Hypothesis
    search of EXAMPLES cases; every failure is reported with its operation."""
    headers = {"Authorization": f"Bearer {TOKENS['ada']}"}
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15, [op.label for op in operations]
    modes = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
    for operation, mode in itertools.product(operations, modes):

        @given(case=operation.as_strategy(mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: schemathesis.Case) -> None:
            run_id = next(real_runs)
            if case.path_parameters and "run_id" in case.path_parameters and int(
                run_id[-1], 16
            ) % 2:
                case.path_parameters["run_id"] = run_id
            response = case.call_and_validate(
                base_url=server.url, headers=headers, checks=[not_a_server_error], timeout=60
            )
            statuses[response.status_code] += 1

        try:
            fuzz()
        except Exception as exc:  # every operation is fuzzed; all failures shown
            failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert not failures, "\n\n".join(failures)
    print(f"answers by status over {operations and len(operations)} operations: {statuses}")
    # the search reached the handlers, not only the validation in front of them
    assert sum(n for code, n in statuses.items() if 200 <= code < 300) > EXAMPLES
    assert statuses[422] > 0 and statuses[404] > 0
