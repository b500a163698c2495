"""The adapter conformance suite: the same checks, on every adapter an environment has.

Per adapter, on its real framework: a second ``instrument()`` does nothing; ``uninstrument()``
puts back every object it replaced; with no SDK nothing is recorded; an exception inside the
core never reaches the host, whose results and exceptions are those of a bare run; an
interrupted step ends ``cancelled``; the ``orchestrators`` option selects the adapter; an
unsupported installed version is left unpatched, with its log line. In every environment: the
adapter modules import nothing from OpenTelemetry, and every listed adapter has a scenario.

A new adapter gets all of it by being listed in ``adapters.ADAPTERS`` and bringing its
scenario (``scenarios``); an unpublished framework, a shaped package (``frameworks``).

A package, so that its ``conftest`` is ``conformance.conftest`` and never shadows the plain
``conftest`` module that other test directories import from when run in the same session.
"""
