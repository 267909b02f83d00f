"""Code shared by every process: settings and helpers with no third-party imports.

Both virtual environments (Rasa on 3.10, actions and web on 3.11) import this
package, so it must stay standard-library only.
"""
