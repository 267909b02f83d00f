"""The rasa-sdk action server: one module per job.

Started with ``python -m actions --actions actions`` (rasa-sdk with the
project's logging, see __main__.py); rasa-sdk imports every module of this
package and registers each Action subclass by ``name()``.
"""
