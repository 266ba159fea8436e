"""docs/deployment.md says what the files and the code do: its numbers and links, checked."""

from __future__ import annotations

import re

from tests.deploy.support import (
    REPO_ROOT,
    k8s_object,
    launcher_default,
    load_compose,
    stop_bound,
)

GUIDE = REPO_ROOT / "docs" / "deployment.md"


def test_the_guide_s_timings_are_the_files_and_the_code_s() -> None:
    text = " ".join(GUIDE.read_text().split())  # lines joined: figures may wrap
    drain, stop = launcher_default("drain_timeout"), launcher_default("stop_timeout")
    assert f"`drain_timeout` ({drain:.0f} s by default)" in text
    assert f"`stop_timeout` ({stop:.0f} s by default)" in text
    assert f"= {stop_bound():.0f} s from SIGTERM to exit with the defaults" in text
    services = load_compose()["services"]
    assert f"`stop_grace_period: {services['node1']['stop_grace_period']}` on the nodes" in text
    assert f"`{services['gateway']['stop_grace_period']}` on the gateway" in text
    pod = k8s_object("Deployment", "agentplane")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    sleep = float(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert f"It only sleeps {sleep:.0f} s" in text
    assert f"{sleep:.0f} + {stop_bound():.0f} = {sleep + stop_bound():.0f} s at most" in text
    assert f"`terminationGracePeriodSeconds: {pod['terminationGracePeriodSeconds']}`" in text


def test_the_readme_links_the_guide_and_the_guide_s_links_resolve() -> None:
    assert "(docs/deployment.md)" in (REPO_ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", GUIDE.read_text()):
        if "://" in target:
            continue
        assert (GUIDE.parent / target).exists(), target
