"""Where durable calls go: the host's imports inside a component, else the
active fake of ``durable_sdk.testing``.

Inside a componentize-py build (CPython compiled for WASI, with the
generated ``wit_world`` bindings), the names below are the bindings
themselves, so the SDK behaves exactly as it would importing them directly.
In plain CPython (tests, editors, type checkers) they are small stand-ins of
the same shape: ``durable`` sends each call to the ``FakeDurable`` that is
running, or raises a ``RuntimeError`` that says what to do.
"""

import sys
from dataclasses import dataclass
from enum import Enum
from typing import Optional

try:
    if sys.platform != "wasi":  # bindings generated for an editor are not a host
        raise ImportError
    import wit_world
    from componentize_py_types import Err, Ok
    from wit_world import exports
    from wit_world.imports import durable
    # The world also imports wasi:http/types, so componentize-py names this
    # package's `types` interface in full.
    from wit_world.imports import durable_workflow_types as types
except ImportError:
    IN_COMPONENT = False
else:
    IN_COMPONENT = True
    WitWorldBase = wit_world.WitWorld
    StepsBase = exports.Steps


# The fakes that are running (durable_sdk.testing.FakeDurable), innermost
# last: durable calls go to the last one.
active = []

NO_HOST = (
    "durable calls need the durable host or durable_sdk.testing.FakeDurable "
    "(in a test: FakeDurable(...).run(workflow, input); a step's own code: step.body(value))"
)


if not IN_COMPONENT:

    class WitWorldBase:
        """Stands in for the generated ``wit_world.WitWorld`` outside a component."""

    class StepsBase:
        """Stands in for the generated ``wit_world.exports.Steps`` outside a component."""

    class Ok:
        """The success case of a WIT ``result`` (as ``componentize_py_types.Ok``)."""

        def __init__(self, value):
            self.value = value

        def __repr__(self):
            return f"Ok({self.value!r})"

    class Err(Exception):
        """The failure case of a WIT ``result`` (as ``componentize_py_types.Err``)."""

        def __init__(self, value):
            super().__init__(value)
            self.value = value

    class _Types:
        """The records and variants of ``durable:workflow/types``, as plain classes."""

        @dataclass
        class RetryPolicy:
            max_attempts: int
            initial_backoff_ms: int
            backoff_factor: float
            max_backoff_ms: int

        @dataclass
        class StepOptions:
            retry: Optional[object]
            timeout_ms: Optional[int]

        @dataclass
        class Call:
            name: str
            input: str
            options: Optional[object]

        @dataclass
        class StepError_Failed:
            value: str

        @dataclass
        class StepError_Trapped:
            value: str

        @dataclass
        class StepError_TimedOut:
            value: int

        @dataclass
        class Failure:
            message: str
            retryable: bool

        @dataclass
        class WaitError_TimedOut:
            value: int

        @dataclass
        class ChildOptions:
            id: Optional[str]
            timeout_ms: Optional[int]

        @dataclass
        class HandleError_Failed:
            value: str

        @dataclass
        class HandleError_Trapped:
            value: str

        @dataclass
        class HandleError_TimedOut:
            value: int

        @dataclass
        class HandleError_Cancelled:
            value: str

        class LogLevel(Enum):
            TRACE = 0
            DEBUG = 1
            INFO = 2
            WARN = 3
            ERROR = 4

    types = _Types

    class _Durable:
        """The ``durable`` interface: each call goes to the running fake."""

        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            if not active:
                raise RuntimeError(f"{name}: {NO_HOST}")
            return getattr(active[-1]._api, name)

    durable = _Durable()
