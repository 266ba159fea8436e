"""agentplane's benchmark suite: agentplane and the Vision Agents agent server, side by side.

Run ``./dev bench`` (or ``python -m bench``); see bench/README.md.
"""
