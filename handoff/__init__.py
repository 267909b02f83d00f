"""Human handoff: the queue, agents, tickets, and the handoff service with the agent console.

``records``, ``requests``, ``queue`` and ``tickets`` import no web framework,
so the action server can use them without pulling FastAPI in.
"""
