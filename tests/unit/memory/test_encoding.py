"""The store's JSON text: the encoder kept per thread writes what json's encoder writes."""

from __future__ import annotations

import datetime
import threading
import time
from typing import Any

import pytest

from master_sdk.memory.encoding import Encoder, encode, encode_fast

VALUES: list[Any] = [
    "x",
    "",
    'é\n\u2028"\\',
    1,
    -0.0,
    1.5,
    1e300,
    float("inf"),
    None,
    True,
    [],
    {},
    {"a": [1, 2.0, "é"], "b": {"c": None}},
    [datetime.date(2020, 1, 1)],
    {1: 2, 2.5: 3, False: 4, None: 5},
    (1, "two"),
]


@pytest.mark.parametrize("value", VALUES)
def test_the_kept_encoder_writes_what_a_new_one_writes(value: Any) -> None:
    assert encode_fast(value) == encode(value)


def test_a_cycle_is_refused_and_the_encoder_stays_usable() -> None:
    """An error inside a container leaves no mark that would refuse the next value."""
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular"):
        encode_fast(loop)
    shared = {"k": [1]}
    assert encode_fast([shared, shared]) == '[{"k":[1]},{"k":[1]}]'

    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no text")

    with pytest.raises(RuntimeError):
        encode_fast({"a": [Broken()]})
    assert encode_fast({"a": [1]}) == '{"a":[1]}'


def test_threads_encoding_the_same_value_at_once_never_see_a_cycle() -> None:
    """Each thread has its own encoder: a value encoded by two threads at once is not
    mistaken for a container inside itself."""

    class Yielding:
        """Encoded through ``str``: gives the other threads a turn mid-value."""

        def __str__(self) -> str:
            time.sleep(0)
            return "y"

    value = {"rows": [{"i": i, "at": Yielding()} for i in range(200)]}
    expected = encode(value)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(20):
                assert encode_fast(value) == expected
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_the_store_encoder_redacts_before_encoding() -> None:
    enc = Encoder(lambda v: {"scrubbed": v})
    assert enc.dumps(None) is None
    assert enc.dumps([1]) == '{"scrubbed":[1]}'
