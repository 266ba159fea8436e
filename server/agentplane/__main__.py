"""``python -m agentplane``: the ``agentplane`` command line.

``agentplane`` is a PEP 420 namespace over three source roots (decision 1);
a namespace may hold plain modules, and this one lives in ``server/``, whose
``agentplane`` folder ``pyproject.toml`` maps the namespace itself to
(decision 30). There is no ``agentplane/__init__.py``.
"""

from agentplane.server.cli import main

if __name__ == "__main__":
    main(prog_name="agentplane")
