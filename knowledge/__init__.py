"""The shop's knowledge base: articles (zh + en), their index, and the retrievers.

`python -m knowledge build` turns knowledge/articles/ into an index under
var/knowledge/; `knowledge.retriever.create()` searches it. Nothing here talks
to Rasa: the action server (actions/knowledge.py) and the web service's search
endpoint both use the same Retriever interface.
"""
