"""Process-wide fixes for costs in Rasa's libraries that grow no feature, installed by ``bot.server``.

``jsonschema.validate`` checks the *schema* against its meta-schema on every
call before it checks the instance. Rasa validates every action server answer
that way (``RemoteAction._validate_action_result``, with a schema it rebuilds
each time), and with jsonschema 4.17 the meta-schema check was most of Rasa's
CPU in a turn that calls an action (py-spy, see bench/turns.py). The
replacement checks each distinct schema once and keeps its validator; what it
accepts and the errors it raises are jsonschema's own.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import jsonschema
from jsonschema.exceptions import best_match

logger = logging.getLogger(__name__)

_validators: dict[str, Any] = {}
_lock = threading.Lock()
_original_validate = jsonschema.validate


def cached_validate(instance: Any, schema: Any, cls: Any = None, *args: Any, **kwargs: Any) -> None:
    """``jsonschema.validate`` with the schema check and the validator kept per distinct schema."""
    if args or kwargs:
        _original_validate(instance, schema, cls, *args, **kwargs)
        return
    key = json.dumps(schema, sort_keys=True, default=str) + (f"|{cls.__name__}" if cls else "")
    validator = _validators.get(key)
    if validator is None:
        chosen = cls or jsonschema.validators.validator_for(schema)
        chosen.check_schema(schema)  # raises SchemaError, as jsonschema.validate does
        validator = chosen(schema)
        with _lock:
            if len(_validators) < 256:  # schemas are few; never grow without bound
                _validators[key] = validator
    error = best_match(validator.iter_errors(instance))
    if error is not None:
        raise error


def install() -> None:
    """Swap in the cached validator (Rasa imports ``validate`` from jsonschema at call time)."""
    if jsonschema.validate is not cached_validate:
        jsonschema.validate = cached_validate
        logger.debug("jsonschema.validate keeps one validator per schema")
