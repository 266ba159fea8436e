"""redis-py is an optional extra: one node runs without it, a cluster says what is missing."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.server.support import subprocess_env

BLOCK_REDIS = textwrap.dedent(
    """
    import importlib.abc, sys

    class NoRedis(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.partition(".")[0] == "redis":
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoRedis())
    """
)


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_REDIS + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(),
    )


def test_one_node_serves_sessions_without_redis_py() -> None:
    done = run(
        """
        import asyncio
        from agentplane.server import AgentLauncher, ServeOptions

        async def create_agent(**_): return {}
        async def join_call(agent, call_type, call_id): await asyncio.Event().wait()

        async def main():
            async with AgentLauncher(create_agent=create_agent, join_call=join_call) as launcher:
                record = await launcher.start_session("c")
                await launcher.close_session(record.session_id)
            ServeOptions()  # the options know of a cluster, and import nothing for it

        asyncio.run(main())
        assert not any(name.partition(".")[0] == "redis" for name in sys.modules)
        print("served")
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "served"


def test_a_cluster_without_redis_py_names_the_extra_to_install() -> None:
    done = run(
        """
        from agentplane.server.cli import main
        main(["serve", "--redis-url", "redis://127.0.0.1:1/0", "--port", "0", "--grpc-port", "0",
              "--no-demo-page"])
        """
    )
    assert done.returncode != 0
    assert "pip install 'agentplane[redis]'" in done.stderr
