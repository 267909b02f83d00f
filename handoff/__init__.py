"""Human handoff: records, the request log, and the web service (agent side).

``records`` and ``requests`` import no web framework, so the action server can
use them without pulling FastAPI in.
"""
