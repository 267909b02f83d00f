"""The rasa-sdk action server: one module per job.

Started with ``python -m rasa_sdk --actions actions``; rasa-sdk imports every
module of this package and registers each Action subclass by ``name()``.
"""
